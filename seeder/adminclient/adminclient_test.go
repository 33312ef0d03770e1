package adminclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/seeder"
	"github.com/peerpatch/peerpatch/seeder/adminclient"
)

// startSeeder runs a seeder on a new deployment until the test ends; it returns the deployment
// directory and the seeder's URL.
func startSeeder(t *testing.T) (keys, base string) {
	t.Helper()
	keys = filepath.Join(t.TempDir(), "deploy")
	if err := deploy.Init(keys, time.Now()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- seeder.Run(ctx, seeder.Config{DataDir: filepath.Join(t.TempDir(), "data"), Listen: addr, KeysDir: keys})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("seeder: %v", err)
		}
	})
	base = "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case err := <-done:
			t.Fatalf("seeder stopped: %v", err)
		default:
		}
		if resp, err := http.Get(base + api.PathHealth); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return keys, base
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("seeder never became healthy")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is a reverse proxy in front of the seeder that remembers the requests.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func proxy(t *testing.T, base string) (string, *recorder) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.Method+" "+r.URL.Path)
		rec.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, rec
}

func writeApp(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b.bin"), make([]byte, 50_000), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPublishVersionOrder(t *testing.T) {
	keys, base := startSeeder(t)
	purl, rec := proxy(t, base)
	c, err := adminclient.New(purl, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := writeApp(t)
	if _, err := c.Publish(ctx, keys, "stable", "1.0.0", app); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "does-not-exist") // any hashing would fail on it
	tests := []struct {
		name, version string
	}{
		{name: "same version", version: "1.0.0"},
		{name: "same version with a v", version: "v1.0.0"},
		{name: "lower version", version: "0.9.9"},
		{name: "pre-release of the current version", version: "1.0.0-rc.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(rec.requests())
			_, err := c.Publish(ctx, keys, "stable", tc.version, missing)
			if !errors.Is(err, adminclient.ErrVersionOrder) {
				t.Fatalf("Publish %s: %v, want ErrVersionOrder", tc.version, err)
			}
			if !strings.Contains(err.Error(), "1.0.0") {
				t.Errorf("error %q does not name the current version", err)
			}
			for _, r := range rec.requests()[n:] {
				if strings.HasPrefix(r, http.MethodPost) {
					t.Errorf("refused publish still sent %s", r)
				}
			}
		})
	}
	t.Run("higher version is uploaded", func(t *testing.T) {
		n := len(rec.requests())
		// New content: identical bytes make the same infohash, a seeder bug of its own
		// (see seeder's TestSameContentTwoReleases).
		if err := os.WriteFile(filepath.Join(app, "a.txt"), []byte("hello again\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := c.Publish(ctx, keys, "stable", "1.0.1", app)
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != "1.0.1" {
			t.Errorf("published %+v", res)
		}
		posted := false
		for _, r := range rec.requests()[n:] {
			posted = posted || r == http.MethodPost+" "+api.PathPublish
		}
		if !posted {
			t.Error("no upload seen")
		}
	})
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Releases) != 2 {
		t.Errorf("Status lists %+v, want 1.0.0 and 1.0.1", st.Releases)
	}
}

func TestWrongAdminToken(t *testing.T) {
	keys, base := startSeeder(t)
	agentTok, err := os.ReadFile(filepath.Join(keys, deploy.AgentTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	good, err := adminclient.New(base, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	app := writeApp(t)
	tests := []struct {
		name, token string
	}{
		{name: "another deployment's token", token: "0123456789abcdef0123456789abcdef\n"},
		{name: "the agent token", token: string(agentTok)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The same deployment (keys, root) with another admin.token.
			wrong := filepath.Join(t.TempDir(), "deploy")
			if err := os.CopyFS(wrong, os.DirFS(keys)); err != nil {
				t.Fatal(err)
			}
			tokenFile := filepath.Join(wrong, deploy.AdminTokenFile)
			if err := os.Chmod(tokenFile, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tokenFile, []byte(tc.token), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := adminclient.New(base, wrong, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Status(context.Background())
			if err == nil || !strings.Contains(err.Error(), tokenFile) || !strings.Contains(err.Error(), "401") {
				t.Errorf("Status: %v, want an error naming %s and HTTP 401", err, tokenFile)
			}
			_, err = c.Publish(context.Background(), wrong, "stable", "1.0.0", app)
			if err == nil || !strings.Contains(err.Error(), tokenFile) {
				t.Errorf("Publish: %v, want an error naming %s", err, tokenFile)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tc.token)) {
				t.Errorf("error reveals the token: %v", err)
			}
			st, err := good.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Releases) != 0 {
				t.Errorf("refused publish stored %+v", st.Releases)
			}
		})
	}
}

func TestNew(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "deploy")
	if err := deploy.Init(keys, time.Now()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base, keys, want string
	}{
		{name: "valid", base: "http://127.0.0.1:1/", keys: keys},
		{name: "no scheme", base: "127.0.0.1:1", keys: keys, want: "--seeder"},
		{name: "ftp", base: "ftp://127.0.0.1:1", keys: keys, want: "--seeder"},
		{name: "no host", base: "http://", keys: keys, want: "--seeder"},
		{name: "no token file", base: "http://127.0.0.1:1", keys: t.TempDir(), want: deploy.AdminTokenFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adminclient.New(tc.base, tc.keys, "")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
