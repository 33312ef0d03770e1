package test

// Disk full: each test puts one of the product's write areas (the seeder's --data, the agent's
// --data, the agent's --install-dir) on a small tmpfs, makes a publish, a download or an install
// run out of space, and checks that the failure is one clear line on stderr naming the problem
// with a non-zero exit, that what was already stored is intact, and that the product goes on
// working. The tests need root (to mount a tmpfs) and skip otherwise.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

const mib = 1 << 20

// diskFullWords are the phrases of which a disk-full error must contain at least one.
var diskFullWords = []string{"no space left", "no space", "disk full", "disk is full", "out of space", "insufficient storage"}

// mountTmpfs mounts a tmpfs of size bytes on a new directory under t.TempDir() and unmounts it
// when the test ends (after the processes started later are killed: cleanups run last-first).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full tests need root to mount a small tmpfs (CI runs them as root)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs (disk-full tests need it): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillFile writes a file of n bytes at path (ballast taking space on a small filesystem).
func fillFile(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatalf("ballast %s: %v", path, err)
	}
}

// assertDiskFull fails unless r exited non-zero with exactly one stderr line starting with
// "peerpatch: " that names the lack of space. It returns the line.
func assertDiskFull(t *testing.T, what string, r Result) string {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("%s: exit status 0, want a disk-full failure\nstdout:\n%s\nstderr:\n%s", what, r.Stdout, r.Stderr)
	}
	msg := strings.TrimSpace(r.Stderr)
	t.Logf("%s failed (%v): %s", what, r.Err, msg)
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("%s: stderr is %d lines, want exactly one:\n%s", what, strings.Count(msg, "\n")+1, r.Stderr)
		// Judge the final error line on its own as well.
		msg = msg[strings.LastIndex(msg, "\n")+1:]
	}
	if !strings.HasPrefix(msg, "peerpatch: ") {
		t.Errorf("%s: stderr %q does not start with \"peerpatch: \"", what, msg)
	}
	lower := strings.ToLower(msg)
	for _, w := range diskFullWords {
		if strings.Contains(lower, w) {
			return msg
		}
	}
	// Not fatal: the checks that nothing stored was damaged still run.
	t.Errorf("%s: stderr %q does not say the disk is full (none of %q)", what, msg, diskFullWords)
	return msg
}

// assertHealthy fails unless the seeder is running and GET /healthz answers 200.
func assertHealthy(t *testing.T, s *Seeder) {
	t.Helper()
	if s.Exited() {
		t.Fatalf("seeder exited:\n%s", s.Output())
	}
	resp, err := http.Get(s.URL + api.PathHealth)
	if err != nil {
		t.Fatalf("seeder healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("seeder healthz: %s, want 200", resp.Status)
	}
}

// assertNoStaging fails unless dir has no entry whose name starts with prefix ("" = any entry).
func assertNoStaging(t *testing.T, dir, prefix string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			left = append(left, e.Name())
		}
	}
	if len(left) > 0 {
		t.Errorf("%s holds %v after the failure, want no %q entries", dir, left, prefix+"*")
	}
}

func TestDiskFullPublish(t *testing.T) {
	t.Parallel()
	data := mountTmpfs(t, 3*mib)
	d := Init(t)
	s := StartSeeder(t, d, data)
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", 1*mib, 1)
	v2 := WriteRelease(t, dir, "app-2", 4*mib, 2)
	v11 := WriteRelease(t, dir, "app-11", mib/2, 11)

	s.Publish(t, d, "stable", "1.0.0", v1)
	(refuseAgent{Data: filepath.Join(t.TempDir(), "a"), Install: filepath.Join(t.TempDir(), "i")}).
		mustInstall(t, d, s.URL, "1.0.0", v1)

	start := time.Now()
	r := Run(t, publishArgs(s, d.Dir, "2.0.0", v2)...)
	t.Logf("publish 2.0.0 (4 MiB) onto a 3 MiB seeder disk ended in %s", time.Since(start).Round(time.Millisecond))
	assertDiskFull(t, "publish 2.0.0 onto a full seeder disk", r)
	if r.Stdout != "" {
		t.Errorf("failed publish printed %q on stdout", r.Stdout)
	}

	assertHealthy(t, s)
	assertNoStaging(t, filepath.Join(data, "staging"), "")
	if _, err := os.Stat(filepath.Join(data, "releases", "stable", "2.0.0")); err == nil {
		t.Error("seeder kept files of the failed 2.0.0 under releases/")
	}

	// Stored data intact: a fresh agent installs 1.0.0 byte-identical.
	a := refuseAgent{Data: filepath.Join(t.TempDir(), "a"), Install: filepath.Join(t.TempDir(), "i")}
	a.mustInstall(t, d, s.URL, "1.0.0", v1)

	// The seeder still takes a publish that fits, without anyone freeing space.
	start = time.Now()
	s.Publish(t, d, "stable", "1.1.0", v11)
	t.Logf("publish 1.1.0 (0.5 MiB) after the failure took %s", time.Since(start).Round(time.Millisecond))
	a.mustInstall(t, d, s.URL, "1.1.0", v11)
	assertHealthy(t, s)
}

func TestDiskFullDownload(t *testing.T) {
	t.Parallel()
	data := mountTmpfs(t, 6*mib)
	ballast := filepath.Join(data, "ballast")
	fillFile(t, ballast, 4*mib) // 2 MiB left for the agent's data
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", 1*mib, 1)
	v2 := WriteRelease(t, dir, "app-2", 4*mib, 2)

	a := refuseAgent{Data: filepath.Join(data, "agent"), Install: filepath.Join(t.TempDir(), "install")}
	s.Publish(t, d, "stable", "1.0.0", v1)
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
	s.Publish(t, d, "stable", "2.0.0", v2)

	start := time.Now()
	r := a.once(t, d, s.URL, "", "", "--stall-timeout", "10s")
	t.Logf("agent --once downloading 2.0.0 (4 MiB) onto a full agent disk ended in %s", time.Since(start).Round(time.Millisecond))
	assertDiskFull(t, "agent --once downloading onto a full disk", r)

	if got := a.Current(); got != "1.0.0" {
		t.Fatalf("I/current points at %q after the failed download, want 1.0.0", got)
	}
	SameTree(t, v1, filepath.Join(a.Install, "current"))
	assertNoStaging(t, filepath.Join(a.Install, "releases"), stagingPrefixForTest)
	assertHealthy(t, s)

	// The admin frees space; the next cycle installs 2.0.0.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	a.mustInstall(t, d, s.URL, "2.0.0", v2)
	t.Logf("agent --once after freeing space installed 2.0.0 in %s", time.Since(start).Round(time.Millisecond))
	if got := linkVersion(filepath.Join(a.Install, "previous")); got != "1.0.0" {
		t.Errorf("I/previous points at %q, want 1.0.0", got)
	}
}

func TestDiskFullInstall(t *testing.T) {
	t.Parallel()
	install := mountTmpfs(t, 3*mib)
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", 1*mib, 1)
	v2 := WriteRelease(t, dir, "app-2", 5*mib/2, 2)

	a := refuseAgent{Data: filepath.Join(t.TempDir(), "data"), Install: filepath.Join(install, "app")}
	s.Publish(t, d, "stable", "1.0.0", v1)
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
	s.Publish(t, d, "stable", "2.0.0", v2)

	start := time.Now()
	r := a.once(t, d, s.URL, "", "", "--stall-timeout", "10s")
	t.Logf("agent --once installing 2.0.0 (2.5 MiB) next to 1.0.0 on a 3 MiB install disk ended in %s", time.Since(start).Round(time.Millisecond))
	assertDiskFull(t, "agent --once installing onto a full disk", r)

	if got := a.Current(); got != "1.0.0" {
		t.Fatalf("I/current points at %q after the failed install, want 1.0.0", got)
	}
	SameTree(t, v1, filepath.Join(a.Install, "current"))
	releases := filepath.Join(a.Install, "releases")
	assertNoStaging(t, releases, stagingPrefixForTest)
	if _, err := os.Stat(filepath.Join(releases, "2.0.0")); err == nil {
		t.Error("I/releases/2.0.0 exists after the failed install")
	}
	// No symlink temporaries left next to current either.
	assertNoStaging(t, a.Install, ".current-")
	assertNoStaging(t, a.Install, ".previous-")
}

// TestDiskFullDownloadDaemon: a running agent (not --once) whose download hit a full disk picks
// the download up again on a later cycle once the admin frees space, without a restart.
func TestDiskFullDownloadDaemon(t *testing.T) {
	t.Parallel()
	data := mountTmpfs(t, 6*mib)
	ballast := filepath.Join(data, "ballast")
	fillFile(t, ballast, 4*mib)
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", 1*mib, 1)
	v2 := WriteRelease(t, dir, "app-2", 4*mib, 2)
	s.Publish(t, d, "stable", "1.0.0", v1)

	a := &Agent{Name: "agent", Data: filepath.Join(data, "agent"), Install: filepath.Join(t.TempDir(), "install")}
	a.args = append(append([]string{"--log-format", "json", "--log-level", "debug", "agent"},
		AgentArgs(d, a.Data, a.Install, "stable", s.URL)...),
		"--interval", "1s", "--stall-timeout", "3s", "--fallback-after", "1s")
	a.Proc = Start(t, "agent", a.args...)
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)
	SameTree(t, v1, filepath.Join(a.Install, "current"))

	s.Publish(t, d, "stable", "2.0.0", v2)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(a.Output(), "no space left on device") {
		if time.Now().After(deadline) {
			t.Fatal("the agent never hit the full disk")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // past the stall timeout: the failed cycle ends
	if got := a.Current(); got != "1.0.0" {
		t.Fatalf("I/current points at %q with a full disk, want 1.0.0", got)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	AwaitInstalled(t, 30*time.Second, "2.0.0", a)
	t.Logf("daemon agent installed 2.0.0 %s after space was freed", time.Since(start).Round(time.Millisecond))
	SameTree(t, v2, filepath.Join(a.Install, "current"))
}

// stagingPrefixForTest is the name prefix of the agent's install staging directories
// (agent/install.go stagingPrefix), part of the documented I/ layout's crash behaviour.
const stagingPrefixForTest = ".staging-"
