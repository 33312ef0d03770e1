package swarm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Origin shares. A plain BitTorrent seed spends its upload, the scarcest link of a fleet, on
// whatever its peers ask for, and early on they all ask for the same pieces. Peerpatch's origin
// schedules instead: each agent pulls pieces from it that nobody else got (its share), and the
// agents swap the rest among themselves. The origin then sends each piece about once.

// ErrNoShare is what a ShareFunc returns when the origin has nothing to hand out: every piece
// went to some agent already, or none of the pieces asked for is held.
var ErrNoShare = errors.New("the origin has no piece to hand out")

// ErrShareBusy is what a ShareFunc returns when the origin is sending as many shares as it
// will at once; the agent asks again after shareRetry.
var ErrShareBusy = errors.New("the origin is busy")

// ShareFunc asks the origin for one piece. With want empty it returns the next piece the origin
// has given nobody; with want set, one of those pieces (the swarm seems to lack them). It
// returns the piece's index and bytes, or ErrNoShare.
type ShareFunc func(ctx context.Context, want []int) (index int, data []byte, err error)

// Share timing and depth.
const (
	// shareWorkers is the number of pieces an agent pulls from the origin at once: enough
	// to keep its HTTP stream busy across round trips, few enough that the origin's link
	// is split evenly among agents.
	shareWorkers = 2
	// rescueAfter is how long a download may go without progress, once the origin has handed
	// every piece out, before the agent asks the origin for a piece it lacks (its holder may
	// be gone). Shorter than FallbackAfter: a rescue is one piece, a web seed is greedy.
	rescueAfter = 3 * time.Second
	// capRescueAfter is how long a download at its connection cap may go without progress
	// before the agent asks the origin for pieces no connected peer has (see rescue). In the
	// lab's bad-peer, where the origin had handed every piece to the corrupt peer before the
	// fleet started, agents that waited rescueAfter for one piece at a time took 122 s.
	capRescueAfter = time.Second
	// shareRetry is how long a worker waits after ErrShareBusy (jittered by up to as much).
	shareRetry = time.Second
	// originDownFallback replaces FallbackAfter once a request to the origin failed: with the
	// seeder gone, what the peers lack is only on the web seeds (in the lab's seeder-dies, the
	// whole fleet idled FallbackAfter's 10 s before turning to the mirror).
	originDownFallback = 3 * time.Second
)

// ReadPiece returns the bytes of piece i from storage, without verifying them.
func (t *Torrent) ReadPiece(i int) ([]byte, error) {
	if i < 0 || i >= t.m.NumPieces() {
		return nil, fmt.Errorf("read piece %d of %d", i, t.m.NumPieces())
	}
	b := make([]byte, t.m.PieceSize(i))
	if _, err := t.t.Piece(i).Storage().ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read piece %d: %w", i, err)
	}
	return b, nil
}

// WritePiece stores piece i received from the origin outside the swarm, once its SHA-256
// matches the signed one, and has the library check it, mark it complete and tell peers.
func (t *Torrent) WritePiece(ctx context.Context, i int, data []byte) error {
	if size := t.m.PieceSize(i); size == 0 || int64(len(data)) != size {
		return fmt.Errorf("origin piece %d: %d bytes; the release has %d pieces, that one of %d bytes", i, len(data), t.m.NumPieces(), size)
	}
	if t.t.PieceState(i).Complete {
		return nil
	}
	if verify.Sum(data) != t.pieces[i] {
		t.pieceFailed(i, nil)
		return &PieceError{Piece: i, Files: t.m.FilesOfPiece(i)}
	}
	// Peers' chunks of the piece would land in the same place as these bytes: stop asking
	// peers for it while it is written. Chunks already on their way may still land (a
	// corrupt peer's among them), so write again, the data is known good, until it verifies.
	p := t.t.Piece(i)
	p.SetPriority(torrent.PiecePriorityNone)
	defer func() {
		if !t.t.PieceState(i).Complete {
			p.SetPriority(torrent.PiecePriorityNormal)
		}
	}()
	t.fromOrigin.Add(int64(len(data)))
	for range writeAttempts {
		if _, err := p.Storage().WriteAt(data, 0); err != nil {
			t.writeFailed(err)
			return &storeError{fmt.Errorf("store piece %d: %w", i, err)}
		}
		if err := p.VerifyDataContext(ctx); err != nil {
			return fmt.Errorf("check piece %d: %w", i, err)
		}
		if t.settled(ctx, i) {
			return nil
		}
	}
	return fmt.Errorf("piece %d from the origin: overwritten by peers' chunks %d times", i, writeAttempts)
}

// settled waits until the library has recorded the outcome of piece i's check (it counts
// the check before it marks the piece) and reports whether the piece is complete.
func (t *Torrent) settled(ctx context.Context, i int) bool {
	for {
		st := t.t.PieceState(i)
		if st.Complete || !st.Hashing && !st.QueuedForHash && !st.Marking {
			return st.Complete
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// writeAttempts bounds the writes of one origin piece that peers' late chunks spoil.
const writeAttempts = 4

// missing lists the pieces not verified yet.
func (t *Torrent) missing() []int {
	var out []int
	piece := 0
	for _, r := range t.t.PieceStateRuns() {
		if !r.Complete {
			for i := range r.Length {
				out = append(out, piece+i)
			}
		}
		piece += r.Length
	}
	return out
}

// shares pulls the agent's share from the origin with shareWorkers parallel requests, until
// the origin has no unassigned piece left (or cannot be reached), the torrent is complete or
// ctx ends. It closes done when it stops.
func (t *Torrent) shares(ctx context.Context, share ShareFunc, done chan<- struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	for range shareWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !t.Complete() {
				if !t.pullShare(ctx, share, nil) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// rescue asks the origin, one after another, for pieces the agent lacks that no connected
// peer has: the agent the origin gave them to may be gone, or may have been banned. A client
// connected to as many peers as it may, or not to every peer the tracker listed, asks for
// those only once it has gone capRescueAfter without progress: peers it is not connected to may
// hold them, and they reach it through its neighbours (in the lab at N=16 with 6 connections and
// 16 KiB blocks, the origin sent 1.10-1.28 × F when it asked at once; in origin-fast, agents
// below their cap but not connected to every peer made it 1.09-1.14 × F, 1.00 once they too
// waited). Stalled (no progress for rescueAfter when it starts), it asks for any piece it
// lacks, once. idle is the time since the download's last progress.
func (t *Torrent) rescue(ctx context.Context, share ShareFunc, idle func() time.Duration) {
	stalled := idle() >= rescueAfter
	for ctx.Err() == nil && !t.Complete() {
		var want []int
		if len(t.t.PeerConns()) < t.connCap() && len(t.unconnected()) == 0 || idle() >= capRescueAfter {
			want = t.lacking()
		}
		if len(want) == 0 && stalled {
			want = t.missing()
		}
		stalled = false
		if len(want) == 0 || !t.pullShare(ctx, share, want) {
			return
		}
	}
}

// lacking lists the pieces not verified yet that no connected peer claims to have.
func (t *Torrent) lacking() []int {
	missing := t.missing()
	if len(missing) == 0 {
		return nil
	}
	type pieceSet interface{ Contains(uint32) bool }
	var held []pieceSet
	for _, pc := range t.t.PeerConns() {
		held = append(held, pc.PeerPieces()) // a copy, taken once per connection
	}
	var out []int
	for _, i := range missing {
		if !slices.ContainsFunc(held, func(h pieceSet) bool { return h.Contains(uint32(i)) }) {
			out = append(out, i)
		}
	}
	return out
}

// pullShare asks the origin for one piece and stores it. It reports whether to go on: not when
// the origin has nothing to hand out or cannot be reached, nor when the piece cannot be stored.
// A piece that fails verification is counted and logged, and asked for again later.
func (t *Torrent) pullShare(ctx context.Context, share ShareFunc, want []int) bool {
	i, data, err := share(ctx, want)
	switch {
	case errors.Is(err, ErrShareBusy):
		select {
		case <-ctx.Done():
		case <-time.After(shareRetry + rand.N(shareRetry)):
		}
		return true
	case errors.Is(err, ErrNoShare):
		return false
	case err != nil:
		if ctx.Err() == nil && !t.originDown.Swap(true) { // logged once until it answers again
			t.c.log.Info("cannot get pieces from the origin", "infohash", t.m.InfoHash, "err", err)
		}
		return false
	}
	t.originDown.Store(false)
	err = t.WritePiece(ctx, i, data)
	var store *storeError
	if errors.As(err, &store) {
		return false
	}
	if err != nil && ctx.Err() == nil {
		t.c.log.Debug("origin piece not stored", "infohash", t.m.InfoHash, "piece", i, "err", err)
	}
	return pace(ctx, t.c.download, len(data)) == nil
}

// storeError is a failure to write received data (a full disk): Download reports it.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// pace waits until the limiter (nil: unlimited) allows n more bytes, so that the next request
// keeps the average under the cap.
func pace(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
