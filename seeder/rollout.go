package seeder

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// Refusals of a rollout change, besides trust's.
var (
	// errNotPolicy: the metadata changes a target that is not a rollout policy.
	errNotPolicy = errors.New("only rollout policies may change")
	// errUnknownRelease: a rollout policy for a release this seeder does not have.
	errUnknownRelease = errors.New("unknown release")
)

// maxRolloutSize bounds a rollout request: one targets metadata file, base64 in JSON.
const maxRolloutSize = 24 << 20

// emptySHA256 is the hash of a rollout target: the policy is in its custom field, the file is
// empty.
var emptySHA256 = sha256.Sum256(nil)

// handleRollout installs targets metadata (top-level or a delegated role's) signed on an
// admin's or CI's machine that adds or changes rollout policies and nothing else: the seeder
// holds no key that signs targets, so it can only pass such a decision on, never make one.
func (s *Seeder) handleRollout(w http.ResponseWriter, r *http.Request) {
	var req api.RolloutRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRolloutSize)).Decode(&req); err != nil || len(req.Metadata) == 0 {
		writeError(w, http.StatusBadRequest, "bad rollout request: want JSON with the signed metadata (base64): %v", err)
		return
	}
	role := req.Role
	if role != "" {
		if err := trust.ValidRoleName(role); err != nil {
			writeError(w, http.StatusBadRequest, "rollout: %v", err)
			return
		}
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	changes, err := s.repo.Amend(role, req.Metadata, time.Now(), s.allowRollout)
	if err != nil {
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, trust.ErrBadSignature), errors.Is(err, trust.ErrOutsidePaths),
			errors.Is(err, trust.ErrTargetChanged), errors.Is(err, errNotPolicy):
			code = http.StatusForbidden
		case errors.Is(err, trust.ErrVersion), errors.Is(err, trust.ErrTargetExists):
			code = http.StatusConflict
		case errors.Is(err, errUnknownRelease), errors.Is(err, trust.ErrNotFound):
			code = http.StatusNotFound
		}
		s.log.Warn("rollout change refused", "role", role, "err", err)
		writeError(w, code, "rollout: %v", err)
		return
	}
	if role == "" {
		role = "targets"
	}
	res := api.RolloutResult{Role: role, MetadataVersion: s.repo.SnapshotVersion(), Changed: []api.ReleasePolicy{}}
	for _, c := range changes {
		ch, v, _, _ := release.ParseTarget(c.Name)
		p, _ := rollout.Parse(c.New.Custom) // checked by allowRollout
		res.Changed = append(res.Changed, api.ReleasePolicy{Channel: ch, Version: v, Rollout: p})
		s.log.Info("rollout changed", "role", role, "channel", ch, "version", v, "rollout", p.String())
	}
	writeJSON(w, http.StatusOK, res)
}

// allowRollout accepts a change of targets metadata only if it adds or modifies the rollout
// policy of a release this seeder has (never removes one: that would silently turn it into
// 100%) with a valid policy.
func (s *Seeder) allowRollout(c trust.Change) error {
	ch, v, kind, ok := release.ParseTarget(c.Name)
	if !ok || kind != "rollout" {
		what := "modifies"
		switch {
		case c.Old == nil:
			what = "adds"
		case c.New == nil:
			what = "removes"
		}
		return fmt.Errorf("the metadata %s a target that is not a rollout policy: %w", what, errNotPolicy)
	}
	if c.New == nil {
		return fmt.Errorf("the metadata removes a rollout policy (set it instead): %w", errNotPolicy)
	}
	if s.lookup(ch, v) == nil {
		return fmt.Errorf("no release %s %s is published: %w", ch, v, errUnknownRelease)
	}
	return checkPolicyTarget(c.New)
}

// checkPolicyTarget checks a rollout target: length 0, the SHA-256 of no bytes, a valid
// policy in custom.
func checkPolicyTarget(t *trust.Target) error {
	if t.Length != 0 || t.SHA256 != emptySHA256 {
		return fmt.Errorf("a rollout target must have length 0 and the SHA-256 of no bytes (the policy is its custom field): %w", rollout.ErrInvalidPolicy)
	}
	_, err := rollout.Parse(t.Custom)
	return err
}

// policies returns the signed rollout policy of each release that has one, by releaseKey, and
// the error of each that does not parse.
func (s *Seeder) policies() (map[string]rollout.Policy, map[string]error) {
	ps, bad := map[string]rollout.Policy{}, map[string]error{}
	for _, t := range s.repo.Targets() {
		ch, v, kind, ok := release.ParseTarget(t.Name)
		if !ok || kind != "rollout" {
			continue
		}
		if err := checkPolicyTarget(&t); err != nil {
			bad[releaseKey(ch, v)] = err
			continue
		}
		ps[releaseKey(ch, v)], _ = rollout.Parse(t.Custom)
	}
	return ps, bad
}

// fleet adds to each release the rollout policy and what the agents' last reports say of it.
func (s *Seeder) fleet(rels []api.Release, reports []api.Report) error {
	revoked := map[string]bool{}
	err := s.db.ForEach(store.Enrolled, func(id string, raw []byte) error {
		var e enrolment
		if err := json.Unmarshal(raw, &e); err != nil {
			return err
		}
		revoked[id] = e.RevokedAt != nil
		return nil
	})
	if err != nil {
		return err
	}
	ps, bad := s.policies()
	for i := range rels {
		rel := &rels[i]
		key := releaseKey(rel.Channel, rel.Version)
		rel.Rollout = rollout.Default()
		if p, ok := ps[key]; ok {
			rel.Rollout = p
		}
		if err := bad[key]; err != nil {
			rel.RolloutError = err.Error()
		}
		for _, a := range reports {
			if a.Channel != rel.Channel || revoked[a.ID] {
				continue
			}
			rel.Agents++
			if rel.RolloutError == "" && !rel.Rollout.Yanked && rel.Rollout.Targets(a.ID, rel.Channel, rel.Version, a.Rings) {
				rel.Targeted++
			}
			if a.InstalledVersion == rel.Version {
				rel.Installed++
			}
			if a.TargetVersion == rel.Version {
				switch a.State {
				case api.StateDownloading, api.StateInstalling:
					rel.Downloading++
				case api.StateWaitingWindow:
					rel.Waiting++
				case api.StateFailed:
					rel.Failed++
				case api.StateRolledBack:
					rel.RolledBack++
				}
			}
			if a.TargetVersion == rel.Version || a.TargetVersion == "" && a.InstalledVersion == rel.Version {
				rel.BytesFromPeers += a.BytesFromPeers
				rel.BytesFromOrigin += a.BytesFromOrigin
			}
		}
		if n := rel.BytesFromPeers + rel.BytesFromOrigin; n > 0 {
			rel.PeerShare = float64(rel.BytesFromPeers) / float64(n)
		}
	}
	return nil
}
