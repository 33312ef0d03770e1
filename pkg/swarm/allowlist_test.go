package swarm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
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
		redial   bool // call again for a few seconds before concluding
		accepted bool
	}{
		{name: "unknown address refused", cfg: Config{RestrictPeers: true}, accepted: false},
		{name: "address from the tracker accepted", cfg: Config{RestrictPeers: true}, learn: true, accepted: true},
		{name: "approved by AllowPeer", cfg: Config{RestrictPeers: true, AllowPeer: func(a netip.Addr) bool { return a == stranger }}, accepted: true},
		// The first call is refused while the tracker is asked; a redial gets in.
		{name: "confirmed by CheckPeer", cfg: Config{RestrictPeers: true, CheckPeer: answer(true)}, redial: true, accepted: true},
		{name: "denied by CheckPeer", cfg: Config{RestrictPeers: true, CheckPeer: answer(false)}, redial: true, accepted: false},
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
			got := handshakes(t, stranger, c.Port(), ih)
			for deadline := time.Now().Add(3 * time.Second); tt.redial && !got && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				got = handshakes(t, stranger, c.Port(), ih)
			}
			if got != tt.accepted {
				t.Fatalf("handshake answered = %v, want %v", got, tt.accepted)
			}
		})
	}
}

// TestDialBack: a caller the client refused, and the tracker then confirmed with its port, is
// called back at once (nobody else gave the client that port).
func TestDialBack(t *testing.T) {
	r := buildRelease(t, "app", smallFiles(), nil)
	ih := r.infoHash()
	stranger := netip.MustParseAddr("127.0.0.2")
	ln, err := net.Listen("tcp", net.JoinHostPort(stranger.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	c := newClient(t, Config{RestrictPeers: true, CheckPeer: func(_ context.Context, a netip.Addr) ([]uint16, bool, error) {
		return []uint16{port}, a == stranger, nil
	}})
	tt, err := c.Add(r.spec(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tt.Download(ctx, DownloadOptions{}) // downloading: it wants peers
	// A peer given to the library before it wants any piece waits for the next announce (a
	// second later in an agent, never here, without a tracker).
	eventually(t, "the download to begin", func() bool { return tt.t.PieceState(0).Priority != torrent.PiecePriorityNone })
	if handshakes(t, stranger, c.Port(), ih) {
		t.Fatal("a caller nobody vouched for was let in")
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the client did not call the confirmed caller back: %v", err)
	}
	conn.Close()
	if from := conn.RemoteAddr().(*net.TCPAddr).IP; !from.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("a call from %v, want the client's 127.0.0.1", from)
	}
}

// answer is a CheckPeer that gives the same answer about every address.
func answer(known bool) CheckFunc {
	return func(context.Context, netip.Addr) ([]uint16, bool, error) { return nil, known, nil }
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

// fakeTracker answers the allowlist's questions and counts them.
type fakeTracker struct {
	mu    sync.Mutex
	known map[netip.Addr]bool
	ports []uint16 // the ports it gives for every known address
	err   error
	asked int
}

func (f *fakeTracker) check(_ context.Context, ip netip.Addr) ([]uint16, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return f.ports, f.known[ip], f.err
}

func (f *fakeTracker) questions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

func blocked(a *allowlist, ip string) bool {
	_, b := a.Lookup(net.ParseIP(ip))
	return b
}

// drain answers every queued question, as the background worker does.
func drain(t *testing.T, a *allowlist) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(a.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // let the last answer land
	cancel()
	<-done
}

// TestAllowlistQuestions: how the allowlist learns, forgets and asks about addresses, on a
// settable clock.
func TestAllowlistQuestions(t *testing.T) {
	stranger, member := "127.0.0.2", "127.0.0.3"
	tests := []struct {
		name string
		run  func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker)
	}{
		{"a stranger is refused and asked about once per interval", func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker) {
			for range 3 {
				if !blocked(a, stranger) {
					t.Fatal("stranger allowed")
				}
			}
			newcomer := a.newcomers()
			drain(t, a)
			if !blocked(a, stranger) {
				t.Fatal("stranger allowed after the tracker said no")
			}
			select {
			case <-newcomer:
				t.Fatal("a refused stranger woke the announce loops")
			default:
			}
			drain(t, a)
			if n := tr.questions(); n != 1 {
				t.Fatalf("asked %d times within %v, want 1", n, askEvery)
			}
			clock.advance(askEvery)
			blocked(a, stranger)
			drain(t, a)
			if n := tr.questions(); n != 2 {
				t.Fatalf("asked %d times after %v, want 2", n, askEvery)
			}
		}},
		{"a member is refused until the tracker confirms it, then allowed", func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker) {
			newcomer := a.newcomers()
			if !blocked(a, member) {
				t.Fatal("member allowed before the tracker confirmed it")
			}
			drain(t, a)
			if blocked(a, member) {
				t.Fatal("member refused after the tracker confirmed it")
			}
			select {
			case <-newcomer: // announce loops wake to learn the newcomer's port
			default:
				t.Fatal("a confirmed newcomer did not wake the announce loops")
			}
			clock.advance(knownFor)
			tr.known = nil
			if !blocked(a, member) {
				t.Fatalf("member still allowed %v after the confirmation", knownFor)
			}
		}},
		{"a member the tracker gives ports for is dialled back on each", func(t *testing.T, a *allowlist, _ *fakeClock, tr *fakeTracker) {
			var dialled []netip.AddrPort
			a.dial = func(p netip.AddrPort) { dialled = append(dialled, p) }
			tr.ports = []uint16{6881, 7000}
			newcomer := a.newcomers()
			blocked(a, member)
			drain(t, a)
			want := []netip.AddrPort{netip.MustParseAddrPort(member + ":6881"), netip.MustParseAddrPort(member + ":7000")}
			if !slices.Equal(dialled, want) {
				t.Fatalf("dialled %v, want %v", dialled, want)
			}
			if blocked(a, member) {
				t.Fatal("member refused after the tracker confirmed it")
			}
			select {
			case <-newcomer:
				t.Fatal("a newcomer dialled back also woke the announce loops")
			default:
			}
		}},
		{"an address a tracker handed out is allowed until it expires", func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker) {
			a.learn(net.ParseIP(stranger))
			if blocked(a, stranger) {
				t.Fatal("learnt address refused")
			}
			if blocked(a, "::ffff:"+stranger) {
				t.Fatal("learnt address refused in its IPv4-mapped form")
			}
			clock.advance(knownFor - time.Second)
			a.learn(net.ParseIP(stranger)) // a later announce renews it
			clock.advance(time.Minute)
			if blocked(a, stranger) {
				t.Fatal("renewed address refused")
			}
			clock.advance(knownFor)
			if !blocked(a, stranger) {
				t.Fatal("address allowed after it expired")
			}
			if tr.questions() != 0 {
				t.Fatal("asked the tracker about an address it handed out")
			}
		}},
		{"an unreachable tracker keeps refusing and asks again later", func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker) {
			tr.err = errors.New("connection refused")
			blocked(a, member)
			drain(t, a)
			if !blocked(a, member) {
				t.Fatal("allowed on a tracker error")
			}
			clock.advance(askEvery)
			tr.err = nil
			blocked(a, member)
			drain(t, a)
			if blocked(a, member) {
				t.Fatal("refused after the tracker came back and confirmed")
			}
		}},
		{"a full queue drops questions instead of blocking", func(t *testing.T, a *allowlist, clock *fakeClock, tr *fakeTracker) {
			for i := range askQueue + 10 {
				blocked(a, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
			}
			if len(a.queue) != askQueue {
				t.Fatalf("queue holds %d, want %d", len(a.queue), askQueue)
			}
			drain(t, a)
			if n := tr.questions(); n != askQueue {
				t.Fatalf("asked %d questions, want %d", n, askQueue)
			}
			clock.advance(askEvery) // the dropped ones are asked about on a later call
			blocked(a, netip.AddrFrom4([4]byte{10, 0, 0, askQueue + 5}).String())
			drain(t, a)
			if n := tr.questions(); n != askQueue+1 {
				t.Fatalf("asked %d questions, want %d", n, askQueue+1)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			tr := &fakeTracker{known: map[netip.Addr]bool{netip.MustParseAddr(member): true}}
			a := newAllowlist(true, nil, tr.check, slog.New(slog.DiscardHandler))
			a.now = clock.now
			tc.run(t, a, clock, tr)
		})
	}
}

func TestAllowlistAllowFunc(t *testing.T) {
	a := newAllowlist(true, func(ip netip.Addr) bool { return ip == netip.MustParseAddr("127.0.0.9") }, nil, slog.New(slog.DiscardHandler))
	if blocked(a, "127.0.0.9") {
		t.Fatal("address AllowPeer approves was refused")
	}
	if !blocked(a, "127.0.0.8") || len(a.queue) != 0 {
		t.Fatal("an address AllowPeer refuses was allowed or asked about without CheckPeer")
	}
}

// TestAllowlistAsksAtOnce: questions about several callers are in flight together, so one slow
// answer does not hold up the others.
func TestAllowlistAsksAtOnce(t *testing.T) {
	const callers = 4
	var mu sync.Mutex
	inFlight, most := 0, 0
	all := make(chan struct{})
	check := func(ctx context.Context, _ netip.Addr) ([]uint16, bool, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == callers {
			close(all)
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select { // each answer waits until every caller is asked about
		case <-all:
			return nil, true, nil
		case <-time.After(5 * time.Second):
			return nil, false, errors.New("timed out")
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	a := newAllowlist(true, nil, check, slog.New(slog.DiscardHandler))
	for i := range callers {
		blocked(a, netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}).String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("at most %d questions were in flight at once, want %d", most, callers)
	}
	eventually(t, "every caller allowed", func() bool {
		for i := range callers {
			if blocked(a, netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}).String()) {
				return false
			}
		}
		return true
	})
}
