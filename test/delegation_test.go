package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// runChannel runs `agent --once` of channel through seeder, like atkAgent.run for stable.
func (a atkAgent) runChannel(t *testing.T, d *Deployment, channel, seeder string) Result {
	t.Helper()
	args := append([]string{"--log-level", "error", "agent"}, AgentArgs(d, a.Data, a.Install, channel, seeder)...)
	args = append(args, "--once", "--stall-timeout", "5s", "--fallback-after", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), atkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("agent --once did not finish within %s (killed); stderr:\n%s", atkTimeout, errb.String())
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// A CI role delegated releases/stable/*/* publishes stable with its own key; it cannot
// publish beta through the seeder, and a compromised seeder (online keys) serving a
// CI-signed beta release does not get it installed.
func TestDelegatedCIRole(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	r := MustRun(t, "delegate", "--seeder", l.s.URL, "--keys", l.d.Dir, "--name", "ci", "--paths", "releases/stable/*/*")
	t.Logf("delegate: %s", strings.TrimSpace(r.Stdout))
	if fi, err := os.Stat(filepath.Join(l.d.Dir, "keys", "ci.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys/ci.pem: %v, %v", fi, err)
	}
	// A second delegation of the same name is refused and leaves the key alone.
	if r := Run(t, "delegate", "--seeder", l.s.URL, "--keys", l.d.Dir, "--name", "ci", "--paths", "releases/beta/*/*"); r.Err == nil {
		t.Fatal("a second delegation of ci was accepted")
	}

	// CI publishes stable 1.0.0 with the CI key only (a CI directory without the targets key).
	ci := filepath.Join(t.TempDir(), "ci")
	if err := os.MkdirAll(filepath.Join(ci, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root.json", "admin.token", "keys/ci.pem"} {
		b, err := os.ReadFile(filepath.Join(l.d.Dir, f))
		if err == nil {
			err = os.WriteFile(filepath.Join(ci, f), b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tree := WriteRelease(t, filepath.Join(l.dir, "stable", "1.0.0"), "app", atkSize, 1)
	MustRun(t, "publish", "--seeder", l.s.URL, "--keys", ci, "--role", "ci", "--channel", "stable", "--version", "1.0.0", tree)
	l.trees["stable/1.0.0"] = tree
	stable := newAtkAgent(t)
	stable.install(t, l, "1.0.0")

	// Without --role the CI directory has no targets key.
	if r := Run(t, "publish", "--seeder", l.s.URL, "--keys", ci, "--channel", "stable", "--version", "1.0.1", tree); r.Err == nil {
		t.Fatal("publish without the targets key succeeded")
	}
	// CI publishing beta with the CI key: the seeder refuses.
	beta := WriteRelease(t, filepath.Join(l.dir, "beta", "1.0.0"), "app", atkSize, 2)
	r = Run(t, "publish", "--seeder", l.s.URL, "--keys", ci, "--role", "ci", "--channel", "beta", "--version", "1.0.0", beta)
	atkRefused(t, "CI publish of beta", r, "outside the paths", "403")

	// A compromised seeder: ci.json signed with the CI key adds beta 1.0.0 (outside its paths)
	// and stable 2.0.0 (inside), with snapshot and timestamp signed by the real online keys.
	tsb := l.meta(t, "timestamp.json")
	ts := atkParse[metadata.TimestampType](t, tsb)
	snapV := ts.Signed.Meta["snapshot.json"].Version
	snap := atkParse[metadata.SnapshotType](t, l.meta(t, fmt.Sprintf("%d.snapshot.json", snapV)))
	ciV := snap.Signed.Meta["ci.json"].Version
	m := atkParse[metadata.TargetsType](t, l.meta(t, fmt.Sprintf("%d.ci.json", ciV)))
	atkAddRelease(t, &m.Signed, "stable/1.0.0", "beta", "1.0.0")
	atkAddRelease(t, &m.Signed, "stable/1.0.0", "stable", "2.0.0")
	m.Signed.Version = ciV + 1
	evil := atkSign(t, m, l.key(t, "ci.pem"))
	s := metadata.Snapshot(atkExpires(7 * 24 * time.Hour))
	s.Signed.Version = snapV + 1
	s.Signed.Meta = snap.Signed.Meta
	s.Signed.Meta["ci.json"] = atkMetaFile(ciV+1, evil)
	snapb := atkSign(t, s, l.key(t, "snapshot.pem"))
	l.p.reset()
	ciPath := fmt.Sprintf("/tuf/%d.ci.json", ciV+1)
	l.p.serve(ciPath, evil)
	l.p.serve(fmt.Sprintf("/tuf/%d.snapshot.json", snapV+1), snapb)
	l.p.serve("/tuf/timestamp.json", atkTimestamp(t, l.key(t, "timestamp.pem"), ts.Signed.Version+1, snapb, atkExpires(24*time.Hour)))

	b := newAtkAgent(t)
	r = b.runChannel(t, l.d, "beta", l.p.URL)
	atkRefused(t, "CI-signed beta outside the CI's paths", r, "no release published on this channel")
	b.nothing(t)
	if l.p.hitsOf(ciPath) == 0 {
		t.Fatalf("the beta agent never fetched the forged %s", ciPath)
	}
	// The same forged ci.json is trusted for what is inside the paths: the stable agent goes
	// for 2.0.0 (and fails only because the seeder has no such torrent).
	r = stable.runChannel(t, l.d, "stable", l.p.URL)
	if r.Err == nil || !strings.Contains(r.Stderr, "2.0.0") {
		t.Fatalf("stable agent with the forged ci.json: %v\n%s", r.Err, r.Stderr)
	}
	t.Logf("stable agent tried the forged in-path 2.0.0: %s", strings.TrimSpace(r.Stderr))
}
