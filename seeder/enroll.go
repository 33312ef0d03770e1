package seeder

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/store"
)

// enrolment is what the seeder keeps of an agent's credential: a hash, never the secret.
type enrolment struct {
	Hash       string     `json:"hash"` // hex SHA-256 of the secret
	Hostname   string     `json:"hostname"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// caller is who a request comes from.
type caller struct {
	admin bool
	agent string // agent id, when not admin
}

type callerKey struct{}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// validID checks an agent id chosen by the agent.
func validID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, "/. \t\r\n")
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// authenticate tells who the bearer is: the admin, or an enrolled agent that is not revoked.
// It returns the HTTP status and message of a refusal.
func (s *Seeder) authenticate(r *http.Request) (caller, int, string) {
	tok := bearer(r)
	if s.admin.Equal(tok) {
		return caller{admin: true}, 0, ""
	}
	id, secret, ok := strings.Cut(tok, ".")
	if !ok || !validID(id) {
		return caller{}, http.StatusUnauthorized, "missing or invalid agent credential (enrol with the agent token first)"
	}
	var e enrolment
	if err := s.db.Get(store.Enrolled, id, &e); err != nil {
		return caller{}, http.StatusUnauthorized, "unknown agent credential"
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(e.Hash)) != 1 {
		return caller{}, http.StatusUnauthorized, "invalid agent credential"
	}
	if e.RevokedAt != nil {
		return caller{}, http.StatusForbidden, "agent credential revoked"
	}
	return caller{agent: id}, 0, ""
}

// handleEnroll gives an agent that presents the fleet enrolment token its own credential. A
// revoked agent id cannot enrol again.
func (s *Seeder) handleEnroll(w http.ResponseWriter, r *http.Request) {
	if !s.agent.Equal(bearer(r)) {
		writeError(w, http.StatusUnauthorized, "missing or invalid agent token")
		return
	}
	var req api.Enroll
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad enrolment: %v", err)
		return
	}
	if !validID(req.ID) {
		writeError(w, http.StatusBadRequest, "bad enrolment: id must be 1 to 64 characters without spaces, dots or slashes")
		return
	}
	b := make([]byte, 32)
	rand.Read(b)
	secret := hex.EncodeToString(b)
	err := s.db.Update(store.Enrolled, func(get, put func(string, any) error) error {
		var old enrolment
		if err := get(req.ID, &old); err == nil && old.RevokedAt != nil {
			return errRevoked
		}
		return put(req.ID, enrolment{Hash: hashSecret(secret), Hostname: req.Hostname, EnrolledAt: time.Now().UTC()})
	})
	if errors.Is(err, errRevoked) {
		writeError(w, http.StatusForbidden, "agent %s was revoked; it cannot enrol again", req.ID)
		return
	}
	if err != nil {
		s.log.Error("store enrolment", "agent", req.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "store enrolment")
		return
	}
	s.log.Info("agent enrolled", "agent", req.ID, "hostname", req.Hostname)
	writeJSON(w, http.StatusOK, api.Enrolled{Credential: req.ID + "." + secret})
}

var errRevoked = errors.New("revoked")

func (s *Seeder) handleAgents(w http.ResponseWriter, _ *http.Request) {
	var out []api.Agent
	err := s.db.ForEach(store.Enrolled, func(id string, raw []byte) error {
		var e enrolment
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		a := api.Agent{ID: id, Hostname: e.Hostname, EnrolledAt: e.EnrolledAt, Revoked: e.RevokedAt != nil, RevokedAt: e.RevokedAt}
		var rep api.Report
		if s.db.Get(store.Agents, id, &rep) == nil {
			a.LastReport = &rep
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read enrolments: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Agents []api.Agent `json:"agents"`
	}{Agents: append([]api.Agent{}, out...)})
}

// handleRevoke revokes an agent: its credential stops working at once, and the tracker stops
// handing out its address.
func (s *Seeder) handleRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := time.Now().UTC()
	var e enrolment
	err := s.db.Update(store.Enrolled, func(get, put func(string, any) error) error {
		if err := get(id, &e); err != nil {
			return err
		}
		if e.RevokedAt == nil {
			e.RevokedAt = &now
		}
		return put(id, e)
	})
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no enrolled agent %q", id)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "revoke: %v", err)
		return
	}
	s.mu.Lock()
	addrs := s.announcers[id]
	delete(s.announcers, id)
	s.mu.Unlock()
	for a := range addrs {
		s.tracker.Forget(a)
	}
	s.log.Info("agent revoked", "agent", id)
	writeJSON(w, http.StatusOK, api.Agent{ID: id, Hostname: e.Hostname, EnrolledAt: e.EnrolledAt, Revoked: true, RevokedAt: e.RevokedAt})
}

// noteAnnouncer remembers which agent announced from which address, so that revoking it also
// removes it from the tracker.
func (s *Seeder) noteAnnouncer(id string, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return
	}
	ip, err := netip.ParseAddr(host)
	port, perr := strconv.ParseUint(r.URL.Query().Get("port"), 10, 16)
	if err != nil || perr != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.announcers[id] == nil {
		s.announcers[id] = make(map[netip.AddrPort]bool)
	}
	s.announcers[id][netip.AddrPortFrom(ip.Unmap(), uint16(port))] = true
}
