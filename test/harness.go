// Package test drives real peerpatch processes on loopback: a deployment made with `peerpatch
// init`, seeders, agents and publishes, each a separate process of the binary built from this
// tree. The helpers fail the test with the process's output when something goes wrong.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// Binary is the peerpatch binary under test; BuildBinary sets it.
var Binary string

// BuildBinary builds ./cmd/peerpatch into dir and sets Binary.
func BuildBinary(dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	Binary = filepath.Join(dir, "peerpatch")
	cmd := exec.Command("go", "build", "-tags", "nosqlite", "-o", Binary, "./cmd/peerpatch")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build peerpatch: %v\n%s", err, out)
	}
	return nil
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Err            error // nil on exit status 0
}

// Run runs peerpatch with args to completion (at most two minutes).
func Run(t testing.TB, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// MustRun runs peerpatch and fails the test unless it exits 0.
func MustRun(t testing.TB, args ...string) Result {
	t.Helper()
	r := Run(t, args...)
	if r.Err != nil {
		t.Fatalf("peerpatch %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r
}

// Deployment is a directory made by `peerpatch init`.
type Deployment struct {
	Dir string
}

// Init creates a deployment in a new temporary directory.
func Init(t testing.TB) *Deployment {
	t.Helper()
	d := &Deployment{Dir: filepath.Join(t.TempDir(), "deployment")}
	MustRun(t, "init", "--dir", d.Dir)
	return d
}

// Root is the deployment's trust anchor.
func (d *Deployment) Root() string { return filepath.Join(d.Dir, "root.json") }

// AgentToken is the deployment's agent token file.
func (d *Deployment) AgentToken() string { return filepath.Join(d.Dir, "agent.token") }

// Proc is a running peerpatch process whose output is kept.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// Start starts peerpatch with args; the process is killed when the test ends.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: exec.Command(Binary, args...), done: make(chan struct{})}
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.Output())
		}
	})
	return p
}

// Write collects the process's output.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// MustCleanShutdown sends SIGTERM and fails the test unless the process exits 0 within 10s.
func (p *Proc) MustCleanShutdown(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop within 10s of SIGTERM", p.Name)
	}
	if p.err != nil {
		t.Fatalf("%s exited with %v after SIGTERM\n%s", p.Name, p.err, p.Output())
	}
}

// JSONLines returns the process's JSON log records whose msg is msg.
func (p *Proc) JSONLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// FreeAddr returns a free 127.0.0.1 port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Seeder is a running seeder process.
type Seeder struct {
	*Proc
	URL  string
	Data string
	args []string
}

// StartSeeder starts a seeder on a free loopback port with extra flags and waits until healthy.
func StartSeeder(t testing.TB, d *Deployment, data string, extra ...string) *Seeder {
	t.Helper()
	addr := FreeAddr(t)
	args := append([]string{"--log-format", "json", "seeder", "--data", data, "--listen", addr, "--keys", d.Dir}, extra...)
	s := &Seeder{URL: "http://" + addr, Data: data, args: args}
	s.Proc = Start(t, "seeder", args...)
	s.AwaitHealthy(t)
	return s
}

// Restart starts the seeder again with the same flags (after Kill or a clean shutdown).
func (s *Seeder) Restart(t testing.TB) {
	t.Helper()
	s.Proc = Start(t, "seeder", s.args...)
	s.AwaitHealthy(t)
}

// AwaitHealthy waits for GET /healthz to answer 200.
func (s *Seeder) AwaitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + api.PathHealth)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if s.Exited() {
			t.Fatalf("seeder exited:\n%s", s.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("seeder not healthy after 20s:\n%s", s.Output())
}

// Publish publishes path as channel/version and fails the test on error.
func (s *Seeder) Publish(t testing.TB, d *Deployment, channel, version, path string) api.Published {
	t.Helper()
	r := MustRun(t, "publish", "--seeder", s.URL, "--keys", d.Dir, "--channel", channel, "--version", version, "--json", path)
	var p api.Published
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("publish --json output %q: %v", r.Stdout, err)
	}
	return p
}

// Status returns `peerpatch status --json`.
func (s *Seeder) Status(t testing.TB, d *Deployment) api.Status {
	t.Helper()
	r := MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir, "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status --json output %q: %v", r.Stdout, err)
	}
	return st
}

// Agent is an agent's directories and, while running, its process.
type Agent struct {
	*Proc
	Name, Data, Install string
	args                []string
}

// AgentArgs are the flags of an agent of deployment d on channel, talking to seeders.
func AgentArgs(d *Deployment, data, install, channel string, seeders ...string) []string {
	args := []string{"--data", data, "--trust", d.Root(), "--token-file", d.AgentToken(), "--channel", channel, "--install-dir", install, "--peer-listen", "127.0.0.1:0"}
	for _, s := range seeders {
		args = append(args, "--seeder", s)
	}
	return args
}

// StartAgent starts a daemon agent in fresh directories with extra flags.
func StartAgent(t testing.TB, d *Deployment, name, channel string, seeders []string, extra ...string) *Agent {
	t.Helper()
	dir := t.TempDir()
	a := &Agent{Name: name, Data: filepath.Join(dir, "data"), Install: filepath.Join(dir, "install")}
	a.args = append(append([]string{"--log-format", "json", "--log-level", "debug", "agent"},
		AgentArgs(d, a.Data, a.Install, channel, seeders...)...), append([]string{"--interval", "1s"}, extra...)...)
	a.Proc = Start(t, name, a.args...)
	return a
}

// Restart starts the agent again with the same flags and directories.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Proc = Start(t, a.Name, a.args...)
}

// Current is the version I/current points at, "" if none.
func (a *Agent) Current() string { return linkVersion(filepath.Join(a.Install, "current")) }

// Previous is the version I/previous points at, "" if none.
func (a *Agent) Previous() string { return linkVersion(filepath.Join(a.Install, "previous")) }

func linkVersion(link string) string {
	dst, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	return filepath.Base(dst)
}

// AwaitInstalled waits until every agent's current symlink points at version.
func AwaitInstalled(t testing.TB, timeout time.Duration, version string, agents ...*Agent) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pending := []string{}
		for _, a := range agents {
			if a.Current() != version {
				pending = append(pending, a.Name)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents %v did not install %s within %s", pending, version, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WriteRelease writes a release directory of about size bytes under dir/name: a big random
// binary and two small files. seed makes different releases differ.
func WriteRelease(t testing.TB, dir, name string, size int64, seed byte) string {
	t.Helper()
	root := filepath.Join(dir, name)
	files := map[string][]byte{
		"README.txt":       []byte(fmt.Sprintf("release %d\n", seed)),
		"etc/app.conf":     []byte(fmt.Sprintf("seed = %d\n", seed)),
		"bin/app":          randomBytes(size, seed),
		"share/empty.file": nil,
	}
	for p, b := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func randomBytes(n int64, seed byte) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed})
	r.Read(b)
	return b
}

// SameTree fails the test unless dirs a and b hold the same regular files with the same bytes.
func SameTree(t testing.TB, want, got string) {
	t.Helper()
	w, g := readTree(t, want), readTree(t, got)
	if len(w) != len(g) {
		t.Fatalf("%s has %d files, %s has %d", got, len(g), want, len(w))
	}
	for p, b := range w {
		if !bytes.Equal(g[p], b) {
			t.Fatalf("%s: file %s differs from the published one", got, p)
		}
	}
}

func readTree(t testing.TB, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
