// Package metrics is what the seeder's and the agent's Prometheus endpoints share: a registry
// of each daemon's own (never the process-wide default, so that tests and the demo can run
// several daemons in one process), the handler that serves it (at api.PathMetrics), and a reader of
// scrapes for tests and tools (Samples).
//
// Metric names follow Prometheus conventions: peerpatch_<daemon>_<what>_<unit>, counters end
// in _total, sizes are in bytes and durations in seconds. README.md lists every metric.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeTimeout bounds one scrape; a collector that reads the state file must not hang it.
const scrapeTimeout = 10 * time.Second

// NewRegistry returns a registry with the Go runtime and process collectors (go_*, process_*:
// memory, CPU seconds, open files, goroutines).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves reg in the Prometheus text format (or what the scraper negotiates). A
// collector that fails is logged and left out of the scrape; the other figures are served.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg, // counts its own errors: promhttp_metric_handler_errors_total
		Timeout:       scrapeTimeout,
	})
}

// errorLog adapts slog to promhttp.Logger.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) {
	if e.log != nil {
		e.log.Warn("metrics scrape incomplete", "err", fmt.Sprint(v...))
	}
}
