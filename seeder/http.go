package seeder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/metrics"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// maxReportSize bounds an agent report body.
const maxReportSize = 64 << 10

func (s *Seeder) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathHealth, s.handleHealth)
	mux.Handle("GET "+api.PathMetrics, s.metricsOnly(metrics.Handler(s.meters.reg, s.log)))
	mux.Handle("GET "+api.PathTUF, s.agentOnly(http.HandlerFunc(s.handleTUF)))
	mux.Handle("GET "+api.PathWebSeed, s.agentOnly(http.HandlerFunc(s.handleWebSeed)))
	mux.Handle("GET "+api.PathAnnounce, s.agentOnly(s.tracker.Handler()))
	mux.Handle("POST "+api.PathShare+"{channel}/{version}", s.agentOnly(http.HandlerFunc(s.handleShare)))
	mux.Handle("GET "+api.PathPeers+"{ip}", s.agentOnly(http.HandlerFunc(s.handlePeer)))
	mux.Handle("GET "+api.PathWatch, s.agentOnly(http.HandlerFunc(s.handleWatch)))
	mux.Handle("GET "+api.PathTorrent+"{channel}/{version}", s.agentOnly(http.HandlerFunc(s.handleTorrent)))
	mux.Handle("POST "+api.PathReport, s.agentOnly(http.HandlerFunc(s.handleReport)))
	mux.Handle("POST "+api.PathPublish, s.adminOnly(http.HandlerFunc(s.handlePublish)))
	mux.Handle("GET "+api.PathStatus, s.adminOnly(http.HandlerFunc(s.handleStatus)))
	mux.HandleFunc("POST "+api.PathEnroll, s.handleEnroll)
	mux.Handle("GET "+api.PathAgents, s.adminOnly(http.HandlerFunc(s.handleAgents)))
	mux.Handle("POST "+api.PathAgents+"/{id}/revoke", s.adminOnly(http.HandlerFunc(s.handleRevoke)))
	mux.Handle("POST "+api.PathRotate, s.adminOnly(http.HandlerFunc(s.handleRotate)))
	mux.Handle("POST "+api.PathDelegate, s.adminOnly(http.HandlerFunc(s.handleDelegate)))
	mux.Handle("POST "+api.PathRollout, s.adminOnly(http.HandlerFunc(s.handleRollout)))
	return s.meters.instrument(mux)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, args...)})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return t
	}
	return ""
}

// agentOnly admits enrolled agents that are not revoked, and admins.
func (s *Seeder) agentOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, code, msg := s.authenticate(r)
		if code != 0 {
			s.log.Warn("refused agent request", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", msg)
			writeError(w, code, "%s", msg)
			return
		}
		if c.agent != "" && r.URL.Path == api.PathAnnounce {
			s.noteAnnouncer(c.agent, r)
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// adminOnly admits the admin token only.
func (s *Seeder) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.admin.Equal(bearer(r)) {
			s.log.Warn("refused request without a valid admin token", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "missing or invalid admin token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Seeder) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "starting")
		return
	}
	w.Write([]byte("ok\n"))
}

// handlePeer tells an agent whether an address calling it belongs to the fleet: an enrolled,
// unrevoked agent (or the origin) announced from it. Agents accept peers only on a yes.
func (s *Seeder) handlePeer(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad peer address %q", r.PathValue("ip"))
		return
	}
	ports := s.tracker.Ports(ip.Unmap())
	if len(ports) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set(api.HeaderPeerPorts, api.FormatPeerPorts(ports))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Seeder) handleTUF(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, api.PathTUF)
	b, err := metaStore{s.db}.GetMeta(name)
	if errors.Is(err, trust.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no metadata %q", name)
		return
	}
	if err != nil {
		s.log.Error("read metadata", "name", name, "err", err)
		writeError(w, http.StatusInternalServerError, "read metadata")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func (s *Seeder) handleTorrent(w http.ResponseWriter, r *http.Request) {
	ch, ver := r.PathValue("channel"), r.PathValue("version")
	l := s.lookup(ch, ver)
	if l == nil {
		writeError(w, http.StatusNotFound, "no release %s %s", ch, ver)
		return
	}
	seeds := []string{s.cfg.PublicURL + api.PathWebSeed + ch + "/" + ver + "/"}
	for _, m := range s.cfg.WebSeeds {
		seeds = append(seeds, m+"/"+ch+"/"+ver+"/")
	}
	b, err := swarm.Metainfo(l.rec.InfoBytes, s.cfg.PublicURL+api.PathAnnounce, seeds)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-bittorrent")
	w.Write(b)
}

// handleWebSeed serves release files (BEP 19, with ranges) from DataDir/releases, only files
// that belong to a published release, within the origin's upload budget.
func (s *Seeder) handleWebSeed(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(r.URL.Path, api.PathWebSeed)
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) != 3 {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	l := s.lookup(parts[0], parts[1])
	if l == nil || !belongs(l, parts[2]) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	f, err := os.Open(filepath.Join(s.releaseDir(parts[0], parts[1]), filepath.FromSlash(parts[2])))
	if err != nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "stat")
		return
	}
	cw := &countingWriter{ResponseWriter: w, limiter: s.swarm.UploadLimiter(), ctx: r.Context(), n: &l.webSeedBytes}
	http.ServeContent(cw, r, fi.Name(), fi.ModTime(), f)
}

// belongs reports whether p (slash path below the release directory) is one of its files.
func belongs(l *live, p string) bool {
	m := &l.rec.Manifest
	if !m.Dir {
		return p == m.Name
	}
	for _, f := range m.Files {
		if p == path.Join(m.Name, f.Path) {
			return true
		}
	}
	return false
}

// countingWriter counts the bytes written and paces them with the upload limiter.
type countingWriter struct {
	http.ResponseWriter
	limiter *rate.Limiter
	ctx     context.Context
	n       *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if c.limiter != nil {
			chunk = p[:min(len(p), c.limiter.Burst())]
			if err := c.limiter.WaitN(c.ctx, len(chunk)); err != nil {
				return written, err
			}
		}
		n, err := c.ResponseWriter.Write(chunk)
		written += n
		c.n.Add(int64(n))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (s *Seeder) handleReport(w http.ResponseWriter, r *http.Request) {
	var rep api.Report
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReportSize))
	if err := dec.Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "bad report: %v", err)
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad report: data after the JSON document")
		return
	}
	if !validID(rep.ID) {
		writeError(w, http.StatusBadRequest, "bad report: id must be 1 to 64 characters without spaces, dots or slashes")
		return
	}
	if c := callerOf(r.Context()); !c.admin && c.agent != rep.ID {
		writeError(w, http.StatusForbidden, "agent %s may not report for %s", c.agent, rep.ID)
		return
	}
	rep.Time = time.Now().UTC()
	if err := s.db.Put(store.Agents, rep.ID, rep); err != nil {
		s.log.Error("store report", "agent", rep.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "store report")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Seeder) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st := api.Status{Agents: []api.Report{}, Releases: s.releases(), MetadataVersion: s.repo.SnapshotVersion()}
	err := s.db.ForEach(store.Agents, func(_ string, raw []byte) error {
		var rep api.Report
		if err := json.Unmarshal(raw, &rep); err != nil {
			return err
		}
		st.Agents = append(st.Agents, rep)
		return nil
	})
	if err == nil {
		err = s.fleet(st.Releases, st.Agents)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read reports: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
