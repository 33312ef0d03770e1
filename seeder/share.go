package seeder

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// shareSlots bounds the share requests the origin holds at once (across releases), waiting
// their turn or being sent. An agent that finds every slot taken retries a moment later;
// meanwhile it swaps with its peers.
const shareSlots = 64

// shareSends bounds the shares the origin sends at once; the others wait their turn, their
// pieces picked. Sixteen shares at once (two per agent at N=8) split a 20 MiB/s link, so each
// 1 MiB piece needs about 0.8 s to arrive, and a piece spreads among the agents only once it
// is whole. Eight at once are meant to still fill the origin's link when the agents' downloads
// are busy with their peers, or when the origin's link is 4 times theirs. The bound holds on
// the wire only since writes wait for it (maxUnsent): before, interleaved runs at N=8 gave the
// same makespan with 8, 4 and 2 sends, or none. With maxUnsent, in the lab's baseline
// (interleaved quick runs, × T_min): N=8 1.14 and 1.14 with 8 sends, 1.13 and 1.14 with 4,
// 1.31 and 1.31 with 2 (the origin's link half idle), against 1.18 and 1.20 without
// maxUnsent; N=16 1.20 and 1.20 with 8, 1.21 and 1.21 with 4, against 1.21 and 1.27. Later
// at N=16, what each agent trails the origin by when the origin is done: 16.9-17.3 MiB with 4
// sends, 22.2-23.4 with 6, 22.7-25.7 with 8, 25.5-25.9 with 12, 29.9-31.0 with 16; but with 4
// the origin sends 18.5-18.8 MiB/s against 19.2-19.3 with 8 (2 at once 14.2-14.8, 1 at once
// 10.7, with slow start after idle off: a share's flow gets a flow's part of the receiving
// agent's download, beside that agent's peers), so the shorter trail is what the origin has not
// sent yet, and the makespans come out the same (with 4: 1.17-1.18 in four runs, 1.22 in one;
// with 8 in the same batches: 1.16-1.18, and 1.26 in one).
const shareSends = 8

// maxShareRequest bounds a share request body: a want list of every piece of the largest
// release (2,048 pieces by the piece-length policy), with room to spare.
const maxShareRequest = 64 << 10

// Fair shares. The origin's link is split among the agents pulling shares, but not evenly: an
// agent whose download link has room (one that holds much already, so it needs less from its
// peers) pulls faster, ends up with more pieces nobody else has, and its upload becomes what the
// others wait for. In the lab at N=8 the shares ranged from 13 to 66 MiB of 256 MiB, and the
// agent with the most finished last, seconds after the others. So the origin holds back a
// request from an agent that has been handed fairSlack pieces more than the least-served agent
// still pulling, until that one catches up or fairHold has passed: the others' requests keep
// the link busy meanwhile, and the hold is short enough not to idle it if they cannot.
const (
	fairSlack  = 2
	fairHold   = time.Second
	fairActive = 2 * time.Second // an agent that asked for a share this recently is still pulling
)

// shares is the origin's scheduler for one release: it hands every piece out once, in order,
// so that each agent's share is disjoint and about as large as any other's, and then, to
// agents that ask for pieces they lack, the least-given of those.
type shares struct {
	mu      sync.Mutex
	next    int
	given   []int       // times each piece was handed out
	sending []int       // shares of each piece being sent now
	sentAt  []time.Time // when a share of each piece last ended
	takers  map[string]*taker
	changed chan struct{} // closed when a taker's count changes

	least   int       // pieces handed to the least-served agent still pulling...
	leastAt time.Time // ...as counted then (at most leastEvery ago)

	unsettled bool // pieces are handed out again at once (tests)
}

// settling is how long after a share of a piece ends that the origin refuses to hand that
// piece out again to an agent that asks for it: the agent it went to needs a moment to check
// it and tell its peers, who meanwhile see nobody holding it. Without this, agents that looked
// for pieces nobody held as the last shares landed got them again from the origin (1.07-1.08 × F
// at N=16 in the lab, with one build).
const settling = time.Second

// leastEvery bounds how stale shares.least may be: counting it takes a pass over every agent.
const leastEvery = 100 * time.Millisecond

// taker is one agent pulling shares.
type taker struct {
	given int       // pieces handed to it
	asked time.Time // its last request
}

// pick returns the piece to hand out to agent who, false if there is none (or ctx ended). A
// request for the next piece (want empty) may wait a moment first (see fairHold). Of the
// pieces in want, it picks the least given one that is neither being sent nor settling. The
// caller calls sent(i) once the share of piece i ended.
func (sh *shares) pick(ctx context.Context, who string, numPieces int, want []int) (int, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.given == nil {
		sh.given = make([]int, numPieces)
		sh.sending = make([]int, numPieces)
		sh.sentAt = make([]time.Time, numPieces)
		sh.takers = make(map[string]*taker)
		sh.changed = make(chan struct{})
	}
	t := sh.takers[who]
	if t == nil {
		t = &taker{}
		sh.takers[who] = t
	}
	t.asked = time.Now()
	if len(want) == 0 {
		if !sh.holdLocked(ctx, t, numPieces) || sh.next >= numPieces {
			return 0, false
		}
		i := sh.next
		sh.next++
		sh.gaveLocked(t, i)
		return i, true
	}
	best, now := -1, time.Now()
	for _, i := range want {
		if i < 0 || i >= numPieces || !sh.unsettled && (sh.sending[i] > 0 || now.Sub(sh.sentAt[i]) < settling) {
			continue
		}
		if best < 0 || sh.given[i] < sh.given[best] {
			best = i
		}
	}
	if best < 0 {
		return 0, false
	}
	sh.gaveLocked(t, best)
	return best, true
}

// holdLocked waits while taker t is ahead of the least-served agent still pulling, at most
// fairHold; sh.mu is held, and released while it waits. It reports false if ctx ended.
func (sh *shares) holdLocked(ctx context.Context, t *taker, numPieces int) bool {
	hold := time.NewTimer(fairHold)
	defer hold.Stop()
	for sh.next < numPieces && t.given > sh.leastLocked()+fairSlack {
		ch := sh.changed
		sh.mu.Unlock()
		select {
		case <-ch:
		case <-hold.C:
			sh.mu.Lock()
			return true
		case <-ctx.Done():
			sh.mu.Lock()
			return false
		}
		sh.mu.Lock()
	}
	return true
}

// sent records that a share of piece i, as picked, ended (sent or not).
func (sh *shares) sent(i int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sending[i]--
	sh.sentAt[i] = time.Now()
}

func (sh *shares) gaveLocked(t *taker, i int) {
	sh.given[i]++
	sh.sending[i]++
	t.given++
	sh.leastAt = time.Time{}
	close(sh.changed)
	sh.changed = make(chan struct{})
}

// leastLocked returns how many pieces the least-served agent still pulling was handed.
func (sh *shares) leastLocked() int {
	now := time.Now()
	if now.Sub(sh.leastAt) < leastEvery {
		return sh.least
	}
	sh.least, sh.leastAt = math.MaxInt, now
	for _, o := range sh.takers {
		if now.Sub(o.asked) < fairActive {
			sh.least = min(sh.least, o.given)
		}
	}
	return sh.least
}

// decodeShare reads a share request; an empty body asks for the next unassigned piece.
func decodeShare(r io.Reader) ([]int, error) {
	var req api.ShareRequest
	if err := json.NewDecoder(r).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return req.Want, nil
}

// handleShare serves POST /api/v1/share/<channel>/<version>: one piece, chosen by the
// release's scheduler, paced by the upload limiter.
func (s *Seeder) handleShare(w http.ResponseWriter, r *http.Request) {
	l := s.lookup(r.PathValue("channel"), r.PathValue("version"))
	if l == nil {
		s.meters.shares.WithLabelValues(shareNone).Inc()
		writeError(w, http.StatusNotFound, "no release %s %s", r.PathValue("channel"), r.PathValue("version"))
		return
	}
	select {
	case s.shareSlots <- struct{}{}:
		defer func() { <-s.shareSlots }()
	default:
		s.meters.shares.WithLabelValues(shareBusy).Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "every share slot is busy")
		return
	}
	want, err := decodeShare(http.MaxBytesReader(w, r.Body, maxShareRequest))
	if err != nil {
		s.meters.shares.WithLabelValues(shareError).Inc()
		writeError(w, http.StatusBadRequest, "bad share request: %v", err)
		return
	}
	who := callerOf(r.Context()).agent
	if who == "" {
		who, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	i, ok := l.shares.pick(r.Context(), who, l.rec.Manifest.NumPieces(), want)
	if !ok {
		s.meters.shares.WithLabelValues(shareNone).Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	defer l.shares.sent(i)
	select {
	case s.shareSends <- struct{}{}: // in turn: a channel's blocked senders go first come, first served
		defer func() { <-s.shareSends }()
	case <-r.Context().Done():
		s.meters.shares.WithLabelValues(shareError).Inc()
		return
	}
	data, err := l.torrent.ReadPiece(i)
	if err != nil {
		s.meters.shares.WithLabelValues(shareError).Inc()
		s.log.Error("read piece for a share", "channel", l.rec.Manifest.Channel, "version", l.rec.Manifest.Version, "err", err)
		writeError(w, http.StatusInternalServerError, "read piece %d", i)
		return
	}
	w.Header().Set(api.HeaderPiece, strconv.Itoa(i))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	cw := &countingWriter{ResponseWriter: w, limiter: s.swarm.UploadLimiter(), ctx: r.Context(), n: &l.shareBytes}
	if _, err := cw.Write(data); err != nil {
		s.meters.shares.WithLabelValues(shareError).Inc() // the agent went away, or the seeder is stopping
		return
	}
	s.meters.shares.WithLabelValues(shareServed).Inc()
}
