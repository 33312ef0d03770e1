package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Change is one target that new targets metadata adds (Old is nil), modifies, or removes
// (New is nil).
type Change struct {
	Name     string
	Old, New *Target
}

// SetTargets is the signing side of an amendment (see Repo.Amend), on an admin's machine for
// role "" (the top-level targets, signed with dir/keys/targets.pem) or a CI's for a delegated
// role (signed with dir/keys/<role>.pem). currentTargets and currentRole are the targets.json
// and <role>.json the seeder serves now (untrusted: the first must verify under
// dir/root.json, the second under its delegation; currentRole is unused for role ""). Each
// target of set is added, or replaces the role's target of the same name; the version becomes
// current+1 and the expiry now+TargetsExpiry. It returns the new signed metadata of the role.
func SetTargets(dir, role string, currentTargets, currentRole []byte, set []Target, now time.Time) ([]byte, error) {
	what := "targets"
	if role != "" {
		what = role + " targets"
		if err := ValidRoleName(role); err != nil {
			return nil, fmt.Errorf("set %s: %w", what, err)
		}
	}
	root, _, err := readRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", what, err)
	}
	targets, err := parse[metadata.TargetsType](currentTargets)
	if err != nil {
		return nil, fmt.Errorf("set %s: parse current targets metadata: %w", what, err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("set %s: verify current targets metadata: %w: %w", what, ErrBadSignature, err)
	}
	m, file := targets, filepath.Join(dir, "keys", "targets.pem")
	if role != "" {
		if _, err := delegatedRole(targets, role); err != nil {
			return nil, fmt.Errorf("set %s: %w", what, err)
		}
		if m, err = parse[metadata.TargetsType](currentRole); err != nil {
			return nil, fmt.Errorf("set %s: parse current %s metadata: %w", what, role, err)
		}
		if err := targets.VerifyDelegate(role, m); err != nil {
			return nil, fmt.Errorf("set %s: verify current %s metadata: %w: %w", what, role, ErrBadSignature, err)
		}
		file = filepath.Join(dir, "keys", role+".pem")
	}
	for _, t := range set {
		if !validName(t.Name) || t.Length < 0 || (t.Custom != nil && !json.Valid(t.Custom)) {
			return nil, fmt.Errorf("set %s: target %q: invalid name, length or custom JSON", what, t.Name)
		}
		m.Signed.Targets[t.Name] = t.file()
	}
	m.Signed.Version++
	m.Signed.Expires = expires(now, TargetsExpiry)
	m.ClearSignatures()
	signer, err := loadKey(file)
	if err != nil {
		return nil, fmt.Errorf("set %s: load key: %w", what, err)
	}
	b, err := sign(m, signer)
	if err != nil {
		return nil, fmt.Errorf("set %s: sign: %w", what, err)
	}
	if role == "" {
		err = root.VerifyDelegate(metadata.TARGETS, m)
	} else {
		err = targets.VerifyDelegate(role, m)
	}
	if err != nil {
		return nil, fmt.Errorf("set %s: %s is not the key the metadata requires: %w", what, file, ErrWrongKey)
	}
	return b, nil
}

// DelegatedRoles lists the roles that targets.json bytes delegate to, in delegation order,
// without verifying anything.
func DelegatedRoles(targetsJSON []byte) ([]string, error) {
	m, err := parse[metadata.TargetsType](targetsJSON)
	if err != nil {
		return nil, fmt.Errorf("read targets metadata: %w", err)
	}
	var names []string
	if d := m.Signed.Delegations; d != nil {
		for _, r := range d.Roles {
			names = append(names, r.Name)
		}
	}
	return names, nil
}

// Amend verifies and installs new metadata of a targets role ("" or "targets" for the
// top-level targets, else a delegated role) that changes only targets, each change accepted
// by allow: signed by the role's keys, version current+1, not expired, nothing but targets
// changed (delegations and every other field as they are), for a delegated role every target
// inside its paths (ErrOutsidePaths), and at least one target changed (ErrNoChange). A
// delegated role may not add or change a target the top-level targets list (ErrTargetExists):
// the top-level one decides. Then it signs a new snapshot and timestamp and stores all in one
// PutMeta. It returns the changes, in name order.
func (r *Repo) Amend(role string, signed []byte, now time.Time, allow func(Change) error) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if role == "" {
		role = metadata.TARGETS
	}
	var cur, m *metadata.Metadata[metadata.TargetsType]
	var err error
	if role == metadata.TARGETS {
		cur = r.targets
		m, _, err = r.verifyTargets(signed, now)
	} else {
		if cur = r.roles[role]; cur == nil {
			return nil, fmt.Errorf("amend %s targets: no such delegated role: %w", role, ErrNotFound)
		}
		m, err = r.verifyRole(r.targets, role, signed, now, cur.Signed.Targets)
	}
	if err != nil {
		return nil, fmt.Errorf("amend %s targets: %w", role, err)
	}
	if want := cur.Signed.Version + 1; m.Signed.Version != want {
		return nil, fmt.Errorf("amend %s targets: %w: expected version %d, got %d", role, ErrVersion, want, m.Signed.Version)
	}
	if same, err := sameButTargets(cur.Signed, m.Signed); err != nil || !same {
		return nil, fmt.Errorf("amend %s targets: the metadata changes more than targets (delegations or other fields): %w", role, errors.Join(ErrTargetChanged, err))
	}
	changes, err := diffTargets(cur.Signed.Targets, m.Signed.Targets)
	if err != nil {
		return nil, fmt.Errorf("amend %s targets: %w", role, err)
	}
	if len(changes) == 0 {
		return nil, fmt.Errorf("amend %s targets: %w", role, ErrNoChange)
	}
	for _, c := range changes {
		if err := allow(c); err != nil {
			return nil, fmt.Errorf("amend %s targets: %q: %w", role, c.Name, err)
		}
	}
	if err := r.commit(map[string][]byte{}, now, roleMeta{role, m, signed}); err != nil {
		return nil, fmt.Errorf("amend %s targets: %w", role, err)
	}
	return changes, nil
}

// sameButTargets reports whether a and b differ at most in version, expiry and targets.
func sameButTargets(a, b metadata.TargetsType) (bool, error) {
	a.Version, b.Version = 0, 0
	a.Expires, b.Expires = time.Time{}, time.Time{}
	a.Targets, b.Targets = nil, nil
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	if err := errors.Join(err1, err2); err != nil {
		return false, err
	}
	return bytes.Equal(ab, bb), nil
}

// diffTargets lists the targets new adds, modifies or removes from old, in name order.
func diffTargets(old, new map[string]*metadata.TargetFiles) ([]Change, error) {
	var changes []Change
	one := func(name string, tf *metadata.TargetFiles) (*Target, error) {
		if tf == nil {
			return nil, nil
		}
		l, err := toTargets(map[string]*metadata.TargetFiles{name: tf})
		if err != nil {
			return nil, err
		}
		return &l[0], nil
	}
	for _, name := range unionKeys(old, new) {
		of, nf := old[name], new[name]
		if of != nil && nf != nil && sameFile(of, nf) {
			continue
		}
		o, err := one(name, of)
		if err != nil {
			return nil, err
		}
		n, err := one(name, nf)
		if err != nil {
			return nil, err
		}
		changes = append(changes, Change{Name: name, Old: o, New: n})
	}
	return changes, nil
}

func unionKeys(a, b map[string]*metadata.TargetFiles) []string {
	var names []string
	for n := range a {
		names = append(names, n)
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, strings.Compare)
	return names
}

// sameFile reports whether two target entries are identical (length, hashes, custom and any
// other field).
func sameFile(a, b *metadata.TargetFiles) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// VerifiedTargets verifies targets.json bytes under dir/root.json and each delegated role's
// metadata in roles (by name) under its delegation, and returns their targets: the top-level
// ones, and each role's. Expiry is not checked (the seeder's answer is read, not installed).
func VerifiedTargets(dir string, targetsJSON []byte, roles map[string][]byte) ([]Target, map[string][]Target, error) {
	root, _, err := readRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	targets, err := parse[metadata.TargetsType](targetsJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("parse targets metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, nil, fmt.Errorf("verify targets metadata: %w: %w", ErrBadSignature, err)
	}
	top, err := toTargets(targets.Signed.Targets)
	if err != nil {
		return nil, nil, fmt.Errorf("targets metadata: %w", err)
	}
	byRole := map[string][]Target{}
	for name, b := range roles {
		m, err := parse[metadata.TargetsType](b)
		if err != nil {
			return nil, nil, fmt.Errorf("parse %s metadata: %w", name, err)
		}
		if err := targets.VerifyDelegate(name, m); err != nil {
			return nil, nil, fmt.Errorf("verify %s metadata: %w: %w", name, ErrBadSignature, err)
		}
		if byRole[name], err = toTargets(m.Signed.Targets); err != nil {
			return nil, nil, fmt.Errorf("%s metadata: %w", name, err)
		}
	}
	return top, byRole, nil
}
