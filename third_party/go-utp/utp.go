// Package utp stands in for github.com/anacrolix/go-utp, which the Go module proxy
// available to Peerpatch's builds does not serve. anacrolix/torrent v1.62.0 imports it
// only to offer uTP transport; Peerpatch runs with DisableUTP, so this package keeps the
// same API and reports uTP as unavailable.
package utp

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// Default names the implementation in error messages.
const Default = "disabled uTP"

// ErrDisabled is returned by every constructor.
var ErrDisabled = errors.New("uTP is not available in this build")

// FirewallCallback decides whether to accept a connection from an address.
type FirewallCallback = func(net.Addr) bool

// Socket is a uTP socket: a packet conn that also accepts and dials connections.
type Socket interface {
	net.PacketConn
	Accept() (net.Conn, error)
	Addr() net.Addr
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	SetFirewallCallback(FirewallCallback)
}

// Option configures a Socket.
type Option func(*options)

type options struct{ logger *slog.Logger }

// WithLogger sets the socket's logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// NewSocket always fails: uTP is disabled.
func NewSocket(network, addr string, opts ...Option) (Socket, error) { return nil, ErrDisabled }

// NewSocketFromPacketConn always fails: uTP is disabled.
func NewSocketFromPacketConn(pc net.PacketConn, opts ...Option) (Socket, error) {
	return nil, ErrDisabled
}
