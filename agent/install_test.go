package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

func v1Files() map[string]string {
	return map[string]string{
		"bin/app":         "#!/bin/sh\necho one\n",
		"lib/data.txt":    "version one data",
		"README":          "one",
		"empty":           "",
		"share/big/blob":  strings.Repeat("x1", 700_000), // > 1 MiB: several verify buffers
		"share/doc/notes": "notes v1",
	}
}

func v2Files() map[string]string {
	return map[string]string{
		"bin/app":      "#!/bin/sh\necho two\n",
		"lib/data.txt": "version two data, longer",
		"lib/new.so":   "new in two",
		"empty":        "",
	}
}

func TestInstallUpgradeSequence(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", v1Files())
	r2 := newDirRelease(t, a, "2.0.0", v2Files())
	r3 := newDirRelease(t, a, "3.0.0", map[string]string{"bin/app": "three"})

	mustInstall(t, a, r1)
	assertLink(t, a, currentLink, "1.0.0")
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r1.src)
	if _, err := os.Lstat(filepath.Join(a.cfg.InstallDir, previousLink)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("previous exists after the first install: %v", err)
	}
	assertState(t, a, "1.0.0", "")
	assertReleaseDirs(t, a, "1.0.0")

	mustInstall(t, a, r2)
	assertLink(t, a, currentLink, "2.0.0")
	assertLink(t, a, previousLink, "1.0.0")
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r2.src)
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, previousLink), r1.src)
	assertState(t, a, "2.0.0", "1.0.0")
	assertReleaseDirs(t, a, "1.0.0", "2.0.0")

	mustInstall(t, a, r3)
	assertLink(t, a, currentLink, "3.0.0")
	assertLink(t, a, previousLink, "2.0.0")
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r3.src)
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, previousLink), r2.src)
	assertState(t, a, "3.0.0", "2.0.0")
	assertReleaseDirs(t, a, "2.0.0", "3.0.0")

	// No temporary symlinks of switchLink are left in InstallDir.
	ents, err := os.ReadDir(a.cfg.InstallDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in install dir", e.Name())
		}
	}
	// The swarm copies are untouched (the agent keeps seeding them).
	assertSameTree(t, r1.swarm, r1.src)
}

func TestInstallSingleFile(t *testing.T) {
	a := newTestAgent(t)
	r1 := newFileRelease(t, a, "1.0.0", "tool.bin", strings.Repeat("tool-1 ", 5000))
	r2 := newFileRelease(t, a, "1.1.0", "tool.bin", "tool-2")
	if r1.m.Dir {
		t.Fatal("single-file release has Dir set")
	}

	mustInstall(t, a, r1)
	mustInstall(t, a, r2)
	for _, c := range []struct {
		link string
		r    *testRelease
	}{{currentLink, r2}, {previousLink, r1}} {
		p := filepath.Join(a.cfg.InstallDir, c.link, "tool.bin")
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(c.r.src)
		if string(got) != string(want) {
			t.Errorf("%s: %d bytes, want %d identical bytes", p, len(got), len(want))
		}
	}
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r2.root())
	assertState(t, a, "1.1.0", "1.0.0")
}

func TestInstallCorruptSwarmCopy(t *testing.T) {
	flip := func(t *testing.T, p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	truncate := func(t *testing.T, p string) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, fi.Size()-1); err != nil {
			t.Fatal(err)
		}
	}
	extra := func(t *testing.T, p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte{0})
		f.Close()
	}
	tests := []struct {
		name    string
		single  bool
		file    string // slash path inside the release that gets damaged
		corrupt func(t *testing.T, p string)
		badSum  bool   // sign a wrong bundle digest instead
		wantErr string // in the error text
		wantNot bool   // want a missing-file error instead of *verify.MismatchError
	}{
		{name: "flipped byte in last file", file: "share/doc/notes", corrupt: flip, wantErr: `"share/doc/notes"`},
		{name: "flipped byte in first file", file: "README", corrupt: flip, wantErr: `"README"`},
		{name: "flipped byte in big file", file: "share/big/blob", corrupt: flip, wantErr: `"share/big/blob"`},
		{name: "truncated", file: "lib/data.txt", corrupt: truncate, wantErr: `"lib/data.txt"`},
		{name: "extra byte", file: "bin/app", corrupt: extra, wantErr: `"bin/app"`},
		{name: "extra byte in empty file", file: "empty", corrupt: extra, wantErr: `"empty"`},
		{name: "missing file", file: "lib/data.txt", corrupt: func(t *testing.T, p string) { os.Remove(p) }, wantErr: `"lib/data.txt"`, wantNot: true},
		{name: "wrong bundle digest", badSum: true, wantErr: "bundle"},
		{name: "single file flipped", single: true, file: "tool.bin", corrupt: flip, wantErr: `"tool.bin"`},
		{name: "single file truncated", single: true, file: "tool.bin", corrupt: truncate, wantErr: `"tool.bin"`},
		{name: "single file extra byte", single: true, file: "tool.bin", corrupt: extra, wantErr: `"tool.bin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t)
			var r1, r2 *testRelease
			if tt.single {
				r1 = newFileRelease(t, a, "1.0.0", "tool.bin", "old tool")
				r2 = newFileRelease(t, a, "2.0.0", "tool.bin", strings.Repeat("new tool ", 100))
			} else {
				r1 = newDirRelease(t, a, "1.0.0", v2Files())
				r2 = newDirRelease(t, a, "2.0.0", v1Files())
			}
			mustInstall(t, a, r1)

			if tt.badSum {
				r2.bundle.SHA256[0] ^= 0xff
			} else {
				p := r2.swarm
				if r2.m.Dir {
					p = filepath.Join(r2.swarm, filepath.FromSlash(tt.file))
				}
				tt.corrupt(t, p)
			}

			err := a.install(context.Background(), r2.m, r2.bundle, discard)
			if err == nil {
				t.Fatal("install of a corrupt swarm copy succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not name %s", err, tt.wantErr)
			}
			var me *verify.MismatchError
			switch {
			case tt.wantNot:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v: want fs.ErrNotExist", err)
				}
			case !errors.As(err, &me):
				t.Errorf("error %v (%T): want *verify.MismatchError", err, err)
			case me.Path != tt.file:
				t.Errorf("MismatchError.Path = %q, want %q", me.Path, tt.file)
			}

			assertLink(t, a, currentLink, "1.0.0")
			assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r1.root())
			if _, err := os.Lstat(filepath.Join(a.cfg.InstallDir, previousLink)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("previous was created by a failed install: %v", err)
			}
			assertReleaseDirs(t, a, "1.0.0") // no releases/2.0.0, no .staging-*
			assertState(t, a, "1.0.0", "")
		})
	}
}

func TestInstallCrashLeftovers(t *testing.T) {
	damage := func(t *testing.T, final string) {
		p := filepath.Join(final, "lib", "data.txt")
		if err := os.WriteFile(p, []byte("version two dat@, longer"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// prepare simulates the crash, given the new release and releases/<its version>.
		prepare func(t *testing.T, a *Agent, r *testRelease, final string)
		// reused: the existing releases/2.0.0 must be kept (same inodes), not copied again.
		reused bool
	}{
		{
			name: "stale staging directory",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				writeFiles(t, filepath.Join(filepath.Dir(final), stagingPrefix+"2.0.0-123456"), map[string]string{"bin/app": "half"})
				writeFiles(t, filepath.Join(filepath.Dir(final), stagingPrefix+"9.9.9-abc"), map[string]string{"x": "y"})
			},
		},
		{
			name: "verified install before the switch is reused",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				copyTree(t, r.src, final)
				// Without the swarm copy, only reuse can succeed.
				if err := os.RemoveAll(r.swarm); err != nil {
					t.Fatal(err)
				}
			},
			reused: true,
		},
		{
			name: "corrupt install before the switch is replaced",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				copyTree(t, r.src, final)
				damage(t, final)
			},
		},
		{
			name: "install before the switch with a missing file is replaced",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				copyTree(t, r.src, final)
				os.Remove(filepath.Join(final, "lib", "new.so"))
			},
		},
		{
			name: "install before the switch with a truncated file is replaced",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				copyTree(t, r.src, final)
				os.Truncate(filepath.Join(final, "bin", "app"), 3)
			},
		},
		{
			name: "empty install directory is replaced",
			prepare: func(t *testing.T, a *Agent, r *testRelease, final string) {
				os.MkdirAll(final, 0o755)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t)
			r1 := newDirRelease(t, a, "1.0.0", v1Files())
			r2 := newDirRelease(t, a, "2.0.0", v2Files())
			mustInstall(t, a, r1)
			final := filepath.Join(a.cfg.InstallDir, releasesSub, "2.0.0")
			tt.prepare(t, a, r2, final)
			var before os.FileInfo
			if tt.reused {
				before, _ = os.Stat(filepath.Join(final, "bin", "app"))
			}

			mustInstall(t, a, r2)

			assertLink(t, a, currentLink, "2.0.0")
			assertLink(t, a, previousLink, "1.0.0")
			assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r2.src)
			assertState(t, a, "2.0.0", "1.0.0")
			assertReleaseDirs(t, a, "1.0.0", "2.0.0")
			if tt.reused {
				after, err := os.Stat(filepath.Join(final, "bin", "app"))
				if err != nil || !os.SameFile(before, after) {
					t.Errorf("the verified earlier install was not reused (err %v)", err)
				}
			}
		})
	}
}

// A crash after current was switched but before the state was written makes the next cycle
// install the same version again: that must keep the previous release (and its link) intact.
func TestInstallAgainAfterCrashAfterSwitch(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", v1Files())
	r2 := newDirRelease(t, a, "2.0.0", v2Files())
	mustInstall(t, a, r1)
	mustInstall(t, a, r2)
	// Simulate the lost state write: the state still says 1.0.0 is installed.
	if err := a.db.Put("state", keyInstalled+a.cfg.Channel, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := a.db.Delete("state", keyPrevious+a.cfg.Channel); err != nil {
		t.Fatal(err)
	}

	mustInstall(t, a, r2) // what cycle does, since installed != 2.0.0

	assertLink(t, a, currentLink, "2.0.0")
	assertLink(t, a, previousLink, "1.0.0") // must still resolve: the rollback target
	assertReleaseDirs(t, a, "1.0.0", "2.0.0")
	assertState(t, a, "2.0.0", "1.0.0")
}

// A cancelled install must not throw away a verified earlier install of the same version.
func TestInstallCancelledKeepsVerifiedInstall(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", v1Files())
	r2 := newDirRelease(t, a, "2.0.0", v2Files())
	mustInstall(t, a, r1)
	final := filepath.Join(a.cfg.InstallDir, releasesSub, "2.0.0")
	copyTree(t, r2.src, final)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := a.install(ctx, r2.m, r2.bundle, discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("install with a cancelled context: %v, want context.Canceled", err)
	}
	assertLink(t, a, currentLink, "1.0.0")
	assertState(t, a, "1.0.0", "")
	for _, n := range releaseDirs(t, a) {
		if strings.HasPrefix(n, stagingPrefix) {
			t.Errorf("staging leftover %s", n)
		}
	}
	if _, err := os.Stat(final); err != nil {
		t.Errorf("verified releases/2.0.0 was discarded because of a cancellation: %v", err)
	}
}

func TestInstallCancelledLeavesNothing(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", v1Files())
	r2 := newDirRelease(t, a, "2.0.0", v2Files())
	mustInstall(t, a, r1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.install(ctx, r2.m, r2.bundle, discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("install with a cancelled context: %v, want context.Canceled", err)
	}
	assertLink(t, a, currentLink, "1.0.0")
	assertReleaseDirs(t, a, "1.0.0")
	assertState(t, a, "1.0.0", "")
}

// switchLink replaces the link with one rename: a concurrent reader always finds a valid link.
func TestSwitchLinkAtomic(t *testing.T) {
	dir := t.TempDir()
	targets := []string{filepath.Join(releasesSub, "1.0.0"), filepath.Join(releasesSub, "2.0.0")}
	for _, tg := range targets {
		writeFiles(t, filepath.Join(dir, tg), map[string]string{"marker": filepath.Base(tg)})
	}
	if err := switchLink(dir, currentLink, targets[0]); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, currentLink)

	var (
		stop     atomic.Bool
		reads    atomic.Int64
		started  = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, s)
		}
	}
	for range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				got, err := readLink(dir, currentLink)
				if err != nil {
					fail("readlink: " + err.Error())
				} else if got != targets[0] && got != targets[1] {
					fail("readlink: unexpected target " + got)
				}
				if _, err := os.Stat(link); err != nil {
					fail("stat: " + err.Error())
				}
				b, err := os.ReadFile(filepath.Join(link, "marker"))
				if err != nil {
					fail("read through link: " + err.Error())
				} else if string(b) != "1.0.0" && string(b) != "2.0.0" {
					fail("read through link: " + string(b))
				}
				if reads.Add(1) == 1 {
					close(started)
				}
			}
		})
	}
	<-started
	const switches = 1000
	for i := range switches {
		if err := switchLink(dir, currentLink, targets[(i+1)%2]); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("switch %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("a reader saw an invalid current link during %d switches: %q", switches, failures)
	}
	t.Logf("%d reads during %d switches", reads.Load(), switches)

	got, err := readLink(dir, currentLink)
	if err != nil || got != targets[switches%2] {
		t.Errorf("final link → %q (%v), want %q", got, err, targets[switches%2])
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != currentLink && e.Name() != releasesSub {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestSwitchLinkErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{name: "name is a non-empty directory", prepare: func(t *testing.T, dir string) {
			writeFiles(t, filepath.Join(dir, currentLink), map[string]string{"f": "x"})
		}},
		{name: "dir does not exist", prepare: func(t *testing.T, dir string) { os.RemoveAll(dir) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "install")
			os.MkdirAll(dir, 0o755)
			tt.prepare(t, dir)
			err := switchLink(dir, currentLink, "releases/1.0.0")
			if err == nil || !strings.Contains(err.Error(), "switch current") {
				t.Fatalf("switchLink: %v, want an error naming the link", err)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("temporary link %s left behind", e.Name())
				}
			}
		})
	}
}

// TestRemoveOldInstallsKeep: after an install, current, previous and the newest others up to
// --keep stay; older installs and staging leftovers go.
func TestRemoveOldInstallsKeep(t *testing.T) {
	all := []string{"1.0.0", "2.0.0", "3.0.0", "10.0.0", "11.0.0"}
	tests := []struct {
		keep              int
		current, previous string
		want              []string
	}{
		{keep: 2, current: "11.0.0", previous: "10.0.0", want: []string{"10.0.0", "11.0.0"}},
		{keep: 3, current: "11.0.0", previous: "10.0.0", want: []string{"10.0.0", "11.0.0", "3.0.0"}},
		{keep: 3, current: "2.0.0", previous: "11.0.0", want: []string{"10.0.0", "11.0.0", "2.0.0"}}, // rolled back
		{keep: 3, current: "11.0.0", previous: "", want: []string{"10.0.0", "11.0.0", "3.0.0"}},
		{keep: 9, current: "11.0.0", previous: "10.0.0", want: []string{"1.0.0", "10.0.0", "11.0.0", "2.0.0", "3.0.0"}},
	}
	for _, tc := range tests {
		a := newTestAgent(t)
		a.cfg.Keep = tc.keep
		releases := filepath.Join(a.cfg.InstallDir, releasesSub)
		for _, v := range append(slices.Clone(all), stagingPrefix+"4.0.0-123") {
			if err := os.MkdirAll(filepath.Join(releases, v, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// A crash between creating a switch's temporary link and renaming it leaves the link;
		// a file merely named alike stays.
		for _, name := range []string{tempLink(a.cfg.InstallDir, currentLink), tempLink(a.cfg.InstallDir, previousLink)} {
			if err := os.Symlink(filepath.Join(releasesSub, "1.0.0"), name); err != nil {
				t.Fatal(err)
			}
		}
		mine := filepath.Join(a.cfg.InstallDir, ".current-notes")
		if err := os.WriteFile(mine, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		a.removeOldInstalls(tc.current, tc.previous)
		if top, _ := filepath.Glob(filepath.Join(a.cfg.InstallDir, ".*")); !slices.Equal(top, []string{mine}) {
			t.Errorf("left in the install directory: %v, want only %s", top, mine)
		}
		ents, err := os.ReadDir(releases)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("keep %d, current %s, previous %q: kept %v, want %v", tc.keep, tc.current, tc.previous, got, tc.want)
		}
	}
}
