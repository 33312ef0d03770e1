package seeder

import (
	"net/http"
	"strconv"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// Long polls. An agent checks for updates every --interval (a minute by default); between
// checks it waits on GET /api/v1/watch, which answers as soon as the metadata is newer than the
// agent's. A publish then reaches the fleet in milliseconds, not up to an interval later.
const (
	// maxWatch bounds how long a watch is held; agents ask for less than their HTTP timeout.
	maxWatch = time.Minute
	// watchSpacing spaces out the answers to a change: the n-th watcher woken by it waits
	// n × watchSpacing, so that a thousand agents come for the new metadata over a second,
	// not in the same millisecond.
	watchSpacing = time.Millisecond
)

// handleWatch serves GET /api/v1/watch?after=V&wait=S: it answers once the snapshot version is
// above V, or after S seconds (at most maxWatch) with the version unchanged.
func (s *Seeder) handleWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "watch: after=%q is not a metadata version", q.Get("after"))
		return
	}
	wait := maxWatch
	if v := q.Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || !(secs >= 0) { // NaN too
			writeError(w, http.StatusBadRequest, "watch: wait=%q is not a number of seconds", v)
			return
		}
		if secs < wait.Seconds() {
			wait = time.Duration(secs * float64(time.Second))
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	version, changed := s.repo.Watch()
	for version <= after {
		select {
		case <-changed:
			version, changed = s.repo.Watch()
			if version > after {
				s.spaceOut(r)
			}
			continue
		case <-timer.C:
		case <-s.stopping:
		case <-r.Context().Done():
			return
		}
		break
	}
	writeJSON(w, http.StatusOK, api.Watch{MetadataVersion: version})
}

// spaceOut delays a watcher woken by a change by watchSpacing for each other watcher being
// spaced out at the same time.
func (s *Seeder) spaceOut(r *http.Request) {
	n := s.woken.Add(1)
	defer s.woken.Add(-1)
	select {
	case <-time.After(time.Duration(n-1) * watchSpacing):
	case <-r.Context().Done():
	}
}
