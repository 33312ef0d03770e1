package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSeries(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
		want   string
	}{
		{name: "up", want: "up"},
		{name: "x_total", labels: []string{"b", "2", "a", "1"}, want: `x_total{a="1",b="2"}`},
		{name: "x", labels: []string{"route", `GET /a "b"`}, want: `x{route="GET /a \"b\""}`},
	}
	for _, tt := range tests {
		if got := Series(tt.name, tt.labels...); got != tt.want {
			t.Errorf("Series(%q, %q) = %s, want %s", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestScrape: what Handler serves parses back, through ParseText, to what Gather sees; a
// collector that fails leaves the others served.
func TestScrape(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_requests_total", Help: "h"}, []string{"code", "route"})
	c.WithLabelValues("200", "GET /x").Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_duration_seconds", Help: "h", Buckets: []float64{1, 2}})
	h.Observe(0.5)
	h.Observe(1.5)
	reg.MustRegister(c, h, failing{})

	if _, err := Gather(reg); err == nil {
		t.Fatal("Gather hid the failing collector's error")
	}
	srv := httptest.NewServer(Handler(reg, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
	}
	s, err := ParseText(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		Series("t_requests_total", "route", "GET /x", "code", "200"): 3,
		"t_duration_seconds_count":                                   2,
		"t_duration_seconds_sum":                                     2,
		Series("t_duration_seconds_bucket", "le", "1"):               1,
		Series("t_duration_seconds_bucket", "le", "+Inf"):            2,
	} {
		if got, ok := s[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v\n%s", series, got, ok, want, body)
		}
	}
	if !s.Has("go_goroutines") || !s.Has("process_start_time_seconds") {
		t.Errorf("runtime or process figures missing:\n%s", body)
	}
}

type failing struct{}

var failingDesc = prometheus.NewDesc("t_failing", "h", nil, nil)

func (failing) Describe(ch chan<- *prometheus.Desc) { ch <- failingDesc }
func (failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(failingDesc, errors.New("state file unreadable"))
}
