package swarm

import (
	"net"
	"net/netip"
	"sync"

	"github.com/anacrolix/torrent/iplist"
)

// allowlist turns the library's IP blocklist into an allowlist: a peer is accepted or dialled
// only if its address was handed out by a tracker (every announcer is an enrolled agent or
// the origin), or if Config.AllowPeer approves it (the seeder asks its own tracker).
type allowlist struct {
	allow func(netip.Addr) bool // may be nil

	mu    sync.RWMutex
	known map[netip.Addr]bool
}

var _ iplist.Ranger = (*allowlist)(nil)

func newAllowlist(allow func(netip.Addr) bool) *allowlist {
	return &allowlist{allow: allow, known: make(map[netip.Addr]bool)}
}

// learn records addresses a tracker handed out.
func (a *allowlist) learn(ips ...net.IP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range ips {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			a.known[addr.Unmap()] = true
		}
	}
}

// Lookup reports an address as blocked unless it is allowed.
func (a *allowlist) Lookup(ip net.IP) (iplist.Range, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if ok {
		addr = addr.Unmap()
		if a.allow != nil && a.allow(addr) {
			return iplist.Range{}, false
		}
		a.mu.RLock()
		known := a.known[addr]
		a.mu.RUnlock()
		if known {
			return iplist.Range{}, false
		}
	}
	return iplist.Range{First: ip, Last: ip, Description: "not a peer the tracker knows"}, true
}

// NumRanges is not meaningful for an allowlist.
func (a *allowlist) NumRanges() int { return 0 }
