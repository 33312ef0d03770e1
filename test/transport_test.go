package test

// Transport: the swarm, web-seed mirrors and the seeder's own HTTP are untrusted. Each test puts
// one hostile transport between honest agents and the published release (a peer serving corrupt
// pieces, a mirror flipping bytes, a mirror sending endless bodies, an attacker in front of the
// seeder's HTTP) and checks that every honest agent still installs exactly the published bytes,
// or refuses, and that nothing the attacker made is ever installed.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// tpLines returns the lines of p's output that contain every one of subs.
func tpLines(p *Proc, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// tpPeakRSS is the peak resident set size of a running process in bytes (VmHWM), -1 if unknown.
func tpPeakRSS(p *Proc) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// tpPeerPort is the swarm port an agent logged at start.
func tpPeerPort(t *testing.T, a *Agent) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if recs := a.JSONLines("agent started"); len(recs) > 0 {
			return fmt.Sprint(recs[0]["peerPort"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not log its peer port", a.Name)
	return ""
}

// tpOnlyInstalled fails unless I/releases holds exactly the given versions (nothing else, no
// staging directory left behind).
func tpOnlyInstalled(t *testing.T, install string, versions ...string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(install, "releases"))
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(versions, ",") {
		t.Fatalf("%s/releases holds %v, want %v", install, got, versions)
	}
}

// mirrorLog records what a test mirror saw.
type mirrorLog struct {
	requests, bytes, tokens atomic.Int64
}

func (m *mirrorLog) saw(r *http.Request) {
	m.requests.Add(1)
	if r.Header.Get("Authorization") != "" {
		m.tokens.Add(1)
	}
}

// flippingWriter inverts every byte written through it.
type flippingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (f flippingWriter) Write(b []byte) (int, error) {
	c := make([]byte, len(b))
	for i := range b {
		c[i] = ^b[i]
	}
	n, err := f.ResponseWriter.Write(c)
	f.n.Add(int64(n))
	return n, err
}

type tpCountingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c tpCountingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// goodMirror serves dir as a web-seed mirror. If open is set, each request waits (at most 5 s) until open says yes.
func goodMirror(t *testing.T, dir string, open func() bool) (*httptest.Server, *mirrorLog) {
	log := &mirrorLog{}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for deadline := time.Now().Add(5 * time.Second); open != nil && !open() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		log.saw(r)
		files.ServeHTTP(tpCountingWriter{w, &log.bytes}, r)
	}))
	t.Cleanup(srv.Close)
	return srv, log
}

// TestTransportCorruptPeer: agent A holds release 2.0.0, verified, in its swarm copy; then the
// copy's bytes change on disk, its modification time kept (as a failing disk would, or a peer
// that lies), so A serves pieces that do not match the signed hashes. The origin uploads
// slowly, so new agents B and C get most pieces from A: they must reject A's pieces, ban A, and
// still install 2.0.0 exactly. A installs copies (--copy-install), so its own installed copy
// stays intact.
func TestTransportCorruptPeer(t *testing.T) {
	t.Parallel()
	start := time.Now()
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), "--upload-rate", "512KiB")
	v1 := WriteRelease(t, t.TempDir(), "app", 256<<10, 41)
	s.Publish(t, d, "stable", "1.0.0", v1)
	a := StartAgent(t, d, "A", "stable", []string{s.URL}, "--fallback-after", "2s", "--copy-install")
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)

	v2 := WriteRelease(t, t.TempDir(), "app", 2<<20, 42)
	p2 := s.Publish(t, d, "stable", "2.0.0", v2)
	AwaitInstalled(t, 45*time.Second, "2.0.0", a)
	SameTree(t, v2, filepath.Join(a.Install, "current"))
	t.Logf("A installed 2.0.0 after %s", time.Since(start).Round(time.Millisecond))

	// Corrupt A's swarm copy in place: one byte in every 64 KiB of bin/app, so that every piece
	// A serves from it is bad.
	swarmFile := filepath.Join(a.Data, "swarm", p2.InfoHash, "app", "bin", "app")
	f, err := os.OpenFile(swarmFile, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("A's swarm copy: %v", err)
	}
	fi, _ := f.Stat()
	b := make([]byte, 1)
	for off := int64(1000); off < fi.Size(); off += 64 << 10 {
		f.ReadAt(b, off)
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(swarmFile, time.Time{}, fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	aPort := tpPeerPort(t, a)

	bAgent := StartAgent(t, d, "B", "stable", []string{s.URL}, "--fallback-after", "2s")
	cAgent := StartAgent(t, d, "C", "stable", []string{s.URL}, "--fallback-after", "2s")
	t0 := time.Now()
	AwaitInstalled(t, 60*time.Second, "2.0.0", bAgent, cAgent)
	t.Logf("B and C installed 2.0.0 in %s", time.Since(t0).Round(time.Millisecond))
	for _, x := range []*Agent{bAgent, cAgent} {
		SameTree(t, v2, filepath.Join(x.Install, "current"))
		tpOnlyInstalled(t, x.Install, "2.0.0")
	}
	// A's installed copy is a separate file: the corrupt swarm copy did not touch it.
	SameTree(t, v2, filepath.Join(a.Install, "current"))
	if a.Previous() != "1.0.0" {
		t.Fatalf("A: previous is %q, want 1.0.0", a.Previous())
	}
	SameTree(t, v1, filepath.Join(a.Install, "previous"))

	failed, banned := 0, 0
	for _, x := range []*Agent{bAgent, cAgent} {
		bad := tpLines(x.Proc, `"msg":"piece failed verification"`)
		// The library bans a peer that alone supplied a bad piece; blame bans one whose block
		// differs from a piece that verified later. On loopback only A sends corrupt data.
		bans := append(tpLines(x.Proc, "banning peer", aPort), tpLines(x.Proc, "banned a peer that sent corrupt data")...)
		var badPieces, fromPeers, fromOrigin any
		if recs := x.JSONLines("installed"); len(recs) > 0 {
			badPieces, fromPeers, fromOrigin = recs[0]["badPieces"], recs[0]["fromPeers"], recs[0]["fromOrigin"]
		}
		t.Logf("%s: %d pieces failed verification, %d bans of A (port %s), fell back to web seeds: %v; installed with badPieces=%v fromPeers=%v fromOrigin=%v",
			x.Name, len(bad), len(bans), aPort, len(x.JSONLines("no progress from peers, using web seeds")) > 0, badPieces, fromPeers, fromOrigin)
		for _, l := range append(bad[:min(1, len(bad))], bans[:min(1, len(bans))]...) {
			t.Logf("%s: %s", x.Name, l)
		}
		failed += len(bad)
		banned += len(bans)
	}
	if failed == 0 {
		t.Fatal("neither B nor C logged a piece that failed verification: A's corrupt pieces were never exercised")
	}
	if banned == 0 {
		t.Fatalf("B and C rejected %d pieces but neither banned A (port %s)", failed, aPort)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// transportMirrorRun publishes a release on a seeder whose torrents list the given mirrors after
// its own web seed, copies the release to goodDir (the good mirror's tree), starts two agents,
// kills the seeder once they are downloading and waits until both install. Which web seed the
// swarm library asks is its choice: while exercised says the run did not reach the mirror under
// test, it runs again, three times at most. It returns the last run's agents and release.
func transportMirrorRun(t *testing.T, goodDir string, mirrors []string, seed byte, exercised func() bool) ([]*Agent, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		agents, v := transportMirrorOnce(t, goodDir, mirrors, seed)
		if exercised() || attempt == 3 {
			return agents, v
		}
		t.Logf("run %d did not reach the mirror under test; running again", attempt)
		for _, a := range agents {
			a.Kill()
		}
	}
}

func transportMirrorOnce(t *testing.T, goodDir string, mirrors []string, seed byte) ([]*Agent, string) {
	t.Helper()
	d := Init(t)
	args := []string{"--upload-rate", "1MiB"}
	for _, m := range mirrors {
		args = append(args, "--webseed", m)
	}
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), args...)
	v := WriteRelease(t, t.TempDir(), "app", 6<<20, seed)
	s.Publish(t, d, "stable", "1.0.0", v)
	if err := os.RemoveAll(filepath.Join(goodDir, "stable")); err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(s.Data, "releases", "stable", "1.0.0"), filepath.Join(goodDir, "stable", "1.0.0"))
	var agents []*Agent
	for _, name := range []string{"agent1", "agent2"} {
		agents = append(agents, StartAgent(t, d, name, "stable", []string{s.URL}, "--fallback-after", "2s"))
	}
	awaitDownloading(t, s, d, "1.0.0", 2)
	s.Kill()
	t.Logf("seeder killed while the agents were downloading")
	t0 := time.Now()
	AwaitInstalled(t, 60*time.Second, "1.0.0", agents...)
	t.Logf("both agents installed 1.0.0 %s after the seeder died", time.Since(t0).Round(time.Millisecond))
	for _, a := range agents {
		SameTree(t, v, filepath.Join(a.Install, "current"))
		tpOnlyInstalled(t, a.Install, "1.0.0")
	}
	return agents, v
}

// TestTransportBadMirror: two mirrors, the first flipping every byte it serves. The seeder dies
// mid-transfer; the agents fall back to the web seeds, reject the bad mirror's pieces and finish
// from the good one.
func TestTransportBadMirror(t *testing.T) {
	t.Parallel()
	start := time.Now()
	goodDir := t.TempDir()
	badLog := &mirrorLog{}
	badFiles := http.FileServer(http.Dir(goodDir))
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badLog.saw(r)
		badFiles.ServeHTTP(flippingWriter{w, &badLog.bytes}, r)
	}))
	t.Cleanup(bad.Close)
	// Which mirror the swarm library asks is its choice: the good one holds its answers until
	// the bad one has served something, so both are exercised.
	good, goodLog := goodMirror(t, goodDir, func() bool { return badLog.bytes.Load() > 0 })

	agents, _ := transportMirrorRun(t, goodDir, []string{bad.URL, good.URL}, 51, func() bool { return badLog.bytes.Load() > 0 })
	t.Logf("bad mirror: %d requests, %d bytes; good mirror: %d requests, %d bytes",
		badLog.requests.Load(), badLog.bytes.Load(), goodLog.requests.Load(), goodLog.bytes.Load())
	failed := 0
	for _, a := range agents {
		bad := tpLines(a.Proc, `"msg":"piece failed verification"`)
		failed += len(bad)
		t.Logf("%s: %d pieces failed verification", a.Name, len(bad))
		if len(bad) > 0 {
			t.Logf("%s: %s", a.Name, bad[0])
		}
	}
	if badLog.bytes.Load() == 0 {
		t.Fatal("the bad mirror served nothing: the test did not exercise it")
	}
	if failed == 0 {
		t.Fatalf("the bad mirror served %d flipped bytes but no agent logged a piece that failed verification", badLog.bytes.Load())
	}
	if goodLog.bytes.Load() == 0 {
		t.Fatal("the good mirror served nothing")
	}
	if n := badLog.tokens.Load() + goodLog.tokens.Load(); n > 0 {
		t.Fatalf("agents sent an Authorization header to a mirror %d times", n)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// endlessMirror answers every request with zeros forever: status206 answers a range request
// with 206 and the requested Content-Range but no end; otherwise 200, ignoring Range.
type endlessMirror struct {
	mirrorLog
	status206           bool
	active, ended, errs atomic.Int64
}

func (m *endlessMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.saw(r)
	m.active.Add(1)
	defer m.active.Add(-1)
	defer m.ended.Add(1)
	if rg := r.Header.Get("Range"); m.status206 && strings.HasPrefix(rg, "bytes=") {
		w.Header().Set("Content-Range", strings.Replace(rg, "=", " ", 1)+"/*")
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	zeros := make([]byte, 32<<10)
	for {
		n, err := w.Write(zeros)
		m.bytes.Add(int64(n))
		if err != nil {
			m.errs.Add(1)
			return
		}
		if r.Context().Err() != nil {
			m.errs.Add(1)
			return
		}
	}
}

// TestTransportEndlessMirror: two mirrors send endless bodies (one 206 with no end, one 200
// ignoring Range), a third is good. The seeder dies mid-transfer; the agents must neither hang
// nor grow without bound, close the endless connections, and install the release exactly.
func TestTransportEndlessMirror(t *testing.T) {
	t.Parallel()
	start := time.Now()
	goodDir := t.TempDir()
	e206 := &endlessMirror{status206: true}
	e200 := &endlessMirror{}
	s206 := httptest.NewServer(e206)
	s200 := httptest.NewServer(e200)
	// Close the listeners when done but do not wait for handlers: a handler still writing would
	// be a finding reported below, not a reason to hang the test.
	t.Cleanup(func() { s206.CloseClientConnections(); s200.CloseClientConnections() })
	// Which web seed the swarm library asks is its choice: the good mirror holds its answers
	// until an endless one has been asked, so the endless ones are exercised.
	good, goodLog := goodMirror(t, goodDir, func() bool { return e206.requests.Load()+e200.requests.Load() > 0 })

	agents, _ := transportMirrorRun(t, goodDir, []string{s206.URL, s200.URL, good.URL}, 61, func() bool { return e206.requests.Load()+e200.requests.Load() > 0 })
	for _, a := range agents {
		rss := tpPeakRSS(a.Proc)
		t.Logf("%s: peak RSS %d MiB, %d pieces failed verification", a.Name, rss>>20, len(tpLines(a.Proc, `"msg":"piece failed verification"`)))
		if rss > 256<<20 {
			t.Errorf("%s: peak RSS %d MiB after endless mirrors, want under 256 MiB", a.Name, rss>>20)
		}
	}
	for name, m := range map[string]*endlessMirror{"206-endless": e206, "200-endless": e200} {
		t.Logf("%s mirror: %d requests, %d bytes written, %d handlers ended (%d by write error or close), %d still writing",
			name, m.requests.Load(), m.bytes.Load(), m.ended.Load(), m.errs.Load(), m.active.Load())
		if m.tokens.Load() > 0 {
			t.Errorf("%s mirror received the agent token %d times", name, m.tokens.Load())
		}
	}
	if e206.requests.Load()+e200.requests.Load() == 0 {
		t.Fatal("no agent asked an endless mirror: the test did not exercise them")
	}
	if goodLog.bytes.Load() == 0 {
		t.Fatal("the good mirror served nothing")
	}
	// With the agents still running (and done), every endless response must have been cut off by
	// the agent: the handler's write fails once the agent closes the connection.
	deadline := time.Now().Add(15 * time.Second)
	for e206.active.Load()+e200.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := e206.active.Load() + e200.active.Load(); n > 0 {
		t.Fatalf("%d endless responses are still being read by agents that finished 15s ago", n)
	}
	if e206.errs.Load()+e200.errs.Load() == 0 {
		t.Fatal("no endless response ended with the agent closing the connection")
	}
	for _, a := range agents {
		if a.Exited() {
			t.Fatalf("%s exited: %s", a.Name, a.Output())
		}
	}
	// The bytes an endless mirror manages to push are bounded by what the agent reads plus
	// socket buffers, not by the mirror.
	if n := e206.bytes.Load() + e200.bytes.Load(); n > 512<<20 {
		t.Errorf("endless mirrors wrote %d MiB before the agents hung up", n>>20)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// takeover is an attacker's HTTP server in front of the seeder.
type takeover struct {
	mode       atomic.Value // string
	real, evil atomic.Value // base URLs
	evilToken  string
	hits       sync.Map // kind → *atomic.Int64
	forged     sync.Map // metadata path → forged bytes (unsigned-chain)
	client     *http.Client
}

func (p *takeover) hit(kind string) {
	v, _ := p.hits.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (p *takeover) count(kind string) int64 {
	if v, ok := p.hits.Load(kind); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (p *takeover) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode, _ := p.mode.Load().(string)
	base, _ := p.real.Load().(string)
	path := r.URL.Path
	isTargetsMeta := strings.HasPrefix(path, api.PathTUF) && !strings.HasPrefix(path, api.PathTUF+"targets/") && strings.HasSuffix(path, "targets.json")
	var transform func([]byte) []byte
	auth := ""
	switch {
	case mode == "evil-meta" && strings.HasPrefix(path, api.PathTUF):
		// Another deployment's signed metadata (enrolment and reports still reach the real
		// seeder, so the agent gets as far as reading metadata).
		base, auth = p.evil.Load().(string), "Bearer "+p.evilToken
		p.hit("evil")
	case mode == "tamper-targets" && isTargetsMeta:
		transform = func(b []byte) []byte { p.hit(mode); return tamperTargets(b, false) }
	case mode == "tamper-same-length" && isTargetsMeta:
		// Rename the signed 2.0.0 to 6.6.6 in place: same length, different bytes.
		transform = func(b []byte) []byte {
			p.hit(mode)
			return bytes.ReplaceAll(b, []byte("2.0.0"), []byte("6.6.6"))
		}
	case mode == "unsigned-chain" && strings.HasPrefix(path, api.PathTUF) && !strings.HasPrefix(path, api.PathTUF+"targets/") && !strings.HasSuffix(path, "root.json"):
		if b, ok := p.forgedChain(r, path); ok {
			p.hit(mode)
			w.Write(b)
			return
		}
	case mode == "swap-pieces" && strings.HasPrefix(path, api.PathTUF+"targets/") && strings.Contains(path, "pieces"):
		transform = func(b []byte) []byte { p.hit(mode); return flipAll(b) }
	case mode == "bad-webseed" && path == api.PathAnnounce:
		// The attacker's tracker knows no peers: the agent must use the web seed.
		p.hit("announce")
		w.Write([]byte("d8:intervali60e5:peers0:e"))
		return
	case mode == "bad-webseed" && (strings.HasPrefix(path, api.PathWebSeed) || strings.HasPrefix(path, api.PathShare)):
		// Every byte of the release the "seeder" serves over HTTP, web seed and shares, is flipped.
		transform = func(b []byte) []byte { p.hit(mode); return flipAll(b) }
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if transform != nil && resp.StatusCode/100 == 2 {
		body = transform(body)
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

func flipAll(b []byte) []byte {
	c := make([]byte, len(b))
	for i := range b {
		c[i] = ^b[i]
	}
	return c
}

// tamperTargets adds to signed targets metadata a release 6.6.6 (a copy of a listed release
// under a new version), keeping the signatures or dropping them all.
func tamperTargets(b []byte, strip bool) []byte {
	var doc map[string]any
	if json.Unmarshal(b, &doc) != nil {
		return b
	}
	signed, _ := doc["signed"].(map[string]any)
	targets, _ := signed["targets"].(map[string]any)
	for name, v := range targets {
		if !strings.HasSuffix(name, "/bundle") {
			continue
		}
		raw, _ := json.Marshal(v)
		var forged map[string]any
		json.Unmarshal(raw, &forged)
		if custom, ok := forged["custom"].(map[string]any); ok {
			custom["version"] = "6.6.6"
		}
		targets["releases/stable/6.6.6/bundle"] = forged
		break
	}
	if strip {
		doc["signatures"] = []any{}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return b
	}
	return out
}

// TestTransportSeederTakeover: an attacker owns the HTTP endpoint the agent knows as its seeder.
// Serving another deployment's metadata, tampered or unsigned targets metadata, a swapped piece
// hash list, or flipped web-seed and share bytes (with a tracker that names no peers) each makes the agent
// refuse; it keeps its installed release and never installs what the attacker invented. Through
// an honest pass-through the same agent then installs the real release.
func TestTransportSeederTakeover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	d := Init(t)
	p := &takeover{client: &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	p.mode.Store("pass")
	proxy := httptest.NewServer(p)
	t.Cleanup(proxy.Close)
	// The seeder's public URL is the attacker's endpoint, so its web seed in torrents is too.
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), "--public-url", proxy.URL)
	p.real.Store(s.URL)

	evilD := Init(t)
	evil := StartSeeder(t, evilD, filepath.Join(t.TempDir(), "evil"))
	p.evil.Store(evil.URL)
	tok, err := os.ReadFile(filepath.Join(evilD.Dir, "admin.token")) // admitted wherever an agent is
	if err != nil {
		t.Fatal(err)
	}
	p.evilToken = strings.TrimSpace(string(tok))
	evilRel := WriteRelease(t, t.TempDir(), "app", 512<<10, 66)
	evil.Publish(t, evilD, "stable", "6.6.6", evilRel)

	v1 := WriteRelease(t, t.TempDir(), "app", 1<<20, 71)
	s.Publish(t, d, "stable", "1.0.0", v1)
	dir := t.TempDir()
	data, install := filepath.Join(dir, "data"), filepath.Join(dir, "install")
	once := func(seeder string, extra ...string) Result {
		args := append([]string{"--log-level", "error", "agent"}, AgentArgs(d, data, install, "stable", seeder)...)
		return Run(t, append(append(args, "--once"), extra...)...)
	}
	current := func() string { return linkVersion(filepath.Join(install, "current")) }
	if r := once(s.URL); r.Err != nil || current() != "1.0.0" {
		t.Fatalf("agent --once straight to the seeder: %v, current %q\n%s", r.Err, current(), r.Stderr)
	}
	SameTree(t, v1, filepath.Join(install, "current"))

	refused := func(what, mode string, wants ...string) {
		t.Helper()
		p.mode.Store(mode)
		t0 := time.Now()
		r := once(proxy.URL, "--fallback-after", "1s", "--stall-timeout", "6s")
		msg := strings.TrimSpace(r.Stderr)
		if r.Err == nil {
			t.Fatalf("%s: agent --once exited 0 (current %q)\n%s", what, current(), r.Stderr)
		}
		t.Logf("%s refused in %s: %s", what, time.Since(t0).Round(time.Millisecond), msg)
		for _, w := range wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: stderr %q does not mention %q", what, msg, w)
			}
		}
		if current() != "1.0.0" {
			t.Fatalf("%s: I/current points at %q after the refusal, want 1.0.0", what, current())
		}
		SameTree(t, v1, filepath.Join(install, "current"))
		tpOnlyInstalled(t, install, "1.0.0")
	}

	refused("another deployment's metadata", "evil-meta", "not signed by the trusted root")
	if p.count("evil") == 0 {
		t.Fatal("the proxy never served the attacker's metadata")
	}

	v2 := WriteRelease(t, t.TempDir(), "app", 1<<20, 72)
	s.Publish(t, d, "stable", "2.0.0", v2)
	refused("unsigned timestamp, snapshot and targets listing a forged 6.6.6", "unsigned-chain", "timestamp", "bad signature")
	refused("signed targets metadata with a forged 6.6.6 added", "tamper-targets", "targets")
	refused("signed targets metadata with 2.0.0 renamed 6.6.6 (same length)", "tamper-same-length", "targets", "hash")
	for _, m := range []string{"unsigned-chain", "tamper-targets", "tamper-same-length"} {
		if p.count(m) == 0 {
			t.Fatalf("mode %s: the proxy never served tampered targets metadata", m)
		}
	}
	refused("a swapped piece hash list", "swap-pieces", "pieces")
	if p.count("swap-pieces") == 0 {
		t.Fatal("the proxy never swapped the piece hash list")
	}
	refused("flipped web-seed and share bytes and an empty tracker", "bad-webseed", "SHA-256")
	if p.count("bad-webseed") == 0 {
		t.Fatal("the agent never fetched from the attacker's web seed")
	}

	// The attacker's 6.6.6 was never trusted (no rollback refusal now), and the same agent
	// installs the real 2.0.0 through the now honest endpoint.
	p.mode.Store("pass")
	if r := once(proxy.URL); r.Err != nil || current() != "2.0.0" {
		t.Fatalf("agent --once through an honest proxy: %v, current %q\n%s", r.Err, current(), r.Stderr)
	}
	SameTree(t, v2, filepath.Join(install, "current"))
	tpOnlyInstalled(t, install, "1.0.0", "2.0.0")
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// forgedChain serves, for mode unsigned-chain, a consistent but unsigned metadata chain: a
// timestamp naming a new snapshot naming new targets that list a forged 6.6.6, every hash and
// length right, every signature gone. It reports false for paths it does not forge.
func (p *takeover) forgedChain(r *http.Request, path string) ([]byte, bool) {
	name := strings.TrimPrefix(path, api.PathTUF)
	if name != "timestamp.json" {
		b, ok := p.forged.Load(name)
		if !ok {
			return nil, false
		}
		return b.([]byte), true
	}
	get := func(name string) map[string]any {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, p.real.Load().(string)+api.PathTUF+name, nil)
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := p.client.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var doc map[string]any
		if json.NewDecoder(resp.Body).Decode(&doc) != nil {
			return nil
		}
		return doc
	}
	version := func(doc map[string]any, file string) int64 {
		meta, _ := doc["signed"].(map[string]any)["meta"].(map[string]any)
		f, _ := meta[file].(map[string]any)
		v, _ := f["version"].(float64)
		return int64(v)
	}
	bump := func(doc map[string]any) int64 {
		signed := doc["signed"].(map[string]any)
		v := int64(signed["version"].(float64)) + 1
		signed["version"] = v
		doc["signatures"] = []any{}
		return v
	}
	seal := func(doc map[string]any) ([]byte, map[string]any) {
		b, _ := json.Marshal(doc)
		h := sha256.Sum256(b)
		return b, map[string]any{"version": doc["signed"].(map[string]any)["version"], "length": len(b), "hashes": map[string]any{"sha256": hex.EncodeToString(h[:])}}
	}
	ts := get("timestamp.json")
	if ts == nil {
		return nil, false
	}
	sv := version(ts, "snapshot.json")
	snap := get(fmt.Sprintf("%d.snapshot.json", sv))
	if snap == nil {
		return nil, false
	}
	tv := version(snap, "targets.json")
	tb, _ := json.Marshal(get(fmt.Sprintf("%d.targets.json", tv)))
	var targets map[string]any
	if json.Unmarshal(tamperTargets(tb, true), &targets) != nil {
		return nil, false
	}
	tv = bump(targets)
	tb, tmeta := seal(targets)
	p.forged.Store(fmt.Sprintf("%d.targets.json", tv), tb)
	snap["signed"].(map[string]any)["meta"] = map[string]any{"targets.json": tmeta}
	sv = bump(snap)
	sb, smeta := seal(snap)
	p.forged.Store(fmt.Sprintf("%d.snapshot.json", sv), sb)
	ts["signed"].(map[string]any)["meta"] = map[string]any{"snapshot.json": smeta}
	bump(ts)
	b, _ := json.Marshal(ts)
	return b, true
}
