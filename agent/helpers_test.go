package agent

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

var discard = slog.New(slog.DiscardHandler)

// newTestAgent returns an agent with a real state file and no network.
func newTestAgent(t *testing.T) *Agent {
	t.Helper()
	root := t.TempDir()
	cfg := Config{
		DataDir:     filepath.Join(root, "data"),
		InstallDir:  filepath.Join(root, "install"),
		Channel:     "stable",
		Logger:      discard,
		HookTimeout: time.Minute,
		Clock:       time.Now,
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: cfg, log: discard, db: db}
	a.meters = newMeters(a)
	t.Cleanup(func() { a.db.Close() })
	return a
}

// testRelease is a built release whose swarm copy is in place.
type testRelease struct {
	m      *release.Manifest
	bundle trust.Target
	src    string // the published path (file or directory)
	swarm  string // swarmPath/<name>: the downloaded copy
}

// pieces returns the bytes of every piece of r, read from its swarm copy.
func (r *testRelease) pieces(t *testing.T) [][]byte {
	t.Helper()
	var all []byte
	for _, f := range r.m.Files {
		b, err := os.ReadFile(swarmFile(r.m, r.swarm, f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	ps := make([][]byte, r.m.NumPieces())
	for i := range ps {
		start := int64(i) * r.m.PieceLength
		ps[i] = all[start : start+r.m.PieceSize(i)]
	}
	return ps
}

// digests returns the SHA-256 of every piece of r, as signed.
func (r *testRelease) digests(t *testing.T) []verify.Digest {
	t.Helper()
	var d []verify.Digest
	for _, p := range r.pieces(t) {
		d = append(d, verify.Sum(p))
	}
	return d
}

// root is the directory whose tree an install of r must reproduce.
func (r *testRelease) root() string {
	if r.m.Dir {
		return r.src
	}
	return filepath.Dir(r.src) // a fresh temporary directory holding only the file
}

// writeFiles creates files (slash path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		fp := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// newDirRelease builds a directory release named "app" from files and simulates its finished
// download by copying it to the agent's swarm directory.
func newDirRelease(t *testing.T, a *Agent, version string, files map[string]string) *testRelease {
	t.Helper()
	src := filepath.Join(t.TempDir(), "app")
	writeFiles(t, src, files)
	return placeRelease(t, a, version, src)
}

// newFileRelease builds a single-file release.
func newFileRelease(t *testing.T, a *Agent, version, name, content string) *testRelease {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return placeRelease(t, a, version, src)
}

func placeRelease(t *testing.T, a *Agent, version, src string) *testRelease {
	t.Helper()
	return placeReleaseWith(t, a, version, src, 0)
}

// placeReleaseWith is placeRelease with the given piece length (0: the default).
func placeReleaseWith(t *testing.T, a *Agent, version, src string, pieceLength int64) *testRelease {
	t.Helper()
	l, err := release.Build(context.Background(), src, pieceLength)
	if err != nil {
		t.Fatal(err)
	}
	m := l.Manifest
	ih := sha1.Sum([]byte(version))
	m.Channel, m.Version, m.InfoHash = a.cfg.Channel, version, hex.EncodeToString(ih[:])
	r := &testRelease{
		m:      &m,
		bundle: trust.Target{Name: release.BundleTarget(m.Channel, m.Version), Length: l.Length, SHA256: l.SHA256},
		src:    src,
		swarm:  filepath.Join(a.swarmPath(&m), m.Name),
	}
	copyTree(t, src, r.swarm)
	return r
}

// copyTree copies a regular file or a directory of regular files.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readTree returns slash path → content of the regular files under root (symlinks resolved).
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			t.Errorf("%s: not a regular file (%v)", p, d.Type())
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertSameTree(t *testing.T, got, want string) {
	t.Helper()
	g, w := readTree(t, got), readTree(t, want)
	if len(g) != len(w) {
		t.Errorf("%s has %d files, want %d (%v vs %v)", got, len(g), len(w), keys(g), keys(w))
	}
	for p, c := range w {
		if gc, ok := g[p]; !ok {
			t.Errorf("%s: missing %s", got, p)
		} else if gc != c {
			t.Errorf("%s/%s: content differs (%d bytes, want %d)", got, p, len(gc), len(c))
		}
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// assertLink checks that InstallDir/name is a link (a junction on Windows) to
// releases/<version> that resolves.
func assertLink(t *testing.T, a *Agent, name, version string) {
	t.Helper()
	p := filepath.Join(a.cfg.InstallDir, name)
	got, err := readLink(a.cfg.InstallDir, name)
	if err != nil {
		t.Fatalf("readlink %s: %v", name, err)
	}
	if want := filepath.Join(releasesSub, version); got != want {
		t.Errorf("%s → %q, want %q", name, got, want)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Errorf("%s does not resolve to a directory: %v", name, err)
	}
}

// assertState checks the installed and previous versions recorded for the channel.
func assertState(t *testing.T, a *Agent, installed, previous string) {
	t.Helper()
	if got := a.getString(keyInstalled + a.cfg.Channel); got != installed {
		t.Errorf("state installed = %q, want %q", got, installed)
	}
	if got := a.getString(keyPrevious + a.cfg.Channel); got != previous {
		t.Errorf("state previous = %q, want %q", got, previous)
	}
}

// releaseDirs lists InstallDir/releases.
func releaseDirs(t *testing.T, a *Agent) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(a.cfg.InstallDir, releasesSub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func assertReleaseDirs(t *testing.T, a *Agent, want ...string) {
	t.Helper()
	got := releaseDirs(t, a)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("releases/ holds %q, want %q", got, want)
	}
}

func mustInstall(t *testing.T, a *Agent, r *testRelease) {
	t.Helper()
	if err := a.install(context.Background(), r.m, r.bundle, discard); err != nil {
		t.Fatalf("install %s: %v", r.m.Version, err)
	}
}
