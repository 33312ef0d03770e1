package swarm

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/tracker"
	httpserver "github.com/anacrolix/torrent/tracker/http/server"
	trackerserver "github.com/anacrolix/torrent/tracker/server"
	"github.com/anacrolix/torrent/tracker/udp"
)

// peerTTL is how long an announce keeps a peer listed: a few missed announces.
const peerTTL = 3 * announceIdle

// Tracker is the seeder's BitTorrent tracker: the library's HTTP announce handler over
// Peerpatch's own peer store. Authentication is the caller's (wrap Handler).
type Tracker struct {
	mu    sync.Mutex
	peers map[[20]byte]map[netip.AddrPort]trackedPeer
	now   func() time.Time
}

type trackedPeer struct {
	seen time.Time
	left int64
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{peers: make(map[[20]byte]map[netip.AddrPort]trackedPeer), now: time.Now}
}

// Handler serves announces (GET with the BEP 3 query parameters).
func (tr *Tracker) Handler() http.Handler {
	return httpserver.Handler{Announce: &trackerserver.AnnounceHandler{AnnounceTracker: tr}}
}

// Peers returns the number of live peers of an infohash and how many of them are complete.
func (tr *Tracker) Peers(infoHash [20]byte) (total, seeders int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := tr.now()
	for _, p := range tr.peers[infoHash] {
		if now.Sub(p.seen) < peerTTL {
			total++
			if p.left == 0 {
				seeders++
			}
		}
	}
	return total, seeders
}

// TrackAnnounce records or removes the announcing peer.
func (tr *Tracker) TrackAnnounce(_ context.Context, req udp.AnnounceRequest, addr trackerserver.AnnounceAddr) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ps := tr.peers[req.InfoHash]
	if req.Event == tracker.Stopped {
		delete(ps, addr)
		if len(ps) == 0 {
			delete(tr.peers, req.InfoHash)
		}
		return nil
	}
	if ps == nil {
		ps = make(map[netip.AddrPort]trackedPeer)
		tr.peers[req.InfoHash] = ps
	}
	now := tr.now()
	ps[addr] = trackedPeer{seen: now, left: req.Left}
	for a, p := range ps {
		if now.Sub(p.seen) >= peerTTL {
			delete(ps, a)
		}
	}
	return nil
}

// Scrape is not offered.
func (tr *Tracker) Scrape(context.Context, []trackerserver.InfoHash) ([]udp.ScrapeInfohashResult, error) {
	return nil, nil
}

// GetPeers returns up to MaxCount live peers of the infohash in random order, without the
// asker itself.
func (tr *Tracker) GetPeers(_ context.Context, ih trackerserver.InfoHash, opts trackerserver.GetPeersOpts, remote trackerserver.AnnounceAddr) trackerserver.ServerAnnounceResult {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := tr.now()
	var res trackerserver.ServerAnnounceResult
	var leechers, seeders int32
	for a, p := range tr.peers[ih] {
		if now.Sub(p.seen) >= peerTTL || a == remote {
			continue
		}
		if p.left == 0 {
			seeders++
		} else {
			leechers++
		}
		res.Peers = append(res.Peers, trackerserver.PeerInfo{AnnounceAddr: a})
	}
	rand.Shuffle(len(res.Peers), func(i, j int) { res.Peers[i], res.Peers[j] = res.Peers[j], res.Peers[i] })
	if opts.MaxCount.Ok && uint(len(res.Peers)) > opts.MaxCount.Value {
		res.Peers = res.Peers[:opts.MaxCount.Value]
	}
	res.Interval = generics.Some(int32(announceIdle / time.Second))
	res.Leechers = generics.Some(leechers)
	res.Seeders = generics.Some(seeders)
	return res
}

// Forget removes a peer address from every torrent, as when its agent is revoked.
func (tr *Tracker) Forget(addr netip.AddrPort) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for ih, ps := range tr.peers {
		delete(ps, addr)
		if len(ps) == 0 {
			delete(tr.peers, ih)
		}
	}
}

// Knows reports whether a live peer of any torrent announced from ip.
func (tr *Tracker) Knows(ip netip.Addr) bool { return len(tr.Ports(ip)) > 0 }

// Ports returns the ports live peers of any torrent announced from ip, in order; none if
// nobody did.
func (tr *Tracker) Ports(ip netip.Addr) []uint16 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	now := tr.now()
	var out []uint16
	for _, ps := range tr.peers {
		for a, p := range ps {
			if a.Addr().Unmap() == ip && now.Sub(p.seen) < peerTTL && !slices.Contains(out, a.Port()) {
				out = append(out, a.Port())
			}
		}
	}
	slices.Sort(out)
	return out
}
