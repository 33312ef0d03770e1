package swarm

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
)

// originShares is an in-process origin scheduler over a seeding torrent: each piece once, in
// order, then the wanted pieces on request. corrupt flips a byte of the pieces it names.
type originShares struct {
	seed    *Torrent
	corrupt map[int]bool

	mu     sync.Mutex
	busy   int // answer ErrShareBusy this many times first
	next   int
	served []int
	wants  int
}

func (o *originShares) share(_ context.Context, want []int) (int, []byte, error) {
	o.mu.Lock()
	var i int
	switch {
	case o.busy > 0:
		o.busy--
		o.mu.Unlock()
		return 0, nil, ErrShareBusy
	case len(want) > 0:
		i = want[0]
		o.wants++
	case o.next < o.seed.m.NumPieces():
		i = o.next
		o.next++
	default:
		o.mu.Unlock()
		return 0, nil, ErrNoShare
	}
	o.served = append(o.served, i)
	o.mu.Unlock()
	b, err := o.seed.ReadPiece(i)
	if err == nil && o.corrupt[i] {
		b[0] ^= 0xff
	}
	return i, b, err
}

// TestShares: an agent with no peer at all gets every piece from the origin's scheduler; a
// corrupt piece is refused and fetched again as a rescue; a piece of the wrong size is refused.
func TestShares(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	_, seed := startSeeder(t, r, "") // no tracker: the agent can reach it only through shares
	tests := []struct {
		name      string
		corrupt   map[int]bool
		busy      int
		wantBad   int64
		wantWants bool
	}{
		{name: "every piece once"},
		{name: "every piece once, after the origin was busy", busy: 3},
		{name: "corrupt piece refused, then rescued", corrupt: map[int]bool{3: true}, wantBad: 1, wantWants: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &originShares{seed: seed, corrupt: tc.corrupt, busy: tc.busy}
			dir := filepath.Join(t.TempDir(), "data")
			agent := newClient(t, Config{PersistCompletion: true})
			at, err := agent.Add(r.spec(dir))
			if err != nil {
				t.Fatal(err)
			}
			share := o.share
			if tc.corrupt != nil {
				share = func(ctx context.Context, want []int) (int, []byte, error) {
					if len(want) > 0 {
						clear(tc.corrupt) // the rescue is served intact
					}
					return o.share(ctx, want)
				}
			}
			if err := download(t, at, DownloadOptions{FallbackAfter: time.Minute, StallTimeout: 30 * time.Second, Share: share}); err != nil {
				t.Fatalf("Download: %v", err)
			}
			r.assertFilesEqual(t, dir)
			s := at.Stats()
			if s.FromOrigin != s.Total || s.FromPeers != 0 {
				t.Errorf("FromOrigin %d, FromPeers %d, want %d and 0", s.FromOrigin, s.FromPeers, s.Total)
			}
			if s.BadPieces != tc.wantBad {
				t.Errorf("BadPieces %d, want %d", s.BadPieces, tc.wantBad)
			}
			if (o.wants > 0) != tc.wantWants {
				t.Errorf("rescue requests: %d, want some: %v", o.wants, tc.wantWants)
			}
			if tc.corrupt == nil && len(o.served) != r.m.NumPieces() {
				t.Errorf("origin served %d pieces, want each of %d once", len(o.served), r.m.NumPieces())
			}
		})
	}

	t.Run("wrong size refused", func(t *testing.T) {
		at, err := newClient(t, Config{}).Add(r.spec(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := seed.ReadPiece(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			i    int
			data []byte
		}{{0, b[:len(b)-1]}, {-1, b}, {r.m.NumPieces(), b}} {
			if err := at.WritePiece(context.Background(), tc.i, tc.data); err == nil {
				t.Errorf("WritePiece(%d, %d bytes) accepted", tc.i, len(tc.data))
			}
		}
		var pe *PieceError
		b[10] ^= 1
		if err := at.WritePiece(context.Background(), 0, b); !errors.As(err, &pe) || pe.Piece != 0 {
			t.Errorf("WritePiece of a corrupt piece: %v, want a PieceError", err)
		}
		if at.Stats().Completed != 0 {
			t.Error("a refused piece counts as verified")
		}
	})
}

// TestSharesWithSwarm: the origin hands out shares while it also seeds over BitTorrent, so the
// same piece may arrive both ways at once; the files must come out whole every time.
func TestSharesWithSwarm(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	_, trackerURL := startTracker(t)
	_, seed := startSeeder(t, r, trackerURL)
	for i := range 15 {
		o := &originShares{seed: seed}
		dir := filepath.Join(t.TempDir(), "data")
		agent := newClient(t, Config{PersistCompletion: true})
		at, err := agent.Add(r.spec(dir, trackerURL))
		if err != nil {
			t.Fatal(err)
		}
		if err := download(t, at, DownloadOptions{FallbackAfter: time.Minute, StallTimeout: 30 * time.Second, Share: o.share}); err != nil {
			t.Fatalf("run %d: Download: %v", i, err)
		}
		r.assertFilesEqual(t, dir)
		agent.Close()
	}
}

// TestRescueAtPeerCap: an agent whose connected peers lack every piece asks the origin for
// them, unless peers it does not see may hold them (it is connected to as many peers as it may,
// or not to every peer the tracker listed) and it has made progress within capRescueAfter;
// stalled, it asks for one piece either way.
func TestRescueAtPeerCap(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	_, trackerURL := startTracker(t)
	_, seed := startSeeder(t, r, "") // reachable only through shares
	tests := []struct {
		name         string
		maxConns     int
		idle         time.Duration
		progressOnce bool // the first piece served is progress: idle drops to 0
		unseen       bool // the tracker also listed a peer A is not connected to
		wantServed   int
	}{
		{name: "below the cap", maxConns: 2, wantServed: r.m.NumPieces()},
		{name: "below the cap, a listed peer unseen", maxConns: 2, idle: capRescueAfter / 2, unseen: true, wantServed: 0},
		{name: "at the cap", maxConns: 1, idle: capRescueAfter / 2, wantServed: 0},
		{name: "at the cap, no progress lately", maxConns: 1, idle: capRescueAfter, wantServed: r.m.NumPieces()},
		// Stalled, at its cap, with lacking pieces unclear: one piece, which is progress.
		{name: "stalled at the cap", maxConns: 1, idle: rescueAfter, progressOnce: true, wantServed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newClient(t, Config{MaxConnsPerTorrent: tc.maxConns}).Add(r.spec(t.TempDir(), trackerURL))
			if err != nil {
				t.Fatal(err)
			}
			b, err := newClient(t, Config{}).Add(r.spec(t.TempDir(), trackerURL)) // holds nothing
			if err != nil {
				t.Fatal(err)
			}
			a.t.DownloadAll()
			b.t.DownloadAll()
			eventually(t, "A to connect to B", func() bool { return len(a.t.PeerConns()) == 1 })
			if tc.unseen {
				var listed []torrent.PeerInfo
				if l := a.tracked.Load(); l != nil {
					listed = slices.Clone(*l)
				}
				listed = append(listed, torrent.PeerInfo{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}})
				a.tracked.Store(&listed)
			}
			o := &originShares{seed: seed, next: r.m.NumPieces()} // every piece handed out
			a.rescue(context.Background(), o.share, func() time.Duration {
				o.mu.Lock()
				defer o.mu.Unlock()
				if tc.progressOnce && len(o.served) > 0 {
					return 0
				}
				return tc.idle
			})
			if len(o.served) != tc.wantServed {
				t.Errorf("origin served %d pieces (%v), want %d", len(o.served), o.served, tc.wantServed)
			}
		})
	}

}
