package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
)

// Scrape GETs url (a daemon's /metrics) with a bearer token ("" for none) and parses it. It
// returns the status; samples and text only on 200.
func Scrape(t testing.TB, url, token string) (int, metrics.Samples, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, string(body)
	}
	s, err := metrics.ParseText(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return resp.StatusCode, s, string(body)
}

// sumOf adds the values of every series of the metric name.
func sumOf(s metrics.Samples, name string) float64 {
	total := 0.0
	for series, v := range s {
		if series == name || strings.HasPrefix(series, name+"{") {
			total += v
		}
	}
	return total
}

// peerpatchLines is the scrape without comments and runtime figures: the peerpatch_ series.
func peerpatchLines(text string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "peerpatch_") && !strings.Contains(sc.Text(), "_bucket{") {
			fmt.Fprintln(&b, sc.Text())
		}
	}
	return b.String()
}

// awaitSamples scrapes url until ok accepts the samples, or fails the test after timeout.
func awaitSamples(t *testing.T, url, token string, timeout time.Duration, ok func(metrics.Samples) bool) (metrics.Samples, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, s, text := Scrape(t, url, token)
		if code == http.StatusOK && ok(s) {
			return s, text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not show the expected figures within %s (HTTP %d):\n%s", url, timeout, code, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsFollowATransfer runs a real seeder (with --metrics-token-file) and a real agent
// (with --metrics-listen), scrapes both, and checks that the counters move with a transfer:
// before the release, the origin has sent nothing and the agent has received nothing; after
// the install, each has moved at least the release's size, and the fleet and install figures
// say what happened.
func TestMetricsFollowATransfer(t *testing.T) {
	d := Init(t)
	tokenFile := filepath.Join(t.TempDir(), "metrics.token")
	const token = "5f1c2a9e0b7d4e6f8a3c1b2d4e6f8a0c"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), "--metrics-token-file", tokenFile)
	seederMetrics := s.URL + api.PathMetrics
	if code, _, body := Scrape(t, seederMetrics, ""); code != http.StatusUnauthorized {
		t.Fatalf("seeder /metrics without a token: HTTP %d %s, want 401", code, body)
	}
	agentToken, err := os.ReadFile(d.AgentToken())
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := Scrape(t, seederMetrics, strings.TrimSpace(string(agentToken))); code != http.StatusUnauthorized {
		t.Fatalf("seeder /metrics with the fleet token: HTTP %d, want 401", code)
	}

	// Before any release: an agent waiting for one, nothing sent, nothing received.
	metricsAddr := FreeAddr(t)
	agentMetrics := "http://" + metricsAddr + api.PathMetrics
	a := StartAgent(t, d, "agent", "stable", []string{s.URL}, "--metrics-listen", metricsAddr)
	before, _ := awaitSamples(t, agentMetrics, "", 20*time.Second, func(s metrics.Samples) bool {
		return s.Get("peerpatch_agent_update_cycles_total") >= 1
	})
	if got := sumOf(before, "peerpatch_agent_received_bytes_total"); got != 0 {
		t.Fatalf("agent received %v bytes before any release", got)
	}
	if got := before.Get("peerpatch_agent_update_failures_total"); got != 0 {
		t.Errorf("waiting for a first release counted %v failures", got)
	}
	_, seederBefore, _ := Scrape(t, seederMetrics, token)
	if got := sumOf(seederBefore, "peerpatch_seeder_origin_sent_bytes_total"); got != 0 {
		t.Fatalf("origin sent %v bytes before any release", got)
	}

	const size = 6 << 20
	rel := WriteRelease(t, t.TempDir(), "app", size, 11)
	pub := s.Publish(t, d, "stable", "1.0.0", rel)
	AwaitInstalled(t, time.Minute, "1.0.0", a)

	after, agentText := awaitSamples(t, agentMetrics, "", 20*time.Second, func(s metrics.Samples) bool {
		return s.Get("peerpatch_agent_state", "state", api.StateInstalled) == 1
	})
	length := float64(pub.Length)
	if got := sumOf(after, "peerpatch_agent_received_bytes_total"); got < length {
		t.Errorf("agent received %v bytes, less than the release's %v", got, length)
	}
	for series, want := range map[string]float64{
		metrics.Series("peerpatch_agent_installed_version", "channel", "stable", "version", "1.0.0"): 1,
		metrics.Series("peerpatch_agent_download_progress_ratio", "version", "1.0.0"):                1,
		metrics.Series("peerpatch_agent_download_size_bytes", "version", "1.0.0"):                    length,
		metrics.Series("peerpatch_agent_download_verified_bytes", "version", "1.0.0"):                length,
		"peerpatch_agent_installs_total":                                                             1,
		"peerpatch_agent_install_duration_seconds_count":                                             1,
		"peerpatch_agent_download_duration_seconds_count":                                            1,
		"peerpatch_agent_bad_pieces_total":                                                           0,
		"peerpatch_agent_update_failures_total":                                                      0,
	} {
		if got, ok := after[series]; !ok || got != want {
			t.Errorf("agent %s = %v (present %v), want %v", series, got, ok, want)
		}
	}

	// The agent reports installed right after the switch; the seeder's figures follow.
	seederAfter, seederText := awaitSamples(t, seederMetrics, token, 20*time.Second, func(s metrics.Samples) bool {
		return s.Get("peerpatch_seeder_agents_by_state", "channel", "stable", "state", api.StateInstalled) == 1
	})
	if got := sumOf(seederAfter, "peerpatch_seeder_origin_sent_bytes_total"); got < length {
		t.Errorf("origin sent %v bytes, less than the release's %v", got, length)
	}
	shareRoute := "POST " + api.PathShare + "{channel}/{version}"
	for series, want := range map[string]float64{
		metrics.Series("peerpatch_seeder_publish_requests_total", "result", "published"):               1,
		metrics.Series("peerpatch_seeder_releases", "channel", "stable"):                               1,
		metrics.Series("peerpatch_seeder_release_size_bytes", "channel", "stable", "version", "1.0.0"): length,
		metrics.Series("peerpatch_seeder_agents_installed", "channel", "stable", "version", "1.0.0"):   1,
		"peerpatch_seeder_agents_enrolled":                                                             1,
		"peerpatch_seeder_agents_revoked":                                                              0,
	} {
		if got, ok := seederAfter[series]; !ok || got != want {
			t.Errorf("seeder %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if got := seederAfter.Get("peerpatch_seeder_share_requests_total", "result", "served"); got < float64(pub.Pieces) {
		t.Errorf("seeder served %v shares for a release of %d pieces", got, pub.Pieces)
	}
	if got := seederAfter.Get("peerpatch_seeder_http_requests_total", "route", shareRoute, "code", "200"); got < float64(pub.Pieces) {
		t.Errorf("seeder counted %v share requests answered 200, want at least %d", got, pub.Pieces)
	}
	t.Logf("release %d bytes in %d pieces\n--- agent /metrics (peerpatch_ series) ---\n%s--- seeder /metrics (peerpatch_ series) ---\n%s",
		pub.Length, pub.Pieces, peerpatchLines(agentText), peerpatchLines(seederText))
	a.MustCleanShutdown(t)
	s.MustCleanShutdown(t)
}
