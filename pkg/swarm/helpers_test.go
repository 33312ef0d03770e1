package swarm

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/peerpatch/peerpatch/pkg/release"
)

// testFile is one file of a test release: its slash path under the release folder and content.
type testFile struct {
	path string
	data []byte
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// multiFiles is a ~3 MiB release: a 256 KiB piece length (release.PieceLength), a.bin ends
// inside piece 4, empty.txt is zero-length, and sub/b.bin and sub/c.dat each start and end
// inside pieces.
func multiFiles() []testFile {
	return []testFile{
		{"a.bin", randBytes(1, 1<<20+1000)},
		{"empty.txt", nil},
		{"sub/b.bin", randBytes(2, 3<<19+333)},
		{"sub/c.dat", randBytes(3, 500<<10-7)},
	}
}

// testRelease is a release built from real files, with its manifest and checked .torrent.
type testRelease struct {
	parent string // directory holding the release folder (the seeder's Spec.Dir)
	root   string // parent/name
	files  []testFile
	layout *release.Layout
	m      release.Manifest
	info   []byte
	mi     []byte // the .torrent
	tf     *TorrentFile
}

// buildRelease writes files under a new release folder called name, builds it, and wraps the
// info into a .torrent with the given web seeds.
func buildRelease(t testing.TB, name string, files []testFile, webSeeds []string) *testRelease {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, name)
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return built(t, parent, root, files, webSeeds)
}

// built builds the release at root (under parent) and wraps it into a .torrent with webSeeds.
func built(t testing.TB, parent, root string, files []testFile, webSeeds []string) *testRelease {
	t.Helper()
	return builtWith(t, parent, root, files, webSeeds, 0)
}

// builtWith is built with the given piece length (0: the default).
func builtWith(t testing.TB, parent, root string, files []testFile, webSeeds []string, pieceLength int64) *testRelease {
	t.Helper()
	layout, err := release.Build(context.Background(), root, pieceLength)
	if err != nil {
		t.Fatalf("release.Build: %v", err)
	}
	info, ih, err := InfoBytes(layout)
	if err != nil {
		t.Fatalf("InfoBytes: %v", err)
	}
	m := layout.Manifest
	m.Channel, m.Version, m.InfoHash = "stable", "1.0.0", ih
	if err := m.Validate(); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	mi, err := Metainfo(info, "http://127.0.0.1:1/announce", webSeeds)
	if err != nil {
		t.Fatalf("Metainfo: %v", err)
	}
	tf, err := CheckMetainfo(mi, &m)
	if err != nil {
		t.Fatalf("CheckMetainfo of a good torrent: %v", err)
	}
	return &testRelease{parent: parent, root: root, files: files, layout: layout, m: m, info: info, mi: mi, tf: tf}
}

// buildFileRelease writes a single file called name and builds it as a release.
func buildFileRelease(t testing.TB, name string, data []byte) *testRelease {
	t.Helper()
	return buildFileReleaseWith(t, name, data, 0)
}

// buildFileReleaseWith is buildFileRelease with the given piece length (0: the default).
func buildFileReleaseWith(t testing.TB, name string, data []byte, pieceLength int64) *testRelease {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, name)
	if err := os.WriteFile(root, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return builtWith(t, parent, root, []testFile{{name, data}}, nil, pieceLength)
}

// withWebSeeds returns a copy of r whose .torrent lists webSeeds.
func (r *testRelease) withWebSeeds(t testing.TB, webSeeds []string) *testRelease {
	t.Helper()
	c := *r
	var err error
	if c.mi, err = Metainfo(r.info, "", webSeeds); err != nil {
		t.Fatal(err)
	}
	if c.tf, err = CheckMetainfo(c.mi, &c.m); err != nil {
		t.Fatal(err)
	}
	return &c
}

func (r *testRelease) infoHash() [20]byte {
	ih, err := ParseInfoHash(r.m.InfoHash)
	if err != nil {
		panic(err)
	}
	return ih
}

// spec is the Spec to add r with data in dir.
func (r *testRelease) spec(dir string, trackers ...string) Spec {
	m := r.m
	return Spec{Torrent: r.tf, Manifest: &m, Pieces: r.layout.PiecesSHA256, Dir: dir, Trackers: trackers}
}

// offset returns the torrent offset of byte off of the file at path.
func (r *testRelease) offset(t testing.TB, path string, off int64) int64 {
	t.Helper()
	var base int64
	for _, f := range r.m.Files {
		if f.Path == path {
			return base + off
		}
		base += f.Length
	}
	t.Fatalf("no file %q", path)
	return 0
}

// verifiedBytes is the length of the given pieces.
func (r *testRelease) verifiedBytes(pieces []int) int64 {
	var n int64
	for _, i := range pieces {
		n += min(int64(i+1)*r.m.PieceLength, r.layout.Length) - int64(i)*r.m.PieceLength
	}
	return n
}

// assertFilesEqual checks that dir/name holds exactly r's files.
func (r *testRelease) assertFilesEqual(t testing.TB, dir string) {
	t.Helper()
	for _, f := range r.files {
		p := filepath.Join(dir, r.m.Name, filepath.FromSlash(f.path))
		if !r.m.Dir {
			p = filepath.Join(dir, r.m.Name)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("downloaded file %s: %v", f.path, err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("downloaded file %s differs from the source (%d bytes, want %d)", f.path, len(got), len(f.data))
		}
	}
}

// startTracker serves a Tracker on loopback and returns it with its announce URL.
func startTracker(t testing.TB) (*Tracker, string) {
	t.Helper()
	tr := NewTracker()
	mux := http.NewServeMux()
	mux.Handle("/announce", tr.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return tr, srv.URL + "/announce"
}

// syncBuffer is a goroutine-safe log sink, printed if the test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newClient starts a client on loopback, closed at the end of the test. Its Info logs are shown
// if the test fails.
func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { c.Close() })
		if t.Failed() {
			if s := logs.String(); s != "" {
				t.Logf("client logs (origin=%v):\n%s", cfg.Origin, s)
			}
		}
	})
	return c
}

// settle waits until the torrent has nothing hashing or queued and its verified byte count has
// not moved for a while, so a snapshot of it stays true.
func settle(t testing.TB, tt *Torrent) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last, same := int64(-1), 0
	for time.Now().Before(deadline) {
		busy := false
		for _, r := range tt.t.PieceStateRuns() {
			if r.Checking || r.Hashing || r.QueuedForHash || r.Marking {
				busy = true
			}
		}
		v := tt.verified()
		if !busy && v == last {
			same++
			if same >= 20 {
				return v
			}
		} else {
			same = 0
		}
		last = v
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("torrent did not settle")
	return 0
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pieceComplete reports whether the torrent's library state has piece i complete.
func pieceComplete(tt *Torrent, i int) bool {
	return tt.t.Piece(i).State().Complete
}

// persistedComplete reads the completion database in dataDir (the client must be closed).
func persistedComplete(t testing.TB, dataDir string, ih [20]byte, piece int) bool {
	t.Helper()
	c, err := openCompletion(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cn, err := c.Get(metainfo.PieceKey{InfoHash: ih, Index: piece})
	if err != nil {
		t.Fatal(err)
	}
	return cn.Ok && cn.Complete
}
