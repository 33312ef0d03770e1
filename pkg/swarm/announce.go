package swarm

import (
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/tracker"
)

// Announce timing. A downloading client asks often so it finds peers fast; a seeding one rests.
const (
	announceBusy   = 3 * time.Second
	announceIdle   = 30 * time.Second
	announceWanted = 8 // peers below which a downloading client keeps asking
)

func newPeerID(prefix string) (id [20]byte) {
	copy(id[:], prefix)
	rand.Read(id[len(prefix):])
	return id
}

// announceLoop announces the torrent to every tracker and adds the peers they return. Peerpatch
// announces itself instead of the library, so every client (re)announces on its own schedule.
func (t *Torrent) announceLoop(ctx context.Context) {
	event := tracker.Started
	for {
		complete := t.Complete()
		answered := false
		for _, u := range t.trackers {
			answered = t.announce(ctx, u, event) || answered
		}
		event = tracker.None
		interval := announceIdle
		// Wake at once when completion changes: announce "completed", or look for peers
		// again when a recheck found bad pieces in a complete torrent.
		var changed <-chan struct{}
		if complete {
			changed = t.t.Complete().Off()
		} else {
			changed = t.t.Complete().On()
			if !answered || t.t.Stats().ActivePeers < announceWanted {
				interval = announceBusy
			}
		}
		select {
		case <-ctx.Done():
			stop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for _, u := range t.trackers {
				t.announce(stop, u, tracker.Stopped)
			}
			cancel()
			return
		case <-time.After(interval):
		case <-changed:
			if !complete {
				event = tracker.Completed
			}
		}
	}
}

// announce sends one announce and adds the returned peers. It reports whether the tracker
// answered.
func (t *Torrent) announce(ctx context.Context, trackerURL string, event tracker.AnnounceEvent) bool {
	ih, _ := ParseInfoHash(t.m.InfoHash)
	s := t.t.Stats()
	res, err := tracker.Announce{
		TrackerUrl: trackerURL,
		Request: tracker.AnnounceRequest{
			InfoHash:   ih,
			PeerId:     t.c.peerID,
			Downloaded: s.BytesReadUsefulData.Int64(),
			Uploaded:   s.BytesWrittenData.Int64(),
			Left:       t.m.Length() - t.t.BytesCompleted(),
			Event:      event,
			NumWant:    50,
			Port:       uint16(t.c.Port()),
		},
		HttpRequestDirector: func(r *http.Request) error {
			t.c.cfg.Authorize(r)
			return nil
		},
		UserAgent: "peerpatch",
		Context:   ctx,
		Slogger:   t.c.log,
	}.Do()
	if err != nil {
		if ctx.Err() == nil {
			t.c.log.Debug("announce failed", "tracker", redact(trackerURL), "infohash", t.m.InfoHash, "err", err)
		}
		return false
	}
	peers := make([]torrent.PeerInfo, 0, len(res.Peers))
	for _, p := range res.Peers {
		peers = append(peers, torrent.PeerInfo{
			Addr:   &net.TCPAddr{IP: p.IP, Port: p.Port},
			Source: torrent.PeerSourceTracker,
		})
	}
	t.t.AddPeers(peers)
	return true
}

// redact drops the query of a URL for logging.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.RawQuery = ""
	p.User = nil
	return p.String()
}
