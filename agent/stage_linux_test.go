package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestStageAcrossFilesystems: where the install directory is on another filesystem than the
// swarm copy, hard links fail; the stager copies instead, and so does the install.
func TestStageAcrossFilesystems(t *testing.T) {
	a := newTestAgent(t)
	shm, err := os.MkdirTemp("/dev/shm", "peerpatch-test-")
	if err != nil {
		t.Skipf("no tmpfs at /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	a.cfg.InstallDir = shm
	tree := filepath.Join(t.TempDir(), "app")
	writeFiles(t, tree, map[string]string{"bin/app": strings.Repeat("app ", 20000), "etc/conf": "x = 1"})
	r := placeReleaseWith(t, a, "1.0.0", tree, 16<<10)
	if sameDevice(t, a.cfg.DataDir, shm) {
		t.Skip("/dev/shm and the test's temporary directory are on one filesystem")
	}
	for _, staged := range []bool{true, false} {
		st, err := newStager(filepath.Join(shm, releasesSub), r.m, r.digests(t), a.linkSource(r.m))
		if err != nil {
			t.Fatal(err)
		}
		if st.linked || !errors.Is(st.linkErr, syscall.EXDEV) {
			t.Fatalf("stager linked %v, link error %v; want a copy after EXDEV", st.linked, st.linkErr)
		}
		if !staged {
			st.discard() // the install copies from the swarm copy
			break
		}
		for i, data := range r.pieces(t) {
			st.piece(i, data)
		}
		a.keepStaged(r.m.Version, st, true, discard)
		if a.staged[r.m.Version] == "" {
			t.Fatal("no staged copy kept")
		}
	}
	mustInstall(t, a, r)
	assertSameTree(t, filepath.Join(shm, "current"), tree)
	// A second version, installed without a staged copy: the install copies too.
	r2 := placeReleaseWith(t, a, "1.0.1", tree, 16<<10)
	mustInstall(t, a, r2)
	assertSameTree(t, filepath.Join(shm, "current"), tree)
	for _, r := range []*testRelease{r, r2} {
		for _, f := range r.m.Files {
			if sameFile(t, swarmFile(r.m, r.swarm, f), filepath.Join(shm, releasesSub, r.m.Version, f.Path)) {
				t.Errorf("%s %s: installed file is the swarm copy's across filesystems", r.m.Version, f.Path)
			}
		}
	}
}

// sameDevice reports whether paths a and b are on one filesystem.
func sameDevice(t *testing.T, a, b string) bool {
	t.Helper()
	fa, fb := statBoth(t, a, b)
	return fa.Sys().(*syscall.Stat_t).Dev == fb.Sys().(*syscall.Stat_t).Dev
}
