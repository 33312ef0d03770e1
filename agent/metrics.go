package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
	"github.com/peerpatch/peerpatch/pkg/swarm"
)

// The agent's Prometheus figures, served at http://--metrics-listen/metrics without
// authentication (they hold no secret: versions, states and byte counts; bind the address to
// loopback or a management network). README.md lists them. Events are counted by the
// instruments in meters where they happen; the state, the installed version and the transfer
// figures of the swarm are read when scraped, by collector.

// meters are the agent's instruments, in a registry of its own.
type meters struct {
	reg                       *prometheus.Registry
	cycles, failures          prometheus.Counter
	installs, rollbacks       prometheus.Counter
	installTime, downloadTime prometheus.Histogram
	// The state last reported and the installed version, read when scraped (so that a scrape
	// never sees two states, or no version, halfway through a change).
	state, installed atomic.Pointer[string]
}

func newMeters(a *Agent) *meters {
	m := &meters{
		reg: metrics.NewRegistry(),
		cycles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerpatch_agent_update_cycles_total",
			Help: "Update cycles run: refresh the signed metadata, choose a release, download, install.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerpatch_agent_update_failures_total",
			Help: "Update cycles that failed (metadata, download, verification, install or a hook); waiting for a release or an install window is not a failure.",
		}),
		installs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerpatch_agent_installs_total",
			Help: "Releases installed: copied, verified and switched to, hooks passed.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerpatch_agent_rollbacks_total",
			Help: "Switches back to an earlier release: a post-install hook or the health check failed, or the release was yanked with rollback.",
		}),
		installTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peerpatch_agent_install_duration_seconds",
			Help:    "Time a successful install took: checking the staged copy (or copying and verifying the files), the hooks and the switch.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14), // 0.1s to 14 min
		}),
		downloadTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "peerpatch_agent_download_duration_seconds",
			Help:    "Time a completed download took in this process, from its start (or its resumption after a restart) to the last verified piece.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1s to 68 min
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "peerpatch_agent_info",
		Help:        "Always 1; its labels are the agent's id (as in `peerpatch status`) and channel.",
		ConstLabels: prometheus.Labels{"id": a.id, "channel": a.cfg.Channel},
	})
	info.Set(1)
	m.reg.MustRegister(m.cycles, m.failures, m.installs, m.rollbacks, m.installTime, m.downloadTime,
		info, collector{a})
	return m
}

// report records the state and installed version of a report.
func (m *meters) report(r *api.Report) {
	m.state.Store(&r.State)
	m.setInstalled(r.InstalledVersion)
}

// setInstalled makes version (none for "") the one installed.
func (m *meters) setInstalled(version string) { m.installed.Store(&version) }

// cycle counts an update cycle that ended with err.
func (m *meters) cycle(err error) {
	m.cycles.Inc()
	if err != nil && !errors.Is(err, ErrNoRelease) && !errors.Is(err, ErrNotTargeted) && !errors.Is(err, ErrOutsideWindow) {
		m.failures.Inc()
	}
}

// download is a release being downloaded (or the last one downloaded) in this process.
type download struct {
	version string
	t       *swarm.Torrent
}

// retired sums the transfer figures of torrents the agent dropped (see prune), so that the
// counters never go down. Guarded by Agent.mu.
type retired struct {
	fromPeers, fromOrigin, uploaded, wasted, badPieces int64
}

func (r *retired) add(s swarm.Stats) {
	r.fromPeers += s.FromPeers
	r.fromOrigin += s.FromOrigin
	r.uploaded += s.Uploaded
	r.wasted += s.Wasted
	r.badPieces += s.BadPieces
}

// Figures read when scraped: the state and installed version, and the transfer figures of the
// swarm, since the agent started.
var (
	descState = prometheus.NewDesc("peerpatch_agent_state",
		"The agent's state, as last reported to the seeder: 1 for the current one, 0 for the others (idle, downloading, waiting_window, installing, installed, failed, rolled_back).",
		[]string{"state"}, nil)
	descInstalled = prometheus.NewDesc("peerpatch_agent_installed_version",
		"1 for the release installed (what install-dir/current points at), by channel and version; no series before the first install.",
		[]string{"channel", "version"}, nil)
	descReceived = prometheus.NewDesc("peerpatch_agent_received_bytes_total",
		"Release bytes received that were needed, by source: peers (other agents) or origin (the seeder's shares, its web seed, mirrors, and the seeder as a peer).",
		[]string{"source"}, nil)
	descUploaded = prometheus.NewDesc("peerpatch_agent_uploaded_bytes_total",
		"Release bytes sent to peers.", nil, nil)
	descWasted = prometheus.NewDesc("peerpatch_agent_wasted_bytes_total",
		"Piece bytes received that were not needed: duplicates of what another source sent first.", nil, nil)
	descBadPieces = prometheus.NewDesc("peerpatch_agent_bad_pieces_total",
		"Pieces that failed SHA-256 verification against the signed hashes: dropped, and a peer that alone sent one is banned.", nil, nil)
	descPeers = prometheus.NewDesc("peerpatch_agent_peers",
		"Peers connected, over every release the agent holds.", nil, nil)
	descHeld = prometheus.NewDesc("peerpatch_agent_releases_held",
		"Releases the agent holds and seeds (the installed one, the previous one, one being downloaded).", nil, nil)
	descDownloadVerified = prometheus.NewDesc("peerpatch_agent_download_verified_bytes",
		"Bytes of the release being downloaded (or last downloaded) that are in verified pieces.", []string{"version"}, nil)
	descDownloadSize = prometheus.NewDesc("peerpatch_agent_download_size_bytes",
		"Size of the release being downloaded (or last downloaded).", []string{"version"}, nil)
	descDownloadProgress = prometheus.NewDesc("peerpatch_agent_download_progress_ratio",
		"Share of the release being downloaded (or last downloaded) that is verified, from 0 to 1.", []string{"version"}, nil)
)

// collector reads the state, the installed version and the swarm's figures when Prometheus
// scrapes.
type collector struct{ a *Agent }

var _ prometheus.Collector = collector{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descInstalled, descReceived, descUploaded, descWasted, descBadPieces, descPeers, descHeld,
		descDownloadVerified, descDownloadSize, descDownloadProgress} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	if st := a.meters.state.Load(); st != nil {
		for _, s := range api.States {
			v := 0.0
			if s == *st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s)
		}
	}
	if v := a.meters.installed.Load(); v != nil && *v != "" {
		ch <- prometheus.MustNewConstMetric(descInstalled, prometheus.GaugeValue, 1, a.cfg.Channel, *v)
	}
	a.mu.Lock()
	sum := a.retired
	peers := 0
	for _, t := range a.torrents {
		s := t.Stats()
		sum.add(s)
		peers += s.Peers
	}
	held := len(a.torrents)
	dl := a.downloading
	a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(sum.fromPeers), "peers")
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(sum.fromOrigin), "origin")
	ch <- prometheus.MustNewConstMetric(descUploaded, prometheus.CounterValue, float64(sum.uploaded))
	ch <- prometheus.MustNewConstMetric(descWasted, prometheus.CounterValue, float64(sum.wasted))
	ch <- prometheus.MustNewConstMetric(descBadPieces, prometheus.CounterValue, float64(sum.badPieces))
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(peers))
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(held))
	if dl.t != nil {
		s := dl.t.Stats()
		ratio := 0.0
		if s.Total > 0 {
			ratio = float64(s.Completed) / float64(s.Total)
		}
		ch <- prometheus.MustNewConstMetric(descDownloadVerified, prometheus.GaugeValue, float64(s.Completed), dl.version)
		ch <- prometheus.MustNewConstMetric(descDownloadSize, prometheus.GaugeValue, float64(s.Total), dl.version)
		ch <- prometheus.MustNewConstMetric(descDownloadProgress, prometheus.GaugeValue, ratio, dl.version)
	}
}

// metricsServer serves the agent's metrics on --metrics-listen.
type metricsServer struct {
	addr string // the address bound
	srv  *http.Server
	done chan struct{}
}

// serveMetrics binds --metrics-listen and serves reg there until close.
func serveMetrics(addr string, reg *prometheus.Registry, a *Agent) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+api.PathMetrics, metrics.Handler(reg, a.log))
	ms := &metricsServer{addr: ln.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(ms.done)
		if err := ms.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("serve metrics", "listen", addr, "err", err)
		}
	}()
	a.log.Info("serving metrics", "listen", ms.addr, "path", api.PathMetrics)
	return ms, nil
}

// close stops the server, letting a scrape in progress finish for a moment.
func (ms *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ms.srv.Shutdown(ctx); err != nil {
		ms.srv.Close()
	}
	<-ms.done
}
