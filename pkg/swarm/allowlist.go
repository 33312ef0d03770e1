package swarm

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/torrent/iplist"
)

// Allowlist timing.
const (
	// knownFor is how long an address stays allowed after a tracker handed it out or
	// confirmed it: as long as the tracker itself lists a peer that stopped announcing.
	knownFor = peerTTL
	// askEvery spaces out questions about one unknown address, so a stranger that keeps
	// calling costs one tracker request per interval.
	askEvery = 5 * time.Second
	// askQueue bounds the unknown addresses waiting for an answer; more are dropped and
	// asked about on a later call.
	askQueue = 64
	// askers is how many questions are asked at once. When a release is published, the agents
	// that announced first are called by every later one at once, and each question waits its
	// turn behind the origin's busy link (40-70 ms at N=16 in the fleet lab): asked one after
	// another, the last of a dozen callers got in 0.5-1.3 s after publishing.
	askers = 8
)

// allowlist turns the library's IP blocklist into an allowlist: a peer is accepted or dialled
// only if a tracker handed its address out (every announcer is an enrolled agent or the
// origin), or if Config.AllowPeer approves it (the seeder asks its own tracker).
//
// An agent that seeds learns of a newcomer only at its next announce, so the newcomer's first
// calls would be refused for up to a minute. With Config.CheckPeer, an unknown caller is still
// refused at once (the library asks under its lock, so the answer cannot wait), but the
// address is asked about in the background; once the tracker confirms it, this client dials
// the caller back on the ports the tracker gives (the caller knows this client from its own
// announce, so it lets the call in), and the caller's next attempt gets in too.
//
// It also holds the bans: a peer that sent corrupt blocks (see blame) is refused for good.
type allowlist struct {
	// restrict refuses every address not known; without it, only banned ones are refused.
	restrict bool
	allow    func(netip.Addr) bool // may be nil
	check    CheckFunc             // may be nil
	dial     func(netip.AddrPort)  // calls a confirmed newcomer back; may be nil
	log      *slog.Logger
	now      func() time.Time
	queue    chan netip.Addr

	mu       sync.Mutex
	known    map[netip.Addr]time.Time // allowed until
	asked    map[netip.Addr]time.Time // last question about an unknown address
	banned   map[netip.Addr]bool      // peers that sent corrupt data (see blame)
	newcomer chan struct{}            // closed and replaced when the tracker confirms a caller
}

var _ iplist.Ranger = (*allowlist)(nil)

func newAllowlist(restrict bool, allow func(netip.Addr) bool, check CheckFunc, log *slog.Logger) *allowlist {
	return &allowlist{
		restrict: restrict,
		banned:   make(map[netip.Addr]bool),
		allow:    allow,
		check:    check,
		log:      log,
		now:      time.Now,
		queue:    make(chan netip.Addr, askQueue),
		known:    make(map[netip.Addr]time.Time),
		asked:    make(map[netip.Addr]time.Time),
		newcomer: make(chan struct{}),
	}
}

// newcomers returns a channel closed when the tracker next confirms a caller this client did
// not know without saying which ports it listens on (nil, never closed, without an allowlist):
// an announce then finds them.
func (a *allowlist) newcomers() <-chan struct{} {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.newcomer
}

// learn records addresses a tracker handed out.
func (a *allowlist) learn(ips ...net.IP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	until := a.now().Add(knownFor)
	for _, ip := range ips {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			a.known[addr.Unmap()] = until
		}
	}
}

// Lookup reports an address as blocked unless it is allowed. An unknown address is queued
// for a question to the tracker.
func (a *allowlist) Lookup(ip net.IP) (iplist.Range, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if ok {
		addr = addr.Unmap()
		if a.allowed(addr) {
			return iplist.Range{}, false
		}
	}
	return iplist.Range{First: ip, Last: ip, Description: "not a peer the tracker knows"}, true
}

func (a *allowlist) allowed(addr netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.banned[addr] {
		return false
	}
	if !a.restrict || a.allow != nil && a.allow(addr) {
		return true
	}
	now := a.now()
	if until, ok := a.known[addr]; ok {
		if now.Before(until) {
			return true
		}
		delete(a.known, addr)
	}
	if a.check == nil || now.Sub(a.asked[addr]) < askEvery {
		return false
	}
	select {
	case a.queue <- addr:
		a.asked[addr] = now
	default: // the queue is full: ask on a later call
	}
	return false
}

// run answers queued questions until ctx ends, askers at a time.
func (a *allowlist) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range askers {
		wg.Go(func() { a.answer(ctx) })
	}
	wg.Wait()
}

// answer answers queued questions, one after another, until ctx ends.
func (a *allowlist) answer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case addr := <-a.queue:
			ports, ok, err := a.check(ctx, addr)
			a.mu.Lock()
			switch {
			case err != nil:
				if ctx.Err() == nil {
					a.log.Debug("could not ask the tracker about a peer", "addr", addr, "err", err)
				}
			case ok:
				a.known[addr] = a.now().Add(knownFor)
				delete(a.asked, addr)
				if len(ports) == 0 || a.dial == nil {
					close(a.newcomer)
					a.newcomer = make(chan struct{})
				}
			}
			// Forget questions long past, so the map stays the size of recent callers.
			for k, t := range a.asked {
				if a.now().Sub(t) > knownFor {
					delete(a.asked, k)
				}
			}
			a.mu.Unlock()
			if err == nil && !ok {
				a.log.Info("refused a peer the tracker does not know", "addr", addr)
			}
			if ok && a.dial != nil {
				for _, p := range ports {
					a.dial(netip.AddrPortFrom(addr, p))
				}
			}
		}
	}
}

// ban refuses addr from now on, whatever a tracker says of it.
func (a *allowlist) ban(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.banned[addr] = true
	delete(a.known, addr)
}

// NumRanges is not meaningful for an allowlist.
func (a *allowlist) NumRanges() int { return 0 }
