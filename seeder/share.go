package seeder

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// shareSlots bounds the shares the origin sends at once (across releases): each holds a piece
// in memory, and the origin's link is better spent finishing a few pieces fast than many
// slowly. An agent that finds every slot taken retries a moment later; meanwhile it swaps with
// its peers.
const shareSlots = 64

// maxShareRequest bounds a share request body: a want list of every piece of the largest
// release (2,048 pieces by the piece-length policy), with room to spare.
const maxShareRequest = 64 << 10

// shares is the origin's scheduler for one release: it hands every piece out once, in order,
// so that each agent's share is disjoint, and then, to agents that ask for pieces they lack,
// the least-given of those.
type shares struct {
	mu    sync.Mutex
	next  int
	given []int // times each piece was handed out
}

// pick returns the piece to hand out, false if there is none.
func (sh *shares) pick(numPieces int, want []int) (int, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.given == nil {
		sh.given = make([]int, numPieces)
	}
	if len(want) == 0 {
		if sh.next >= numPieces {
			return 0, false
		}
		i := sh.next
		sh.next++
		sh.given[i]++
		return i, true
	}
	best := -1
	for _, i := range want {
		if i >= 0 && i < numPieces && (best < 0 || sh.given[i] < sh.given[best]) {
			best = i
		}
	}
	if best < 0 {
		return 0, false
	}
	sh.given[best]++
	return best, true
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
	i, ok := l.shares.pick(l.rec.Manifest.NumPieces(), want)
	if !ok {
		s.meters.shares.WithLabelValues(shareNone).Inc()
		w.WriteHeader(http.StatusNoContent)
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
