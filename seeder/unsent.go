package seeder

import (
	"log/slog"
	"net"
)

// maxUnsent is how far the origin's writes may run ahead of what a connection has sent. By
// default Linux lets a write return once a send buffer of up to 4 MiB holds it, so the share
// slots (shareSends) bounded what the origin queued, not what it was sending: each agent's
// share still crawled in beside every other queued one. With 128 KiB, a share holds its slot
// until all but its last 128 KiB are on the wire.
const maxUnsent = 128 << 10

// unsentListener sets maxUnsent on the connections it accepts.
type unsentListener struct {
	net.Listener
	log *slog.Logger
}

func (l unsentListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := setNotSentLowat(tc, maxUnsent); err != nil {
			// Shares still flow, only less evenly.
			l.log.Debug("set TCP_NOTSENT_LOWAT", "peer", tc.RemoteAddr(), "err", err)
		}
	}
	return c, err
}
