package trust

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// delegateCI delegates "releases/stable/*/*" to role ci and installs it in the repository.
func delegateCI(t *testing.T, d *deployment, now time.Time) {
	t.Helper()
	del, err := Delegate(d.dir, d.current(t), "ci", []string{"releases/stable/*/*"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.repo.Delegate("ci", del.Targets, del.Role, now); err != nil {
		t.Fatal(err)
	}
}

func (d *deployment) meta(t *testing.T, name string) []byte {
	t.Helper()
	b, err := d.store.GetMeta(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishCI signs add into ci.json with the CI key and
// publishes it on the repository.
func (d *deployment) publishCI(t *testing.T, now time.Time, add ...Target) ([]Target, error) {
	t.Helper()
	signed, err := AddDelegatedTargets(d.dir, "ci", d.current(t), d.meta(t, "ci.json"), add, now)
	if err != nil {
		return nil, err
	}
	return d.repo.PublishDelegated("ci", signed, now)
}

func TestDelegate(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	d.publish(t, now, d.target("releases/beta/0.9.0/bundle", "beta 0.9.0"))
	delegateCI(t, d, now)

	if fi, err := os.Stat(filepath.Join(d.dir, "keys", "ci.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys/ci.pem: %v, %v", fi, err)
	}
	top, err := parse[metadata.TargetsType](d.current(t))
	if err != nil {
		t.Fatal(err)
	}
	if dr, err := delegatedRole(top, "ci"); err != nil || !dr.Terminating || dr.Threshold != 1 || len(dr.KeyIDs) != 1 || dr.Paths[0] != "releases/stable/*/*" || top.Signed.Version != 3 {
		t.Fatalf("delegation %+v, %v (targets version %d)", dr, err, top.Signed.Version)
	}
	snap, err := parse[metadata.SnapshotType](d.meta(t, "snapshot.json"))
	if err != nil || snap.Signed.Meta["ci.json"] == nil || snap.Signed.Meta["ci.json"].Version != 1 {
		t.Fatalf("snapshot does not list ci.json v1: %v", err)
	}
	if err := d.repo.Delegate("ci", d.current(t), d.meta(t, "ci.json"), now); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("a second delegation of ci = %v", err)
	}
	if _, err := Delegate(d.dir, d.current(t), "ci", []string{"x/*"}, now); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("Delegate of an existing role = %v", err)
	}

	// CI publishes inside its paths; the client lists and downloads it.
	in := d.target("releases/stable/1.0.0/bundle", "stable 1.0.0")
	if added, err := d.publishCI(t, now, in); err != nil || names(added) != in.Name {
		t.Fatalf("PublishDelegated = %q, %v", names(added), err)
	}
	// An admin publish afterwards keeps ci.json listed.
	d.publish(t, now, d.target("releases/beta/1.0.0/bundle", "beta 1.0.0"))
	c := d.client(t, d.root(t))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := names(c.Targets()); got != "releases/beta/0.9.0/bundle,releases/beta/1.0.0/bundle,releases/stable/1.0.0/bundle" {
		t.Fatalf("Client.Targets = %q", got)
	}
	if data, err := c.Download(in.Name); err != nil || string(data) != "stable 1.0.0" {
		t.Fatalf("Download of the CI's target = %q, %v", data, err)
	}
	online, err := LoadOnline(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := OpenRepo(d.store, online, d.dir, now); err != nil || len(r2.Targets()) != 3 {
		t.Fatalf("reopened repository: %v", err)
	}
}

func TestDelegateOutsidePathsRefused(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	delegateCI(t, d, now)
	out := d.target("releases/beta/1.0.0/bundle", "beta 1.0.0")

	// The seeder refuses a target outside the paths, before the upload and at commit.
	if err := d.repo.CheckRolePaths("ci", out.Name); !errors.Is(err, ErrOutsidePaths) {
		t.Fatalf("CheckRolePaths outside the paths = %v", err)
	}
	if err := d.repo.CheckRolePaths("ci", "releases/stable/1.0.0/bundle", "releases/stable/1.0.0/pieces"); err != nil {
		t.Fatalf("CheckRolePaths inside the paths = %v", err)
	}
	if _, err := d.publishCI(t, now, out); !errors.Is(err, ErrOutsidePaths) {
		t.Fatalf("PublishDelegated outside the paths = %v", err)
	}
	// Signed with the targets key instead of the CI key: refused.
	bad := resign(t, d.meta(t, "ci.json"), filepath.Join(d.dir, "keys", "targets.pem"), func(s *metadata.TargetsType) {
		s.Version++
		s.Targets[out.Name] = out.file()
	})
	if _, err := d.repo.PublishDelegated("ci", bad, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("PublishDelegated signed with another key = %v", err)
	}

	// A repository that does not check (a compromised seeder holding the online keys) serves
	// a ci.json with the target outside the paths: the client does not list or resolve it.
	in := d.target("releases/stable/1.0.0/bundle", "stable 1.0.0")
	evil := resign(t, d.meta(t, "ci.json"), filepath.Join(d.dir, "keys", "ci.pem"), func(s *metadata.TargetsType) {
		s.Version++
		s.Targets[out.Name] = out.file()
		s.Targets[in.Name] = in.file()
	})
	m, err := parse[metadata.TargetsType](evil)
	if err != nil {
		t.Fatal(err)
	}
	d.repo.mu.Lock()
	err = d.repo.commit(map[string][]byte{}, now, roleMeta{"ci", m, evil})
	d.repo.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	c := d.client(t, d.root(t))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := names(c.Targets()); got != in.Name {
		t.Fatalf("Client.Targets = %q, want only %s", got, in.Name)
	}
	if _, err := c.up.GetTargetInfo(out.Name); err == nil {
		t.Fatal("go-tuf resolved the target outside the CI's paths")
	}
	if _, err := c.Download(out.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Download outside the paths = %v", err)
	}
}

func TestProbeFor(t *testing.T) {
	for _, p := range []string{"releases/stable/*/*", "releases/stable/1.?.*/bundle", "releases/[sb]*/*/*", "a/b"} {
		dr := metadata.DelegatedRole{Name: "x", Paths: []string{p}}
		if ok, _ := dr.IsDelegatedPath(probeFor(p)); !ok {
			t.Errorf("probeFor(%q) = %q does not match", p, probeFor(p))
		}
	}
}
