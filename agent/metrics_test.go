package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
)

func gather(t *testing.T, a *Agent) metrics.Samples {
	t.Helper()
	s, err := metrics.Gather(a.meters.reg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetricsCycles: every cycle counts; failures are the cycles that went wrong, not those
// that wait for a release or a window.
func TestMetricsCycles(t *testing.T) {
	a := newTestAgent(t)
	for _, err := range []error{
		nil,
		fmt.Errorf("channel %q: %w", "stable", ErrNoRelease),
		fmt.Errorf("channel: %w", ErrNotTargeted),
		fmt.Errorf("2.0.0 is downloaded: %w", ErrOutsideWindow),
		errors.New("refresh metadata: connection refused"),
		fmt.Errorf("update: %w", ErrRolledBack),
	} {
		a.meters.cycle(err)
	}
	s := gather(t, a)
	if got := s.Get("peerpatch_agent_update_cycles_total"); got != 6 {
		t.Errorf("cycles = %v, want 6", got)
	}
	if got := s.Get("peerpatch_agent_update_failures_total"); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}
}

// TestMetricsReport: the state gauge has one state at 1, the others at 0; the installed
// version gauge has the installed release only.
func TestMetricsReport(t *testing.T) {
	a := newTestAgent(t)
	s := gather(t, a)
	if s.Has("peerpatch_agent_state", "state", api.StateIdle) {
		t.Errorf("state before any report")
	}
	a.putState(keyInstalled+"stable", "1.0.0")
	a.report(context.Background(), api.Report{State: api.StateDownloading, TargetVersion: "2.0.0"})
	a.putState(keyInstalled+"stable", "2.0.0")
	a.report(context.Background(), api.Report{State: api.StateInstalled})
	s = gather(t, a)
	for _, st := range api.States {
		want := 0.0
		if st == api.StateInstalled {
			want = 1
		}
		if got, ok := s[metrics.Series("peerpatch_agent_state", "state", st)]; !ok || got != want {
			t.Errorf("state %s = %v (present %v), want %v", st, got, ok, want)
		}
	}
	if got := s.Get("peerpatch_agent_installed_version", "channel", "stable", "version", "2.0.0"); got != 1 {
		t.Errorf("installed 2.0.0 = %v, want 1", got)
	}
	if s.Has("peerpatch_agent_installed_version", "channel", "stable", "version", "1.0.0") {
		t.Errorf("1.0.0 still shown installed")
	}
	if got := s.Get("peerpatch_agent_info", "channel", "stable", "id", ""); got != 1 {
		t.Errorf("info = %v", got)
	}
}

// TestMetricsInstalls: a successful install is counted and timed; a switch back after a
// failed health check counts as a rollback, not an install.
func TestMetricsInstalls(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", map[string]string{"app": "one"})
	r2 := newDirRelease(t, a, "2.0.0", map[string]string{"app": "two"})
	mustInstall(t, a, r1)
	a.cfg.HealthCheck = "exit 1"
	if err := a.install(context.Background(), r2.m, r2.bundle, discard); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("install with a failing health check = %v", err)
	}
	s := gather(t, a)
	for series, want := range map[string]float64{
		"peerpatch_agent_installs_total":                 1,
		"peerpatch_agent_install_duration_seconds_count": 1,
		"peerpatch_agent_rollbacks_total":                1,
	} {
		if got := s[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if s.Get("peerpatch_agent_install_duration_seconds_sum") <= 0 {
		t.Errorf("install duration sum %v", s.Get("peerpatch_agent_install_duration_seconds_sum"))
	}
}

// TestMetricsTransfers: without torrents the transfer counters are 0 and there is no download
// series; figures of dropped torrents stay in the counters.
func TestMetricsTransfers(t *testing.T) {
	a := newTestAgent(t)
	s := gather(t, a)
	if s.Get("peerpatch_agent_received_bytes_total", "source", "peers") != 0 || !s.Has("peerpatch_agent_received_bytes_total", "source", "origin") {
		t.Errorf("received bytes of a new agent: %v", s)
	}
	if s.Has("peerpatch_agent_download_progress_ratio", "version", "") {
		t.Errorf("download progress without a download")
	}
	a.mu.Lock()
	a.retired.fromPeers, a.retired.fromOrigin, a.retired.uploaded, a.retired.badPieces = 300, 100, 50, 2
	a.mu.Unlock()
	s = gather(t, a)
	for series, want := range map[string]float64{
		metrics.Series("peerpatch_agent_received_bytes_total", "source", "peers"):  300,
		metrics.Series("peerpatch_agent_received_bytes_total", "source", "origin"): 100,
		"peerpatch_agent_uploaded_bytes_total":                                     50,
		"peerpatch_agent_bad_pieces_total":                                         2,
		"peerpatch_agent_releases_held":                                            0,
	} {
		if got := s[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestMetricsServer: --metrics-listen serves the registry at /metrics in the text format, with
// names promlint accepts; a busy address is an error naming the flag.
func TestMetricsServer(t *testing.T) {
	a := newTestAgent(t)
	ms, err := serveMetrics("127.0.0.1:0", a.meters.reg, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.close()
	addr := ms.addr
	resp, err := http.Get("http://" + addr + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d %s", resp.StatusCode, body)
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	s, err := metrics.ParseText(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"peerpatch_agent_update_cycles_total", "peerpatch_agent_uploaded_bytes_total", "go_goroutines"} {
		if !s.Has(name) {
			t.Errorf("%s missing", name)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := serveMetrics(ln.Addr().String(), a.meters.reg, a); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("serveMetrics on a busy port: %v, want an error naming --metrics-listen", err)
	}
}
