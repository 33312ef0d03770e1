package swarm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Web seeds (BEP 19), fetched piece by piece. The library's web-seed peer asks a mirror for
// pieces in its own order, the same on every client, and its requests run on to the end of a
// 64 MiB slice whatever peers deliver meanwhile: when the seeder died in the lab (seeder-dies,
// N=16) the fleet, stalled in the same second, had origin + mirror send 2.51 and 2.60 × F and
// finished in 41.7 and 43.7 s. Here each client fetches one piece per request, a piece that no
// connected peer has (what a peer has comes through the swarm) and that the client owns (see
// pick), and stores it as it stores the origin's shares: 1.04 and 1.06 × F, 26.3 and 27.5 s.

const (
	// webSeedWorkers is how many pieces a client fetches from web seeds at once.
	webSeedWorkers = 2
	// webSeedStall is how long a web seed may send nothing before its request is given up.
	webSeedStall = 15 * time.Second
	// webSeedIdle is how long a worker waits when every piece it lacks is on some peer, or
	// when every web seed failed.
	webSeedIdle = time.Second
	// webSeedPenalty is how long a web seed that failed (or sent a piece that failed its
	// check) is tried only after the others.
	webSeedPenalty = 30 * time.Second
)

// webSeeds fetches pieces from a torrent's web seeds.
type webSeeds struct {
	t     *Torrent
	urls  []string
	next  atomic.Uint32 // the URL the next fetch tries first
	began time.Time

	mu       sync.Mutex
	inFlight map[int]bool
	failed   map[string]time.Time // by URL: when it last failed
}

func newWebSeeds(t *Torrent, urls []string) *webSeeds {
	return &webSeeds{t: t, urls: urls, began: time.Now(), inFlight: map[int]bool{}, failed: map[string]time.Time{}}
}

// meshWait bounds how long a client using the web seeds waits to be connected to every peer
// it knows before it fetches the pieces it owns (see meshing). In the lab's seeder-dies at N=16
// with 6 connections per agent, the agents were connected to each other about 1.2 s after
// raising their caps, and the mirror fetches each made before that were the duplicates.
const meshWait = 2 * time.Second

// webSeedScope is which pieces a client fetches from web seeds.
type webSeedScope int

const (
	// ownedOnly: pieces no connected peer has that the client owns (see pick). The origin is
	// gone but the download goes on.
	ownedOnly webSeedScope = iota
	// lackingAny: any piece no connected peer has. No progress for FallbackAfter.
	lackingAny
	// missingAny: that, or if there is none, any piece the client lacks. No progress for
	// FallbackAfter and rescueAfter either.
	missingAny
)

// run fetches pieces with webSeedWorkers parallel requests until the torrent is complete or
// ctx ends, each time in the scope it is given; when there is nothing to fetch, it waits.
func (w *webSeeds) run(ctx context.Context, scope func() webSeedScope) {
	var wg sync.WaitGroup
	for range webSeedWorkers {
		wg.Go(func() {
			for ctx.Err() == nil && !w.t.Complete() {
				sc := scope()
				if sc == ownedOnly && w.meshing() {
					select {
					case <-ctx.Done():
					case <-time.After(meshWait / 20):
					}
					continue
				}
				i, ok := w.pick(sc)
				if ok {
					err := w.store(ctx, i)
					w.release(i)
					w.t.c.log.Debug("web seed piece", "infohash", w.t.m.InfoHash, "piece", i, "scope", sc, "err", err)
					var store *storeError
					if errors.As(err, &store) {
						return // Download reports it
					}
					// Nothing is hammered: a failed piece goes to another web seed at once,
					// unless every one failed lately.
					ok = err == nil || !w.allFailed()
				}
				if !ok {
					select {
					case <-ctx.Done():
					case <-time.After(webSeedIdle):
					}
				}
			}
		})
	}
	wg.Wait()
}

// pick marks in flight and returns the next piece to fetch in scope: one that no connected
// peer has (in missingAny, if there is none, one the client lacks; in ownedOnly, one the client
// owns) and that is not in flight here.
//
// Clients that turn to a mirror together (the seeder died) cannot see what the others have in
// flight: picking at random among the pieces no peer had, the mirror sent 1.6 × what the seeder
// had not (origin + mirror 1.37 and 1.40 × F in seeder-dies). So every piece has an owner among
// the client and its peers still downloading, by rendezvous hashing of their peer IDs, which
// every client computes alike. With the origin gone a client fetches only the pieces it owns,
// in order; once it has gone FallbackAfter without progress, also those it is second in line
// for, and so on, each from the last one back, so that it meets the owner still fetching them
// at most once.
func (w *webSeeds) pick(scope webSeedScope) (int, bool) {
	want := w.t.lacking()
	if len(want) == 0 && scope == missingAny {
		want = w.t.missing()
	}
	self, others := w.t.fetchers()
	w.mu.Lock()
	defer w.mu.Unlock()
	best, pick := -1, 0
	for _, i := range want {
		if w.inFlight[i] {
			continue
		}
		mine := weight(self, i)
		rank := 0
		for _, o := range others {
			if weight(o, i) > mine {
				rank++
			}
		}
		if rank > 0 && scope == ownedOnly {
			continue
		}
		// want is in order: an owner takes its first piece, a helper its owner's last.
		if best < 0 || rank < best || rank == best && rank > 0 {
			best, pick = rank, i
		}
	}
	if best < 0 {
		return 0, false
	}
	w.inFlight[pick] = true
	return pick, true
}

// fetchers returns the hashes (see idHash) of the client's peer ID and of those of its connected
// peers that lack pieces.
func (t *Torrent) fetchers() (self uint64, others []uint64) {
	n := uint64(t.m.NumPieces())
	for _, pc := range t.t.PeerConns() {
		if pc.PeerPieces().GetCardinality() < n {
			others = append(others, idHash(pc.PeerID))
		}
	}
	return idHash(t.c.cl.PeerID()), others
}

// idHash is the FNV-1a hash of a peer ID, the part of its rendezvous weight that is the same for
// every piece.
func idHash(id [20]byte) uint64 {
	h := fnv.New64a()
	h.Write(id[:])
	return h.Sum64()
}

// weight is the rendezvous weight for piece i of the client whose peer ID hashes to id: the
// highest weight owns the piece.
func weight(id uint64, i int) uint64 {
	x := id ^ uint64(i)*0x9e3779b97f4a7c15
	// splitmix64's finaliser: FNV alone mixes the last bytes poorly.
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// meshing reports whether the client should still wait before it fetches the pieces it owns:
// pick computes owners alike only among clients that see each other, so the client waits until
// it is connected to every peer the tracker listed, at most meshWait after the web seeds start.
func (w *webSeeds) meshing() bool {
	return time.Since(w.began) < meshWait && len(w.t.unconnected()) > 0
}

func (w *webSeeds) release(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inFlight, i)
}

// store fetches piece i and writes it (WritePiece checks it against the signed SHA-256).
func (w *webSeeds) store(ctx context.Context, i int) error {
	data, from, err := w.fetch(ctx, i)
	if err != nil {
		return err
	}
	if err := w.t.WritePiece(ctx, i, data); err != nil {
		var bad *PieceError
		if errors.As(err, &bad) {
			w.fail(from)
		}
		return err
	}
	return pace(ctx, w.t.c.download, len(data))
}

// fetch reads piece i from the first web seed that serves all of it and returns it with that
// web seed's URL. It starts from a different web seed each time, and tries those that failed
// in the last webSeedPenalty after the others.
func (w *webSeeds) fetch(ctx context.Context, i int) ([]byte, string, error) {
	m := w.t.m
	data := make([]byte, m.PieceSize(i))
	var errs []error
	for _, base := range w.order() {
		err := m.Spans(i, func(k int, pieceOff, fileOff, n int64) error {
			return w.get(ctx, fileURL(base, m.Name, m.Dir, m.Files[k].Path), fileOff, data[pieceOff:pieceOff+n])
		})
		if err == nil {
			return data, base, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		w.fail(base)
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("piece %d from web seeds: %w", i, errors.Join(errs...))
}

// order lists the web seeds to try, from the next one round, those that failed lately last.
func (w *webSeeds) order() []string {
	first := int(w.next.Add(1))
	w.mu.Lock()
	defer w.mu.Unlock()
	var ok, failed []string
	for j := range w.urls {
		u := w.urls[(first+j)%len(w.urls)]
		if time.Since(w.failed[u]) < webSeedPenalty {
			failed = append(failed, u)
		} else {
			ok = append(ok, u)
		}
	}
	return append(ok, failed...)
}

// allFailed reports whether every web seed failed in the last webSeedPenalty.
func (w *webSeeds) allFailed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range w.urls {
		if time.Since(w.failed[u]) >= webSeedPenalty {
			return false
		}
	}
	return true
}

func (w *webSeeds) fail(u string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed[u] = time.Now()
}

// get reads len(dst) bytes at off of the file at u with a range request.
func (w *webSeeds) get(ctx context.Context, u string, off int64, dst []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := time.AfterFunc(webSeedStall, cancel)
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("web seed %s: %w", u, err)
	}
	end := off + int64(len(dst)) - 1
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	resp, err := w.t.c.http.Do(req) // the client's transport: TLS roots, and the credential for the seeders' hosts only
	if err != nil {
		return fmt.Errorf("web seed: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		if got := resp.Header.Get("Content-Range"); !strings.HasPrefix(got, fmt.Sprintf("bytes %d-%d/", off, end)) {
			return fmt.Errorf("web seed %s: asked for bytes %d-%d, got Content-Range %q", u, off, end, got)
		}
	case resp.StatusCode == http.StatusOK && off == 0 && resp.ContentLength == int64(len(dst)):
		// the whole file, as asked
	default:
		return fmt.Errorf("web seed %s: bytes %d-%d: %s (Content-Length %d)", u, off, end, resp.Status, resp.ContentLength)
	}
	body := ProgressReader{R: resp.Body, Progress: func() { stall.Reset(webSeedStall) }}
	if _, err := io.ReadFull(body, dst); err != nil {
		return fmt.Errorf("web seed %s: bytes %d-%d: %w", u, off, end, err)
	}
	return nil
}

// fileURL is where a web seed serves a release file (BEP 19, as the library builds it): a URL
// ending in "/" gets the torrent's name and, for a directory, the file's path appended, each
// component escaped; any other URL is the file itself.
func fileURL(base, name string, dir bool, path string) string {
	if !strings.HasSuffix(base, "/") {
		return base
	}
	parts := []string{name}
	if dir {
		parts = append(parts, strings.Split(path, "/")...)
	}
	for k, p := range parts {
		// As the library escapes: S3 reads a "+" in a path as a space.
		parts[k] = strings.ReplaceAll(url.PathEscape(p), "+", "%2B")
	}
	return base + strings.Join(parts, "/")
}

// ProgressReader calls Progress after every read of R that returned bytes: a stall timer's reset,
// for a body that must keep arriving (web seeds here, the origin's shares in the agent).
type ProgressReader struct {
	R        io.Reader
	Progress func()
}

func (p ProgressReader) Read(b []byte) (int, error) {
	n, err := p.R.Read(b)
	if n > 0 {
		p.Progress()
	}
	return n, err
}
