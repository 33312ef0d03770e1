package trust

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// rotate rotates role's key as `peerpatch keys rotate` does, against d's repository.
func (d *deployment) rotate(t *testing.T, role string, now time.Time) *Rotation {
	t.Helper()
	root, err := d.store.GetMeta("root.json")
	if err != nil {
		t.Fatal(err)
	}
	rot, err := RotateKey(d.dir, role, root, d.current(t), now)
	if err != nil {
		t.Fatal(err)
	}
	online, err := LoadOnline(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.repo.Rotate(rot.Root, rot.Targets, online, now); err != nil {
		t.Fatalf("rotate %s: %v", role, err)
	}
	if err := rot.Commit(); err != nil {
		t.Fatal(err)
	}
	return rot
}

func TestRotateEachRole(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	rootV1 := d.root(t)
	d.publish(t, now, d.target("a", "A"))
	c := d.client(t, rootV1)
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	for i, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS, metadata.ROOT} {
		now = now.Add(time.Second)
		rot := d.rotate(t, role, now)
		if rot.Version != int64(i+2) {
			t.Fatalf("rotate %s: root version %d, want %d", role, rot.Version, i+2)
		}
		if fi, err := os.Stat(rot.OldFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("old key %s: %v, %v; want mode 0600", rot.OldFile, fi, err)
		}
		if fi, err := os.Stat(rot.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("new key %s: %v, %v; want mode 0600", rot.KeyFile, fi, err)
		}
		if (rot.Targets != nil) != (role == metadata.TARGETS) {
			t.Fatalf("rotate %s: re-signed targets %v", role, rot.Targets != nil)
		}
		if err := c.Refresh(); err != nil {
			t.Fatalf("refresh after rotating %s: %v", role, err)
		}
		if got := names(c.Targets()); got != "a" && got != "a,b" {
			t.Fatalf("after rotating %s the client sees %q", role, got)
		}
		for _, name := range []string{"root.json", filepath.Join("keys", "targets.pem")} {
			if _, err := os.Stat(filepath.Join(d.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if role == metadata.TARGETS {
			// publish uses the new targets key and the new D/root.json.
			d.publish(t, now, d.target("b", "B"))
			if err := c.Refresh(); err != nil {
				t.Fatal(err)
			}
			if got := names(c.Targets()); got != "a,b" {
				t.Fatalf("after publishing with the new targets key the client sees %q", got)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(c.cfg.MetadataDir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v := mustParse[metadata.RootType](t, b).Signed.Version; v != 5 {
		t.Fatalf("client trusts root version %d, want 5", v)
	}
	// A new agent installed with the original root follows the whole chain.
	fresh := d.client(t, rootV1)
	if err := fresh.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := names(fresh.Targets()); got != "a,b" {
		t.Fatalf("fresh client sees %q", got)
	}
	// The seeder restarts on the rotated keys.
	online, err := LoadOnline(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRepo(d.store, online, d.dir, now); err != nil {
		t.Fatal(err)
	}
}

func TestRotateOldTargetsKeyRefused(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	d.publish(t, now, d.target("a", "A"))
	rot := d.rotate(t, metadata.TARGETS, now)
	forged := resign(t, d.current(t), rot.OldFile, func(tg *metadata.TargetsType) {
		tg.Version++
		tg.Targets["evil"] = d.target("evil", "E").file()
	})
	if _, err := d.repo.Publish(forged, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("publish signed with the old targets key: %v, want ErrBadSignature", err)
	}
	// Nor can the admin sign with it by mistake.
	if err := os.Rename(rot.OldFile, rot.KeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := AddTargets(d.dir, d.current(t), []Target{d.target("c", "C")}, now); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("AddTargets with the old targets key: %v, want ErrWrongKey", err)
	}
}

func TestRotateRefuses(t *testing.T) {
	now := time.Now()
	d := newDeployment(t, now)
	d.publish(t, now, d.target("a", "A"))
	cur, err := d.store.GetMeta("root.json")
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]signature.Signer{}
	for _, f := range []string{"root-1.pem", "root-2.pem", "root-3.pem"} {
		if old[f], err = loadKey(filepath.Join(d.dir, "keys", f)); err != nil {
			t.Fatal(err)
		}
	}
	// Root v2 replacing root-1 and root-2, so that the old and the new keys overlap below threshold.
	n1, n2 := freshSigner(t), freshSigner(t)
	next := func(version int64, signers ...signature.Signer) []byte {
		m := mustParse[metadata.RootType](t, cur)
		for _, f := range []string{"root-1.pem", "root-2.pem"} {
			id, err := keyID(old[f])
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Signed.RevokeKey(id, metadata.ROOT); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range []signature.Signer{n1, n2} {
			k, err := publicKey(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Signed.AddKey(k, metadata.ROOT); err != nil {
				t.Fatal(err)
			}
		}
		m.Signed.Version = version
		m.ClearSignatures()
		b, err := sign(m, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		root []byte
		want error
	}{
		{"only old keys", next(2, old["root-1.pem"], old["root-2.pem"], old["root-3.pem"]), ErrBadSignature},
		{"only new keys", next(2, n1, n2, old["root-3.pem"]), ErrBadSignature},
		{"one old key and the new", next(2, old["root-1.pem"], n1, n2), ErrBadSignature},
		{"skips a version", next(3, old["root-1.pem"], old["root-2.pem"], n1, n2), ErrVersion},
		{"same version", next(1, old["root-1.pem"], old["root-2.pem"], n1, n2), ErrVersion},
	} {
		if err := d.repo.Rotate(tc.root, nil, nil, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// An online key rotation the seeder's keys do not follow is refused, and undone by the admin.
	root, _ := d.store.GetMeta("root.json")
	rot, err := RotateKey(d.dir, metadata.SNAPSHOT, root, d.current(t), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.repo.Rotate(rot.Root, nil, nil, now); !errors.Is(err, ErrWrongKey) {
		t.Errorf("snapshot rotation with the old online key: %v, want ErrWrongKey", err)
	}
	if err := rot.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOnline(d.dir); err != nil {
		t.Fatal(err)
	}
	// Re-signed targets that change the targets are refused.
	rot, err = RotateKey(d.dir, metadata.TARGETS, root, d.current(t), now)
	if err != nil {
		t.Fatal(err)
	}
	changed := resign(t, rot.Targets, rot.KeyFile, func(tg *metadata.TargetsType) {
		tg.Targets["evil"] = d.target("evil", "E").file()
	})
	if err := d.repo.Rotate(rot.Root, changed, nil, now); !errors.Is(err, ErrTargetChanged) {
		t.Errorf("rotation adding a target: %v, want ErrTargetChanged", err)
	}
	if err := d.repo.Rotate(rot.Root, nil, nil, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("targets rotation without re-signed targets: %v, want ErrBadSignature", err)
	}
	// Still on root v1 after all refusals; the genuine one is accepted.
	if err := d.repo.Rotate(rot.Root, rot.Targets, nil, now); err != nil {
		t.Fatal(err)
	}
	// RotateKey refuses a seeder root that is not D/root.json's version (rot was not committed).
	root, _ = d.store.GetMeta("root.json")
	if _, err := RotateKey(d.dir, metadata.TIMESTAMP, root, d.current(t), now); !errors.Is(err, ErrVersion) {
		t.Errorf("RotateKey against a stale D/root.json: %v, want ErrVersion", err)
	}
	if _, err := RotateKey(d.dir, "mirror", root, nil, now); err == nil {
		t.Error("RotateKey of an unknown role succeeded")
	}
}

func freshSigner(t *testing.T) signature.Signer {
	t.Helper()
	s, err := newKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustParse[T metadata.Roles](t *testing.T, b []byte) *metadata.Metadata[T] {
	t.Helper()
	m, err := parse[T](b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
