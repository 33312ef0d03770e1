package swarm

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/tracker"
	trackerserver "github.com/anacrolix/torrent/tracker/server"
	"github.com/anacrolix/torrent/tracker/udp"
)

// fakeClock is a settable clock for the tracker's peer expiry and the allowlist's timing.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func announce(t *testing.T, tr *Tracker, ih [20]byte, addr string, left int64, ev tracker.AnnounceEvent) {
	t.Helper()
	err := tr.TrackAnnounce(context.Background(), udp.AnnounceRequest{InfoHash: ih, Left: left, Event: ev}, ap(addr))
	if err != nil {
		t.Fatalf("TrackAnnounce: %v", err)
	}
}

func peersOf(tr *Tracker, ih [20]byte, asker string, maxCount generics.Option[uint]) (trackerserver.ServerAnnounceResult, []string) {
	res := tr.GetPeers(context.Background(), ih, trackerserver.GetPeersOpts{MaxCount: maxCount}, ap(asker))
	var got []string
	for _, p := range res.Peers {
		got = append(got, p.AnnounceAddr.String())
	}
	slices.Sort(got)
	return res, got
}

func TestTracker(t *testing.T) {
	ih := [20]byte{1}
	other := [20]byte{2}
	const (
		seeder  = "127.0.0.1:6001"
		agentA  = "127.0.0.1:6002"
		agentB  = "10.0.0.3:6002"
		outside = "127.0.0.9:1"
	)
	none := generics.None[uint]()

	tests := []struct {
		name string
		// run announces to tr (clock is its clock) and then checks it.
		run func(t *testing.T, tr *Tracker, clock *fakeClock)
	}{
		{
			name: "two peers see each other, not themselves",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				announce(t, tr, ih, seeder, 0, tracker.Started)
				announce(t, tr, ih, agentA, 100, tracker.Started)
				if _, got := peersOf(tr, ih, seeder, none); !slices.Equal(got, []string{agentA}) {
					t.Errorf("seeder gets %q, want only agent A", got)
				}
				res, got := peersOf(tr, ih, agentA, none)
				if !slices.Equal(got, []string{seeder}) {
					t.Errorf("agent A gets %q, want only the seeder", got)
				}
				if res.Seeders.Value != 1 || res.Leechers.Value != 0 {
					t.Errorf("agent A's answer counts %d seeders, %d leechers; want 1, 0", res.Seeders.Value, res.Leechers.Value)
				}
				if res.Interval.Value != int32(announceIdle/time.Second) {
					t.Errorf("interval %d", res.Interval.Value)
				}
				if _, got := peersOf(tr, ih, outside, none); len(got) != 2 {
					t.Errorf("a third party gets %q, want both", got)
				}
				if total, seeders := tr.Peers(ih); total != 2 || seeders != 1 {
					t.Errorf("Peers = %d, %d seeders; want 2, 1", total, seeders)
				}
			},
		},
		{
			name: "same IP, other port is another peer",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				announce(t, tr, ih, "127.0.0.1:7000", 5, tracker.Started)
				announce(t, tr, ih, "127.0.0.1:7001", 5, tracker.Started)
				if _, got := peersOf(tr, ih, "127.0.0.1:7000", none); !slices.Equal(got, []string{"127.0.0.1:7001"}) {
					t.Errorf("got %q", got)
				}
			},
		},
		{
			name: "the ports an address announced, across torrents, while live",
			run: func(t *testing.T, tr *Tracker, clock *fakeClock) {
				ip := netip.MustParseAddr("127.0.0.1")
				announce(t, tr, ih, "127.0.0.1:7001", 5, tracker.Started)
				announce(t, tr, other, "127.0.0.1:7000", 5, tracker.Started)
				announce(t, tr, other, "127.0.0.1:7001", 5, tracker.Started)
				announce(t, tr, ih, agentB, 5, tracker.Started)
				if got := tr.Ports(ip); !slices.Equal(got, []uint16{7000, 7001}) || !tr.Knows(ip) {
					t.Errorf("Ports = %v, Knows = %v; want [7000 7001], true", got, tr.Knows(ip))
				}
				if got := tr.Ports(netip.MustParseAddr("127.0.0.9")); len(got) != 0 {
					t.Errorf("Ports of an address nobody announced from = %v", got)
				}
				clock.advance(peerTTL)
				if got := tr.Ports(ip); len(got) != 0 || tr.Knows(ip) {
					t.Errorf("after peerTTL, Ports = %v, Knows = %v; want none", got, tr.Knows(ip))
				}
			},
		},
		{
			name: "stopped removes the peer",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				announce(t, tr, ih, seeder, 0, tracker.Started)
				announce(t, tr, ih, agentA, 100, tracker.Started)
				announce(t, tr, ih, agentA, 100, tracker.Stopped)
				if _, got := peersOf(tr, ih, seeder, none); len(got) != 0 {
					t.Errorf("after stopped, the seeder still gets %q", got)
				}
				if total, _ := tr.Peers(ih); total != 1 {
					t.Errorf("Peers total %d, want 1", total)
				}
				// Stopping an unknown peer or torrent is harmless.
				announce(t, tr, other, agentB, 1, tracker.Stopped)
				announce(t, tr, ih, agentB, 1, tracker.Stopped)
				if total, _ := tr.Peers(ih); total != 1 {
					t.Errorf("Peers total %d, want 1", total)
				}
			},
		},
		{
			name: "completed peer becomes a seeder",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				announce(t, tr, ih, seeder, 0, tracker.Started)
				announce(t, tr, ih, agentA, 100, tracker.Started)
				announce(t, tr, ih, agentB, 100, tracker.Started)
				if total, seeders := tr.Peers(ih); total != 3 || seeders != 1 {
					t.Errorf("Peers = %d, %d; want 3, 1", total, seeders)
				}
				announce(t, tr, ih, agentA, 0, tracker.Completed)
				if total, seeders := tr.Peers(ih); total != 3 || seeders != 2 {
					t.Errorf("after completed, Peers = %d, %d; want 3, 2", total, seeders)
				}
				res, _ := peersOf(tr, ih, agentB, none)
				if res.Seeders.Value != 2 || res.Leechers.Value != 0 {
					t.Errorf("agent B is told %d seeders, %d leechers; want 2, 0", res.Seeders.Value, res.Leechers.Value)
				}
			},
		},
		{
			name: "infohashes are separate",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				announce(t, tr, ih, seeder, 0, tracker.Started)
				announce(t, tr, other, agentA, 1, tracker.Started)
				if _, got := peersOf(tr, other, outside, none); !slices.Equal(got, []string{agentA}) {
					t.Errorf("other torrent's peers %q", got)
				}
				if total, _ := tr.Peers([20]byte{3}); total != 0 {
					t.Errorf("unknown torrent has %d peers", total)
				}
			},
		},
		{
			name: "max count caps the answer",
			run: func(t *testing.T, tr *Tracker, _ *fakeClock) {
				for i := range 10 {
					announce(t, tr, ih, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(7000+i)).String(), 1, tracker.Started)
				}
				if _, got := peersOf(tr, ih, outside, generics.Some[uint](3)); len(got) != 3 {
					t.Errorf("got %d peers, want 3", len(got))
				}
				if _, got := peersOf(tr, ih, outside, generics.Some[uint](0)); len(got) != 0 {
					t.Errorf("got %d peers, want 0", len(got))
				}
			},
		},
		{
			name: "silent peers expire",
			run: func(t *testing.T, tr *Tracker, clock *fakeClock) {
				announce(t, tr, ih, seeder, 0, tracker.Started)
				clock.advance(peerTTL / 2)
				announce(t, tr, ih, agentA, 1, tracker.Started)
				clock.advance(peerTTL / 2) // the seeder's last announce is peerTTL old
				if total, seeders := tr.Peers(ih); total != 1 || seeders != 0 {
					t.Errorf("Peers = %d, %d; want 1, 0", total, seeders)
				}
				if _, got := peersOf(tr, ih, outside, none); !slices.Equal(got, []string{agentA}) {
					t.Errorf("got %q, want only agent A", got)
				}
				announce(t, tr, ih, seeder, 0, tracker.None) // re-announce revives
				if total, seeders := tr.Peers(ih); total != 2 || seeders != 1 {
					t.Errorf("after re-announce Peers = %d, %d; want 2, 1", total, seeders)
				}
				// The stale entry is pruned from the store on announce, not only hidden.
				clock.advance(peerTTL)
				announce(t, tr, ih, agentB, 1, tracker.Started)
				tr.mu.Lock()
				n := len(tr.peers[ih])
				tr.mu.Unlock()
				if n != 1 {
					t.Errorf("%d entries stored after expiry, want 1", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			tr.now = clock.now
			tc.run(t, tr, clock)
		})
	}
}

// TestTrackerHTTP announces through Handler over loopback with the library's tracker client.
func TestTrackerHTTP(t *testing.T) {
	tr, url := startTracker(t)
	ih := [20]byte{0xaa, 0xbb}
	do := func(peerID string, port uint16, left int64, ev tracker.AnnounceEvent) tracker.AnnounceResponse {
		t.Helper()
		var id [20]byte
		copy(id[:], peerID)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := tracker.Announce{
			TrackerUrl: url,
			Request:    tracker.AnnounceRequest{InfoHash: ih, PeerId: id, Left: left, Event: ev, NumWant: 50, Port: port},
			Context:    ctx,
		}.Do()
		if err != nil {
			t.Fatalf("announce: %v", err)
		}
		return res
	}
	addrs := func(res tracker.AnnounceResponse) []string {
		var s []string
		for _, p := range res.Peers {
			a, _ := p.ToNetipAddrPort()
			s = append(s, a.String())
		}
		return s
	}

	res := do(OriginPeerIDPrefix+"seed", 6881, 0, tracker.Started)
	if len(res.Peers) != 0 {
		t.Errorf("first announcer got peers %q", addrs(res))
	}
	res = do(AgentPeerIDPrefix+"agent", 6882, 1000, tracker.Started)
	if got := addrs(res); !slices.Equal(got, []string{"127.0.0.1:6881"}) {
		t.Errorf("agent got %q, want the seeder at 127.0.0.1:6881", got)
	}
	if res.Seeders != 1 || res.Leechers != 0 || res.Interval != int32(announceIdle/time.Second) {
		t.Errorf("answer: %d seeders, %d leechers, interval %d", res.Seeders, res.Leechers, res.Interval)
	}
	if total, seeders := tr.Peers(ih); total != 2 || seeders != 1 {
		t.Errorf("Peers = %d, %d; want 2, 1", total, seeders)
	}
	do(AgentPeerIDPrefix+"agent", 6882, 0, tracker.Completed)
	if total, seeders := tr.Peers(ih); total != 2 || seeders != 2 {
		t.Errorf("after completed, Peers = %d, %d; want 2, 2", total, seeders)
	}
	do(OriginPeerIDPrefix+"seed", 6881, 0, tracker.Stopped)
	if total, _ := tr.Peers(ih); total != 1 {
		t.Errorf("after stopped, %d peers, want 1", total)
	}
	res = do(AgentPeerIDPrefix+"late", 6883, 1000, tracker.Started)
	if got := addrs(res); !slices.Equal(got, []string{"127.0.0.1:6882"}) {
		t.Errorf("late agent got %q, want only the completed agent", got)
	}
	if strings.Contains(strings.Join(addrs(res), ","), ":6881") {
		t.Error("a stopped peer is still handed out")
	}
}
