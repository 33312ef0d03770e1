//go:build !linux

package seeder

import "net"

// setNotSentLowat does nothing here: the share slots then bound what the origin hands to its
// send buffers, not to the wire.
func setNotSentLowat(*net.TCPConn, int) error { return nil }
