package test

// Attacks: the TUF threat model of DESIGN.md mounted against real processes. Each test starts a
// real seeder, publishes real releases, puts a malicious HTTP server (a reverse proxy on
// 127.0.0.1 that answers chosen paths with crafted, replayed or endless bytes) in front of it and
// runs a real `peerpatch agent --once` against the proxy. The agent must refuse with one clear
// line on stderr and a non-zero exit, leave the installed release untouched, and keep refusing
// after a restart. The metadata is crafted with go-tuf's metadata package and signed with the
// deployment's own keys (D/keys/*.pem) where the attack assumes those keys are compromised.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/store"
)

const (
	atkSize      = 256 << 10        // bytes of each release's big file
	atkTimeout   = 40 * time.Second // an agent run is killed after this
	atkMaxRefuse = 35 * time.Second // a refusal must come sooner than this (metadata fetches time out after 30s)
)

// ---- the lab: a deployment, a seeder and its releases ----

type atkLab struct {
	d     *Deployment
	s     *Seeder
	p     *atkProxy // the seeder as agents see it: --public-url points here
	dir   string
	trees map[string]string // "channel/version" → published tree
}

func newAtkLab(t *testing.T) *atkLab {
	t.Helper()
	d := Init(t)
	p := newAtkProxy(t)
	s := StartSeeder(t, d, t.TempDir(), "--public-url", p.URL)
	p.start(t, s.URL)
	return &atkLab{d: d, s: s, p: p, dir: t.TempDir(), trees: map[string]string{}}
}

// publish publishes a new small release as channel/version and returns its tree.
func (l *atkLab) publish(t *testing.T, channel, version string) string {
	t.Helper()
	tree := WriteRelease(t, filepath.Join(l.dir, channel, version), "app", atkSize, byte(len(l.trees)+1))
	l.s.Publish(t, l.d, channel, version, tree)
	l.trees[channel+"/"+version] = tree
	return tree
}

// meta GETs /tuf/<name> from the genuine seeder with the agent token or, if the seeder wants
// enrolled agents' own credentials, with the admin token.
func (l *atkLab) meta(t *testing.T, name string) []byte {
	t.Helper()
	var last string
	for _, file := range []string{"agent.token", "admin.token"} {
		tok, err := deploy.ReadToken(filepath.Join(l.d.Dir, file))
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodGet, l.s.URL+api.PathTUF+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+string(tok))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return b
		}
		last = fmt.Sprintf("HTTP %d, %v: %s", resp.StatusCode, err, b)
	}
	t.Fatalf("GET %s: %s", name, last)
	return nil
}

// atkRepo is a snapshot of the genuine metadata the seeder serves now.
type atkRepo struct {
	tsV, snapV, targetsV int64
	timestamp            []byte
	snapshot             []byte // <snapV>.snapshot.json
	targets              []byte // <targetsV>.targets.json
}

func (r atkRepo) snapName() string    { return fmt.Sprintf("%d.snapshot.json", r.snapV) }
func (r atkRepo) targetsName() string { return fmt.Sprintf("%d.targets.json", r.targetsV) }

func (l *atkLab) repo(t *testing.T) atkRepo {
	t.Helper()
	var r atkRepo
	r.timestamp = l.meta(t, "timestamp.json")
	ts := atkParse[metadata.TimestampType](t, r.timestamp)
	r.tsV, r.snapV = ts.Signed.Version, ts.Signed.Meta["snapshot.json"].Version
	r.snapshot = l.meta(t, r.snapName())
	r.targetsV = atkParse[metadata.SnapshotType](t, r.snapshot).Signed.Meta["targets.json"].Version
	r.targets = l.meta(t, r.targetsName())
	return r
}

// key loads D/keys/<file>.
func (l *atkLab) key(t *testing.T, file string) signature.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.d.Dir, "keys", file))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("keys/%s: no PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(k.(ed25519.PrivateKey), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// atkFreshKey is an attacker's ed25519 key that no root of any deployment names.
func atkFreshKey(t *testing.T) (signature.Signer, *metadata.Key) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

// ---- crafting metadata ----

func atkParse[T metadata.Roles](t *testing.T, b []byte) *metadata.Metadata[T] {
	t.Helper()
	m, err := (&metadata.Metadata[T]{}).FromBytes(b)
	if err != nil {
		t.Fatalf("parse metadata: %v", err)
	}
	return m
}

// atkSign replaces m's signatures by those of signers and serializes it.
func atkSign[T metadata.Roles](t *testing.T, m *metadata.Metadata[T], signers ...signature.Signer) []byte {
	t.Helper()
	m.ClearSignatures()
	for _, s := range signers {
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func atkMetaFile(version int64, b []byte) *metadata.MetaFiles {
	h := sha256.Sum256(b)
	return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

func atkExpires(d time.Duration) time.Time { return time.Now().UTC().Add(d).Truncate(time.Second) }

// atkSnapshot signs snapshot version v listing targets (whose version is read from it) with signer.
func atkSnapshot(t *testing.T, signer signature.Signer, v int64, targets []byte, expires time.Time) []byte {
	t.Helper()
	tv := atkParse[metadata.TargetsType](t, targets).Signed.Version
	s := metadata.Snapshot(expires)
	s.Signed.Version = v
	s.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": atkMetaFile(tv, targets)}
	return atkSign(t, s, signer)
}

// atkTimestamp signs timestamp version v listing snapshot (whose version is read from it).
func atkTimestamp(t *testing.T, signer signature.Signer, v int64, snapshot []byte, expires time.Time) []byte {
	t.Helper()
	sv := atkParse[metadata.SnapshotType](t, snapshot).Signed.Version
	ts := metadata.Timestamp(expires)
	ts.Signed.Version = v
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": atkMetaFile(sv, snapshot)}
	return atkSign(t, ts, signer)
}

// chain serves targets (already signed) on p with a snapshot and a timestamp of the given
// versions signed by the real online keys (a compromised seeder holds them), as a
// consistent-snapshot client fetches them.
func (l *atkLab) chain(t *testing.T, p *atkProxy, targets []byte, snapV, tsV int64) {
	t.Helper()
	tv := atkParse[metadata.TargetsType](t, targets).Signed.Version
	snap := atkSnapshot(t, l.key(t, "snapshot.pem"), snapV, targets, atkExpires(7*24*time.Hour))
	p.serve(fmt.Sprintf("/tuf/%d.targets.json", tv), targets)
	p.serve(fmt.Sprintf("/tuf/%d.snapshot.json", snapV), snap)
	p.serve("/tuf/timestamp.json", atkTimestamp(t, l.key(t, "timestamp.pem"), tsV, snap, atkExpires(24*time.Hour)))
}

// atkAddRelease adds to targets a release channel/version whose entries copy those of release
// from (same bundle and pieces files) with the manifest's version changed.
func atkAddRelease(t *testing.T, tg *metadata.TargetsType, from, channel, version string) {
	t.Helper()
	for _, kind := range []string{"bundle", "pieces"} {
		src := tg.Targets["releases/"+from+"/"+kind]
		if src == nil {
			t.Fatalf("targets have no releases/%s/%s", from, kind)
		}
		name := "releases/" + channel + "/" + version + "/" + kind
		cp := *src
		cp.Path = name
		if src.Custom != nil {
			var m map[string]any
			if err := json.Unmarshal(*src.Custom, &m); err != nil {
				t.Fatal(err)
			}
			m["channel"], m["version"] = channel, version
			b, _ := json.Marshal(m)
			raw := json.RawMessage(b)
			cp.Custom = &raw
		}
		tg.Targets[name] = &cp
	}
}

// ---- the malicious proxy ----

// atkProxy forwards everything to the seeder except the paths it was told to answer itself.
type atkProxy struct {
	URL      string
	srv      *httptest.Server
	upstream *httputil.ReverseProxy
	mu       sync.Mutex
	routes   map[string]http.HandlerFunc // exact path, or a prefix ending in "*"
	hits     map[string]int
}

// newAtkProxy makes the proxy's listener (so that its URL can be the seeder's --public-url);
// start starts serving.
func newAtkProxy(t *testing.T) *atkProxy {
	t.Helper()
	p := &atkProxy{routes: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.route(r.URL.Path); h != nil {
			h(w, r)
			return
		}
		p.upstream.ServeHTTP(w, r)
	}))
	p.URL = "http://" + p.srv.Listener.Addr().String()
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Fatalf("proxy listens on %s, want 127.0.0.1", p.URL)
	}
	t.Cleanup(p.srv.Close)
	return p
}

func (p *atkProxy) start(t *testing.T, upstream string) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p.upstream = httputil.NewSingleHostReverseProxy(u)
	p.srv.Start()
}

func (p *atkProxy) route(path string) http.HandlerFunc {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pat, h := range p.routes {
		if pat == path || strings.HasSuffix(pat, "*") && strings.HasPrefix(path, strings.TrimSuffix(pat, "*")) {
			p.hits[pat]++
			return h
		}
	}
	return nil
}

func (p *atkProxy) handle(pattern string, h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[pattern] = h
}

// serve answers path with b.
func (p *atkProxy) serve(path string, b []byte) {
	b = bytes.Clone(b)
	p.handle(path, func(w http.ResponseWriter, _ *http.Request) { w.Write(b) })
}

func (p *atkProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes, p.hits = map[string]http.HandlerFunc{}, map[string]int{}
}

func (p *atkProxy) hitsOf(pattern string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[pattern]
}

// atkEndless answers with an endless stream of '{' (no Content-Length), counting what it wrote,
// until the client goes away (or 1 GiB, so that a test failure cannot hang the proxy).
func atkEndless(sent *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		buf := bytes.Repeat([]byte("{"), 32<<10)
		for sent.Load() < 1<<30 && r.Context().Err() == nil {
			n, err := w.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
}

// ---- the agent ----

type atkAgent struct{ Data, Install string }

func newAtkAgent(t *testing.T) atkAgent {
	dir := t.TempDir()
	return atkAgent{Data: filepath.Join(dir, "data"), Install: filepath.Join(dir, "install")}
}

func (a atkAgent) Current() string { return linkVersion(filepath.Join(a.Install, "current")) }

// run runs `agent --once` of channel stable against seeder, trusting trust ("" = the
// deployment's root), with errors-only logs so that a refusal is the only stderr line.
func (a atkAgent) run(t *testing.T, d *Deployment, seeder, trust string) (Result, time.Duration) {
	t.Helper()
	args := append([]string{"--log-level", "error", "agent"}, AgentArgs(d, a.Data, a.Install, "stable", seeder)...)
	for i := range args {
		if args[i] == "--trust" && trust != "" {
			args[i+1] = trust
		}
	}
	args = append(args, "--once", "--stall-timeout", "5s", "--fallback-after", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), atkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("agent --once did not finish within %s (killed); stderr:\n%s", atkTimeout, errb.String())
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}, took
}

// install runs one cycle through the proxy, told to attack nothing, that must install stable
// version.
func (a atkAgent) install(t *testing.T, l *atkLab, version string) {
	t.Helper()
	l.p.reset()
	a.mustInstall(t, l, l.p.URL, version)
}

// mustInstall runs one cycle against seeder that must install l's channel stable version.
func (a atkAgent) mustInstall(t *testing.T, l *atkLab, seeder, version string) {
	t.Helper()
	r, _ := a.run(t, l.d, seeder, "")
	if r.Err != nil {
		t.Fatalf("agent --once: %v\nstderr:\n%s", r.Err, r.Stderr)
	}
	a.untouched(t, l, version)
}

// refused runs one cycle against seeder that must be refused within atkMaxRefuse with one
// stderr line containing every one of wants; it returns the line.
func (a atkAgent) refused(t *testing.T, l *atkLab, what, seeder, trust string, wants ...string) string {
	t.Helper()
	r, took := a.run(t, l.d, seeder, trust)
	msg := atkRefused(t, what, r, wants...)
	if took > atkMaxRefuse {
		t.Errorf("%s: refused after %s, want under %s", what, took.Round(time.Millisecond), atkMaxRefuse)
	}
	t.Logf("%s: refused in %s", what, took.Round(time.Millisecond))
	return msg
}

// untouched fails unless I/current points at stable version with the published bytes, I/releases
// holds only releases of channel stable that were published, and the highest trusted version in
// A/state.db is at most the newest published one.
func (a atkAgent) untouched(t *testing.T, l *atkLab, version string) {
	t.Helper()
	if got := a.Current(); got != version {
		t.Fatalf("I/current points at %q, want %q", got, version)
	}
	SameTree(t, l.trees["stable/"+version], filepath.Join(a.Install, "current"))
	ents, _ := os.ReadDir(filepath.Join(a.Install, "releases"))
	for _, e := range ents {
		if _, ok := l.trees["stable/"+e.Name()]; !ok {
			t.Fatalf("I/releases holds %q, which was never published on stable", e.Name())
		}
	}
	if tr := a.trusted(t); tr != "" && l.trees["stable/"+tr] == "" {
		t.Fatalf("A/state.db trusts stable %s, which was never published", tr)
	}
}

// nothing fails unless the agent has no I/current and no installed release.
func (a atkAgent) nothing(t *testing.T) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(a.Install, "current")); err == nil {
		t.Fatalf("I/current exists (points at %q), want none", a.Current())
	}
	if ents, _ := os.ReadDir(filepath.Join(a.Install, "releases")); len(ents) > 0 {
		t.Fatalf("I/releases holds %d entries, want none", len(ents))
	}
}

// trusted is the highest stable version in A/state.db ("" if none); the agent must not run.
func (a atkAgent) trusted(t *testing.T) string {
	t.Helper()
	db, err := store.Open(filepath.Join(a.Data, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.Get(store.State, "trusted/stable", &v); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return v
}

// trustedRootVersion is the version of the agent's trusted root.json (seeder 0).
func (a atkAgent) trustedRootVersion(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.Data, "tuf", "0", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return atkParse[metadata.RootType](t, b).Signed.Version
}

// atkRefused is assertRefused with the wanted words matched case-insensitively.
func atkRefused(t *testing.T, what string, r Result, wants ...string) string {
	t.Helper()
	msg := assertRefused(t, what, r)
	for _, w := range wants {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("%s: stderr %q does not mention %q", what, msg, w)
		}
	}
	return msg
}

// ---- the attacks ----

// 1. Arbitrary software: targets adding a 9.0.0 signed by a key that is not the targets key,
// with snapshot and timestamp signed by the real online keys (a compromised seeder).
func TestAttackArbitrarySoftware(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	p := l.p
	genuine := l.repo(t)
	attacker, _ := atkFreshKey(t)

	for i, tc := range []struct {
		name  string
		sign  func(m *metadata.Metadata[metadata.TargetsType]) []byte
		wants []string
	}{
		{"attacker key", func(m *metadata.Metadata[metadata.TargetsType]) []byte { return atkSign(t, m, attacker) },
			[]string{"targets", "bad signature"}},
		{"snapshot key", func(m *metadata.Metadata[metadata.TargetsType]) []byte {
			return atkSign(t, m, l.key(t, "snapshot.pem"))
		},
			[]string{"targets", "bad signature"}},
		{"genuine signature of other content", func(m *metadata.Metadata[metadata.TargetsType]) []byte {
			sigs := atkParse[metadata.TargetsType](t, genuine.targets).Signatures
			m.Signatures = sigs
			b, err := m.ToBytes(false)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, []string{"targets", "bad signature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := int64(i + 1)
			m := atkParse[metadata.TargetsType](t, genuine.targets)
			atkAddRelease(t, &m.Signed, "stable/1.0.0", "stable", "9.0.0")
			m.Signed.Version = genuine.targetsV + k
			m.Signed.Expires = atkExpires(365 * 24 * time.Hour)
			p.reset()
			l.chain(t, p, tc.sign(m), genuine.snapV+k, genuine.tsV+k)
			path := fmt.Sprintf("/tuf/%d.targets.json", genuine.targetsV+k)
			for _, run := range []string{"first run", "after restart"} {
				a.refused(t, l, tc.name+", "+run, p.URL, "", tc.wants...)
				a.untouched(t, l, "1.0.0")
			}
			if p.hitsOf(path) == 0 {
				t.Fatalf("the agent never fetched the forged %s", path)
			}
			if tr := a.trusted(t); tr != "1.0.0" {
				t.Fatalf("A/state.db trusts stable %q after the attack, want 1.0.0", tr)
			}
		})
	}
}

// 2. Rollback of metadata: replay the timestamp/snapshot/targets of when only 1.0.0 existed to an
// agent that trusted the newer ones.
func TestAttackRollbackMetadata(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	old := l.repo(t)
	l.publish(t, "stable", "2.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "2.0.0")

	p := l.p
	p.serve("/tuf/timestamp.json", old.timestamp)
	p.serve("/tuf/"+old.snapName(), old.snapshot)
	p.serve("/tuf/"+old.targetsName(), old.targets)
	for _, run := range []string{"replayed metadata", "replayed metadata after restart"} {
		a.refused(t, l, run, p.URL, "", "timestamp", "version")
		a.untouched(t, l, "2.0.0")
	}
	if p.hitsOf("/tuf/timestamp.json") == 0 {
		t.Fatal("the agent never fetched the replayed timestamp")
	}

	// The agent loses its TUF cache (A/tuf): go-tuf now accepts the old, validly signed
	// metadata, and the highest version trusted in A/state.db still refuses it.
	if err := os.RemoveAll(filepath.Join(a.Data, "tuf")); err != nil {
		t.Fatal(err)
	}
	a.refused(t, l, "replayed metadata, TUF cache lost", p.URL, "", "rollback", "2.0.0")
	a.untouched(t, l, "2.0.0")
}

// 3. Rollback of a release: the complete old metadata set (only 1.0.0) re-signed by the real keys
// with bumped versions, offered after 2.0.0 was trusted.
func TestAttackRollbackRelease(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	old := l.repo(t)
	l.publish(t, "stable", "2.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "2.0.0")
	cur := l.repo(t)

	m := atkParse[metadata.TargetsType](t, old.targets)
	m.Signed.Version = cur.targetsV + 1
	m.Signed.Expires = atkExpires(365 * 24 * time.Hour)
	forged := atkSign(t, m, l.key(t, "targets.pem"))
	p := l.p
	l.chain(t, p, forged, cur.snapV+1, cur.tsV+1)

	for _, run := range []string{"older release re-signed", "older release re-signed, after restart"} {
		a.refused(t, l, run, p.URL, "", "rollback", "1.0.0", "2.0.0")
		a.untouched(t, l, "2.0.0")
	}
	// Even without its TUF cache the agent remembers 2.0.0 (A/state.db).
	if err := os.RemoveAll(filepath.Join(a.Data, "tuf")); err != nil {
		t.Fatal(err)
	}
	a.refused(t, l, "older release re-signed, TUF cache lost", p.URL, "", "rollback", "2.0.0")
	a.untouched(t, l, "2.0.0")
	if tr := a.trusted(t); tr != "2.0.0" {
		t.Fatalf("A/state.db trusts stable %q, want 2.0.0", tr)
	}
}

// 4. Freeze: metadata whose validity has ended, signed by the real online keys.
func TestAttackFreeze(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	g := l.repo(t)
	p := l.p
	tsKey, snapKey := l.key(t, "timestamp.pem"), l.key(t, "snapshot.pem")
	rfc := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }

	t.Run("expired timestamp", func(t *testing.T) {
		exp := atkExpires(-time.Hour)
		p.reset()
		p.serve("/tuf/timestamp.json", atkTimestamp(t, tsKey, g.tsV+1, g.snapshot, exp))
		for _, run := range []string{"first run", "after restart"} {
			a.refused(t, l, "expired timestamp, "+run, p.URL, "", "timestamp", "expired", "valid until "+rfc(exp))
			a.untouched(t, l, "1.0.0")
		}
	})

	t.Run("expired snapshot", func(t *testing.T) {
		exp := atkExpires(-time.Hour)
		snap := atkSnapshot(t, snapKey, g.snapV+1, g.targets, exp)
		p.reset()
		p.serve(fmt.Sprintf("/tuf/%d.snapshot.json", g.snapV+1), snap)
		p.serve("/tuf/timestamp.json", atkTimestamp(t, tsKey, g.tsV+2, snap, atkExpires(24*time.Hour)))
		for _, run := range []string{"first run", "after restart"} {
			a.refused(t, l, "expired snapshot, "+run, p.URL, "", "snapshot", "expired", "valid until "+rfc(exp))
			a.untouched(t, l, "1.0.0")
		}
	})

	// The realistic freeze: the mirror keeps serving the last timestamp the agent accepted,
	// long after it expired (here: a timestamp valid for a few seconds).
	t.Run("last timestamp served forever", func(t *testing.T) {
		exp := atkExpires(8 * time.Second)
		snap := atkSnapshot(t, snapKey, g.snapV+2, g.targets, atkExpires(7*24*time.Hour))
		p.reset()
		p.serve(fmt.Sprintf("/tuf/%d.snapshot.json", g.snapV+2), snap)
		p.serve("/tuf/timestamp.json", atkTimestamp(t, tsKey, g.tsV+3, snap, exp))
		if r, _ := a.run(t, l.d, p.URL, ""); r.Err != nil {
			t.Fatalf("agent --once while the timestamp was valid: %v\n%s", r.Err, r.Stderr)
		}
		time.Sleep(time.Until(exp) + 1500*time.Millisecond)
		for _, run := range []string{"first run", "after restart"} {
			a.refused(t, l, "frozen timestamp, "+run, p.URL, "", "timestamp", "expired", "valid until "+rfc(exp))
			a.untouched(t, l, "1.0.0")
		}
	})
}

// 5. Mix and match: metadata of one repository state served under the names of another.
func TestAttackMixAndMatch(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	v1 := l.repo(t)
	l.publish(t, "stable", "2.0.0")
	v2 := l.repo(t)
	p := l.p

	// The snapshot first: once the agent holds the genuine new snapshot it does not fetch it again.
	t.Run("old snapshot under the new name", func(t *testing.T) {
		p.reset()
		p.serve("/tuf/"+v2.snapName(), v1.snapshot)
		a.refused(t, l, "snapshot v"+fmt.Sprint(v1.snapV)+" served as "+v2.snapName(), p.URL, "", "snapshot")
		a.untouched(t, l, "1.0.0")
		if p.hitsOf("/tuf/"+v2.snapName()) == 0 {
			t.Fatalf("the agent never fetched %s", v2.snapName())
		}
	})
	t.Run("old targets under the new name", func(t *testing.T) {
		p.reset()
		p.serve("/tuf/"+v2.targetsName(), v1.targets)
		a.refused(t, l, "targets v"+fmt.Sprint(v1.targetsV)+" served as "+v2.targetsName(), p.URL, "", "targets")
		a.untouched(t, l, "1.0.0")
		if p.hitsOf("/tuf/"+v2.targetsName()) == 0 {
			t.Fatalf("the agent never fetched %s", v2.targetsName())
		}
	})

	// Nothing was poisoned: straight from the seeder the agent installs 2.0.0.
	a.install(t, l, "2.0.0")

	// With the online keys, a new snapshot that lists the old targets (1.0.0 only).
	t.Run("new snapshot listing old targets", func(t *testing.T) {
		p.reset()
		l.chain(t, p, v1.targets, v2.snapV+1, v2.tsV+1)
		for _, run := range []string{"first run", "after restart"} {
			a.refused(t, l, "snapshot listing targets v"+fmt.Sprint(v1.targetsV)+", "+run, p.URL, "", "snapshot", "targets")
			a.untouched(t, l, "2.0.0")
		}
	})
}

// 6. Endless data on every metadata path, on a target file and on the .torrent.
func TestAttackEndlessData(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	l.publish(t, "stable", "2.0.0")
	g := l.repo(t)
	p := l.p

	for _, tc := range []struct {
		name, path string
		wants      []string
	}{
		{"timestamp", "/tuf/timestamp.json", []string{"timestamp"}},
		{"snapshot", "/tuf/" + g.snapName(), []string{"snapshot"}},
		{"targets", "/tuf/" + g.targetsName(), []string{"targets"}},
		{"piece hashes target", "/tuf/targets/*", []string{"pieces"}},
		{"torrent", api.PathTorrent + "stable/2.0.0", []string{"torrent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			p.reset()
			p.handle(tc.path, atkEndless(&sent))
			a.refused(t, l, "endless "+tc.name, p.URL, "", tc.wants...)
			a.untouched(t, l, "1.0.0")
			if p.hitsOf(tc.path) == 0 {
				t.Fatalf("the agent never fetched %s", tc.path)
			}
			time.Sleep(100 * time.Millisecond) // let the handler see the closed connection
			n := sent.Load()
			t.Logf("endless %s: the proxy wrote %d bytes before the agent hung up", tc.name, n)
			if n >= 64<<20 {
				t.Fatalf("the agent read on: the proxy wrote %d bytes, want < 64 MiB", n)
			}
		})
	}
	// An endless tracker answer only costs the peers: the agent installs 2.0.0 through the
	// proxy (from the web seed), nothing poisoned, and the proxy's writes stay bounded.
	t.Run("tracker announce", func(t *testing.T) {
		var sent atomic.Int64
		p.reset()
		p.handle(api.PathAnnounce, atkEndless(&sent))
		a.mustInstall(t, l, p.URL, "2.0.0")
		time.Sleep(100 * time.Millisecond)
		n := sent.Load()
		t.Logf("endless announce: %d requests, the proxy wrote %d bytes", p.hitsOf(api.PathAnnounce), n)
		if n >= 64<<20 {
			t.Fatalf("the agent read on: the proxy wrote %d bytes, want < 64 MiB", n)
		}
	})
}

// 6b. Slow retrieval (endless data, slowly): the mirror answers timestamp.json with headers
// and then a byte a second, for ever. The agent must give up rather than hang.
func TestAttackSlowRetrieval(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	p := l.p
	p.handle("/tuf/timestamp.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i < 120 && r.Context().Err() == nil; i++ {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
		}
	})
	a.refused(t, l, "timestamp trickled a byte a second", p.URL, "", "timestamp")
	a.untouched(t, l, "1.0.0")
}

// 7. Wrong software: another channel's release, and another deployment's root.
func TestAttackWrongSoftware(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "beta", "1.5.0")
	a := newAtkAgent(t)

	t.Run("only another channel published", func(t *testing.T) {
		a.refused(t, l, "stable agent, only beta 1.5.0 published", l.p.URL, "", "no release", "stable")
		a.nothing(t)
	})
	t.Run("other channel newer", func(t *testing.T) {
		l.publish(t, "stable", "1.0.0")
		a.install(t, l, "1.0.0")
		l.publish(t, "beta", "3.0.0")
		a.install(t, l, "1.0.0") // beta 3.0.0 is not for this agent
		if tr := a.trusted(t); tr != "1.0.0" {
			t.Fatalf("A/state.db trusts stable %q, want 1.0.0", tr)
		}
	})
	t.Run("beta torrent served for stable", func(t *testing.T) {
		l.publish(t, "stable", "2.0.0")
		p := l.p
		target, _ := url.Parse(l.s.URL)
		beta := httputil.NewSingleHostReverseProxy(target)
		p.handle(api.PathTorrent+"stable/2.0.0", func(w http.ResponseWriter, r *http.Request) {
			r.URL.Path, r.URL.RawPath = api.PathTorrent+"beta/3.0.0", ""
			beta.ServeHTTP(w, r)
		})
		a.refused(t, l, "beta 3.0.0 torrent as stable 2.0.0", p.URL, "", "infohash")
		a.untouched(t, l, "1.0.0")
	})
	t.Run("another deployment's root", func(t *testing.T) {
		other := Init(t)
		b := newAtkAgent(t)
		for _, run := range []string{"first run", "after restart"} {
			b.refused(t, l, "agent trusting another deployment, "+run, l.p.URL, other.Root(), "not signed by the trusted root")
			b.nothing(t)
		}
	})
}

// 8. Key compromise below threshold: root v2 signed by one of the three root keys (threshold 2)
// that hands the targets role to the attacker, with an attacker-signed 9.0.0.
func TestAttackKeyCompromiseBelowThreshold(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	g := l.repo(t)
	attacker, attackerKey := atkFreshKey(t)
	rootJSON, err := os.ReadFile(l.d.Root())
	if err != nil {
		t.Fatal(err)
	}

	// The attacker's targets: the genuine ones plus 9.0.0, signed by the attacker's key.
	m := atkParse[metadata.TargetsType](t, g.targets)
	atkAddRelease(t, &m.Signed, "stable/1.0.0", "stable", "9.0.0")
	m.Signed.Version = g.targetsV + 1
	m.Signed.Expires = atkExpires(365 * 24 * time.Hour)
	targets := atkSign(t, m, attacker)

	for _, tc := range []struct {
		name           string
		lowerThreshold bool
	}{{"new root keeps threshold 2", false}, {"new root lowers its threshold to 1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			root := atkParse[metadata.RootType](t, rootJSON)
			root.Signed.Version = 2
			root.Signed.Expires = atkExpires(30 * 24 * time.Hour)
			for _, id := range append([]string(nil), root.Signed.Roles[metadata.TARGETS].KeyIDs...) {
				if err := root.Signed.RevokeKey(id, metadata.TARGETS); err != nil {
					t.Fatal(err)
				}
			}
			if err := root.Signed.AddKey(attackerKey, metadata.TARGETS); err != nil {
				t.Fatal(err)
			}
			if tc.lowerThreshold {
				root.Signed.Roles[metadata.ROOT].Threshold = 1
			}
			p := l.p
			p.reset()
			p.serve("/tuf/2.root.json", atkSign(t, root, l.key(t, "root-1.pem")))
			l.chain(t, p, targets, g.snapV+1, g.tsV+1)

			for _, run := range []string{"first run", "after restart"} {
				a.refused(t, l, "root v2 signed by 1 of 3 root keys, "+run, p.URL, "", "root", "bad signature")
				a.untouched(t, l, "1.0.0")
				if v := a.trustedRootVersion(t); v != 1 {
					t.Fatalf("the agent's trusted root is version %d, want 1", v)
				}
			}
			if p.hitsOf("/tuf/2.root.json") == 0 {
				t.Fatal("the agent never fetched the forged 2.root.json")
			}
			fresh := newAtkAgent(t)
			fresh.refused(t, l, "fresh agent, root v2 signed by 1 of 3 root keys", p.URL, "", "root", "bad signature")
			fresh.nothing(t)
		})
	}
}
