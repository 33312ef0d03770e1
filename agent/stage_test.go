package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

type stagedCase struct {
	name    string
	files   map[string]string
	skip    int    // piece left unstaged; -1: none
	corrupt int    // piece staged with a flipped byte (linked: flipped in the swarm copy); -1: none
	wrong   int    // a piece whose signed digest the stager is given wrong (copied only); -1: none
	grow    bool   // the first staged file is a byte longer than signed (linked: the swarm copy too)
	noSwarm bool   // remove the swarm copy before the install
	wantLog string // in keepStaged's log: why no copy was kept
}

// TestStagedInstall stages a release piece by piece, out of order as a download does, then
// installs it: from the staged copy when that is complete and passes its check, from the swarm
// copy otherwise.
func TestStagedInstall(t *testing.T) {
	dirFiles := map[string]string{
		"bin/app":      strings.Repeat("app ", 20000), // 80,000 bytes: pieces cross files
		"empty":        "",
		"lib/data.txt": strings.Repeat("data", 5000),
		"share/doc":    "notes",
	}
	single := map[string]string{"app.bin": strings.Repeat("single", 20000)}
	tests := []stagedCase{
		{name: "staged copy is installed without the swarm copy", files: dirFiles, skip: -1, corrupt: -1, wrong: -1, noSwarm: true},
		{name: "single file staged copy is installed without the swarm copy", files: single, skip: -1, corrupt: -1, wrong: -1, noSwarm: true},
		{name: "corrupt staged piece fails the check", files: dirFiles, skip: -1, corrupt: 3, wrong: -1, wantLog: "failed its check"},
		{name: "a piece that differs from its signed digest fails the check", files: dirFiles, skip: -1, corrupt: -1, wrong: 4, wantLog: "failed its check"},
		{name: "a single file's piece that differs from its signed digest fails the check", files: single, skip: -1, corrupt: -1, wrong: 0, wantLog: "failed its check"},
		{name: "a staged file longer than signed fails the check", files: dirFiles, skip: -1, corrupt: -1, wrong: -1, grow: true, wantLog: "failed its check"},
		{name: "incomplete staging keeps no copy", files: dirFiles, skip: 2, corrupt: -1, wrong: -1, wantLog: "no staging copy"},
	}
	for _, tt := range tests {
		for _, copied := range []bool{false, true} {
			if !copied && tt.wrong >= 0 {
				// A linked copy is the swarm's file: it is compared with the bytes the swarm
				// verified against these digests, not hashed again.
				continue
			}
			name := tt.name + ", linked"
			if copied {
				name = tt.name + ", copied"
			}
			t.Run(name, func(t *testing.T) { testStagedInstall(t, tt, copied) })
		}
	}
}

func testStagedInstall(t *testing.T, tt stagedCase, copied bool) {
	a := newTestAgent(t)
	a.cfg.CopyInstall = copied
	tree := filepath.Join(t.TempDir(), "app") // what current must hold
	src := tree                               // what is published
	if len(tt.files) == 1 {
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		src = filepath.Join(tree, "app.bin")
		if err := os.WriteFile(src, []byte(tt.files["app.bin"]), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		writeFiles(t, src, tt.files)
	}
	r := placeReleaseWith(t, a, "1.0.0", src, 16<<10)
	if r.m.NumPieces() < 5 {
		t.Fatalf("%d pieces, want several", r.m.NumPieces())
	}
	pieces := r.pieces(t)
	digests := r.digests(t)
	if tt.wrong >= 0 {
		digests[tt.wrong][0] ^= 1
	}
	releases := filepath.Join(a.cfg.InstallDir, releasesSub)
	st, err := newStager(releases, r.m, digests, a.linkSource(r.m))
	if err != nil {
		t.Fatal(err)
	}
	if st.linked == copied || st.linkErr != nil {
		t.Fatalf("stager linked %v (%v), want %v", st.linked, st.linkErr, !copied)
	}
	if tt.grow {
		f := r.m.Files[0]
		if err := os.Truncate(filepath.Join(st.dir, filepath.FromSlash(f.Path)), f.Length+1); err != nil {
			t.Fatal(err)
		}
	}
	if st.linked && tt.corrupt >= 0 {
		// The disk holds other bytes than the ones verified.
		corruptAt(t, r.m, r.swarm, int64(tt.corrupt)*r.m.PieceLength+r.m.PieceSize(tt.corrupt)/2)
	}
	// Out of order, as pieces verify in a swarm, and one twice.
	for i := r.m.NumPieces() - 1; i >= 0; i-- {
		if i == tt.skip {
			continue
		}
		data := bytes.Clone(pieces[i])
		if i == tt.corrupt && !st.linked {
			data[len(data)/2] ^= 1
		}
		st.piece(i, data)
	}
	st.piece(0, pieces[0])
	var logged bytes.Buffer
	a.keepStaged(r.m.Version, st, true, slog.New(slog.NewTextHandler(&logged, nil)))
	staged := a.staged[r.m.Version]
	if tt.wantLog == "" && staged == "" {
		t.Fatalf("no staging copy kept: %s", logged.String())
	}
	if tt.wantLog != "" {
		if staged != "" {
			t.Errorf("kept staging copy %s, want none", staged)
		}
		if !strings.Contains(logged.String(), tt.wantLog) {
			t.Errorf("log %q does not say %q", logged.String(), tt.wantLog)
		}
		if _, err := os.Stat(st.dir); !os.IsNotExist(err) {
			t.Errorf("staging directory left: %v", err)
		}
	}
	if tt.noSwarm {
		if err := os.RemoveAll(r.swarm); err != nil {
			t.Fatal(err)
		}
	}
	err = a.install(context.Background(), r.m, r.bundle, discard)
	if st.linked && (tt.corrupt >= 0 || tt.grow) {
		// The swarm copy itself is corrupt: nothing is installed from it.
		if !errors.Is(err, verify.ErrMismatch) {
			t.Fatalf("install from a corrupt swarm copy: %v, want a mismatch", err)
		}
		assertReleaseDirs(t, a)
		return
	}
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, "current"), tree)
	assertReleaseDirs(t, a, "1.0.0")
	if tt.noSwarm {
		return
	}
	for _, f := range r.m.Files {
		if shared := sameFile(t, swarmFile(r.m, r.swarm, f), filepath.Join(releases, "1.0.0", f.Path)); shared == copied {
			t.Errorf("%s: installed file is the swarm copy's: %v, want %v", f.Path, shared, !copied)
		}
	}
}

// corruptAt flips the byte at offset off of m's swarm copy under root.
func corruptAt(t *testing.T, m *release.Manifest, root string, off int64) {
	t.Helper()
	for _, f := range m.Files {
		if off >= f.Length {
			off -= f.Length
			continue
		}
		fh, err := os.OpenFile(swarmFile(m, root, f), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		b := make([]byte, 1)
		if _, err := fh.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		if _, err := fh.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("offset beyond the release")
}

// sameFile reports whether paths a and b name the same file.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, fb := statBoth(t, a, b)
	return os.SameFile(fa, fb)
}

// statBoth stats a and b.
func statBoth(t *testing.T, a, b string) (os.FileInfo, os.FileInfo) {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return fa, fb
}
