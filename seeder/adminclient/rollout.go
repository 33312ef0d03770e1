package adminclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// policyTarget is the rollout target of a release: length 0, the SHA-256 of no bytes, the
// policy in its custom field.
func policyTarget(channel, version string, p rollout.Policy) (trust.Target, error) {
	b, err := p.Marshal()
	if err != nil {
		return trust.Target{}, err
	}
	return trust.Target{Name: release.RolloutTarget(channel, version), SHA256: sha256.Sum256(nil), Custom: b}, nil
}

// Rollout is a release's rollout policy as the seeder's metadata says now.
type Rollout struct {
	Policy rollout.Policy
	// Role signs it: "targets" (top-level), a delegated role, or "" when the release has no
	// rollout target (then Policy is rollout.Default()).
	Role string
}

// metadataSet is the targets metadata the seeder serves now: targets.json and the delegated
// roles', verified under the deployment's root.json (the seeder is not trusted to say what
// the current policies are), with their targets.
type metadataSet struct {
	targets []byte
	roles   map[string][]byte
	order   []string
	lists   map[string][]trust.Target // by role, "targets" for the top level
}

// readMetadata reads and verifies the current targets metadata, with keysDir/root.json.
func (c *Client) readMetadata(ctx context.Context, keysDir string) (*metadataSet, error) {
	m := &metadataSet{roles: map[string][]byte{}}
	var err error
	if m.targets, err = c.get(ctx, api.PathTUF+"targets.json"); err != nil {
		return nil, fmt.Errorf("read current targets: %w", err)
	}
	if m.order, err = trust.DelegatedRoles(m.targets); err != nil {
		return nil, err
	}
	for _, r := range m.order {
		if m.roles[r], err = c.get(ctx, api.PathTUF+r+".json"); err != nil {
			return nil, fmt.Errorf("read current %s targets: %w", r, err)
		}
	}
	top, byRole, err := trust.VerifiedTargets(keysDir, m.targets, m.roles)
	if err != nil {
		return nil, fmt.Errorf("read current targets: %w", err)
	}
	m.lists = byRole
	m.lists["targets"] = top
	return m, nil
}

// find returns the target name from the top-level targets or, if they lack it, the first
// delegated role that lists it, with that role ("targets" for the top level).
func (m *metadataSet) find(name string) (*trust.Target, string) {
	for _, role := range append([]string{"targets"}, m.order...) {
		ts := m.lists[role]
		if i := slices.IndexFunc(ts, func(t trust.Target) bool { return t.Name == name }); i >= 0 {
			return &ts[i], role
		}
	}
	return nil, ""
}

// Rollout returns the current rollout policy of release channel/version: the one the
// top-level targets sign, else a delegated role's, else rollout.Default(), as metadata that
// verifies under keysDir/root.json says. It fails with ErrUnknownRelease if the metadata lists
// no such release.
func (c *Client) Rollout(ctx context.Context, keysDir, channel, version string) (*Rollout, error) {
	m, err := c.readMetadata(ctx, keysDir)
	if err != nil {
		return nil, err
	}
	return m.rollout(channel, version)
}

func (m *metadataSet) rollout(channel, version string) (*Rollout, error) {
	if err := release.ValidChannel(channel); err != nil {
		return nil, fmt.Errorf("--channel: %w", err)
	}
	if err := release.ValidVersion(version); err != nil {
		return nil, fmt.Errorf("--version: %w", err)
	}
	if bundle, _ := m.find(release.BundleTarget(channel, version)); bundle == nil {
		return nil, fmt.Errorf("channel %q has no release %s: %w", channel, version, ErrUnknownRelease)
	}
	t, role := m.find(release.RolloutTarget(channel, version))
	if t == nil {
		return &Rollout{Policy: rollout.Default()}, nil
	}
	p, err := rollout.Parse(t.Custom)
	if err != nil {
		return nil, fmt.Errorf("current rollout of %s %s (signed by %s): %w", channel, version, role, err)
	}
	return &Rollout{Policy: p, Role: role}, nil
}

// ChangeRollout changes the rollout policy of release channel/version: it reads the current
// one (see Rollout), applies edit, signs the result into new metadata of role ("" for the
// top-level targets, with keysDir/keys/targets.pem; else a delegated role such as ci, with
// keysDir/keys/<role>.pem) and posts it to the seeder, which accepts it only if nothing but
// rollout policies changed. If edit changes nothing, nothing is signed or posted and the
// result lists no change. A delegated role cannot change a policy the top-level targets sign.
func (c *Client) ChangeRollout(ctx context.Context, keysDir, role, channel, version string, edit func(*rollout.Policy)) (*api.RolloutResult, error) {
	if role != "" {
		if err := trust.ValidRoleName(role); err != nil {
			return nil, fmt.Errorf("--role: %w", err)
		}
	}
	m, err := c.readMetadata(ctx, keysDir)
	if err != nil {
		return nil, err
	}
	cur, err := m.rollout(channel, version)
	if errors.Is(err, rollout.ErrInvalidPolicy) {
		cur, err = &Rollout{Policy: rollout.Default()}, nil // replaced below
	}
	if err != nil {
		return nil, err
	}
	var roleJSON []byte
	if role != "" {
		if roleJSON = m.roles[role]; roleJSON == nil {
			return nil, fmt.Errorf("--role %s: the targets delegate no role %q", role, role)
		}
		if cur.Role == "targets" {
			return nil, fmt.Errorf("the rollout of %s %s is signed in the top-level targets (by an admin): change it with the targets key, without --role", channel, version)
		}
	}
	next := cur.Policy
	next.Rings = slices.Clone(cur.Policy.Rings)
	edit(&next)
	if err := next.Validate(); err != nil {
		return nil, err
	}
	shown := "targets"
	if role != "" {
		shown = role
	}
	// Nothing to sign: the role already signs this very policy, or there is none and the new
	// one is the default.
	if samePolicy(next, cur.Policy) && (cur.Role == shown || cur.Role == "" && next.IsDefault()) {
		return &api.RolloutResult{Role: shown, Changed: []api.ReleasePolicy{}}, nil
	}
	t, err := policyTarget(channel, version, next)
	if err != nil {
		return nil, err
	}
	signed, err := trust.SetTargets(keysDir, role, m.targets, roleJSON, []trust.Target{t}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	body, err := json.Marshal(api.RolloutRequest{Role: role, Metadata: signed})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.PathRollout, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", c.base+api.PathRollout, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, c.refusal(resp.StatusCode, b)
	}
	var res api.RolloutResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("read rollout answer: %w", err)
	}
	return &res, nil
}

// samePolicy compares policies by their canonical JSON.
func samePolicy(a, b rollout.Policy) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}
