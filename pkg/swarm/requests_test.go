package swarm

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// TestRequestsPerPeer: a client downloading from a peer that accepts 1,024 requests at once
// (as every anacrolix peer says) keeps at most peerRequests outstanding with it. The peer is
// a plain wire-protocol seed written here, so that it can count what is on the wire; it
// answers one block at a time, slowly, so that a client allowed more would queue more.
func TestRequestsPerPeer(t *testing.T) {
	data := randBytes(11, 2<<20)
	r := buildFileReleaseWith(t, "app.bin", data, 256<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var most atomic.Int64 // the most requests outstanding at once
	go serveSlowly(t, ln, r, data, &most)

	c := newClient(t, Config{})
	tt, err := c.Add(r.spec(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	tt.t.AddPeers([]torrent.PeerInfo{{Addr: ln.Addr(), Source: torrent.PeerSourceTracker}})
	if err := download(t, tt, DownloadOptions{FallbackAfter: time.Minute, StallTimeout: 30 * time.Second}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if n := most.Load(); n > peerRequests || n == 0 {
		t.Errorf("the client had up to %d requests outstanding with the peer, want 1 to %d", n, peerRequests)
	}
}

// serveSlowly seeds the release's data on the connections ln accepts, answering requests in
// order, one every 5 ms; it records in most the most requests outstanding at once on one.
func serveSlowly(t *testing.T, ln net.Listener, r *testRelease, data []byte, most *atomic.Int64) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go seedSlowly(t, conn, r, data, most)
	}
}

func seedSlowly(t *testing.T, conn net.Conn, r *testRelease, data []byte, most *atomic.Int64) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ih := metainfo.Hash(r.infoHash())
	if _, err := pp.Handshake(ctx, conn, &ih, newPeerID(AgentPeerIDPrefix), pp.NewPeerExtensionBytes(pp.ExtensionBitLtep)); err != nil {
		return // the client tries an obfuscated handshake first, then a plain one
	}
	hs, err := bencode.Marshal(pp.ExtendedHandshakeMessage{Reqq: 1024, M: map[pp.ExtensionName]pp.ExtensionNumber{}})
	if err != nil {
		t.Error(err)
		return
	}
	have := make([]bool, r.m.NumPieces())
	for i := range have {
		have[i] = true
	}
	for _, m := range []pp.Message{
		{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: hs},
		{Type: pp.Bitfield, Bitfield: have},
		{Type: pp.Unchoke},
	} {
		if _, err := conn.Write(m.MustMarshalBinary()); err != nil {
			return
		}
	}
	requests := make(chan pp.Message, 4096)
	var outstanding atomic.Int64
	go func() {
		for m := range requests {
			time.Sleep(5 * time.Millisecond)
			off := r.m.PieceLength*int64(m.Index) + int64(m.Begin)
			reply := pp.Message{Type: pp.Piece, Index: m.Index, Begin: m.Begin, Piece: data[off : off+int64(m.Length)]}
			outstanding.Add(-1)
			if _, err := conn.Write(reply.MustMarshalBinary()); err != nil {
				return
			}
		}
	}()
	defer close(requests)
	d := pp.Decoder{R: bufio.NewReader(conn), MaxLength: 1 << 20}
	for {
		var m pp.Message
		if err := d.Decode(&m); err != nil {
			return // the client closed the connection once it had everything
		}
		if m.Type == pp.Request && !m.Keepalive {
			n := outstanding.Add(1)
			for o := most.Load(); n > o && !most.CompareAndSwap(o, n); o = most.Load() {
			}
			requests <- m
		}
	}
}
