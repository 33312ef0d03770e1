package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

// startSeeder starts an origin client seeding r from r.parent, announcing to trackerURL.
func startSeeder(t *testing.T, r *testRelease, trackerURL string) (*Client, *Torrent) {
	t.Helper()
	c := newClient(t, Config{Origin: true})
	tt, err := c.Add(r.spec(r.parent, trackerURL))
	if err != nil {
		t.Fatalf("seeder Add: %v", err)
	}
	return c, tt
}

// download runs Download with a deadline well past the options' timeouts.
func download(t *testing.T, tt *Torrent, opts DownloadOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	return tt.Download(ctx, opts)
}

func TestTransfer(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	if r.m.PieceLength != 256<<10 || r.m.NumPieces() != 12 {
		t.Fatalf("layout: %d pieces of %d", r.m.NumPieces(), r.m.PieceLength)
	}
	// The layout this test is about: a.bin ends inside a piece, a zero-length file follows.
	if aEnd := r.m.Files[0].Length; aEnd%r.m.PieceLength == 0 || r.m.Files[1].Length != 0 {
		t.Fatal("release does not have a file boundary inside a piece and a zero-length file")
	}
	if got := r.m.FilesOfPiece(4); !slices.Equal(got, []string{"a.bin", "sub/b.bin"}) {
		t.Fatalf("piece 4 spans %q", got)
	}
	tr, trackerURL := startTracker(t)

	_, seed := startSeeder(t, r, trackerURL)
	if !seed.Complete() {
		t.Fatal("seeder with complete files is not complete")
	}
	if s := seed.Stats(); s.Completed != s.Total || s.Total != r.layout.Length {
		t.Fatalf("seeder stats %+v, want Completed == Total == %d", s, r.layout.Length)
	}

	leechDir := t.TempDir()
	leecher := newClient(t, Config{PersistCompletion: true})
	lt, err := leecher.Add(r.spec(filepath.Join(leechDir, "data"), trackerURL))
	if err != nil {
		t.Fatalf("leecher Add: %v", err)
	}
	if s := lt.Stats(); s.Completed != 0 || s.Total != r.layout.Length || lt.Complete() {
		t.Fatalf("fresh leecher stats %+v", s)
	}
	// OnVerified hands over every piece with its verified bytes (the agent stages its install
	// from them).
	var handedMu sync.Mutex
	handed := make(map[int]int)
	lt.OnVerified(func(i int, data []byte) {
		handedMu.Lock()
		defer handedMu.Unlock()
		handed[i]++
		if verify.Sum(data) != r.layout.PiecesSHA256[i] {
			t.Errorf("OnVerified: piece %d with bytes that do not match its signed hash", i)
		}
	})
	var progressCalls atomic.Int64
	err = download(t, lt, DownloadOptions{
		FallbackAfter: 30 * time.Second,
		StallTimeout:  30 * time.Second,
		Progress: func(s Stats) {
			progressCalls.Add(1)
			if s.Total != r.layout.Length || s.Completed > s.Total {
				t.Errorf("progress stats %+v", s)
			}
		},
	})
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if progressCalls.Load() == 0 {
		t.Error("Progress was never called")
	}
	lt.OnVerified(nil)
	handedMu.Lock()
	for i := range r.m.NumPieces() {
		if handed[i] == 0 {
			t.Errorf("OnVerified never got piece %d", i)
		}
	}
	handedMu.Unlock()
	if !lt.Complete() {
		t.Error("Download returned but the torrent is not complete")
	}
	s := lt.Stats()
	t.Logf("leecher stats: %+v", s)
	if s.Completed != s.Total || s.Total != r.layout.Length {
		t.Errorf("Completed %d, Total %d, want both %d", s.Completed, s.Total, r.layout.Length)
	}
	if s.FromOrigin <= 0 {
		t.Errorf("FromOrigin = %d: bytes from the origin-prefixed seeder were not counted as origin", s.FromOrigin)
	}
	if s.FromPeers != 0 {
		t.Errorf("FromPeers = %d with only the origin in the swarm", s.FromPeers)
	}
	if s.FromOrigin != s.Total {
		t.Errorf("FromOrigin = %d, want %d (every byte once from the only peer)", s.FromOrigin, s.Total)
	}
	if s.BadPieces != 0 || s.WebSeeds {
		t.Errorf("BadPieces %d, WebSeeds %v", s.BadPieces, s.WebSeeds)
	}
	r.assertFilesEqual(t, filepath.Join(leechDir, "data"))
	if ss := seed.Stats(); ss.Uploaded < s.Total {
		t.Errorf("seeder uploaded %d bytes, want at least %d", ss.Uploaded, s.Total)
	}
	// The leecher announces its completion; the tracker then counts two seeders.
	eventually(t, "the tracker to count two seeders", func() bool {
		total, seeders := tr.Peers(r.infoHash())
		return total == 2 && seeders == 2
	})

	// A second Download of a complete torrent returns at once.
	if err := download(t, lt, DownloadOptions{StallTimeout: time.Second}); err != nil {
		t.Errorf("Download of a complete torrent: %v", err)
	}
	// Verify rehashes the data on disk.
	if err := lt.Verify(context.Background()); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if s := lt.Stats(); s.Completed != s.Total || s.BadPieces != 0 {
		t.Errorf("after Verify: %+v", s)
	}
}

func TestCorruptSeeder(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	const corruptFile = "sub/b.bin"
	off := r.offset(t, corruptFile, 700<<10)
	corruptPiece := int(off / r.m.PieceLength)
	if got := r.m.FilesOfPiece(corruptPiece); !slices.Equal(got, []string{corruptFile}) {
		t.Fatalf("piece %d spans %q, want only %s", corruptPiece, got, corruptFile)
	}
	// Flip one byte of the seeder's copy after the release was built: same size, wrong content.
	p := filepath.Join(r.root, filepath.FromSlash(corruptFile))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[700<<10] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	_, trackerURL := startTracker(t)
	_, seed := startSeeder(t, r, trackerURL)
	if !seed.Complete() {
		t.Fatal("seeder should take complete-size files as complete")
	}

	dataDir := t.TempDir()
	leechDir := filepath.Join(dataDir, r.m.InfoHash)
	leecher := newClient(t, Config{DataDir: dataDir, PersistCompletion: true})
	lt, err := leecher.Add(r.spec(leechDir, trackerURL))
	if err != nil {
		t.Fatalf("leecher Add: %v", err)
	}
	err = download(t, lt, DownloadOptions{FallbackAfter: 30 * time.Second, StallTimeout: 3 * time.Second})
	s := lt.Stats()
	t.Logf("Download: %v; stats %+v", err, s)
	if err == nil {
		t.Fatal("Download completed from a corrupt seeder")
	}
	if !errors.Is(err, ErrStalled) {
		t.Errorf("error %q does not wrap ErrStalled", err)
	}
	var pe *PieceError
	if !errors.As(err, &pe) {
		t.Errorf("error %q does not carry a *PieceError", err)
	} else if pe.Piece != corruptPiece || !slices.Equal(pe.Files, []string{corruptFile}) {
		t.Errorf("PieceError = %+v, want piece %d of %s", pe, corruptPiece, corruptFile)
	}
	if !strings.Contains(err.Error(), corruptFile) {
		t.Errorf("error %q does not name %s", err, corruptFile)
	}
	if s.BadPieces <= 0 {
		t.Errorf("BadPieces = %d", s.BadPieces)
	}
	if lt.Complete() || s.Completed >= s.Total {
		t.Errorf("leecher complete with a corrupt piece: %+v", s)
	}
	if pieceComplete(lt, corruptPiece) {
		t.Errorf("corrupt piece %d is marked complete", corruptPiece)
	}
	// Which good pieces arrived depends on the order they were requested in (a peer that alone
	// supplied a bad piece is banned); those that did are verified and persisted below.
	var good []int
	for i := range r.m.NumPieces() {
		if i != corruptPiece && pieceComplete(lt, i) {
			good = append(good, i)
		}
	}
	if want := r.verifiedBytes(good); s.Completed != want {
		t.Errorf("Completed %d, want %d for pieces %v", s.Completed, want, good)
	}
	if err := leecher.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if persistedComplete(t, dataDir, r.infoHash(), corruptPiece) {
		t.Error("the corrupt piece was persisted as complete")
	}
	for _, i := range good {
		if !persistedComplete(t, dataDir, r.infoHash(), i) {
			t.Errorf("verified piece %d was not persisted as complete", i)
		}
	}
}

// deadURL is the base URL of a closed port on loopback: a server that refuses connections.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func TestWebSeedFallback(t *testing.T) {
	dead := deadURL(t) + "/" // a web seed that refuses connections

	tests := []struct {
		name    string
		release func(t *testing.T) *testRelease
		// seeds returns the url-list given the file server's URL.
		seeds func(url string) []string
	}{
		{
			name:    "multi-file release",
			release: func(t *testing.T) *testRelease { return buildRelease(t, "app", multiFiles(), nil) },
			seeds:   func(url string) []string { return []string{url + "/"} },
		},
		{
			name:    "single-file release",
			release: func(t *testing.T) *testRelease { return buildFileRelease(t, "tool.bin", randBytes(20, 700<<10+5)) },
			seeds:   func(url string) []string { return []string{url + "/"} },
		},
		{
			name:    "dead web seed listed first",
			release: func(t *testing.T) *testRelease { return buildRelease(t, "app", multiFiles(), nil) },
			seeds:   func(url string) []string { return []string{dead, url + "/"} },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.release(t)
			var requests atomic.Int64
			files := http.FileServer(http.Dir(base.parent))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				requests.Add(1)
				files.ServeHTTP(w, req)
			}))
			t.Cleanup(srv.Close)
			// BEP 19: a URL ending in "/" gets name/path appended.
			seeds := tc.seeds(srv.URL)
			r := base.withWebSeeds(t, seeds)
			if !slices.Equal(r.tf.WebSeeds, seeds) {
				t.Fatalf("WebSeeds %q, want %q", r.tf.WebSeeds, seeds)
			}
			_, trackerURL := startTracker(t) // nobody else in the swarm

			leechDir := t.TempDir()
			leecher := newClient(t, Config{PersistCompletion: true})
			lt, err := leecher.Add(r.spec(leechDir, trackerURL))
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if lt.Stats().WebSeeds {
				t.Error("web seeds in use before any download")
			}
			var first atomic.Pointer[Stats]
			err = download(t, lt, DownloadOptions{
				FallbackAfter: time.Second,
				StallTimeout:  20 * time.Second,
				Progress: func(s Stats) {
					first.CompareAndSwap(nil, &s)
				},
			})
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			s := lt.Stats()
			t.Logf("stats %+v, %d HTTP requests", s, requests.Load())
			if f := first.Load(); f == nil || f.WebSeeds {
				t.Errorf("first progress %+v: web seeds must start off", f)
			}
			if !s.WebSeeds || requests.Load() == 0 {
				t.Errorf("WebSeeds %v, %d requests to the web seed", s.WebSeeds, requests.Load())
			}
			if s.Completed != s.Total || s.BadPieces != 0 {
				t.Errorf("stats %+v", s)
			}
			if s.FromOrigin != s.Total || s.FromPeers != 0 {
				t.Errorf("FromOrigin %d, FromPeers %d; want all %d bytes from the origin (web seed)", s.FromOrigin, s.FromPeers, s.Total)
			}
			r.assertFilesEqual(t, leechDir)
		})
	}
}

// TestWebSeedSoonWhenOriginDown: once a request to the origin fails (the seeder is gone), the
// web seeds join at once for the client's own part of the pieces no peer has (alone, it owns
// them all) and for any piece after originDownFallback without progress, not after FallbackAfter.
// The unreachable origin is logged once, not at every request.
func TestWebSeedSoonWhenOriginDown(t *testing.T) {
	dead := deadURL(t) + "/share"
	base := buildRelease(t, "app", multiFiles(), nil)
	srv := httptest.NewServer(http.FileServer(http.Dir(base.parent)))
	t.Cleanup(srv.Close)
	r := base.withWebSeeds(t, []string{srv.URL + "/"})
	_, trackerURL := startTracker(t) // nobody else in the swarm
	leechDir := t.TempDir()
	var logs syncBuffer
	lt, err := newClient(t, Config{PersistCompletion: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Add(r.spec(leechDir, trackerURL))
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	share := func(ctx context.Context, _ []int) (int, []byte, error) {
		asked.Add(1)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, dead, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err // connection refused: the origin is down
		}
		resp.Body.Close()
		return 0, nil, ErrNoShare
	}
	ctx, cancel := context.WithTimeout(context.Background(), originDownFallback+10*time.Second)
	defer cancel()
	began := time.Now()
	if err := lt.Download(ctx, DownloadOptions{FallbackAfter: time.Minute, StallTimeout: 2 * time.Minute, Share: share}); err != nil {
		t.Fatalf("Download with the origin down and FallbackAfter 1m: %v after %v", err, time.Since(began).Round(time.Millisecond))
	}
	if s := lt.Stats(); !s.WebSeeds || s.Completed != s.Total {
		t.Errorf("stats %+v, want complete from the web seeds", s)
	}
	r.assertFilesEqual(t, leechDir)
	if n := strings.Count(logs.String(), "cannot get pieces from the origin"); n != 1 || asked.Load() < 2 {
		t.Errorf("the unreachable origin was logged %d times for %d requests, want once", n, asked.Load())
	}
}

// TestWebSeedUnusedWhilePeersDeliver: a healthy seeder peer; the web seed is never asked.
func TestWebSeedUnusedWhilePeersDeliver(t *testing.T) {
	base := buildRelease(t, "app", multiFiles(), nil)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		requests.Add(1)
		http.Error(w, "web seed must not be used", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	r := base.withWebSeeds(t, []string{srv.URL + "/"})
	_, trackerURL := startTracker(t)
	startSeeder(t, r, trackerURL)
	leechDir := t.TempDir()
	leecher := newClient(t, Config{PersistCompletion: true})
	lt, err := leecher.Add(r.spec(leechDir, trackerURL))
	if err != nil {
		t.Fatal(err)
	}
	if err := download(t, lt, DownloadOptions{FallbackAfter: 30 * time.Second, StallTimeout: 30 * time.Second}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	if s := lt.Stats(); s.WebSeeds || requests.Load() != 0 {
		t.Errorf("web seeds used (%v, %d requests) while the seeder delivered", s.WebSeeds, requests.Load())
	}
	r.assertFilesEqual(t, leechDir)
}

func TestResume(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	_, trackerURL := startTracker(t)
	seeder1, _ := startSeeder(t, r, trackerURL)

	dataDir := t.TempDir()
	leechDir := filepath.Join(dataDir, r.m.InfoHash)
	l1 := newClient(t, Config{DataDir: dataDir, PersistCompletion: true, DownloadRate: 512 << 10})
	lt1, err := l1.Add(r.spec(leechDir, trackerURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- lt1.Download(ctx, DownloadOptions{FallbackAfter: 30 * time.Second, StallTimeout: 30 * time.Second})
	}()
	eventually(t, "a quarter of the release", func() bool { return lt1.Stats().Completed >= r.layout.Length/4 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Download returned %v", err)
	}
	// Stop the source, let the leecher finish hashing what it has, and take the snapshot.
	seeder1.Close()
	before := settle(t, lt1)
	s1 := lt1.Stats()
	t.Logf("first session: %+v", s1)
	if before <= 0 || before >= r.layout.Length {
		t.Fatalf("first session verified %d of %d bytes; the test needs a partial download", before, r.layout.Length)
	}
	var verifiedPieces []int
	for i := range r.m.NumPieces() {
		if pieceComplete(lt1, i) {
			verifiedPieces = append(verifiedPieces, i)
		}
	}
	if err := l1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, i := range verifiedPieces {
		if !persistedComplete(t, dataDir, r.infoHash(), i) {
			t.Errorf("verified piece %d not persisted", i)
		}
	}

	// A new client on the same data directory knows the verified pieces at once.
	l2 := newClient(t, Config{DataDir: dataDir, PersistCompletion: true})
	lt2, err := l2.Add(r.spec(leechDir, trackerURL))
	if err != nil {
		t.Fatalf("second Add: %v", err)
	}
	after := lt2.Stats()
	if after.Completed != before {
		t.Errorf("after restart Completed = %d, want the %d bytes verified before", after.Completed, before)
	}
	if after.BadPieces != 0 {
		t.Errorf("restart check blamed %d pieces", after.BadPieces)
	}
	for _, i := range verifiedPieces {
		if !pieceComplete(lt2, i) {
			t.Errorf("piece %d verified before the restart is not complete after it", i)
		}
	}

	startSeeder(t, r, trackerURL)
	if err := download(t, lt2, DownloadOptions{FallbackAfter: 30 * time.Second, StallTimeout: 30 * time.Second}); err != nil {
		t.Fatalf("second Download: %v", err)
	}
	s2 := lt2.Stats()
	t.Logf("second session: %+v", s2)
	if s2.Completed != s2.Total {
		t.Errorf("Completed %d of %d", s2.Completed, s2.Total)
	}
	if got := s2.FromPeers + s2.FromOrigin; got > s2.Total-before {
		t.Errorf("second session received %d bytes, more than the %d missing", got, s2.Total-before)
	}
	if s2.FromOrigin <= 0 {
		t.Errorf("FromOrigin %d", s2.FromOrigin)
	}
	r.assertFilesEqual(t, leechDir)
}

func TestAddErrors(t *testing.T) {
	r := buildRelease(t, "app", smallFiles(), nil)
	c := newClient(t, Config{})

	tests := []struct {
		name         string
		spec         func() Spec
		wantMismatch bool
	}{
		{
			name: "bad infohash",
			spec: func() Spec {
				s := r.spec(t.TempDir())
				m := *s.Manifest
				m.InfoHash = "xyz"
				s.Manifest = &m
				return s
			},
		},
		{
			name: "too few piece hashes",
			spec: func() Spec {
				s := r.spec(t.TempDir())
				s.Pieces = nil
				return s
			},
			wantMismatch: true,
		},
		{
			name: "too many piece hashes",
			spec: func() Spec {
				s := r.spec(t.TempDir())
				s.Pieces = append(slices.Clone(s.Pieces), s.Pieces[0])
				return s
			},
			wantMismatch: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Add(tc.spec())
			if err == nil {
				t.Fatal("Add accepted a bad spec")
			}
			if tc.wantMismatch && !errors.Is(err, ErrMetadataMismatch) {
				t.Errorf("error %q does not wrap ErrMetadataMismatch", err)
			}
		})
	}
	// The failures left nothing behind: the good spec adds, once.
	tt, err := c.Add(r.spec(r.parent))
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if !tt.Complete() {
		t.Error("complete release on disk not complete after Add")
	}
	if _, err := c.Add(r.spec(r.parent)); err == nil {
		t.Error("second Add of the same torrent succeeded")
	}
	// After Drop it can be added again.
	tt.Drop()
	tt, err = c.Add(r.spec(r.parent))
	if err != nil {
		t.Fatalf("Add after Drop: %v", err)
	}
	if !tt.Complete() {
		t.Error("not complete after re-Add")
	}
}

// TestUnregisteredStorage: the storage refuses a torrent Peerpatch did not register.
func TestUnregisteredStorage(t *testing.T) {
	r := buildRelease(t, "app", smallFiles(), nil)
	c := newClient(t, Config{})
	info := infoOf(t, r)
	_, err := c.storage.OpenTorrent(context.Background(), &info, r.infoHash())
	if !errors.Is(err, ErrNotRegistered) {
		t.Errorf("OpenTorrent of an unregistered torrent: %v, want ErrNotRegistered", err)
	}
	// Registered with the wrong number of signed hashes: refused too.
	c.storage.register(&entry{infoHash: r.infoHash(), dir: t.TempDir(), pieces: nil, pieceFailed: func(int, []byte) {}})
	_, err = c.storage.OpenTorrent(context.Background(), &info, r.infoHash())
	if !errors.Is(err, ErrMetadataMismatch) {
		t.Errorf("OpenTorrent with wrong piece count: %v, want ErrMetadataMismatch", err)
	}
	c.storage.unregister(r.infoHash())
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "no port", cfg: Config{ListenAddr: "127.0.0.1"}},
		{name: "bad port", cfg: Config{ListenAddr: "127.0.0.1:http-ish"}},
		{name: "data dir is a file", cfg: Config{ListenAddr: "127.0.0.1:0", DataDir: filepath.Join(writeFile(t, "f"), "sub")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.DataDir == "" {
				tc.cfg.DataDir = t.TempDir()
			}
			c, err := New(tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("New accepted a bad config")
			}
		})
	}
	// Two clients cannot share one persisted completion database.
	dir := t.TempDir()
	newClient(t, Config{DataDir: dir, PersistCompletion: true})
	if c, err := New(Config{DataDir: dir, ListenAddr: "127.0.0.1:0", PersistCompletion: true}); err == nil {
		c.Close()
		t.Error("second client opened a locked pieces.db")
	}
}

func writeFile(t *testing.T, name string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSweepCompletePeers: once a swarm has finished, its members close their connections to
// each other (neither side has anything to ask for), those the library would keep too.
func TestSweepCompletePeers(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	_, trackerURL := startTracker(t)
	_, seed := startSeeder(t, r, trackerURL)
	torrents := []*Torrent{seed}
	var wg sync.WaitGroup
	for range 4 {
		c := newClient(t, Config{PersistCompletion: true, keepCompletePeers: true})
		lt, err := c.Add(r.spec(filepath.Join(t.TempDir(), "data"), trackerURL))
		if err != nil {
			t.Fatal(err)
		}
		torrents = append(torrents, lt)
		wg.Go(func() {
			if err := download(t, lt, DownloadOptions{FallbackAfter: time.Minute, StallTimeout: 30 * time.Second}); err != nil {
				t.Errorf("Download: %v", err)
			}
		})
	}
	wg.Wait()
	eventually(t, "every connection between complete peers to close", func() bool {
		for _, lt := range torrents {
			if lt.Stats().Peers != 0 {
				return false
			}
		}
		return true
	})
}

// TestWebSeedsSplitAmongPeers: clients in one swarm that all fall back to a web seed fetch from
// it the pieces none of their peers has, and the rest from each other; the library's web-seed
// peer had every client fetch nearly the whole release from the mirror. Clients allowed one
// connection each connect to every peer they know once they use the web seeds: each split the
// pieces with the peers it saw, and one that saw nobody fetched everything.
func TestWebSeedsSplitAmongPeers(t *testing.T) {
	small := buildRelease(t, "app", multiFiles(), nil)
	base := builtWith(t, small.parent, small.root, small.files, nil, 16<<10) // 192 pieces: picks rarely collide
	for _, maxConns := range []int{0, 1} {
		t.Run(fmt.Sprintf("max %d connections", maxConns), func(t *testing.T) {
			var served atomic.Int64
			files := http.FileServer(http.Dir(base.parent))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				time.Sleep(5 * time.Millisecond) // a mirror slower than loopback peers
				files.ServeHTTP(countingWriter{w, &served}, req)
			}))
			t.Cleanup(srv.Close)
			r := base.withWebSeeds(t, []string{srv.URL + "/"})
			_, trackerURL := startTracker(t) // no seeder: the web seed is the only source
			const clients = 3
			dirs := make([]string, clients)
			torrents := make([]*Torrent, clients)
			for k := range clients {
				dirs[k] = t.TempDir()
				var err error
				torrents[k], err = newClient(t, Config{PersistCompletion: true, MaxConnsPerTorrent: maxConns}).Add(r.spec(dirs[k], trackerURL)) // as agents
				if err != nil {
					t.Fatal(err)
				}
			}
			// Started together, they stall together and turn to the web seed in the same second,
			// as a fleet does when its seeder dies.
			var wg sync.WaitGroup
			for k, lt := range torrents {
				wg.Go(func() {
					if err := download(t, lt, DownloadOptions{FallbackAfter: time.Second, StallTimeout: 30 * time.Second}); err != nil {
						t.Errorf("client %d: Download: %v", k, err)
					}
				})
			}
			wg.Wait()
			for _, d := range dirs {
				r.assertFilesEqual(t, d)
			}
			f := r.m.Length()
			t.Logf("the web seed served %d bytes for %d clients of a %d-byte release (%.2f × F)", served.Load(), clients, f, float64(served.Load())/float64(f))
			if served.Load() > f*3/2 {
				t.Errorf("the web seed served %.2f × the release to %d clients in one swarm; want at most 1.5", float64(served.Load())/float64(f), clients)
			}
		})
	}
}

// TestWebSeedMisbehaving: a web seed that sends wrong bytes, ignores the range asked for or
// answers another one costs time, never the download: the good web seed listed after it serves.
func TestWebSeedMisbehaving(t *testing.T) {
	tests := []struct {
		name    string
		handler func(files http.Handler) http.HandlerFunc
		wantBad bool // pieces fail their check (the bytes arrived, wrong)
	}{
		{"wrong bytes", func(files http.Handler) http.HandlerFunc {
			return func(w http.ResponseWriter, req *http.Request) { files.ServeHTTP(flippingWriter{w}, req) }
		}, true},
		{"ignores the range", func(files http.Handler) http.HandlerFunc {
			return func(w http.ResponseWriter, req *http.Request) {
				req.Header.Del("Range")
				files.ServeHTTP(w, req)
			}
		}, false},
		{"another range", func(files http.Handler) http.HandlerFunc {
			return func(w http.ResponseWriter, req *http.Request) {
				req.Header.Set("Range", "bytes=0-99")
				files.ServeHTTP(w, req)
			}
		}, false},
		{"not found", func(http.Handler) http.HandlerFunc { return http.NotFound }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := buildRelease(t, "app", multiFiles(), nil)
			files := http.FileServer(http.Dir(base.parent))
			bad := httptest.NewServer(tc.handler(files))
			t.Cleanup(bad.Close)
			good := httptest.NewServer(files)
			t.Cleanup(good.Close)
			r := base.withWebSeeds(t, []string{bad.URL + "/", good.URL + "/"})
			_, trackerURL := startTracker(t)
			dir := t.TempDir()
			lt, err := newClient(t, Config{PersistCompletion: true}).Add(r.spec(dir, trackerURL))
			if err != nil {
				t.Fatal(err)
			}
			if err := download(t, lt, DownloadOptions{FallbackAfter: time.Second, StallTimeout: 20 * time.Second}); err != nil {
				t.Fatalf("Download: %v", err)
			}
			r.assertFilesEqual(t, dir)
			if s := lt.Stats(); (s.BadPieces > 0) != tc.wantBad {
				t.Errorf("%d bad pieces; want some: %v", s.BadPieces, tc.wantBad)
			}
		})
	}
}

// flippingWriter inverts every byte of the body.
type flippingWriter struct{ http.ResponseWriter }

func (w flippingWriter) Write(b []byte) (int, error) {
	c := make([]byte, len(b))
	for i := range b {
		c[i] = ^b[i]
	}
	return w.ResponseWriter.Write(c)
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func TestFileURL(t *testing.T) {
	tests := []struct {
		base, name string
		dir        bool
		path, want string
	}{
		{"http://m/r/", "tool.bin", false, "tool.bin", "http://m/r/tool.bin"},
		{"http://m/r/", "app", true, "sub/b c+d#.bin", "http://m/r/app/sub/b%20c%2Bd%23.bin"},
		{"http://m/r/tool.bin", "tool.bin", false, "tool.bin", "http://m/r/tool.bin"},
		{"http://m/r/app", "app", true, "sub/b.bin", "http://m/r/app"}, // not a directory URL: as given, as the library does
	}
	for _, tc := range tests {
		if got := fileURL(tc.base, tc.name, tc.dir, tc.path); got != tc.want {
			t.Errorf("fileURL(%q, %q, %v, %q) = %q, want %q", tc.base, tc.name, tc.dir, tc.path, got, tc.want)
		}
	}
}
