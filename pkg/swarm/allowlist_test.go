package swarm

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestAllowlist: a client accepts a peer connection only from an address a tracker handed out
// (or AllowPeer approves). The "stranger" dials from 127.0.0.2, another loopback address.
func TestAllowlist(t *testing.T) {
	r := buildRelease(t, "app", smallFiles(), nil)
	ih := r.infoHash()
	stranger := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name     string
		cfg      Config
		learn    bool // the tracker handed out the stranger's address
		accepted bool
	}{
		{name: "unknown address refused", cfg: Config{RestrictPeers: true}, accepted: false},
		{name: "address from the tracker accepted", cfg: Config{RestrictPeers: true}, learn: true, accepted: true},
		{name: "approved by AllowPeer", cfg: Config{RestrictPeers: true, AllowPeer: func(a netip.Addr) bool { return a == stranger }}, accepted: true},
		{name: "open swarm", accepted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.cfg)
			// A complete release: a seeding client wants connections.
			if _, err := c.Add(r.spec(r.parent)); err != nil {
				t.Fatal(err)
			}
			if tt.learn {
				c.peers.learn(stranger.AsSlice())
			}
			if got := handshakes(t, stranger, c.Port(), ih); got != tt.accepted {
				t.Fatalf("handshake answered = %v, want %v", got, tt.accepted)
			}
		})
	}
}

// handshakes dials the client from addr, sends a BitTorrent handshake for ih and reports
// whether the client answered with its own.
func handshakes(t *testing.T, from netip.Addr, port int, ih [20]byte) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hs := append([]byte("\x13BitTorrent protocol"), make([]byte, 8)...)
	hs = append(hs, ih[:]...)
	hs = append(hs, []byte("-PPA001-stranger0000")...)
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write(hs); err != nil {
		return false
	}
	reply := make([]byte, 68)
	_, err = io.ReadFull(conn, reply)
	return err == nil && string(reply[1:20]) == "BitTorrent protocol"
}
