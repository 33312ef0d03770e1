package test

// Refusals: each test makes the product refuse one bad input (a publish, an agent's credentials
// or trust anchor, corrupt bytes, a mismatched torrent) and checks that the refusal is one clear
// line on stderr with a non-zero exit, and that nothing already stored is damaged by it.

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

const refuseSize = 2 << 20 // bytes of each release's big file

// refuseAgent is a pair of agent directories used with `agent --once`.
type refuseAgent struct {
	Data, Install string
}

func newRefuseAgent(t *testing.T) refuseAgent {
	dir := t.TempDir()
	return refuseAgent{Data: filepath.Join(dir, "data"), Install: filepath.Join(dir, "install")}
}

// Current is the version I/current points at, "" if there is no I/current.
func (a refuseAgent) Current() string { return linkVersion(filepath.Join(a.Install, "current")) }

// once runs one agent cycle of deployment d against seeder with the given trust anchor and token
// file ("" = the deployment's own) and extra agent flags. Logs are limited to errors so that a
// refusal is the only thing on stderr.
func (a refuseAgent) once(t *testing.T, d *Deployment, seeder, trust, token string, extra ...string) Result {
	t.Helper()
	args := []string{"--log-level", "error", "agent"}
	args = append(args, AgentArgs(d, a.Data, a.Install, "stable", seeder)...)
	for i := range args {
		switch {
		case args[i] == "--trust" && trust != "":
			args[i+1] = trust
		case args[i] == "--token-file" && token != "":
			args[i+1] = token
		}
	}
	args = append(append(args, "--once"), extra...)
	return Run(t, args...)
}

// mustInstall runs one agent cycle that must install version, whose tree must equal want.
func (a refuseAgent) mustInstall(t *testing.T, d *Deployment, seeder, version, want string) {
	t.Helper()
	r := a.once(t, d, seeder, "", "")
	if r.Err != nil {
		t.Fatalf("agent --once: %v\nstderr:\n%s", r.Err, r.Stderr)
	}
	if got := a.Current(); got != version {
		t.Fatalf("agent --once exited 0 but I/current points at %q, want %q", got, version)
	}
	SameTree(t, want, filepath.Join(a.Install, "current"))
}

// assertNoCurrent fails unless the agent has no I/current and no installed release directory.
func (a refuseAgent) assertNoCurrent(t *testing.T) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(a.Install, "current")); err == nil {
		t.Fatalf("I/current exists after a refusal (points at %q)", a.Current())
	}
	if ents, _ := os.ReadDir(filepath.Join(a.Install, "releases")); len(ents) > 0 {
		t.Fatalf("I/releases holds %d entries after a refusal, want none", len(ents))
	}
}

// assertRefused fails unless r exited non-zero with exactly one stderr line, starting with
// "peerpatch: " and containing every one of wants.
func assertRefused(t *testing.T, what string, r Result, wants ...string) string {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("%s: exit status 0, want a refusal\nstdout:\n%s\nstderr:\n%s", what, r.Stdout, r.Stderr)
	}
	msg := strings.TrimSpace(r.Stderr)
	if msg == "" || strings.Contains(msg, "\n") {
		t.Fatalf("%s: stderr is %d lines, want exactly one:\n%s", what, strings.Count(msg, "\n")+1, r.Stderr)
	}
	if !strings.HasPrefix(msg, "peerpatch: ") {
		t.Fatalf("%s: stderr %q does not start with \"peerpatch: \"", what, msg)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			// Not fatal: the checks that nothing stored was damaged still run.
			t.Errorf("%s: stderr %q does not mention %q", what, msg, w)
		}
	}
	t.Logf("%s refused: %s", what, msg)
	return msg
}

func publishArgs(s *Seeder, keys, version, path string) []string {
	return []string{"publish", "--seeder", s.URL, "--keys", keys, "--channel", "stable", "--version", version, "--json", path}
}

// refuseCopyDir copies the regular files of directory from to to, keeping their modes.
func refuseCopyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefusePublishSameOrLowerVersion(t *testing.T) {
	t.Parallel()
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", refuseSize, 1)
	other := WriteRelease(t, dir, "app-other", refuseSize, 2)
	s.Publish(t, d, "stable", "1.0.0", v1)

	for _, v := range []string{"1.0.0", "0.9.0"} {
		r := Run(t, publishArgs(s, d.Dir, v, other)...)
		assertRefused(t, "publish "+v, r, v, "must be greater", "1.0.0")
		if r.Stdout != "" {
			t.Fatalf("publish %s refused but printed %q on stdout", v, r.Stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Data, "releases", "stable", "0.9.0")); err == nil {
		t.Fatal("seeder stored files of the refused 0.9.0")
	}

	a := newRefuseAgent(t)
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
}

func TestRefusePublishWrongAdminToken(t *testing.T) {
	t.Parallel()
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	v1 := WriteRelease(t, t.TempDir(), "app", refuseSize, 1)

	forged := filepath.Join(t.TempDir(), "forged")
	refuseCopyDir(t, d.Dir, forged)
	if err := os.WriteFile(filepath.Join(forged, "admin.token"), []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := Run(t, publishArgs(s, forged, "1.0.0", v1)...)
	assertRefused(t, "publish with a wrong admin token", r, "admin token")

	if _, err := os.Stat(filepath.Join(s.Data, "releases", "stable", "1.0.0")); err == nil {
		t.Fatal("seeder stored files of a publish with a wrong admin token")
	}
	a := newRefuseAgent(t)
	assertRefused(t, "agent --once after the refused publish", a.once(t, d, s.URL, "", ""), "no release")
	a.assertNoCurrent(t)

	s.Publish(t, d, "stable", "1.0.0", v1)
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
}

func TestRefuseAgentWrongToken(t *testing.T) {
	t.Parallel()
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	v1 := WriteRelease(t, t.TempDir(), "app", refuseSize, 1)
	s.Publish(t, d, "stable", "1.0.0", v1)

	bad := filepath.Join(t.TempDir(), "agent.token")
	if err := os.WriteFile(bad, []byte(strings.Repeat("c3", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newRefuseAgent(t)
	assertRefused(t, "agent --once with a wrong token", a.once(t, d, s.URL, "", bad), "agent token")
	a.assertNoCurrent(t)

	// The same agent directories, now with the right token, install the release.
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
}

func TestRefuseAgentOtherDeploymentRoot(t *testing.T) {
	t.Parallel()
	d := Init(t)
	other := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	v1 := WriteRelease(t, t.TempDir(), "app", refuseSize, 1)
	s.Publish(t, d, "stable", "1.0.0", v1)

	a := newRefuseAgent(t)
	assertRefused(t, "agent --once trusting another deployment", a.once(t, d, s.URL, other.Root(), ""),
		"not signed by the trusted root")
	a.assertNoCurrent(t)

	newRefuseAgent(t).mustInstall(t, d, s.URL, "1.0.0", v1)
}

func TestRefuseCorruptFileOnSeeder(t *testing.T) {
	t.Parallel()
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app-1", refuseSize, 1)
	v2 := WriteRelease(t, dir, "app-2", refuseSize, 2)
	s.Publish(t, d, "stable", "1.0.0", v1)
	a := newRefuseAgent(t)
	a.mustInstall(t, d, s.URL, "1.0.0", v1)
	s.Publish(t, d, "stable", "2.0.0", v2)

	s.MustCleanShutdown(t)
	stored := filepath.Join(s.Data, "releases", "stable", "2.0.0", "app-2", "bin", "app")
	f, err := os.OpenFile(stored, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, refuseSize/2); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, refuseSize/2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)

	flags := []string{"--stall-timeout", "5s", "--fallback-after", "2s"}
	assertRefused(t, "agent A --once from a corrupt seeder", a.once(t, d, s.URL, "", "", flags...), `"bin/app"`, "SHA-256")
	if got := a.Current(); got != "1.0.0" {
		t.Fatalf("agent A points at %q after refusing 2.0.0, want 1.0.0", got)
	}
	SameTree(t, v1, filepath.Join(a.Install, "current"))

	b2 := newRefuseAgent(t)
	assertRefused(t, "agent B --once from a corrupt seeder", b2.once(t, d, s.URL, "", "", flags...), `"bin/app"`)
	b2.assertNoCurrent(t)
}

func TestRefuseTorrentInfohashMismatch(t *testing.T) {
	t.Parallel()
	d := Init(t)
	s := StartSeeder(t, d, t.TempDir())
	dir := t.TempDir()
	v1 := WriteRelease(t, dir, "app", refuseSize, 1)
	v2 := WriteRelease(t, filepath.Join(dir, "two"), "app", refuseSize, 2)
	p1 := s.Publish(t, d, "stable", "1.0.0", v1)
	p2 := s.Publish(t, d, "stable", "2.0.0", v2)
	if p1.InfoHash == p2.InfoHash {
		t.Fatalf("releases 1.0.0 and 2.0.0 have the same infohash %s", p1.InfoHash)
	}

	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	var swapped atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		if r.URL.Path == api.PathTorrent+"stable/2.0.0" {
			r.URL.Path = api.PathTorrent + "stable/1.0.0"
			r.URL.RawPath = ""
			swapped.Add(1)
		}
		direct(r)
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("proxy listens on %s, want 127.0.0.1", srv.URL)
	}

	a := newRefuseAgent(t)
	start := time.Now()
	r := a.once(t, d, srv.URL, "", "", "--stall-timeout", "10s")
	msg := assertRefused(t, "agent --once through a torrent-swapping proxy", r, "infohash", p2.InfoHash)
	t.Logf("refused in %s", time.Since(start).Round(time.Millisecond))
	if swapped.Load() == 0 {
		t.Fatalf("the proxy never swapped the torrent, yet the agent said %q", msg)
	}
	a.assertNoCurrent(t)

	// The refusal left nothing behind: the same agent, straight to the seeder, installs 2.0.0.
	a.mustInstall(t, d, s.URL, "2.0.0", v2)
}
