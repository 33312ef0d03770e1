package seeder

import (
	"net"

	"golang.org/x/sys/unix"
)

// setNotSentLowat has the kernel take no more than unsent bytes ahead of what c's TCP
// connection has sent: a write returns once the rest fits under it, not once a send buffer of
// up to 4 MiB holds it.
func setNotSentLowat(c *net.TCPConn, unsent int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, unsent)
	}); err != nil {
		return err
	}
	return serr
}
