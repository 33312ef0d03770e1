package swarm

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/tracker"
	httptracker "github.com/anacrolix/torrent/tracker/http"
)

// Announce timing. A downloading client asks often so it finds peers fast; a seeding one rests.
// When a release is published, the fleet's agents start within a second or so of each other:
// the first to announce sees nobody, so a downloading client asks again after announceFirst,
// and one second later each time, up to announceBusy.
const (
	announceFirst  = time.Second
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
	busy := announceFirst
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
				interval = busy
				busy = min(busy+announceFirst, announceBusy)
			}
		}
		last := time.Now()
	wait:
		for {
			select {
			case <-ctx.Done():
				stop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				for _, u := range t.trackers {
					t.announce(stop, u, tracker.Stopped)
				}
				cancel()
				return
			case <-time.After(interval):
				break wait
			case <-changed:
				if !complete {
					event = tracker.Completed
				}
				break wait
			case <-t.c.peers.newcomers():
				// The tracker just confirmed a caller this client did not know: announce
				// soon to learn its port and dial it too, but at most once a second.
				interval = max(0, announceFirst-time.Since(last))
			}
		}
	}
}

// maxAnnounceResponse bounds a tracker answer: 200 compact peers are 1.2 KiB.
const maxAnnounceResponse = 1 << 20

// announce sends one announce (BEP 3, compact) and adds the returned peers. It reports whether
// the tracker answered. The request goes through the client's transport, so TLS is verified
// against the configured roots (the library's own tracker client skips verification) and the
// credential is added.
func (t *Torrent) announce(ctx context.Context, trackerURL string, event tracker.AnnounceEvent) bool {
	peers, err := t.announceOnce(ctx, trackerURL, event)
	if err != nil {
		if ctx.Err() == nil {
			t.c.log.Debug("announce failed", "tracker", redact(trackerURL), "infohash", t.m.InfoHash, "err", err)
		}
		return false
	}
	t.tracked.Store(&peers)
	if !t.webSeedsOn.Load() { // while they are, Download holds the cap at connCap
		t.setCap(t.meshCap())
	}
	t.t.AddPeers(peers)
	return true
}

func (t *Torrent) announceOnce(ctx context.Context, trackerURL string, event tracker.AnnounceEvent) ([]torrent.PeerInfo, error) {
	u, err := url.Parse(trackerURL)
	if err != nil {
		return nil, err
	}
	ih, _ := ParseInfoHash(t.m.InfoHash)
	s := t.t.Stats()
	q := u.Query()
	q.Set("info_hash", string(ih[:]))
	q.Set("peer_id", string(t.c.peerID[:]))
	q.Set("port", strconv.Itoa(t.c.Port()))
	q.Set("uploaded", strconv.FormatInt(s.BytesWrittenData.Int64(), 10))
	q.Set("downloaded", strconv.FormatInt(s.BytesReadUsefulData.Int64(), 10))
	q.Set("left", strconv.FormatInt(t.m.Length()-t.verified(), 10))
	q.Set("compact", "1")
	q.Set("numwant", "50")
	if event != tracker.None {
		q.Set("event", event.String())
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "peerpatch")
	resp, err := t.c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnnounceResponse+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tracker answered HTTP %d", resp.StatusCode)
	}
	if len(body) > maxAnnounceResponse {
		return nil, fmt.Errorf("tracker answer over %d bytes", maxAnnounceResponse)
	}
	var res httptracker.HttpResponse
	if err := bencode.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode tracker answer: %w", err)
	}
	if res.FailureReason != "" {
		return nil, fmt.Errorf("tracker refused: %s", res.FailureReason)
	}
	peers := make([]torrent.PeerInfo, 0, len(res.Peers.List)+len(res.Peers6))
	add := func(ip net.IP, port int) {
		peers = append(peers, torrent.PeerInfo{Addr: &net.TCPAddr{IP: ip, Port: port}, Source: torrent.PeerSourceTracker})
		if t.c.cfg.RestrictPeers {
			t.c.peers.learn(ip)
		}
	}
	for _, p := range res.Peers.List {
		add(p.IP, p.Port)
	}
	for _, p := range res.Peers6 {
		add(p.IP, p.Port)
	}
	return peers, nil
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
