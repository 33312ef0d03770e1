package trust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrOutsidePaths means a delegated role signed a target outside the path patterns
// the top-level targets delegate to it.
var ErrOutsidePaths = errors.New("target outside the role's delegated paths")

var roleName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ValidRoleName checks the name of a delegated role: lower-case letters, digits and dashes,
// not a top-level role.
func ValidRoleName(name string) error {
	if !roleName.MatchString(name) || slices.Contains([]string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}, name) {
		return fmt.Errorf("role name %q: want [a-z][a-z0-9-]* (at most 32), not a top-level role", name)
	}
	return nil
}

// Delegation is a new delegated role prepared by Delegate.
type Delegation struct {
	Targets []byte // the current targets with the delegation added, version current+1, signed with the targets key
	Role    []byte // the role's targets metadata v1 without targets, signed with its new key
	KeyFile string // dir/keys/<name>.pem, the role's new key
}

// Delegate is the admin side of a delegation. current is the targets.json the seeder serves
// now (untrusted: it must verify under dir/root.json). Delegate writes a new ed25519 key
// dir/keys/<name>.pem (0600; it must not exist), adds to the targets a terminating
// delegation of paths (TUF path patterns: shell globs matched segment by segment, so
// "releases/stable/*/*" covers every target of channel stable) to role name with that key
// and threshold 1, signs the targets (version+1) with dir/keys/targets.pem and the role's
// empty targets metadata (version 1) with the new key. On error the new key is removed.
func Delegate(dir string, current []byte, name string, paths []string, now time.Time) (_ *Delegation, err error) {
	if err := ValidRoleName(name); err != nil {
		return nil, fmt.Errorf("delegate: %w", err)
	}
	if len(paths) == 0 {
		return nil, errors.New("delegate: at least one path pattern is required")
	}
	for _, p := range paths {
		if p == "" || !validName(p) && p != "*" {
			return nil, fmt.Errorf("delegate: path pattern %q: want a relative slash path such as releases/stable/*/*", p)
		}
	}
	root, _, err := readRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("delegate: %w", err)
	}
	targets, err := parse[metadata.TargetsType](current)
	if err != nil {
		return nil, fmt.Errorf("delegate: parse current targets metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("delegate: verify current targets metadata: %w: %w", ErrBadSignature, err)
	}
	if d := targets.Signed.Delegations; d != nil && slices.ContainsFunc(d.Roles, func(r metadata.DelegatedRole) bool { return r.Name == name }) {
		return nil, fmt.Errorf("delegate: role %q is already delegated: %w", name, ErrTargetExists)
	}
	tsigner, err := loadKey(filepath.Join(dir, "keys", "targets.pem"))
	if err != nil {
		return nil, fmt.Errorf("delegate: load targets key: %w", err)
	}
	file := filepath.Join(dir, "keys", name+".pem")
	signer, err := newKey(file)
	if err != nil {
		return nil, fmt.Errorf("delegate: create the role's key: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(file)
		}
	}()
	key, err := publicKey(signer)
	if err != nil {
		return nil, fmt.Errorf("delegate: %w", err)
	}
	if targets.Signed.Delegations == nil {
		targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	if targets.Signed.Delegations.Keys == nil {
		targets.Signed.Delegations.Keys = map[string]*metadata.Key{}
	}
	d := targets.Signed.Delegations
	d.Roles = append(d.Roles, metadata.DelegatedRole{Name: name, Threshold: 1, Terminating: true, Paths: slices.Clone(paths)})
	if err := targets.Signed.AddKey(key, name); err != nil {
		return nil, fmt.Errorf("delegate: %w", err)
	}
	targets.Signed.Version++
	targets.Signed.Expires = expires(now, TargetsExpiry)
	targets.ClearSignatures()
	tb, err := sign(targets, tsigner)
	if err != nil {
		return nil, fmt.Errorf("delegate: sign targets metadata: %w", err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("delegate: keys/targets.pem is not the root's targets key: %w", ErrWrongKey)
	}
	rb, err := sign(metadata.Targets(expires(now, TargetsExpiry)), signer)
	if err != nil {
		return nil, fmt.Errorf("delegate: sign %s metadata: %w", name, err)
	}
	return &Delegation{Targets: tb, Role: rb, KeyFile: file}, nil
}

// AddDelegatedTargets is the publisher side of a delegated role (CI). currentTargets and
// currentRole are the targets.json and <role>.json the seeder serves now (untrusted):
// the first must verify under dir/root.json, the second under its delegation. It refuses a
// target already listed by either, appends add (it does not check the role's paths: the
// seeder refuses a target outside them before the upload, and agents ignore one),
// sets version = current+1, signs with dir/keys/<role>.pem and returns the new <role>.json.
func AddDelegatedTargets(dir, role string, currentTargets, currentRole []byte, add []Target, now time.Time) ([]byte, error) {
	root, _, err := readRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("add %s targets: %w", role, err)
	}
	targets, err := parse[metadata.TargetsType](currentTargets)
	if err != nil {
		return nil, fmt.Errorf("add %s targets: parse current targets metadata: %w", role, err)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
		return nil, fmt.Errorf("add %s targets: verify current targets metadata: %w: %w", role, ErrBadSignature, err)
	}
	if _, err := delegatedRole(targets, role); err != nil {
		return nil, fmt.Errorf("add %s targets: %w", role, err)
	}
	m, err := parse[metadata.TargetsType](currentRole)
	if err != nil {
		return nil, fmt.Errorf("add %s targets: parse current %s metadata: %w", role, role, err)
	}
	if err := targets.VerifyDelegate(role, m); err != nil {
		return nil, fmt.Errorf("add %s targets: verify current %s metadata: %w: %w", role, role, ErrBadSignature, err)
	}
	for _, t := range add {
		if !validName(t.Name) || t.Length < 0 {
			return nil, fmt.Errorf("add %s targets: target %q: invalid name or length", role, t.Name)
		}
		_, inTop := targets.Signed.Targets[t.Name]
		if _, ok := m.Signed.Targets[t.Name]; ok || inTop {
			return nil, fmt.Errorf("add %s targets: %q: %w", role, t.Name, ErrTargetExists)
		}
		m.Signed.Targets[t.Name] = t.file()
	}
	m.Signed.Version++
	m.Signed.Expires = expires(now, TargetsExpiry)
	m.ClearSignatures()
	file := filepath.Join(dir, "keys", role+".pem")
	signer, err := loadKey(file)
	if err != nil {
		return nil, fmt.Errorf("add %s targets: load the role's key: %w", role, err)
	}
	b, err := sign(m, signer)
	if err != nil {
		return nil, fmt.Errorf("add %s targets: sign: %w", role, err)
	}
	if err := targets.VerifyDelegate(role, m); err != nil {
		return nil, fmt.Errorf("add %s targets: %s is not the key delegated to %s: %w", role, file, role, ErrWrongKey)
	}
	return b, nil
}

// delegatedRole returns the top-level delegation to role.
func delegatedRole(targets *metadata.Metadata[metadata.TargetsType], role string) (*metadata.DelegatedRole, error) {
	if d := targets.Signed.Delegations; d != nil {
		for i := range d.Roles {
			if d.Roles[i].Name == role {
				return &d.Roles[i], nil
			}
		}
	}
	return nil, fmt.Errorf("the targets delegate no role %q: %w", role, ErrNotFound)
}

// Delegate verifies and installs a new delegation (the admin side is Delegate): targets must
// be signed by the root's targets role, version current+1, with the same targets and a new
// delegation to role; roleJSON the role's targets metadata version 1, signed under that
// delegation, with targets only inside its paths. Both, a new snapshot listing the role and a
// new timestamp are stored in one PutMeta.
func (r *Repo) Delegate(role string, targetsJSON, roleJSON []byte, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ValidRoleName(role); err != nil {
		return fmt.Errorf("delegate: %w", err)
	}
	if _, ok := r.roles[role]; ok {
		return fmt.Errorf("delegate: role %q is already delegated: %w", role, ErrTargetExists)
	}
	t, _, err := r.verifyTargets(targetsJSON, now)
	if err != nil {
		return fmt.Errorf("delegate: %w", err)
	}
	if want := r.targets.Signed.Version + 1; t.Signed.Version != want {
		return fmt.Errorf("delegate: targets: %w: expected version %d, got %d", ErrVersion, want, t.Signed.Version)
	}
	if !sameTargets(r.targets.Signed.Targets, t.Signed.Targets) {
		return fmt.Errorf("delegate: targets metadata changes targets: %w", ErrTargetChanged)
	}
	m, err := r.verifyRole(t, role, roleJSON, now, nil)
	if err != nil {
		return fmt.Errorf("delegate: %w", err)
	}
	if m.Signed.Version != 1 {
		return fmt.Errorf("delegate: %s: %w: expected version 1, got %d", role, ErrVersion, m.Signed.Version)
	}
	return r.commit(map[string][]byte{}, now, roleMeta{metadata.TARGETS, t, targetsJSON}, roleMeta{role, m, roleJSON})
}

// verifyRole parses and verifies delegated targets metadata of role under targets: its
// signatures, expiry, that each of its targets is inside the role's paths, and that it adds or
// changes no target the top-level targets list (those of kept, the role's current targets,
// that it keeps unchanged may be listed by both: the top-level targets took one over).
func (r *Repo) verifyRole(targets *metadata.Metadata[metadata.TargetsType], role string, b []byte, now time.Time, kept map[string]*metadata.TargetFiles) (*metadata.Metadata[metadata.TargetsType], error) {
	dr, err := delegatedRole(targets, role)
	if err != nil {
		return nil, err
	}
	m, err := parse[metadata.TargetsType](b)
	if err != nil {
		return nil, fmt.Errorf("parse %s metadata: %w", role, err)
	}
	if err := targets.VerifyDelegate(role, m); err != nil {
		return nil, fmt.Errorf("verify %s metadata: %w: %w", role, ErrBadSignature, err)
	}
	if m.Signed.IsExpired(now) {
		return nil, fmt.Errorf("verify %s metadata: %w: expired at %s", role, ErrExpired, m.Signed.Expires.Format(time.RFC3339))
	}
	if _, err := toTargets(m.Signed.Targets); err != nil {
		return nil, fmt.Errorf("verify %s metadata: %w", role, err)
	}
	for name := range m.Signed.Targets {
		if ok, _ := dr.IsDelegatedPath(name); !ok {
			return nil, fmt.Errorf("verify %s metadata: %q (role paths %q): %w", role, name, dr.Paths, ErrOutsidePaths)
		}
		if _, ok := targets.Signed.Targets[name]; ok && (kept[name] == nil || !sameFile(kept[name], m.Signed.Targets[name])) {
			return nil, fmt.Errorf("verify %s metadata: %q is a top-level target: %w", role, name, ErrTargetExists)
		}
	}
	return m, nil
}

// PublishDelegated is Publish for a delegated role: signedRole must be signed under the current
// targets' delegation to role, version current+1, not expired, keep every existing target of
// the role unchanged and add only targets inside the role's paths (ErrOutsidePaths).
func (r *Repo) PublishDelegated(role string, signedRole []byte, now time.Time) ([]Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.roles[role]
	if !ok {
		return nil, fmt.Errorf("publish %s targets: no such delegated role: %w", role, ErrNotFound)
	}
	m, err := r.verifyRole(r.targets, role, signedRole, now, cur.Signed.Targets)
	if err != nil {
		return nil, fmt.Errorf("publish %s targets: %w", role, err)
	}
	if want := cur.Signed.Version + 1; m.Signed.Version != want {
		return nil, fmt.Errorf("publish %s targets: %w: expected version %d, got %d", role, ErrVersion, want, m.Signed.Version)
	}
	if err := keptTargets(cur.Signed.Targets, m.Signed.Targets); err != nil {
		return nil, fmt.Errorf("publish %s targets: %w", role, err)
	}
	list, _ := toTargets(m.Signed.Targets) // checked by verifyRole
	var added []Target
	for _, tg := range list {
		if _, ok := cur.Signed.Targets[tg.Name]; !ok {
			added = append(added, tg)
		}
	}
	if err := r.commit(map[string][]byte{}, now, roleMeta{role, m, signedRole}); err != nil {
		return nil, fmt.Errorf("publish %s targets: %w", role, err)
	}
	return added, nil
}

// CheckRolePaths returns ErrOutsidePaths (or ErrNotFound for an unknown role) unless the
// current targets delegate every name to role. The seeder checks it before an upload.
func (r *Repo) CheckRolePaths(role string, names ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.roles[role]; !ok {
		return fmt.Errorf("no delegated role %q: %w", role, ErrNotFound)
	}
	dr, err := delegatedRole(r.targets, role)
	if err != nil {
		return err
	}
	for _, n := range names {
		if ok, _ := dr.IsDelegatedPath(n); !ok {
			return fmt.Errorf("%q is outside the paths %q delegated to %s: %w", n, dr.Paths, role, ErrOutsidePaths)
		}
	}
	return nil
}
