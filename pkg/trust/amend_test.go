package trust

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// policy is a zero-length target whose custom field holds text.
func policy(name, custom string) Target {
	return Target{Name: name, SHA256: sha256.Sum256(nil), Custom: json.RawMessage(custom)}
}

// onlyPolicies allows changes of targets named ".../rollout", not removals.
func onlyPolicies(c Change) error {
	if !strings.HasSuffix(c.Name, "/rollout") || c.New == nil {
		return ErrTargetChanged
	}
	return nil
}

func customOf(t *testing.T, c *Client, name string) string {
	t.Helper()
	for _, tg := range c.Targets() {
		if tg.Name == name {
			return string(tg.Custom)
		}
	}
	t.Fatalf("the client lists no %s", name)
	return ""
}

func TestAmend(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	d.publish(t, now, d.target("releases/stable/1.0.0/bundle", "one"), policy("releases/stable/1.0.0/rollout", `{"percent":10}`))
	c := d.client(t, d.root(t))

	// The admin changes the policy and adds one for a release without.
	d.publish(t, now, d.target("releases/stable/2.0.0/bundle", "two"))
	signed, err := SetTargets(d.dir, "", d.current(t), nil, []Target{
		policy("releases/stable/1.0.0/rollout", `{"percent":50}`),
		policy("releases/stable/2.0.0/rollout", `{"percent":0,"paused":true}`),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := d.repo.Amend("", signed, now, onlyPolicies)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Old == nil || string(changes[0].New.Custom) != `{"percent":50}` || changes[1].Old != nil {
		t.Fatalf("changes %+v", changes)
	}
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := customOf(t, c, "releases/stable/1.0.0/rollout"); got != `{"percent":50}` {
		t.Fatalf("the client sees policy %s", got)
	}

	stale := signed // version 4, now current
	tests := []struct {
		name    string
		signed  func() []byte
		wantErr error
	}{
		{"replayed", func() []byte { return stale }, ErrVersion},
		{"a release target changed", func() []byte {
			return resign(t, d.current(t), filepath.Join(d.dir, "keys", "targets.pem"), func(tg *metadata.TargetsType) {
				tg.Version++
				tg.Targets["releases/stable/1.0.0/bundle"].Length++
			})
		}, ErrTargetChanged},
		{"a release target added", func() []byte {
			b, err := SetTargets(d.dir, "", d.current(t), nil, []Target{d.target("releases/stable/3.0.0/bundle", "three")}, now)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, ErrTargetChanged},
		{"a policy removed", func() []byte {
			return resign(t, d.current(t), filepath.Join(d.dir, "keys", "targets.pem"), func(tg *metadata.TargetsType) {
				tg.Version++
				delete(tg.Targets, "releases/stable/2.0.0/rollout")
			})
		}, ErrTargetChanged},
		{"a delegation slipped in", func() []byte {
			return resign(t, d.current(t), filepath.Join(d.dir, "keys", "targets.pem"), func(tg *metadata.TargetsType) {
				tg.Version++
				tg.Targets["releases/stable/2.0.0/rollout"] = policy("releases/stable/2.0.0/rollout", `{"percent":1}`).file()
				tg.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{{Name: "evil", Threshold: 1, Paths: []string{"*"}}}}
			})
		}, ErrTargetChanged},
		{"signed by the snapshot key (a seeder)", func() []byte {
			return resign(t, d.current(t), filepath.Join(d.dir, "keys", "snapshot.pem"), func(tg *metadata.TargetsType) {
				tg.Version++
				tg.Targets["releases/stable/2.0.0/rollout"] = policy("releases/stable/2.0.0/rollout", `{"percent":100}`).file()
			})
		}, ErrBadSignature},
		{"nothing changed", func() []byte {
			return resign(t, d.current(t), filepath.Join(d.dir, "keys", "targets.pem"), func(tg *metadata.TargetsType) { tg.Version++ })
		}, ErrNoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.current(t)
			if _, err := d.repo.Amend("", tt.signed(), now, onlyPolicies); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Amend = %v, want %v", err, tt.wantErr)
			}
			if string(d.current(t)) != string(before) {
				t.Fatal("a refused amendment changed targets.json")
			}
		})
	}
}

// TestAmendDelegated: CI amends its own policies; the admin takes a CI policy over in the
// top-level targets, which then decide, and CI can still publish.
func TestAmendDelegated(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	delegateCI(t, d, now)
	if _, err := d.publishCI(t, now, d.target("releases/stable/1.0.0/bundle", "one"), policy("releases/stable/1.0.0/rollout", `{"percent":10}`)); err != nil {
		t.Fatal(err)
	}
	ci := func(set ...Target) ([]Change, error) {
		b, err := SetTargets(d.dir, "ci", d.current(t), d.meta(t, "ci.json"), set, now)
		if err != nil {
			t.Fatal(err)
		}
		return d.repo.Amend("ci", b, now, onlyPolicies)
	}
	if _, err := ci(policy("releases/stable/1.0.0/rollout", `{"percent":30}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ci(policy("releases/beta/1.0.0/rollout", `{"percent":30}`)); !errors.Is(err, ErrOutsidePaths) {
		t.Fatalf("CI policy outside its paths: %v", err)
	}

	// The admin yanks the CI release in the top-level targets.
	signed, err := SetTargets(d.dir, "", d.current(t), nil, []Target{policy("releases/stable/1.0.0/rollout", `{"percent":30,"yanked":true}`)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.repo.Amend("", signed, now, onlyPolicies); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, tg := range d.repo.Targets() {
		if tg.Name == "releases/stable/1.0.0/rollout" {
			seen = append(seen, string(tg.Custom))
		}
	}
	if len(seen) != 1 || !strings.Contains(seen[0], "yanked") {
		t.Fatalf("the repository lists the policy as %q, want the admin's alone", seen)
	}
	c := d.client(t, d.root(t))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := customOf(t, c, "releases/stable/1.0.0/rollout"); !strings.Contains(got, "yanked") {
		t.Fatalf("the client sees %s, want the admin's policy", got)
	}
	// CI cannot change it back, but still publishes.
	if _, err := ci(policy("releases/stable/1.0.0/rollout", `{"percent":100}`)); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("CI overriding the admin's policy: %v", err)
	}
	if _, err := d.publishCI(t, now, d.target("releases/stable/2.0.0/bundle", "two")); err != nil {
		t.Fatalf("CI publish after the admin's takeover: %v", err)
	}
	if _, err := d.repo.Amend("nope", signed, now, onlyPolicies); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Amend of an unknown role: %v", err)
	}
	if roles, err := DelegatedRoles(d.current(t)); err != nil || strings.Join(roles, ",") != "ci" {
		t.Fatalf("DelegatedRoles = %v, %v", roles, err)
	}
	top, byRole, err := VerifiedTargets(d.dir, d.current(t), map[string][]byte{"ci": d.meta(t, "ci.json")})
	if err != nil || len(top) != 1 || len(byRole["ci"]) != 3 {
		t.Fatalf("VerifiedTargets = %q, %v, %v", names(top), byRole, err)
	}
	// What a seeder would like the admin to believe CI decided.
	tampered := resign(t, d.meta(t, "ci.json"), filepath.Join(d.dir, "keys", "snapshot.pem"), func(tg *metadata.TargetsType) {
		tg.Targets["releases/stable/2.0.0/rollout"] = policy("releases/stable/2.0.0/rollout", `{"percent":100}`).file()
	})
	if _, _, err := VerifiedTargets(d.dir, d.current(t), map[string][]byte{"ci": tampered}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifiedTargets of tampered ci.json: %v", err)
	}
}
