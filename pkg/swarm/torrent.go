package swarm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Spec describes a torrent to add to a Client.
type Spec struct {
	// Torrent is the checked .torrent (see CheckMetainfo).
	Torrent *TorrentFile
	// Manifest is the release's signed manifest.
	Manifest *release.Manifest
	// Pieces are the signed SHA-256 digests of the pieces.
	Pieces []verify.Digest
	// Dir is the directory that holds the torrent's top-level file or folder.
	Dir string
	// Trackers are announce URLs (the seeders' /announce).
	Trackers []string
}

// entry is what the verifying storage knows of a registered torrent.
type entry struct {
	infoHash metainfo.Hash
	dir      string
	pieces   []verify.Digest
	// pieceFailed gets the index and the bytes of a piece that failed its check, while the
	// storage still holds them (nil bytes: they did not come from peers).
	pieceFailed func(int, []byte)
	// pieceVerified gets the bytes of a piece that passed, while the storage still holds them.
	pieceVerified func(int, []byte)
	// writeFailed is told when a verified piece cannot be written to disk.
	writeFailed func(error)
	// checking is set while Add waits for the check of the data already on disk, whose
	// failures are expected (missing or partial pieces) and blame nobody.
	checking atomic.Bool
	// diskChecks counts pieces hashed from disk rather than from a buffer of received blocks.
	diskChecks atomic.Int64
}

// PieceError records a piece that failed SHA-256 verification.
type PieceError struct {
	Piece int
	Files []string
}

func (e *PieceError) Error() string {
	return fmt.Sprintf("piece %d (file %s) failed SHA-256 verification", e.Piece, quoteAll(e.Files))
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// Torrent is a release in the swarm.
type Torrent struct {
	c        *Client
	t        *torrent.Torrent
	m        *release.Manifest
	webSeeds []string
	trackers []string
	pieces   []verify.Digest // signed SHA-256 of each piece
	blame    *blame          // who sent which block of unverified pieces

	fromOrigin, fromPeers atomic.Int64
	badPieces             atomic.Int64
	webSeedsOn            atomic.Bool
	originDown            atomic.Bool                        // the last share request failed (see pullShare)
	onVerified            atomic.Pointer[func(int, []byte)]  // see OnVerified
	tracked               atomic.Pointer[[]torrent.PeerInfo] // the peers the tracker last listed

	capMu sync.Mutex
	cap   int // the library's cap on the torrent's connections (see setCap)

	mu       sync.Mutex
	lastBad  *PieceError
	writeErr error         // the last failure to store received data (a full disk)
	wrote    chan struct{} // signalled when writeErr is set

	ctx    context.Context // ends when the torrent is dropped or the client closed
	cancel context.CancelFunc
	done   chan struct{}
}

// chunkSize is the length of the blocks a client requests from its peers. The library's
// default, 16 KiB, is the BitTorrent convention; most of an agent's CPU is spent per block
// (message decoding, request bookkeeping, one write and one upload read each), so larger
// blocks cost less. Every Peerpatch peer serves blocks of this size (anacrolix/torrent's limit
// is its upload burst, at least 256 KiB in every release, or none), and the library's decoder
// takes messages of up to four times its own block size: agents of releases before this one,
// with 128 KiB blocks, take these too. In the lab at N=16 (256 MiB, 20 MiB/s links, interleaved
// runs, 50 connections): 16 KiB 2.19-2.33 × T_min at 3.2-3.5 CPU s per agent, 64 KiB 1.67-1.84
// at 2.6-2.8, 128 KiB 1.72-1.79 at 2.6-2.7 and 256 KiB 1.76-1.82 at 2.7, with 10-30 MiB more
// peak RSS. With 6 connections and peerRequests blocks in flight per peer, 128 KiB blocks and 2
// requests: N=8 1.14, 1.15 and N=16 1.39, 1.43 at 2.0-2.2 CPU s; 64 KiB and 3 requests: N=8
// 1.16, 1.16 and N=16 1.44, 1.45 at 2.2-2.3. At N=16 with later code, 64 KiB and 2 requests gave
// 1.22 and 1.29 at 1.9 CPU s against 1.5-1.6 for 128 KiB and 2. 256 KiB and 1 request, the
// same bytes in flight in half the blocks, against 128 KiB and 2, interleaved quick runs:
// 1.14-1.18 and once 1.23 on a busy host (15 runs: mean 1.161, median 1.16, 7 at most 1.15)
// against 1.15-1.19 (16 runs: mean 1.174, median 1.17, 2 at most 1.15), at the same CPU;
// 256 KiB and 2 requests 1.15-1.24 (6 runs, mean 1.178).
const chunkSize = 256 << 10

// Add registers a release with its signed piece hashes and adds it to the swarm. Data already
// in spec.Dir counts as complete when a file has its final name and size (the seeder's
// releases), or when its pieces were verified before (PersistCompletion); other data is
// checked against the signed SHA-256 before Add returns. Where spec.Dir does not exist yet,
// no piece is checked. A complete release is seeded at once.
func (c *Client) Add(spec Spec) (*Torrent, error) {
	ih, err := ParseInfoHash(spec.Manifest.InfoHash)
	if err != nil {
		return nil, fmt.Errorf("add torrent: %w", err)
	}
	if len(spec.Pieces) != spec.Manifest.NumPieces() {
		return nil, fmt.Errorf("add torrent %s: %d piece hashes for %d pieces: %w",
			spec.Manifest.InfoHash, len(spec.Pieces), spec.Manifest.NumPieces(), ErrMetadataMismatch)
	}
	_, err = os.Stat(spec.Dir)
	fresh := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("add torrent %s: %w", spec.Manifest.InfoHash, err)
	}
	t := &Torrent{c: c, m: spec.Manifest, webSeeds: spec.Torrent.WebSeeds, trackers: spec.Trackers, pieces: spec.Pieces, blame: newBlame(),
		done: make(chan struct{}), wrote: make(chan struct{}, 1)}
	e := &entry{infoHash: ih, dir: spec.Dir, pieces: spec.Pieces, pieceFailed: t.pieceFailed, pieceVerified: t.pieceVerified, writeFailed: t.writeFailed}
	e.checking.Store(true)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("add torrent %s: %w", spec.Manifest.InfoHash, ErrClosed)
	}
	if _, ok := c.torrents[ih]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("add torrent %s: already added", spec.Manifest.InfoHash)
	}
	c.torrents[ih] = t
	c.wg.Add(1) // the announce loop, started below
	c.mu.Unlock()
	// Nothing is on disk where there was no directory: say so rather than have the library
	// check every piece.
	if fresh {
		if err := markMissing(c.storage.completion, ih, spec.Manifest.NumPieces()); err != nil {
			c.wg.Done()
			t.drop()
			return nil, fmt.Errorf("add torrent %s: record piece state: %w", spec.Manifest.InfoHash, err)
		}
	}
	c.storage.register(e)

	tt, _ := c.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: spec.Torrent.infoBytes, ChunkSize: chunkSize})
	select {
	case <-tt.GotInfo():
	case <-time.After(10 * time.Second):
		c.wg.Done()
		tt.Drop()
		t.drop()
		return nil, fmt.Errorf("add torrent %s: info not loaded", spec.Manifest.InfoHash)
	}
	t.t = tt
	t.cap = c.cfg.MaxConnsPerTorrent // the library's EstablishedConnsPerTorrent
	tt.SetOnWriteChunkError(t.writeFailed)
	t.awaitChecked()
	e.checking.Store(false)
	t.ctx, t.cancel = context.WithCancel(c.ctx)
	go func() {
		defer c.wg.Done()
		defer close(t.done)
		if !c.cfg.NoPeers {
			var wg sync.WaitGroup
			wg.Go(func() { t.sweepLoop(t.ctx) })
			t.announceLoop(t.ctx)
			wg.Wait()
		}
	}()
	return t, nil
}

// sweepEvery is how often a complete torrent closes its connections to complete peers.
const sweepEvery = 2 * time.Second

// sweepLoop closes, every sweepEvery while the torrent is complete, the connections to peers that
// have every piece too: neither side has anything to ask for. The library drops such a
// connection itself only when either side completes a piece and the peer is not interested at
// that moment, so after a fleet finished, agents kept connections to each other, with their
// buffers: in the lab an idle agent held 47-50 MiB at N=16, 33 MiB with the sweep (and the
// agent's freeing of idle memory). A peer met again at the next announce is dropped after the handshake.
func (t *Torrent) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !t.Complete() {
			continue
		}
		n := uint64(t.m.NumPieces())
		for _, pc := range t.t.PeerConns() {
			if pc.PeerPieces().GetCardinality() >= n {
				pc.Close()
			}
		}
	}
}

// pieceFailed records that piece i failed its check, and has blame hash its blocks from data,
// the failed bytes (nil: they did not come from peers).
func (t *Torrent) pieceFailed(i int, data []byte) {
	if data != nil {
		t.blame.failed(i, data)
	}
	t.badPieces.Add(1)
	pe := &PieceError{Piece: i, Files: t.m.FilesOfPiece(i)}
	t.mu.Lock()
	t.lastBad = pe
	t.mu.Unlock()
	t.c.log.Warn("piece failed verification", "infohash", t.m.InfoHash, "piece", i, "files", pe.Files)
}

// pieceVerified bans the peers whose blocks of piece i differ from its verified bytes. The
// storage calls it from the library's hashing, so the bans (which take the library's lock to
// drop connections) happen on their own goroutine.
func (t *Torrent) pieceVerified(i int, data []byte) {
	if f := t.onVerified.Load(); f != nil {
		(*f)(i, data)
	}
	for _, peer := range t.blame.verified(i, data) {
		go t.c.ban(peer, t, i)
	}
}

// OnVerified has f called with the index and bytes of every piece that passes SHA-256
// verification from now on, until OnVerified(nil). f runs on the library's hashing goroutine:
// it must be quick and must not keep data.
func (t *Torrent) OnVerified(f func(piece int, data []byte)) {
	if f == nil {
		t.onVerified.Store(nil)
		return
	}
	t.onVerified.Store(&f)
}

// awaitChecked waits until the library has checked the data already on disk (pieces whose
// state was unknown at start), so that Stats tells what is verified. Bounded: a huge release
// may go on checking in the background.
func (t *Torrent) awaitChecked() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		busy := false
		for _, r := range t.t.PieceStateRuns() {
			if r.Checking || r.Hashing || r.QueuedForHash || r.Marking || !r.Ok {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verified is the number of bytes in pieces that passed SHA-256 verification.
func (t *Torrent) verified() int64 {
	var n int64
	piece, pl, total := 0, t.m.PieceLength, t.m.Length()
	for _, r := range t.t.PieceStateRuns() {
		if r.Complete {
			n += min(int64(piece+r.Length)*pl, total) - int64(piece)*pl
		}
		piece += r.Length
	}
	return n
}

// writeFailed stops downloading when received data cannot be stored (a full disk, say) and
// lets Download return the error at once; the next Download tries again.
func (t *Torrent) writeFailed(err error) {
	t.t.DisallowDataDownload()
	t.mu.Lock()
	first := t.writeErr == nil
	t.writeErr = err
	t.mu.Unlock()
	if first {
		t.c.log.Warn("cannot store received data; download paused", "infohash", t.m.InfoHash, "err", err)
	}
	select {
	case t.wrote <- struct{}{}:
	default:
	}
}

// Drop stops seeding and downloading the torrent; its data stays on disk.
func (t *Torrent) Drop() {
	t.cancel()
	<-t.done
	t.t.Drop()
	t.drop()
}

func (t *Torrent) drop() {
	ih, _ := ParseInfoHash(t.m.InfoHash)
	t.c.mu.Lock()
	delete(t.c.torrents, ih)
	t.c.mu.Unlock()
	t.c.storage.unregister(ih)
}

// Stats are a torrent's transfer figures.
type Stats struct {
	Completed, Total      int64 // bytes in verified pieces, release bytes
	FromPeers, FromOrigin int64 // useful bytes received from other agents, and from the origin (seeder or web seeds)
	Wasted                int64 // piece bytes received that were not needed (duplicates)
	Uploaded              int64 // piece bytes sent to peers
	Peers                 int   // connected peers
	BadPieces             int64 // pieces that failed SHA-256 verification
	WebSeeds              bool  // web seeds are in use
}

// Stats returns the torrent's current figures.
func (t *Torrent) Stats() Stats {
	s := t.t.Stats()
	return Stats{
		Completed:  t.verified(),
		Total:      t.m.Length(),
		FromPeers:  t.fromPeers.Load(),
		FromOrigin: t.fromOrigin.Load(),
		Wasted:     s.BytesReadData.Int64() - s.BytesReadUsefulData.Int64(),
		Uploaded:   s.BytesWrittenData.Int64(),
		Peers:      s.ActivePeers,
		BadPieces:  t.badPieces.Load(),
		WebSeeds:   t.webSeedsOn.Load(),
	}
}

// Complete reports whether every piece is verified.
func (t *Torrent) Complete() bool { return t.t.Complete().Bool() }

// DownloadOptions tune Download.
type DownloadOptions struct {
	// FallbackAfter is how long the download may go without progress before the web seeds are
	// used for any piece (default 10s; at most originDownFallback once the origin cannot be
	// reached, when the web seeds serve the client's own part of the pieces no peer has at once).
	FallbackAfter time.Duration
	// StallTimeout is how long it may go without progress before Download gives up (default 2m).
	StallTimeout time.Duration
	// Progress, if set, is called about once a second.
	Progress func(Stats)
	// Share, if set, pulls pieces from the origin's scheduler (see ShareFunc): the agent's
	// disjoint share first, then, after rescueAfter without progress, pieces it lacks.
	Share ShareFunc
}

// webSeedConns is the least cap on a client's connections per torrent while it uses the web
// seeds. The clients split the pieces no peer has among themselves by what their connected
// peers hold (see webSeeds.pick), which holds only where each sees the others: with 6
// connections, the seeder and the mirror sent 1.44 × F in the lab's seeder-dies at N=16,
// against 1.02-1.07 in a full mesh.
const webSeedConns = 50

// connCap is the cap on the client's connections for t now: meshCap, raised to webSeedConns
// while the web seeds are in use.
func (t *Torrent) connCap() int {
	if t.webSeedsOn.Load() {
		return max(webSeedConns, t.meshCap())
	}
	return t.meshCap()
}

// meshCap is MaxConnsPerTorrent, or, for an agent (the origin keeps its cap), one more where
// the tracker last listed exactly that many peers and one: a swarm that small forms a full
// mesh. At the cap, the first peers to connect fill each other's slots and the last one finds
// every peer full: in the lab at N=8 (6 connections), the first 7 agents formed a complete graph
// and the 8th had no neighbour for 1.1-1.2 s, until an announce made a peer drop a connection;
// one such run took 1.19 × T_min where its other agents finished at 1.10-1.12. With the mesh,
// interleaved quick runs at N=8: 1.10-1.13 (mean 1.115) against 1.11-1.16 (1.134). Larger
// fleets keep the cap: at N=16 every agent had its 6 within about 5 s, and a seventh did not
// help there (1.18, 1.16, 1.17 against 1.16, 1.19, 1.18).
func (t *Torrent) meshCap() int {
	n := t.c.cfg.MaxConnsPerTorrent
	if l := t.tracked.Load(); !t.c.cfg.Origin && l != nil && len(*l) == n+1 {
		return n + 1
	}
	return n
}

// setCap sets the library's cap on t's connections to n, if it is not n already.
func (t *Torrent) setCap(n int) {
	t.capMu.Lock()
	defer t.capMu.Unlock()
	if t.cap != n {
		t.cap = n
		t.t.SetMaxEstablishedConns(n)
	}
}

// redial hands the library again the peers the tracker last listed that the client has no
// connection to, up to its cap, so that it dials them: a peer that refused a connection (it
// was at its own cap then) is not dialled again otherwise, and with the seeder gone no
// announce lists it again.
func (t *Torrent) redial() {
	if peers := t.unconnected(); len(peers) > 0 && len(t.t.PeerConns()) < t.connCap() {
		t.t.AddPeers(peers)
	}
}

// unconnected returns the peers the tracker last listed that the client has no connection to.
func (t *Torrent) unconnected() []torrent.PeerInfo {
	tracked := t.tracked.Load()
	if tracked == nil {
		return nil
	}
	conns := t.t.PeerConns()
	have := make(map[string]bool, len(conns))
	for _, pc := range conns {
		ra := pc.RemoteAddr.String()
		have[ra] = true
		if ap, err := netip.ParseAddrPort(ra); err == nil && pc.PeerListenPort != 0 {
			have[netip.AddrPortFrom(ap.Addr(), uint16(pc.PeerListenPort)).String()] = true // it dialled us
		}
	}
	var out []torrent.PeerInfo
	for _, p := range *tracked {
		if !have[p.Addr.String()] {
			out = append(out, p)
		}
	}
	return out
}

// Download fetches every piece, each verified against its signed SHA-256, and returns once the
// release is complete. Peers come first; web seeds join once the origin cannot be reached (for
// the client's own part of the pieces no peer has) or after FallbackAfter without progress (a
// piece is nowhere else).
func (t *Torrent) Download(ctx context.Context, opts DownloadOptions) error {
	if opts.FallbackAfter <= 0 {
		opts.FallbackAfter = 10 * time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 2 * time.Minute
	}
	t.mu.Lock()
	t.writeErr = nil
	t.mu.Unlock()
	t.originDown.Store(false)
	t.webSeedsOn.Store(false)
	select {
	case <-t.wrote:
	default:
	}
	t.t.AllowDataDownload() // after a write failure, try again
	t.t.DownloadAll()
	// Nothing this download started writes once it returns: the shares, rescues and web-seed
	// fetches are waited for (an agent records its verified files' times then).
	ctx, cancel := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer func() {
		cancel()
		workers.Wait()
	}()
	var sharing chan struct{} // closed when the origin has handed out every piece
	rescuing := make(chan struct{}, 1)
	var shareDone time.Time // when the origin was first seen to have handed every piece out
	if opts.Share != nil {
		sharing = make(chan struct{})
		workers.Go(func() { t.shares(ctx, opts.Share, sharing) })
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := t.verified()
	var progressAt atomic.Int64 // when last changed (Unix ns); the web seeds read it too
	progressAt.Store(time.Now().UnixNano())
	idleAt := func(now time.Time) time.Duration { return now.Sub(time.Unix(0, progressAt.Load())) }
	fallbackAfter := func() time.Duration {
		if t.originDown.Load() {
			return min(opts.FallbackAfter, originDownFallback)
		}
		return opts.FallbackAfter
	}
	scope := func() webSeedScope {
		switch idle := idleAt(time.Now()); {
		case idle < fallbackAfter():
			return ownedOnly
		case idle < rescueAfter:
			return lackingAny
		default:
			return missingAny
		}
	}
	for {
		if opts.Progress != nil {
			opts.Progress(t.Stats())
		}
		select {
		case <-t.t.Complete().On():
			if opts.Progress != nil {
				opts.Progress(t.Stats())
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.ctx.Done():
			return fmt.Errorf("download %s: %w", t.m.InfoHash, ErrClosed)
		case <-t.wrote:
			t.mu.Lock()
			err := t.writeErr
			t.mu.Unlock()
			return fmt.Errorf("store received data: %w", err)
		case <-tick.C:
		}
		now := time.Now()
		if done := t.verified(); done != last {
			last = done
			progressAt.Store(now.UnixNano())
		}
		idle := idleAt(now)
		// Once the origin has handed every piece out (and the last shares had time to land
		// and be announced), pieces nobody has come from the origin again.
		if sharing != nil && closed(sharing) && shareDone.IsZero() {
			shareDone = now
		}
		if !shareDone.IsZero() && now.Sub(shareDone) >= rescueAfter {
			select {
			case rescuing <- struct{}{}:
				workers.Go(func() {
					defer func() { <-rescuing }()
					t.rescue(ctx, opts.Share, func() time.Duration { return idleAt(time.Now()) })
				})
			default: // one rescue at a time
			}
		}
		// With the origin gone, what no peer has is only on the web seeds: each client fetches
		// its own part of that at once (see webSeeds.pick); the rest after fallbackAfter.
		originDown := t.originDown.Load()
		if (originDown || idle >= fallbackAfter()) && len(t.webSeeds) > 0 && !t.webSeedsOn.Swap(true) {
			why := "no progress from peers"
			if originDown {
				why = "the origin cannot be reached"
			}
			t.c.log.Info(why+", using web seeds", "infohash", t.m.InfoHash, "idle", idle.Round(time.Second), "webSeeds", len(t.webSeeds))
			t.setCap(t.connCap())
			defer func() { t.setCap(t.meshCap()) }()
			ws := newWebSeeds(t, t.webSeeds)
			workers.Go(func() { ws.run(ctx, scope) })
		}
		if t.webSeedsOn.Load() {
			t.redial()
		}
		if idle >= opts.StallTimeout {
			err := fmt.Errorf("no progress for %s (%d of %d bytes verified): %w",
				idle.Round(time.Second), last, t.m.Length(), ErrStalled)
			t.mu.Lock()
			if t.lastBad != nil {
				err = fmt.Errorf("%w; last failure: %w", err, t.lastBad)
			}
			t.mu.Unlock()
			return err
		}
	}
}

// closed reports whether ch is closed.
func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Verify rehashes every piece already on disk against its signed SHA-256, and returns once the
// results are recorded.
func (t *Torrent) Verify(ctx context.Context) error {
	if err := t.t.VerifyDataContext(ctx); err != nil {
		return err
	}
	// The library counts a verification before it marks the piece: wait for the marking.
	t.awaitChecked()
	return nil
}
