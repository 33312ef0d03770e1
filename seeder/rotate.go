package seeder

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// maxRotateSize bounds a rotation request: a root and a targets.json, base64 in JSON.
const maxRotateSize = 24 << 20

// handleRotate verifies and installs a new root (trust.Repo.Rotate), with the online keys
// reloaded from --keys (an operator rotating the snapshot or timestamp key puts the new key
// there first), and signs a new snapshot and timestamp.
func (s *Seeder) handleRotate(w http.ResponseWriter, r *http.Request) {
	var req api.RotateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRotateSize)).Decode(&req); err != nil || len(req.Root) == 0 {
		writeError(w, http.StatusBadRequest, "bad rotation request: want JSON with the new root (base64): %v", err)
		return
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	online, err := trust.LoadOnline(s.cfg.KeysDir)
	if err == nil {
		err = s.repo.Rotate(req.Root, req.Targets, online, time.Now())
	}
	if err != nil {
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, trust.ErrBadSignature):
			code = http.StatusForbidden
		case errors.Is(err, trust.ErrVersion):
			code = http.StatusConflict
		}
		s.log.Warn("key rotation refused", "err", err)
		writeError(w, code, "rotate: %v", err)
		return
	}
	var v struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	_ = json.Unmarshal(req.Root, &v) // verified above
	s.log.Info("installed rotated root", "version", v.Signed.Version)
	writeJSON(w, http.StatusOK, api.RotateResult{RootVersion: v.Signed.Version})
}

// handleDelegate verifies and installs a delegated targets role (trust.Repo.Delegate).
func (s *Seeder) handleDelegate(w http.ResponseWriter, r *http.Request) {
	var req api.DelegateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRotateSize)).Decode(&req); err != nil || req.Role == "" {
		writeError(w, http.StatusBadRequest, "bad delegation request: want JSON with role, targets and role_meta: %v", err)
		return
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	if err := s.repo.Delegate(req.Role, req.Targets, req.RoleMeta, time.Now()); err != nil {
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, trust.ErrBadSignature), errors.Is(err, trust.ErrOutsidePaths):
			code = http.StatusForbidden
		case errors.Is(err, trust.ErrVersion), errors.Is(err, trust.ErrTargetExists):
			code = http.StatusConflict
		}
		s.log.Warn("delegation refused", "role", req.Role, "err", err)
		writeError(w, code, "delegate %s: %v", req.Role, err)
		return
	}
	s.log.Info("installed delegated role", "role", req.Role)
	writeJSON(w, http.StatusOK, struct{}{})
}
