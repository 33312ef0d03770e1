package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// TestRotateKeys rotates the timestamp, snapshot, targets and root keys in turn with `peerpatch
// keys rotate`. The same agent, installed with root version 1, follows the chain of roots without
// reinstall and installs a release published with the new targets key; targets signed with the
// old targets key are refused by the seeder and, served by a compromised mirror, by the agent.
func TestRotateKeys(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	rootV1, err := os.ReadFile(l.d.Root())
	if err != nil {
		t.Fatal(err)
	}

	// Admin only: the agent token cannot install a root (even a valid one is never reached).
	agentTok, err := os.ReadFile(l.d.AgentToken())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, l.s.URL+api.PathRotate, strings.NewReader(`{"root":"e30="}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(agentTok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST %s with the agent token: HTTP %d, want 401", api.PathRotate, resp.StatusCode)
	}
	if r := Run(t, "keys", "rotate", "--seeder", l.s.URL, "--keys", l.d.Dir, "--role", "mirror"); r.Err == nil {
		t.Fatal("keys rotate --role mirror succeeded")
	}

	current, oldTargets := "1.0.0", ""
	for i, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS, metadata.ROOT} {
		file := trust.RotateKeyFiles[role]
		before, err := os.ReadFile(filepath.Join(l.d.Dir, "keys", file))
		if err != nil {
			t.Fatal(err)
		}
		r := MustRun(t, "keys", "rotate", "--seeder", l.s.URL, "--keys", l.d.Dir, "--role", role)
		want := int64(i + 2)
		if !strings.Contains(r.Stdout, fmt.Sprintf("root version %d", want)) {
			t.Fatalf("keys rotate --role %s printed %q, want root version %d", role, r.Stdout, want)
		}
		olds, _ := filepath.Glob(filepath.Join(l.d.Dir, "keys", file+".old-*"))
		if len(olds) != 1 {
			t.Fatalf("keys/%s.old-*: %v, want one file", file, olds)
		}
		kept, err := os.ReadFile(olds[0])
		fi, serr := os.Stat(olds[0])
		if err != nil || serr != nil || string(kept) != string(before) || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s does not keep the old key with mode 0600 (%v, %v)", olds[0], err, serr)
		}
		if v := atkParse[metadata.RootType](t, l.meta(t, "root.json")).Signed.Version; v != want {
			t.Fatalf("the seeder serves root version %d, want %d", v, want)
		}
		if v := atkParse[metadata.RootType](t, l.meta(t, fmt.Sprintf("%d.root.json", want))).Signed.Version; v != want {
			t.Fatalf("%d.root.json is version %d", want, v)
		}
		if role == metadata.TARGETS {
			oldTargets = filepath.Base(olds[0])
			l.publish(t, "stable", "2.0.0") // with the new D/keys/targets.pem
			current = "2.0.0"
		}
		a.install(t, l, current)
		if v := a.trustedRootVersion(t); v != want {
			t.Fatalf("after rotating the %s key the agent trusts root version %d, want %d", role, v, want)
		}
	}

	// The seeder restarts on the rotated keys; an agent installed with root version 1 follows
	// the whole chain.
	l.s.Kill()
	l.s.Restart(t)
	a.install(t, l, "2.0.0")
	anchor := filepath.Join(t.TempDir(), "root-v1.json")
	if err := os.WriteFile(anchor, rootV1, 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := newAtkAgent(t)
	l.p.reset()
	if r, _ := fresh.run(t, l.d, l.p.URL, anchor); r.Err != nil {
		t.Fatalf("agent installed with root version 1: %v\n%s", r.Err, r.Stderr)
	}
	fresh.untouched(t, l, "2.0.0")

	// A publish signed with the old targets key: the admin's copy of D holds the old key and a
	// root that (falsely) names it, so that publish signs and sends it. The seeder refuses.
	forgedDir := filepath.Join(t.TempDir(), "old-key-deployment")
	if err := os.MkdirAll(filepath.Join(forgedDir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(l.d.Dir, "admin.token"), filepath.Join(forgedDir, "admin.token"))
	copyFile(t, filepath.Join(l.d.Dir, "keys", oldTargets), filepath.Join(forgedDir, "keys", "targets.pem"))
	root := atkParse[metadata.RootType](t, l.meta(t, "root.json"))
	oldKey, err := l.key(t, oldTargets).PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Signed.AddKey(k, metadata.TARGETS); err != nil {
		t.Fatal(err)
	}
	forgedRoot := atkSign(t, root, l.key(t, "root-1.pem"), l.key(t, "root-2.pem"), l.key(t, "root-3.pem"))
	if err := os.WriteFile(filepath.Join(forgedDir, "root.json"), forgedRoot, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := WriteRelease(t, filepath.Join(l.dir, "stable", "3.0.0"), "app", atkSize, 9)
	r := Run(t, "publish", "--seeder", l.s.URL, "--keys", forgedDir, "--channel", "stable", "--version", "3.0.0", tree)
	if r.Err == nil || !strings.Contains(r.Stderr, "not signed by the deployment's targets key") {
		t.Fatalf("publish signed with the old targets key: %v, stderr %q; want a refusal", r.Err, r.Stderr)
	}
	t.Logf("publish signed with the old targets key refused: %s", strings.TrimSpace(r.Stderr))
	if strings.Contains(string(l.meta(t, "targets.json")), "releases/stable/3.0.0") {
		t.Fatal("the seeder lists 3.0.0 after refusing it")
	}

	// Served by a compromised mirror holding the online keys, the agent refuses it too.
	g := l.repo(t)
	m := atkParse[metadata.TargetsType](t, g.targets)
	atkAddRelease(t, &m.Signed, "stable/2.0.0", "stable", "9.0.0")
	m.Signed.Version = g.targetsV + 1
	m.Signed.Expires = atkExpires(365 * 24 * time.Hour)
	l.p.reset()
	l.chain(t, l.p, atkSign(t, m, l.key(t, oldTargets)), g.snapV+1, g.tsV+1)
	for _, run := range []string{"first run", "after restart"} {
		a.refused(t, l, "targets signed with the old targets key, "+run, l.p.URL, "", "targets", "bad signature")
		a.untouched(t, l, "2.0.0")
	}
	if forged := fmt.Sprintf("/tuf/%d.targets.json", g.targetsV+1); l.p.hitsOf(forged) == 0 {
		t.Fatalf("the agent never fetched the forged %s", forged)
	}
	if tr := a.trusted(t); tr != "2.0.0" {
		t.Fatalf("A/state.db trusts stable %q, want 2.0.0", tr)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
