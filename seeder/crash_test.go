package seeder

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
)

// TestCrashLeftovers: what a crash leaves (a pending record and its files for a release never
// signed, a pending record of a release that was signed, a staging directory) is sorted out
// when the seeder starts again.
func TestCrashLeftovers(t *testing.T) {
	keys := NewDeployment(t)
	data := filepath.Join(t.TempDir(), "data")
	src := WriteTree(t, t.TempDir(), "app", map[string][]byte{"a.txt": []byte("one\n"), "b.bin": Pattern(40_000, 3)})

	h := StartHarness(t, keys, data)
	res := h.PublishByHand(t, "stable", "1.0.0", src)
	targetsBefore := h.TargetsJSON(t)
	h.Stop()

	// Forge the crash state with the seeder stopped.
	db, err := store.Open(filepath.Join(data, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	pieces := make([]byte, 32) // one piece
	pending := record{
		Manifest: release.Manifest{Channel: "stable", Version: "9.9.9", Name: "app", Dir: true,
			InfoHash: res.InfoHash, PieceLength: release.MinPieceLength,
			Files: []release.File{{Path: "x.bin", Length: 10}}},
		Pieces: pieces, PublishedAt: time.Now().UTC(), Pending: true,
	}
	piecesKey := piecesFile(&pending)
	// As publish does: the pieces file and the record, before the targets are committed.
	if err := db.PutRaw(store.Meta, map[string][]byte{piecesKey: pieces}); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(store.Releases, "stable/9.9.9", pending); err != nil {
		t.Fatal(err)
	}
	// A signed release whose Pending flag was never cleared.
	var signed record
	if err := db.Get(store.Releases, "stable/1.0.0", &signed); err != nil {
		t.Fatal(err)
	}
	signed.Pending = true
	if err := db.Put(store.Releases, "stable/1.0.0", signed); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	WriteTree(t, filepath.Join(data, releasesDir, "stable", "9.9.9"), "app", map[string][]byte{"x.bin": []byte("0123456789")})
	WriteTree(t, filepath.Join(data, stagingDir), "stable-1.1.0-123", map[string][]byte{"app/a.txt": []byte("partial")})

	h = StartHarness(t, keys, data)
	checks := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{name: "staging emptied", fn: func(t *testing.T) {
			if got := StagingEntries(t, data); len(got) != 0 {
				t.Errorf("staging holds %v", got)
			}
		}},
		{name: "unsigned release files removed", fn: func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(data, releasesDir, "stable", "9.9.9")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("releases/stable/9.9.9 still exists (stat: %v)", err)
			}
		}},
		{name: "unsigned release record removed", fn: func(t *testing.T) {
			if _, err := h.S.db.GetRaw(store.Releases, "stable/9.9.9"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("record stable/9.9.9: %v, want ErrNotFound", err)
			}
		}},
		{name: "unsigned release pieces file removed", fn: func(t *testing.T) {
			if keys := h.PiecesMetaKeys(t, "stable", "9.9.9"); len(keys) != 0 {
				t.Errorf("the store still holds %q", keys)
			}
			if code, _, _ := h.Do(t, http.MethodGet, api.PathTUF+piecesKey, h.Agent, nil, nil); code != http.StatusNotFound {
				t.Errorf("GET /tuf/%s: HTTP %d, want 404", piecesKey, code)
			}
		}},
		{name: "unsigned release not served", fn: func(t *testing.T) {
			if FindRelease(h.Status(t), "stable", "9.9.9") != nil {
				t.Error("Status lists stable 9.9.9")
			}
			if code, _, _ := h.Do(t, http.MethodGet, api.PathWebSeed+"stable/9.9.9/app/x.bin", h.Agent, nil, nil); code != http.StatusNotFound {
				t.Errorf("web seed of 9.9.9: HTTP %d, want 404", code)
			}
		}},
		{name: "signed pending release kept and settled", fn: func(t *testing.T) {
			var r record
			if err := h.S.db.Get(store.Releases, "stable/1.0.0", &r); err != nil {
				t.Fatal(err)
			}
			if r.Pending {
				t.Error("record of stable 1.0.0 still pending")
			}
			if rel := FindRelease(h.Status(t), "stable", "1.0.0"); rel == nil || rel.InfoHash != res.InfoHash {
				t.Errorf("Status lists %+v, want stable 1.0.0 %s", rel, res.InfoHash)
			}
			if code, _, b := h.Do(t, http.MethodGet, api.PathWebSeed+"stable/1.0.0/app/b.bin", h.Agent, nil, nil); code != http.StatusOK || len(b) != 40_000 {
				t.Errorf("web seed of 1.0.0: HTTP %d, %d bytes", code, len(b))
			}
		}},
		{name: "targets unchanged", fn: func(t *testing.T) {
			if string(h.TargetsJSON(t)) != string(targetsBefore) {
				t.Error("targets.json changed")
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.name, c.fn)
	}
}

// TestConfigValidate: each refusal names its flag.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{name: "valid", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1:1"}},
		{name: "no data", cfg: Config{KeysDir: "k", Listen: "127.0.0.1:1"}, want: "--data"},
		{name: "no keys", cfg: Config{DataDir: "d", Listen: "127.0.0.1:1"}, want: "--keys"},
		{name: "listen without port", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1"}, want: "--listen"},
		{name: "public url with query", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1:1", PublicURL: "http://x/?a=1"}, want: "--public-url"},
		{name: "webseed not http", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1:1", WebSeeds: []string{"ftp://x"}}, want: "--webseed"},
		{name: "bad peer listen", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1:1", PeerListen: "x"}, want: "--peer-listen"},
		{name: "negative rate", cfg: Config{DataDir: "d", KeysDir: "k", Listen: "127.0.0.1:1", UploadRate: -1}, want: "--upload-rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
