package seeder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/seeder"
)

// TestWatch: a watch answers at once when the metadata is newer than the agent's, is held until
// a publish otherwise (or its wait runs out, or the seeder stops), and refuses bad requests.
func TestWatch(t *testing.T) {
	h, ac := newSeeder(t)
	watch := func(query, token string) (int, api.Watch, []byte) {
		t.Helper()
		code, _, b := h.Do(t, http.MethodGet, api.PathWatch+query, token, nil, nil)
		var w api.Watch
		if code == http.StatusOK {
			if err := json.Unmarshal(b, &w); err != nil {
				t.Fatalf("watch answer %q: %v", b, err)
			}
		}
		return code, w, b
	}
	code, w, b := watch("?after=0&wait=5", h.Agent)
	if code != http.StatusOK || w.MetadataVersion < 1 {
		t.Fatalf("watch after=0: HTTP %d %s, want the current version at once", code, b)
	}
	now := w.MetadataVersion

	// Nothing new: held for the wait, then the same version.
	if code, w, b := watch(fmt.Sprintf("?after=%d&wait=0.2", now), h.Agent); code != http.StatusOK || w.MetadataVersion != now {
		t.Fatalf("watch with nothing new: HTTP %d %s, want version %d", code, b, now)
	}

	// A publish during a watch ends it with the new version, and the release it announces can
	// be fetched at once: the seeder serves it before it signs it.
	type answer struct {
		code, torrent int
		w             api.Watch
	}
	got := make(chan answer, 1)
	go func() {
		code, w, _ := watch(fmt.Sprintf("?after=%d&wait=30", now), h.Agent)
		torrent, _, _ := h.Do(t, http.MethodGet, api.PathTorrent+"stable/1.0.0", h.Agent, nil, nil)
		got <- answer{code, torrent, w}
	}()
	select {
	case a := <-got:
		t.Fatalf("watch answered before anything changed: HTTP %d, version %d", a.code, a.w.MetadataVersion)
	case <-time.After(300 * time.Millisecond):
	}
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	if _, err := ac.Publish(context.Background(), h.Keys, "stable", "1.0.0", path); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.code != http.StatusOK || a.w.MetadataVersion <= now {
			t.Fatalf("watch over a publish: HTTP %d, version %d, want above %d", a.code, a.w.MetadataVersion, now)
		}
		if a.torrent != http.StatusOK {
			t.Fatalf("torrent of the release a watch announced, fetched at once: HTTP %d, want 200", a.torrent)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a publish did not end the watch")
	}

	for _, tc := range []struct{ name, query, token string }{
		{"no after", "?wait=1", h.Agent},
		{"after not a number", "?after=x", h.Agent},
		{"negative wait", "?after=1&wait=-1", h.Agent},
	} {
		if code, _, b := watch(tc.query, tc.token); code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %s, want 400", tc.name, code, b)
		}
	}
	if code, _, _ := watch("?after=0", ""); code != http.StatusUnauthorized {
		t.Errorf("watch without credentials: HTTP %d, want 401", code)
	}

	// Stopping the seeder ends a held watch (it would hold the shutdown otherwise).
	go func() {
		req, _ := http.NewRequest(http.MethodGet, h.URL+api.PathWatch+"?after=1000000", nil)
		req.Header.Set("Authorization", "Bearer "+h.Agent)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			got <- answer{code: resp.StatusCode}
		} else {
			got <- answer{}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	began := time.Now()
	h.Stop()
	if took := time.Since(began); took > 4*time.Second {
		t.Errorf("stopping with a watch held took %v", took)
	}
	<-got
}
