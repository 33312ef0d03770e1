package seeder

// Test harness shared by the internal tests (package seeder) and the external ones (package
// seeder_test, which may import adminclient). Identifiers are exported for the latter; they are
// compiled into the test binary only.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// NewDeployment creates a fresh deployment directory (keys, root.json, tokens).
func NewDeployment(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "deploy")
	if err := deploy.Init(dir, time.Now()); err != nil {
		t.Fatalf("deploy.Init: %v", err)
	}
	return dir
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ReadTok reads a token file of the deployment.
func ReadTok(t testing.TB, keys, file string) string {
	t.Helper()
	tok, err := deploy.ReadToken(filepath.Join(keys, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// Harness is a seeder running in this process on real sockets and a real state file.
type Harness struct {
	T          testing.TB
	Keys, Data string
	URL        string
	Admin      string
	// Fleet is the enrolment token; Agent is the credential of agent "agent-1", enrolled
	// with it when the harness starts.
	Fleet, Agent string
	S            *Seeder

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// StartHarness starts a seeder on DataDir data (start + serve, exactly what Run does) and waits
// until /healthz answers. It is stopped at the end of the test if not before.
func StartHarness(t testing.TB, keys, data string) *Harness {
	t.Helper()
	return StartHarnessWith(t, keys, data, nil)
}

// StartHarnessWith is StartHarness with the config changed by edit (if not nil) first.
func StartHarnessWith(t testing.TB, keys, data string, edit func(*Config)) *Harness {
	t.Helper()
	cfg := Config{DataDir: data, Listen: FreeAddr(t), KeysDir: keys}
	if edit != nil {
		edit(&cfg)
	}
	s, ln, err := start(cfg)
	if err != nil {
		t.Fatalf("start seeder: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Harness{
		T: t, Keys: keys, Data: data, URL: "http://" + cfg.Listen, S: s,
		Admin: ReadTok(t, keys, deploy.AdminTokenFile), Fleet: ReadTok(t, keys, deploy.AgentTokenFile),
		cancel: cancel, done: make(chan error, 1),
	}
	go func() { h.done <- s.serve(ctx, ln) }()
	t.Cleanup(h.Stop)
	WaitHealthy(t, h.URL, h.done)
	h.Agent = h.Enroll(t, "agent-1")
	return h
}

// Enroll enrols agent id with the fleet token and returns its credential.
func (h *Harness) Enroll(t testing.TB, id string) string {
	t.Helper()
	body, _ := json.Marshal(api.Enroll{ID: id, Hostname: "host-" + id})
	code, _, b := h.Do(t, http.MethodPost, api.PathEnroll, h.Fleet, bytes.NewReader(body), nil)
	if code != http.StatusOK {
		t.Fatalf("enrol %s: HTTP %d %s", id, code, b)
	}
	var e api.Enrolled
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e.Credential
}

// WaitHealthy polls base/healthz until it answers 200; it fails the test if done yields first.
func WaitHealthy(t testing.TB, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("seeder stopped before it was ready: %v", err)
		default:
		}
		resp, err := http.Get(base + api.PathHealth)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("seeder at %s never became healthy", base)
}

// Stop cancels the seeder's context and checks that serving ended with nil.
func (h *Harness) Stop() {
	h.once.Do(func() {
		h.cancel()
		if err := <-h.done; err != nil {
			h.T.Errorf("seeder stopped with error: %v", err)
		}
	})
}

// Do sends one request with the given token ("" for none) and returns status, headers, body.
func (h *Harness) Do(t testing.TB, method, path, token string, body io.Reader, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// TargetsJSON is what agents are served at /tuf/targets.json.
func (h *Harness) TargetsJSON(t testing.TB) []byte {
	t.Helper()
	code, _, b := h.Do(t, http.MethodGet, api.PathTUF+"targets.json", h.Agent, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET targets.json: HTTP %d %s", code, b)
	}
	return b
}

// Status is GET /api/v1/status with the admin token.
func (h *Harness) Status(t testing.TB) api.Status {
	t.Helper()
	code, _, b := h.Do(t, http.MethodGet, api.PathStatus, h.Admin, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET status: HTTP %d %s", code, b)
	}
	var st api.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// FindRelease returns the Status entry of a release, nil if absent.
func FindRelease(st api.Status, channel, version string) *api.Release {
	for i := range st.Releases {
		if st.Releases[i].Channel == channel && st.Releases[i].Version == version {
			return &st.Releases[i]
		}
	}
	return nil
}

// State is everything a seeder keeps, as seen from outside and from inside.
type State struct {
	TargetsVersion int64
	Targets        string            // served targets.json (sha256)
	Releases       []string          // Status: channel/version infohash length published_at
	Live           []string          // live releases
	Records        map[string]string // Releases bucket: key -> sha256 of the value
	Meta           map[string]string // Meta bucket: key -> sha256 of the value
	Files          map[string]string // DataDir/releases tree: path -> size mtime
	Staging        []string          // entries under DataDir/staging
}

// Snapshot captures the seeder's stored state.
func (h *Harness) Snapshot(t testing.TB) State {
	t.Helper()
	tj := h.TargetsJSON(t)
	ver, _, err := trust.ReadTargets(tj)
	if err != nil {
		t.Fatalf("served targets.json: %v", err)
	}
	st := State{TargetsVersion: ver, Targets: sum(tj), Records: map[string]string{}, Meta: map[string]string{}, Files: map[string]string{}}
	for _, r := range h.Status(t).Releases {
		st.Releases = append(st.Releases, fmt.Sprintf("%s/%s %s %d %s", r.Channel, r.Version, r.InfoHash, r.Length, r.PublishedAt.Format(time.RFC3339Nano)))
	}
	h.S.mu.Lock()
	for k := range h.S.live {
		st.Live = append(st.Live, k)
	}
	h.S.mu.Unlock()
	sort.Strings(st.Live)
	for bucket, m := range map[string]map[string]string{store.Releases: st.Records, store.Meta: st.Meta} {
		err := h.S.db.ForEach(bucket, func(k string, raw []byte) error { m[k] = sum(raw); return nil })
		if err != nil {
			t.Fatalf("read bucket %s: %v", bucket, err)
		}
	}
	root := filepath.Join(h.Data, releasesDir)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() { // empty parent directories do not count
			rel, _ := filepath.Rel(root, p)
			st.Files[rel] = fmt.Sprintf("%d %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk releases: %v", err)
	}
	st.Staging = StagingEntries(t, h.Data)
	return st
}

// StagingEntries lists DataDir/staging (nil if it does not exist).
func StagingEntries(t testing.TB, data string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, stagingDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// AssertUnchanged checks that nothing stored changed since before, that the staging area is
// empty, and that channel/version is neither on disk, in the store, live nor in Status (unless
// it was published before).
func (h *Harness) AssertUnchanged(t testing.TB, before State, channel, version string) {
	t.Helper()
	after := h.Snapshot(t)
	if after.TargetsVersion != before.TargetsVersion || after.Targets != before.Targets {
		t.Errorf("served targets.json changed: version %d -> %d", before.TargetsVersion, after.TargetsVersion)
	}
	if len(after.Staging) != 0 {
		t.Errorf("leftover under %s: %v", stagingDir, after.Staging)
	}
	diff := func(what string, a, b map[string]string) {
		for k, v := range b {
			if a[k] != v {
				t.Errorf("%s: %q added or changed", what, k)
			}
		}
		for k := range a {
			if _, ok := b[k]; !ok {
				t.Errorf("%s: %q removed", what, k)
			}
		}
	}
	diff("store bucket "+store.Releases, before.Records, after.Records)
	diff("store bucket "+store.Meta, before.Meta, after.Meta)
	diff("files under "+releasesDir, before.Files, after.Files)
	if !slices.Equal(before.Releases, after.Releases) {
		t.Errorf("Status releases changed:\nbefore %q\nafter  %q", before.Releases, after.Releases)
	}
	if !slices.Equal(before.Live, after.Live) {
		t.Errorf("live releases changed: %q -> %q", before.Live, after.Live)
	}
	key := releaseKey(channel, version)
	if !slices.Contains(before.Live, key) {
		if _, err := os.Stat(h.S.releaseDir(channel, version)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("release directory of %s exists (stat: %v)", key, err)
		}
		if FindRelease(h.Status(t), channel, version) != nil {
			t.Errorf("Status lists %s", key)
		}
	}
}

// WaitPublishIdle returns once no publish is in progress (it takes and releases the publish
// lock, which a publish holds until its staging directory is removed).
func (h *Harness) WaitPublishIdle() {
	h.S.publishMu.Lock()
	h.S.publishMu.Unlock() //nolint:staticcheck // empty critical section on purpose
}

// PiecesMetaKeys returns the Meta keys of a release's pieces file (any digest).
func (h *Harness) PiecesMetaKeys(t testing.TB, channel, version string) []string {
	t.Helper()
	var keys []string
	prefix := "targets/releases/" + channel + "/" + version + "/"
	err := h.S.db.ForEach(store.Meta, func(k string, _ []byte) error {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// WriteTree creates parent/name: a directory of files (slash paths), or a single file when files
// has the one key "".
func WriteTree(t testing.TB, parent, name string, files map[string][]byte) string {
	t.Helper()
	root := filepath.Join(parent, name)
	for p, data := range files {
		dst := root
		if p != "" {
			dst = filepath.Join(root, filepath.FromSlash(p))
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Pattern returns n deterministic, non-repeating-looking bytes.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Signed is a publish built by hand the way adminclient builds it.
type Signed struct {
	Targets  []byte // new signed targets.json
	Manifest *release.Manifest
	Parts    []Part // the release's files in manifest order
	Pieces   []byte // the pieces target's bytes
}

// Part is one file part of a publish upload.
type Part struct {
	Path string
	Data []byte
}

// Sign hashes the release at path and signs it into current (served targets.json) with the
// deployment's targets key, exactly as adminclient.Publish does, without its version check.
func Sign(t testing.TB, keys string, current []byte, channel, version, path string) *Signed {
	t.Helper()
	layout, err := release.Build(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	layout.Manifest.Channel, layout.Manifest.Version = channel, version
	_, infoHash, err := swarm.InfoBytes(layout)
	if err != nil {
		t.Fatal(err)
	}
	m := layout.Manifest
	m.InfoHash = infoHash
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	custom, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	pieces := release.EncodePieces(layout.PiecesSHA256)
	signed, err := trust.AddTargets(keys, current, []trust.Target{
		{Name: release.BundleTarget(channel, version), Length: layout.Length, SHA256: layout.SHA256, Custom: custom},
		{Name: release.PiecesTarget(channel, version), Length: int64(len(pieces)), SHA256: verify.Sum(pieces)},
	}, time.Now())
	if err != nil {
		t.Fatalf("sign targets: %v", err)
	}
	sg := &Signed{Targets: signed, Manifest: &m, Pieces: pieces}
	for _, f := range m.Files {
		src := path
		if m.Dir {
			src = filepath.Join(path, filepath.FromSlash(f.Path))
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		sg.Parts = append(sg.Parts, Part{Path: f.Path, Data: b})
	}
	return sg
}

// Body encodes a publish upload: the targets part, then the given file parts. It returns the
// content type and the body.
func Body(t testing.TB, targets []byte, parts []Part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreateFormField(api.PartTargets)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(targets)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, api.PartFile, filepath.Base(p.Path)))
		h.Set("Content-Type", "application/octet-stream")
		h.Set(HeaderPath, p.Path)
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.Data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

// PublishPath is the publish URL path with its query.
func PublishPath(channel, version string) string {
	return api.PathPublish + "?" + url.Values{"channel": {channel}, "version": {version}}.Encode()
}

// Post sends a publish upload with the admin token.
func (h *Harness) Post(t testing.TB, channel, version, contentType string, body []byte) (int, []byte) {
	t.Helper()
	code, _, b := h.Do(t, http.MethodPost, PublishPath(channel, version), h.Admin, bytes.NewReader(body),
		http.Header{"Content-Type": {contentType}})
	return code, b
}

// PublishByHand signs and uploads the release at path; it fails the test unless it is stored.
func (h *Harness) PublishByHand(t testing.TB, channel, version, path string) api.Published {
	t.Helper()
	sg := Sign(t, h.Keys, h.TargetsJSON(t), channel, version, path)
	ct, body := Body(t, sg.Targets, sg.Parts)
	code, b := h.Post(t, channel, version, ct, body)
	if code != http.StatusCreated {
		t.Fatalf("publish %s %s: HTTP %d %s", channel, version, code, b)
	}
	var res api.Published
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// ErrorBody decodes a JSON error answer, failing the test if it is not one.
func ErrorBody(t testing.TB, hdr http.Header, body []byte) string {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer Content-Type %q, want application/json", ct)
	}
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("error answer %q is not {\"error\": ...} (%v)", body, err)
	}
	return e.Error
}
