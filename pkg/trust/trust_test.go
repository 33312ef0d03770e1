package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// deployment is an Init'ed deployment with a seeder repository and its HTTP server.
type deployment struct {
	dir   string
	store *MemStore
	repo  *Repo
	srv   *httptest.Server
	blobs sync.Map // target file URL path under /tuf/targets/ -> []byte
}

func newDeployment(t *testing.T, now time.Time) *deployment {
	t.Helper()
	d := &deployment{dir: t.TempDir(), store: NewMemStore()}
	if err := Init(d.dir, now); err != nil {
		t.Fatal(err)
	}
	online, err := LoadOnline(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.repo, err = OpenRepo(d.store, online, d.dir, now); err != nil {
		t.Fatal(err)
	}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/tuf/")
		if blob, ok := strings.CutPrefix(name, "targets/"); ok {
			if b, ok := d.blobs.Load(blob); ok {
				w.Write(b.([]byte))
				return
			}
			http.NotFound(w, r)
			return
		}
		b, err := d.store.GetMeta(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// blobPath is the consistent-snapshot URL path of a target file: "<dir>/<sha256hex>.<base>".
func blobPath(name string, sum [32]byte) string {
	return path.Join(path.Dir(name), hex.EncodeToString(sum[:])+"."+path.Base(name))
}

// target makes a Target for data and serves data at its consistent-snapshot path.
func (d *deployment) target(name, data string) Target {
	sum := sha256.Sum256([]byte(data))
	d.blobs.Store(blobPath(name, sum), []byte(data))
	return Target{Name: name, Length: int64(len(data)), SHA256: sum}
}

func (d *deployment) current(t *testing.T) []byte {
	t.Helper()
	b, err := d.store.GetMeta("targets.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publish adds targets as the admin would and publishes them on the seeder.
func (d *deployment) publish(t *testing.T, now time.Time, add ...Target) []Target {
	t.Helper()
	signed, err := AddTargets(d.dir, d.current(t), add, now)
	if err != nil {
		t.Fatal(err)
	}
	added, err := d.repo.Publish(signed, now)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func (d *deployment) client(t *testing.T, root []byte) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{
		MetadataDir: filepath.Join(t.TempDir(), "tuf"),
		Root:        root,
		MetadataURL: d.srv.URL + "/tuf/",
		TargetsURL:  d.srv.URL + "/tuf/targets/",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (d *deployment) root(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// resign rewrites signed targets metadata b with edit and signs it with keyFile ("" = unsigned).
func resign(t *testing.T, b []byte, keyFile string, edit func(*metadata.TargetsType)) []byte {
	t.Helper()
	m, err := parse[metadata.TargetsType](b)
	if err != nil {
		t.Fatal(err)
	}
	edit(&m.Signed)
	m.ClearSignatures()
	if keyFile == "" {
		out, err := m.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	s, err := loadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sign(m, s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func names(ts []Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return strings.Join(s, ",")
}

func TestInit(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := Init(dir, now); err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{
		"root.json": 0o644, "targets.json": 0o644, "keys": fs.ModeDir | 0o700,
		"keys/root-1.pem": 0o600, "keys/root-2.pem": 0o600, "keys/root-3.pem": 0o600,
		"keys/targets.pem": 0o600, "keys/snapshot.pem": 0o600, "keys/timestamp.pem": 0o600,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	root, _, err := readRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r := root.Signed.Roles[metadata.ROOT]; r.Threshold != 2 || len(r.KeyIDs) != 3 {
		t.Errorf("root role: threshold %d of %d keys, want 2 of 3", r.Threshold, len(r.KeyIDs))
	}
	if !root.Signed.ConsistentSnapshot || root.Signed.Version != 1 || !root.Signed.Expires.Equal(expires(now, RootExpiry)) {
		t.Errorf("root: consistent_snapshot %v, version %d, expires %v", root.Signed.ConsistentSnapshot, root.Signed.Version, root.Signed.Expires)
	}
	b, err := os.ReadFile(filepath.Join(dir, "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ts, err := ReadTargets(b); err != nil || v != 1 || len(ts) != 0 {
		t.Errorf("targets.json: version %d, %d targets, err %v; want version 1, none", v, len(ts), err)
	}

	keysOnly := t.TempDir()
	if err := os.Mkdir(filepath.Join(keysOnly, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir string }{{"second run", dir}, {"keys dir exists", keysOnly}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Init(tc.dir, now); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("Init = %v, want fs.ErrExist", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	a := d.target("releases/stable/1.2.0/bundle", "bundle 1.2.0")
	a.Custom = json.RawMessage(`{"channel":"stable"}`)
	b := d.target("releases/beta/1.3.0/bundle", "bundle 1.3.0")
	if added := d.publish(t, now, a, b); names(added) != "releases/beta/1.3.0/bundle,releases/stable/1.2.0/bundle" {
		t.Fatalf("Publish added %q", names(added))
	}
	if got := names(d.repo.Targets()); got != "releases/beta/1.3.0/bundle,releases/stable/1.2.0/bundle" {
		t.Fatalf("Repo.Targets = %q", got)
	}

	c := d.client(t, d.root(t))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	got := c.Targets()
	if len(got) != 2 || got[1].Name != a.Name || got[1].SHA256 != a.SHA256 || got[1].Length != a.Length || string(got[1].Custom) != `{"channel":"stable"}` {
		t.Fatalf("Client.Targets = %+v", got)
	}
	for range 2 { // the second time from the client's cache
		data, err := c.Download(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != "bundle 1.2.0" {
			t.Fatalf("Download = %q", data)
		}
	}
	if _, err := c.Download("releases/none/bundle"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Download of unknown target = %v, want ErrNotFound", err)
	}

	// A second publish reaches the same client; a reopened repository sees it too.
	d.publish(t, now, d.target("releases/stable/1.2.1/bundle", "bundle 1.2.1"))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if data, err := c.Download("releases/stable/1.2.1/bundle"); err != nil || string(data) != "bundle 1.2.1" {
		t.Fatalf("Download after second publish = %q, %v", data, err)
	}
	online, err := LoadOnline(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := OpenRepo(d.store, online, d.dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r2.Targets()); n != 3 {
		t.Fatalf("reopened repository has %d targets, want 3", n)
	}
	v, _, err := ReadTargets(d.current(t))
	if err != nil || v != 3 {
		t.Fatalf("targets.json version %d, %v; want 3", v, err)
	}
}

func TestAddTargetsRefuses(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	other := newDeployment(t, now)
	a := d.target("a/bundle", "a")
	d.publish(t, now, a)
	tests := []struct {
		name    string
		current []byte
		add     []Target
		want    error
	}{
		{"existing name", d.current(t), []Target{a}, ErrTargetExists},
		{"duplicate in add", d.current(t), []Target{d.target("b", "b"), d.target("b", "b")}, ErrTargetExists},
		{"other deployment's targets", other.current(t), []Target{d.target("c", "c")}, ErrBadSignature},
		{"invalid name", d.current(t), []Target{d.target("../c", "c")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AddTargets(d.dir, tc.current, tc.add, now)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("AddTargets = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPublishRefuses(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	other := newDeployment(t, now)
	d.publish(t, now, d.target("a/bundle", "a"))
	next, err := AddTargets(d.dir, d.current(t), []Target{d.target("b/bundle", "b")}, now)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(d.dir, "keys", "targets.pem")
	otherNext, err := AddTargets(other.dir, other.current(t), []Target{d.target("b/bundle", "b")}, now)
	if err != nil {
		t.Fatal(err)
	}
	old, err := AddTargets(d.dir, d.current(t), []Target{d.target("b/bundle", "b")}, now.Add(-TargetsExpiry-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, msg string
		signed    []byte
		want      error
	}{
		{"other deployment's targets key", "", otherNext, ErrBadSignature},
		{"unsigned", "", resign(t, next, "", func(*metadata.TargetsType) {}), ErrBadSignature},
		{"signed by snapshot key", "", resign(t, next, filepath.Join(d.dir, "keys", "snapshot.pem"), func(*metadata.TargetsType) {}), ErrBadSignature},
		{"version skipped", "expected version 3, got 4", resign(t, next, key, func(s *metadata.TargetsType) { s.Version = 4 }), ErrVersion},
		{"version replayed", "expected version 3, got 2", resign(t, next, key, func(s *metadata.TargetsType) { s.Version = 2 }), ErrVersion},
		{"target removed", `"a/bundle" removed`, resign(t, next, key, func(s *metadata.TargetsType) { delete(s.Targets, "a/bundle") }), ErrTargetChanged},
		{"target length modified", `"a/bundle" modified`, resign(t, next, key, func(s *metadata.TargetsType) { s.Targets["a/bundle"].Length++ }), ErrTargetChanged},
		{"target custom modified", `"a/bundle" modified`, resign(t, next, key, func(s *metadata.TargetsType) {
			c := json.RawMessage(`{"x":1}`)
			s.Targets["a/bundle"].Custom = &c
		}), ErrTargetChanged},
		{"expired", "expired at", old, ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.repo.Publish(tc.signed, now)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Publish = %v, want %v %q", err, tc.want, tc.msg)
			}
		})
	}
	if got := names(d.repo.Targets()); got != "a/bundle" {
		t.Fatalf("after refusals Repo.Targets = %q", got)
	}
	if _, err := d.repo.Publish(next, now); err != nil {
		t.Fatalf("Publish of the valid targets = %v", err)
	}
}

func TestPublishConcurrent(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	next, err := AddTargets(d.dir, d.current(t), []Target{d.target("a", "a")}, now)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := d.repo.Publish(next, now)
			errs <- err
		}()
	}
	ok := 0
	for range 4 {
		if err := <-errs; err == nil {
			ok++
		} else if !errors.Is(err, ErrVersion) {
			t.Errorf("Publish = %v, want nil or ErrVersion", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d Publish calls succeeded, want 1", ok)
	}
}

func TestOpenRepoRefusesWrongOnlineKeys(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	other := newDeployment(t, now)
	online, err := LoadOnline(other.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		store *MemStore
	}{{"bootstrap", NewMemStore()}, {"existing store", d.store}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenRepo(tc.store, online, d.dir, now)
			if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "snapshot.pem") && !strings.Contains(err.Error(), "timestamp.pem") {
				t.Fatalf("OpenRepo = %v, want ErrWrongKey naming the key file", err)
			}
		})
	}
	if err := os.Remove(filepath.Join(d.dir, "keys", "timestamp.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOnline(d.dir); err == nil || !strings.Contains(err.Error(), "timestamp.pem") {
		t.Fatalf("LoadOnline without timestamp.pem = %v, want error naming it", err)
	}
}

func TestClientRefusesOtherDeploymentRoot(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	other := newDeployment(t, now)
	c := d.client(t, other.root(t))
	err := c.Refresh()
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "refresh timestamp metadata") ||
		!strings.Contains(err.Error(), "not signed by the trusted root") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Refresh = %v, want one line: timestamp not signed by the trusted root", err)
	}
	if len(c.Targets()) != 0 {
		t.Fatal("targets after failed Refresh")
	}
}

func TestDownloadTampered(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct{ name, served string }{
		{"same length", "bundle 6.6.6"},
		{"longer", "bundle 1.2.0 and more"},
		{"shorter", "bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(t, now)
			a := d.target("releases/stable/1.2.0/bundle", "bundle 1.2.0")
			d.publish(t, now, a)
			d.blobs.Store(blobPath(a.Name, a.SHA256), []byte(tc.served))
			c := d.client(t, d.root(t))
			if err := c.Refresh(); err != nil {
				t.Fatal(err)
			}
			if data, err := c.Download(a.Name); !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("Download = %q, %v; want ErrHashMismatch", data, err)
			}
		})
	}
}

func TestRepoRefresh(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name          string
		after         time.Duration
		changed       bool
		snapV, stampV int64
	}{
		{"fresh", time.Hour, false, 1, 1},
		{"timestamp aging", 13 * time.Hour, true, 1, 2},
		{"snapshot aging", 4 * 24 * time.Hour, true, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(t, now)
			changed, err := d.repo.Refresh(now.Add(tc.after))
			if err != nil || changed != tc.changed {
				t.Fatalf("Refresh = %v, %v; want %v", changed, err, tc.changed)
			}
			snap, err := getMeta[metadata.SnapshotType](d.store, "snapshot.json")
			if err != nil {
				t.Fatal(err)
			}
			stamp, err := getMeta[metadata.TimestampType](d.store, "timestamp.json")
			if err != nil {
				t.Fatal(err)
			}
			if snap.Signed.Version != tc.snapV || stamp.Signed.Version != tc.stampV {
				t.Fatalf("snapshot v%d, timestamp v%d; want v%d, v%d", snap.Signed.Version, stamp.Signed.Version, tc.snapV, tc.stampV)
			}
			if want := expires(now.Add(tc.after), TimestampExpiry); tc.changed && !stamp.Signed.Expires.Equal(want) {
				t.Fatalf("timestamp expires %v, want %v", stamp.Signed.Expires, want)
			}
			if err := d.client(t, d.root(t)).Refresh(); err != nil {
				t.Fatalf("client Refresh: %v", err)
			}
		})
	}
}

func TestClientExpiredTimestamp(t *testing.T) {
	past := time.Now().Add(-30 * time.Hour) // the timestamp signed then expired 6 hours ago
	d := newDeployment(t, past)
	c := d.client(t, d.root(t))
	until := expires(past, TimestampExpiry).Format(time.RFC3339)
	err := c.Refresh()
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "refresh timestamp metadata") || !strings.Contains(err.Error(), "valid until "+until) {
		t.Fatalf("Refresh = %v, want timestamp expired, valid until %s", err, until)
	}
	if changed, err := d.repo.Refresh(time.Now()); err != nil || !changed {
		t.Fatalf("Repo.Refresh = %v, %v; want true", changed, err)
	}
	if err := c.Refresh(); err != nil {
		t.Fatalf("Refresh after re-signing = %v", err)
	}
}

func TestMemStore(t *testing.T) {
	s := NewMemStore()
	if _, err := s.GetMeta("root.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMeta = %v, want ErrNotFound", err)
	}
	in := []byte("x")
	if err := s.PutMeta(map[string][]byte{"root.json": in}); err != nil {
		t.Fatal(err)
	}
	in[0] = 'y'
	if b, err := s.GetMeta("root.json"); err != nil || !bytes.Equal(b, []byte("x")) {
		t.Fatalf("GetMeta = %q, %v", b, err)
	}
}

// TestRepoWatch: a watch channel is closed by the next change of the metadata, and only then.
func TestRepoWatch(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	v0, ch := d.repo.Watch()
	if _, err := d.repo.Refresh(now); err != nil || closed(ch) {
		t.Fatalf("a refresh that re-signed nothing closed the watch (err %v)", err)
	}
	d.publish(t, now, d.target("a/bundle", "a"))
	v1, ch1 := d.repo.Watch()
	if !closed(ch) || closed(ch1) || v1 <= v0 {
		t.Fatalf("after a publish: old watch closed %v, new watch closed %v, version %d -> %d", closed(ch), closed(ch1), v0, v1)
	}
	if changed, err := d.repo.Refresh(now.Add(13 * time.Hour)); err != nil || !changed || !closed(ch1) {
		t.Fatalf("re-signed timestamp: changed %v, err %v, watch closed %v", changed, err, closed(ch1))
	}
}
