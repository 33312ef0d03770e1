package test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// TestFleetEndToEnd: one seeder, four agents, two releases in a row; then a third release
// during which the seeder dies and only a plain HTTP mirror is left.
func TestFleetEndToEnd(t *testing.T) {
	d := Init(t)
	src := t.TempDir()
	mirrorDir := t.TempDir()
	var mirrored atomic.Int64
	files := http.FileServer(http.Dir(mirrorDir))
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(countingWriter{w, &mirrored}, r)
	}))
	defer mirror.Close()

	// The origin's upload is capped below what the agents can take, so that when it dies
	// the agents together hold only part of the third release.
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), "--upload-rate", "4MiB", "--webseed", mirror.URL)
	v1 := WriteRelease(t, src, "app", 4<<20, 1)
	s.Publish(t, d, "stable", "1.0.0", v1)

	var agents []*Agent
	for _, name := range []string{"agent1", "agent2", "agent3", "agent4"} {
		agents = append(agents, StartAgent(t, d, name, "stable", []string{s.URL},
			"--upload-rate", "8MiB", "--download-rate", "4MiB", "--fallback-after", "3s"))
	}
	AwaitInstalled(t, time.Minute, "1.0.0", agents...)

	v2 := WriteRelease(t, t.TempDir(), "app", 8<<20, 2)
	s.Publish(t, d, "stable", "2.0.0", v2)
	AwaitInstalled(t, time.Minute, "2.0.0", agents...)
	for _, a := range agents {
		SameTree(t, v2, filepath.Join(a.Install, "current"))
		if a.Previous() != "1.0.0" {
			t.Fatalf("%s: previous is %q, want 1.0.0", a.Name, a.Previous())
		}
		SameTree(t, v1, filepath.Join(a.Install, "previous"))
	}
	st := awaitReports(t, s, d, "2.0.0", 4, int64(8<<20))
	var fromPeers, fromOrigin int64
	for _, a := range st.Agents {
		fromPeers += a.BytesFromPeers
		fromOrigin += a.BytesFromOrigin
	}
	for _, r := range st.Releases {
		if r.Version == "2.0.0" {
			t.Logf("release 2.0.0 (%d bytes): the seeder sent %d bytes (%.2f × the release); the 4 agents received %d bytes from peers and %d from the origin",
				r.Length, r.OriginBytes, float64(r.OriginBytes)/float64(r.Length), fromPeers, fromOrigin)
		}
	}

	// Third release: the mirror gets a copy of the seeder's release tree (as rsync would), then
	// the seeder is killed once every agent is downloading.
	v3 := WriteRelease(t, t.TempDir(), "app", 24<<20, 3)
	s.Publish(t, d, "stable", "3.0.0", v3)
	copyTree(t, filepath.Join(s.Data, "releases", "stable", "3.0.0"), filepath.Join(mirrorDir, "stable", "3.0.0"))
	awaitDownloading(t, s, d, "3.0.0", 4)
	s.Kill()
	t.Logf("seeder killed")
	AwaitInstalled(t, 2*time.Minute, "3.0.0", agents...)
	for _, a := range agents {
		SameTree(t, v3, filepath.Join(a.Install, "current"))
	}
	t.Logf("the mirror served %d bytes of the 24 MiB release", mirrored.Load())
	if mirrored.Load() == 0 {
		t.Fatal("the mirror served nothing: the test did not exercise the fallback")
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// awaitReports waits until n agents report version installed, each with at least size bytes
// received from peers and the origin together.
func awaitReports(t *testing.T, s *Seeder, d *Deployment, version string, n int, size int64) api.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st api.Status
	for time.Now().Before(deadline) {
		st = s.Status(t, d)
		ok := 0
		for _, a := range st.Agents {
			if a.State == api.StateInstalled && a.InstalledVersion == version && a.BytesFromPeers+a.BytesFromOrigin >= size {
				ok++
			}
		}
		if ok == n {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("status did not show %d agents installed on %s with their bytes: %+v", n, version, st.Agents)
	return st
}

// awaitDownloading waits until n agents report downloading version with some bytes verified.
func awaitDownloading(t *testing.T, s *Seeder, d *Deployment, version string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		busy, started := 0, false
		for _, a := range s.Status(t, d).Agents {
			if a.State == api.StateDownloading && a.TargetVersion == version {
				busy++
				started = started || a.Completed > 0
			}
		}
		if busy >= n && started {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%d agents did not start downloading %s within 30s", n, version)
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}
