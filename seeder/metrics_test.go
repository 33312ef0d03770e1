package seeder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
	"github.com/peerpatch/peerpatch/seeder"
)

// scrape GETs /metrics with token ("" for none) and returns the status, the samples (on 200)
// and the text.
func scrape(t *testing.T, h *seeder.Harness, token string) (int, metrics.Samples, string) {
	t.Helper()
	code, _, body := h.Do(t, http.MethodGet, api.PathMetrics, token, nil, nil)
	if code != http.StatusOK {
		return code, nil, string(body)
	}
	s, err := metrics.ParseText(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return code, s, string(body)
}

// TestMetricsAuth: /metrics answers the admin token and the --metrics-token-file token, and
// nobody else (not an agent, not the fleet token).
func TestMetricsAuth(t *testing.T) {
	keys := seeder.NewDeployment(t)
	tokenFile := filepath.Join(t.TempDir(), "metrics.token")
	const metricsToken = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(metricsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := seeder.StartHarnessWith(t, keys, filepath.Join(t.TempDir(), "data"), func(c *seeder.Config) { c.MetricsTokenFile = tokenFile })
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"none", "", http.StatusUnauthorized},
		{"agent credential", h.Agent, http.StatusUnauthorized},
		{"fleet token", h.Fleet, http.StatusUnauthorized},
		{"wrong token", strings.Repeat("0", 32), http.StatusUnauthorized},
		{"metrics token", metricsToken, http.StatusOK},
		{"admin token", h.Admin, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, body := scrape(t, h, tc.token); code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", code, tc.code, body)
			}
		})
	}

	t.Run("without --metrics-token-file only the admin token", func(t *testing.T) {
		h := seeder.StartHarness(t, keys, filepath.Join(t.TempDir(), "data"))
		if code, _, _ := scrape(t, h, metricsToken); code != http.StatusUnauthorized {
			t.Fatalf("metrics token without the flag: HTTP %d, want 401", code)
		}
		if code, _, _ := scrape(t, h, h.Admin); code != http.StatusOK {
			t.Fatalf("admin token: HTTP %d, want 200", code)
		}
	})
	t.Run("bad token file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "short.token")
		os.WriteFile(bad, []byte("short\n"), 0o600)
		err := seeder.Run(context.Background(), seeder.Config{DataDir: t.TempDir(), Listen: seeder.FreeAddr(t), KeysDir: keys, MetricsTokenFile: bad})
		if err == nil || !strings.Contains(err.Error(), "--metrics-token-file") {
			t.Fatalf("Run with a malformed metrics token: %v, want an error naming --metrics-token-file", err)
		}
	})
}

// TestMetrics checks that the seeder's figures follow what happens: publishes and refusals,
// shares served and refused for lack of slots, web-seed bytes, HTTP requests by route and
// code, and the fleet by the agents' enrolments and reports. The metric names pass promlint.
func TestMetrics(t *testing.T) {
	h, ac := newSeeder(t)
	ctx := context.Background()
	_, s, text := scrape(t, h, h.Admin)
	if problems, err := promlint.New(strings.NewReader(text)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	if s.Get("peerpatch_seeder_publish_requests_total", "result", "published") != 0 || s.Has("peerpatch_seeder_releases", "channel", "stable") {
		t.Fatalf("a new seeder has figures already:\n%s", text)
	}
	if !s.Has("go_goroutines") || !s.Has("process_cpu_seconds_total") {
		t.Errorf("runtime and process figures missing:\n%s", text)
	}

	data := seeder.Pattern(1<<20+5, 3) // five pieces
	path := seeder.WriteTree(t, t.TempDir(), "app", map[string][]byte{"big.bin": data})
	pub, err := ac.Publish(ctx, h.Keys, "stable", "1.0.0", path)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := h.Post(t, "stable", "2.0.0", "text/plain", []byte("not a release")); code != http.StatusBadRequest {
		t.Fatalf("publish of junk: HTTP %d %s", code, body)
	}

	share := func() int {
		req, _ := http.NewRequest(http.MethodPost, h.URL+api.PathShare+"stable/1.0.0", nil)
		req.Header.Set("Authorization", "Bearer "+h.Agent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	free := h.TakeShareSlots()
	if code := share(); code != http.StatusTooManyRequests {
		t.Fatalf("share with the slots taken: HTTP %d", code)
	}
	free()
	for range pub.Pieces {
		if code := share(); code != http.StatusOK {
			t.Fatalf("share: HTTP %d", code)
		}
	}
	if code := share(); code != http.StatusNoContent {
		t.Fatalf("share after all: HTTP %d", code)
	}
	code, _, body := h.Do(t, http.MethodGet, api.PathWebSeed+"stable/1.0.0/app/big.bin", h.Agent, nil, http.Header{"Range": {"bytes=0-999"}})
	if code != http.StatusPartialContent || len(body) != 1000 {
		t.Fatalf("web seed range: HTTP %d, %d bytes", code, len(body))
	}
	h.Do(t, http.MethodGet, "/nowhere", "", nil, nil)

	report := func(cred string, r api.Report) {
		t.Helper()
		b, _ := json.Marshal(r)
		if code, _, body := h.Do(t, http.MethodPost, api.PathReport, cred, bytes.NewReader(b), nil); code != http.StatusNoContent {
			t.Fatalf("report %s: HTTP %d %s", r.ID, code, body)
		}
	}
	report(h.Agent, api.Report{ID: "agent-1", Channel: "stable", InstalledVersion: "1.0.0", State: api.StateInstalled})
	report(h.Enroll(t, "agent-2"), api.Report{ID: "agent-2", Channel: "stable", State: api.StateDownloading, TargetVersion: "1.0.0"})
	report(h.Enroll(t, "agent-3"), api.Report{ID: "agent-3", Channel: "stable", State: api.StateFailed})
	report(h.Enroll(t, "agent-4"), api.Report{ID: "agent-4", Channel: "beta", InstalledVersion: "not a version", State: "dancing"})
	h.Enroll(t, "agent-5") // enrolled, never reported
	if _, err := ac.Revoke(ctx, "agent-3"); err != nil {
		t.Fatal(err)
	}

	_, s, text = scrape(t, h, h.Admin)
	shareRoute := "POST " + api.PathShare + "{channel}/{version}"
	for _, c := range []struct {
		series string
		want   float64
	}{
		{metrics.Series("peerpatch_seeder_publish_requests_total", "result", "published"), 1},
		{metrics.Series("peerpatch_seeder_publish_requests_total", "result", "refused"), 1},
		{metrics.Series("peerpatch_seeder_releases", "channel", "stable"), 1},
		{metrics.Series("peerpatch_seeder_release_size_bytes", "channel", "stable", "version", "1.0.0"), float64(len(data))},
		{metrics.Series("peerpatch_seeder_origin_sent_bytes_total", "channel", "stable", "version", "1.0.0", "via", "share"), float64(len(data))},
		{metrics.Series("peerpatch_seeder_origin_sent_bytes_total", "channel", "stable", "version", "1.0.0", "via", "webseed"), 1000},
		{metrics.Series("peerpatch_seeder_origin_sent_bytes_total", "channel", "stable", "version", "1.0.0", "via", "bittorrent"), 0},
		{metrics.Series("peerpatch_seeder_share_requests_total", "result", "served"), float64(pub.Pieces)},
		{metrics.Series("peerpatch_seeder_share_requests_total", "result", "busy"), 1},
		{metrics.Series("peerpatch_seeder_share_requests_total", "result", "none"), 1},
		{metrics.Series("peerpatch_seeder_http_requests_total", "route", shareRoute, "code", "200"), float64(pub.Pieces)},
		{metrics.Series("peerpatch_seeder_http_requests_total", "route", shareRoute, "code", "429"), 1},
		{metrics.Series("peerpatch_seeder_http_requests_total", "route", shareRoute, "code", "204"), 1},
		{metrics.Series("peerpatch_seeder_http_requests_total", "route", "GET /webseed/", "code", "206"), 1},
		{metrics.Series("peerpatch_seeder_http_requests_total", "route", "unmatched", "code", "404"), 1},
		{metrics.Series("peerpatch_seeder_http_request_duration_seconds_count", "route", shareRoute), float64(pub.Pieces + 2)},
		{metrics.Series("peerpatch_seeder_agents_known"), 5},
		{metrics.Series("peerpatch_seeder_agents_enrolled"), 4},
		{metrics.Series("peerpatch_seeder_agents_revoked"), 1},
		{metrics.Series("peerpatch_seeder_agents_by_state", "channel", "stable", "state", api.StateInstalled), 1},
		{metrics.Series("peerpatch_seeder_agents_by_state", "channel", "stable", "state", api.StateDownloading), 1},
		{metrics.Series("peerpatch_seeder_agents_by_state", "channel", "stable", "state", api.StateFailed), 0}, // agent-3 is revoked
		{metrics.Series("peerpatch_seeder_agents_by_state", "channel", "beta", "state", "other"), 1},
		{metrics.Series("peerpatch_seeder_agents_installed", "channel", "stable", "version", "1.0.0"), 1},
		{metrics.Series("peerpatch_seeder_agents_installed", "channel", "beta", "version", "invalid"), 1},
		{metrics.Series("peerpatch_seeder_share_slots_busy"), 0},
	} {
		if got, ok := s[c.series]; !ok || got != c.want {
			t.Errorf("%s = %v (present: %v), want %v", c.series, got, ok, c.want)
		}
	}
	if s.Get("peerpatch_seeder_metadata_version") < 1 {
		t.Errorf("metadata version %v", s.Get("peerpatch_seeder_metadata_version"))
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}
