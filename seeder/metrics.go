package seeder

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
)

// The seeder's Prometheus figures, served at GET /metrics (see metricsOnly for who may read
// them; README.md lists them). Events are counted where they happen, by the instruments in
// meters; what the seeder keeps anyway (releases, bytes sent, enrolments, the agents' last
// reports) is read when scraped, by collector.

// Label values of the request counters.
const (
	publishPublished = "published" // stored, signed and seeded
	publishRefused   = "refused"   // any error: bad metadata, a signature, a version, the disk

	shareServed = "served" // a piece went out
	shareBusy   = "busy"   // every share slot was taken: 429, the agent retries
	shareNone   = "none"   // nothing left to hand out (or no such release): 204 or 404
	shareError  = "error"  // a bad request or a piece that could not be read

	routeUnmatched = "unmatched" // no route: 404 or 405 from the mux
)

// Labels with values that come from agents' reports are bounded: an enrolled agent reports what
// it likes, and must not be able to make series without end.
const (
	labelInvalid = "invalid" // a channel or version that is not one
	labelOther   = "other"   // a state Peerpatch does not know
)

// meters are the seeder's instruments, in a registry of its own.
type meters struct {
	reg       *prometheus.Registry
	publishes *prometheus.CounterVec   // result
	shares    *prometheus.CounterVec   // result
	requests  *prometheus.CounterVec   // route, code
	durations *prometheus.HistogramVec // route
}

func newMeters(s *Seeder) *meters {
	m := &meters{
		reg: metrics.NewRegistry(),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerpatch_seeder_publish_requests_total",
			Help: "Publish requests, by result: published, or refused (a bad upload or signature, a version not above the channel's, a full disk...).",
		}, []string{"result"}),
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerpatch_seeder_share_requests_total",
			Help: "Share requests (an agent asking the origin's scheduler for a piece), by result: served, busy (every share slot taken, 429), none (nothing left to hand out), error.",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerpatch_seeder_http_requests_total",
			Help: "HTTP requests, by route (the pattern that matched, or unmatched) and status code.",
		}, []string{"route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peerpatch_seeder_http_request_duration_seconds",
			Help:    "Time from an HTTP request's arrival to the end of its answer, by route (web-seed and share answers include the upload-rate pacing).",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	for _, r := range []string{publishPublished, publishRefused} {
		m.publishes.WithLabelValues(r)
	}
	for _, r := range []string{shareServed, shareBusy, shareNone, shareError} {
		m.shares.WithLabelValues(r)
	}
	m.reg.MustRegister(m.publishes, m.shares, m.requests, m.durations, collector{s})
	return m
}

// instrument counts and times every request h serves, by route: the pattern of mux that
// matched. It wraps mux itself so that requests no route matches are counted too.
func (m *meters) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		route := r.Pattern // set by mux.ServeHTTP
		if route == "" {
			route = routeUnmatched
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status())).Inc()
		m.durations.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code of an answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes flushes on (http.ResponseController also finds them through Unwrap).
func (w *statusWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the code the answer had: 200 if the handler wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// metricsOnly admits the admin token and, with --metrics-token-file, the metrics token. A
// scraper then holds no credential that can change anything (the admin token can revoke
// agents and read the fleet's host names); see README.md, "Metrics".
func (s *Seeder) metricsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if !s.admin.Equal(tok) && (s.metricsToken == "" || !s.metricsToken.Equal(tok)) {
			s.log.Warn("refused metrics request without a valid token", "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="peerpatch metrics"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid metrics token (or admin token)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Figures read at scrape time.
var (
	descReleases = prometheus.NewDesc("peerpatch_seeder_releases",
		"Releases published and seeded, by channel.", []string{"channel"}, nil)
	descReleaseSize = prometheus.NewDesc("peerpatch_seeder_release_size_bytes",
		"Size of each published release (its files together). Origin ratio: peerpatch_seeder_origin_sent_bytes_total summed over via, divided by this.",
		[]string{"channel", "version"}, nil)
	descOriginSent = prometheus.NewDesc("peerpatch_seeder_origin_sent_bytes_total",
		"Bytes of each release the origin sent since it started, by via: share (pieces its scheduler handed out), webseed (its BEP 19 web seed) or bittorrent (seeding to peers, with --max-peers).",
		[]string{"channel", "version", "via"}, nil)
	descSwarmPeers = prometheus.NewDesc("peerpatch_seeder_swarm_peers",
		"Agents the tracker saw announce each release in the last minutes (the seeder included when it seeds).",
		[]string{"channel", "version"}, nil)
	descSwarmSeeders = prometheus.NewDesc("peerpatch_seeder_swarm_seeders",
		"Of peerpatch_seeder_swarm_peers, those that hold the whole release.",
		[]string{"channel", "version"}, nil)
	descShareSlots = prometheus.NewDesc("peerpatch_seeder_share_slots_busy",
		"Shares being sent right now (at most 64; then agents get 429 and retry).", nil, nil)
	descMetadataVersion = prometheus.NewDesc("peerpatch_seeder_metadata_version",
		"Version of the TUF snapshot metadata the seeder serves.", nil, nil)
	descAgentsKnown = prometheus.NewDesc("peerpatch_seeder_agents_known",
		"Agents the seeder has a record of: enrolled (revoked or not) or reporting.", nil, nil)
	descAgentsEnrolled = prometheus.NewDesc("peerpatch_seeder_agents_enrolled",
		"Agents holding a credential that is not revoked.", nil, nil)
	descAgentsRevoked = prometheus.NewDesc("peerpatch_seeder_agents_revoked",
		"Agents whose credential was revoked.", nil, nil)
	descAgentsByState = prometheus.NewDesc("peerpatch_seeder_agents_by_state",
		"Agents by channel and the state of their last report (revoked agents left out).",
		[]string{"channel", "state"}, nil)
	descAgentsInstalled = prometheus.NewDesc("peerpatch_seeder_agents_installed",
		"Agents by channel and the version their last report says is installed (revoked agents and agents with none left out).",
		[]string{"channel", "version"}, nil)
)

// collector reads the figures the seeder keeps anyway when Prometheus scrapes.
type collector struct{ s *Seeder }

var _ prometheus.Collector = collector{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReleases, descReleaseSize, descOriginSent, descSwarmPeers, descSwarmSeeders,
		descShareSlots, descMetadataVersion, descAgentsKnown, descAgentsEnrolled, descAgentsRevoked, descAgentsByState, descAgentsInstalled} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	lives := make([]*live, 0, len(s.live))
	for _, l := range s.live {
		lives = append(lives, l)
	}
	s.mu.Unlock()
	perChannel := map[string]int{}
	for _, l := range lives {
		m := &l.rec.Manifest
		perChannel[m.Channel]++
		ch <- prometheus.MustNewConstMetric(descReleaseSize, prometheus.GaugeValue, float64(m.Length()), m.Channel, m.Version)
		for via, n := range map[string]int64{"share": l.shareBytes.Load(), "webseed": l.webSeedBytes.Load(), "bittorrent": l.torrent.Stats().Uploaded} {
			ch <- prometheus.MustNewConstMetric(descOriginSent, prometheus.CounterValue, float64(n), m.Channel, m.Version, via)
		}
		if ih, err := swarm.ParseInfoHash(m.InfoHash); err == nil {
			peers, seeders := s.tracker.Peers(ih)
			ch <- prometheus.MustNewConstMetric(descSwarmPeers, prometheus.GaugeValue, float64(peers), m.Channel, m.Version)
			ch <- prometheus.MustNewConstMetric(descSwarmSeeders, prometheus.GaugeValue, float64(seeders), m.Channel, m.Version)
		}
	}
	for channel, n := range perChannel {
		ch <- prometheus.MustNewConstMetric(descReleases, prometheus.GaugeValue, float64(n), channel)
	}
	ch <- prometheus.MustNewConstMetric(descShareSlots, prometheus.GaugeValue, float64(len(s.shareSlots)))
	ch <- prometheus.MustNewConstMetric(descMetadataVersion, prometheus.GaugeValue, float64(s.repo.SnapshotVersion()))
	if err := c.agents(ch); err != nil {
		ch <- prometheus.NewInvalidMetric(descAgentsKnown, fmt.Errorf("read agents: %w", err))
	}
}

// agents sends the fleet's figures, read from the enrolments and the agents' last reports.
func (c collector) agents(ch chan<- prometheus.Metric) error {
	db := c.s.db
	known := map[string]bool{}
	revoked := map[string]bool{}
	enrolled := 0
	err := db.ForEach(store.Enrolled, func(id string, raw []byte) error {
		var e enrolment
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("enrolment %s: %w", id, err)
		}
		known[id] = true
		if e.RevokedAt != nil {
			revoked[id] = true
		} else {
			enrolled++
		}
		return nil
	})
	if err != nil {
		return err
	}
	byState := map[string]map[string]int{} // channel → state → agents
	installed := map[[2]string]int{}       // channel, version → agents
	err = db.ForEach(store.Agents, func(id string, raw []byte) error {
		var rep struct { // the fields counted, not the whole report
			Channel   string `json:"channel"`
			Installed string `json:"installed_version"`
			State     string `json:"state"`
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("report of %s: %w", id, err)
		}
		known[id] = true
		if revoked[id] {
			return nil
		}
		channel := rep.Channel
		if release.ValidChannel(channel) != nil {
			channel = labelInvalid
		}
		if byState[channel] == nil {
			byState[channel] = map[string]int{}
		}
		state := labelOther
		for _, st := range api.States {
			if rep.State == st {
				state = st
			}
		}
		byState[channel][state]++
		if rep.Installed != "" {
			version := rep.Installed
			if release.ValidVersion(version) != nil {
				version = labelInvalid
			}
			installed[[2]string{channel, version}]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(descAgentsKnown, prometheus.GaugeValue, float64(len(known)))
	ch <- prometheus.MustNewConstMetric(descAgentsEnrolled, prometheus.GaugeValue, float64(enrolled))
	ch <- prometheus.MustNewConstMetric(descAgentsRevoked, prometheus.GaugeValue, float64(len(revoked)))
	for channel, states := range byState {
		// Every state of a channel with agents, zeros included, so that an alert on
		// state="failed" sees 0 rather than nothing.
		for _, st := range api.States {
			ch <- prometheus.MustNewConstMetric(descAgentsByState, prometheus.GaugeValue, float64(states[st]), channel, st)
		}
		if n := states[labelOther]; n > 0 {
			ch <- prometheus.MustNewConstMetric(descAgentsByState, prometheus.GaugeValue, float64(n), channel, labelOther)
		}
	}
	for cv, n := range installed {
		ch <- prometheus.MustNewConstMetric(descAgentsInstalled, prometheus.GaugeValue, float64(n), cv[0], cv[1])
	}
	return nil
}
