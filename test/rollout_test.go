package test

// Rollout control with real processes: canaries by percent, raising the percent, health
// checks that roll back, yanks, maintenance windows, and a seeder that tries to forge a
// rollout decision.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/rollout"
)

const rolloutSize = 128 << 10 // bytes of each release's big file

// waitFor polls cond until it returns "" (done), failing the test with cond's last answer
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// agentID is the id of a running agent, from its "agent started" log line.
func agentID(t *testing.T, a *Agent) string {
	t.Helper()
	var id string
	waitFor(t, 20*time.Second, a.Name+" starts", func() string {
		if l := a.JSONLines("agent started"); len(l) > 0 {
			id, _ = l[0]["id"].(string)
		}
		if id == "" {
			return "no \"agent started\" log line"
		}
		return ""
	})
	return id
}

// listedIDs is the ids `agents list --json` shows.
func listedIDs(t *testing.T, s *Seeder, d *Deployment) []string {
	t.Helper()
	var ids []string
	for _, a := range listAgents(t, s, d) {
		ids = append(ids, a.ID)
	}
	return ids
}

// reportsOf is the agents' last reports by id.
func reportsOf(st api.Status) map[string]api.Report {
	m := map[string]api.Report{}
	for _, a := range st.Agents {
		m[a.ID] = a
	}
	return m
}

// release is the status of channel stable version v ("" fields if absent).
func releaseOf(st api.Status, v string) api.Release {
	for _, r := range st.Releases {
		if r.Channel == "stable" && r.Version == v {
			return r
		}
	}
	return api.Release{}
}

// settled waits until every agent of ids has reported a decision made on the seeder's current
// metadata (or later) and check passes on the status; it returns that status.
func settled(t *testing.T, s *Seeder, d *Deployment, timeout time.Duration, what string, ids []string, check func(api.Status) string) api.Status {
	t.Helper()
	want := s.Status(t, d).MetadataVersion
	var st api.Status
	waitFor(t, timeout, what, func() string {
		st = s.Status(t, d)
		reps := reportsOf(st)
		for _, id := range ids {
			if r, ok := reps[id]; !ok || r.MetadataVersion < want {
				return fmt.Sprintf("agent %s has not reported on metadata version %d yet (%+v)", id, want, r)
			}
		}
		return check(st)
	})
	return st
}

// downloadedVersion reports whether the agent's log says it downloaded version.
func downloadedVersion(a *Agent, version string) bool {
	for _, l := range a.JSONLines("downloading") {
		if l["version"] == version {
			return true
		}
	}
	return false
}

// TestRolloutCanary: 8 agents on 1.0.0; a 2.0.0 published at 25% installs on exactly the agents
// whose bucket for it is below 25, and nowhere else; raised to 100%, it installs everywhere.
func TestRolloutCanary(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", rolloutSize, 1))
	var agents []*Agent
	for i := range 8 {
		agents = append(agents, StartAgent(t, d, fmt.Sprintf("agent%d", i+1), "stable", []string{s.URL}))
	}
	AwaitInstalled(t, time.Minute, "1.0.0", agents...)
	ids := map[*Agent]string{}
	for _, a := range agents {
		ids[a] = agentID(t, a)
	}
	listed := listedIDs(t, s, d)
	for a, id := range ids {
		if !slices.Contains(listed, id) {
			t.Fatalf("agents list does not show %s (%s): %v", a.Name, id, listed)
		}
	}
	slices.Sort(listed)

	// Pick the version so that the canary is neither empty nor the whole fleet (the agents'
	// ids are random): the first 2.0.x whose 25% holds 1 to 4 of the 8 agents.
	var version string
	canary := map[*Agent]bool{}
	for patch := 0; version == ""; patch++ {
		v := fmt.Sprintf("2.0.%d", patch)
		clear(canary)
		for a, id := range ids {
			if rollout.Bucket(id, "stable", v) < 25 {
				canary[a] = true
			}
		}
		if n := len(canary); n >= 1 && n <= 4 {
			version = v
		}
	}
	var names []string
	for a := range canary {
		names = append(names, a.Name)
	}
	slices.Sort(names)
	t.Logf("publishing %s at 25%%: expected canary %v", version, names)
	MustRun(t, "publish", "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable", "--version", version,
		"--rollout", "25", "--json", WriteRelease(t, t.TempDir(), "app", rolloutSize, 2))

	st := settled(t, s, d, time.Minute, "the canary installs "+version, listed, func(st api.Status) string {
		for _, a := range agents {
			want := "1.0.0"
			if canary[a] {
				want = version
			}
			if got := a.Current(); got != want {
				return fmt.Sprintf("%s runs %q, want %s", a.Name, got, want)
			}
		}
		if r := releaseOf(st, version); r.Targeted != len(canary) || r.Installed != len(canary) || r.Agents != 8 {
			return fmt.Sprintf("status of %s: %d agents, %d targeted, %d installed; want 8, %d, %d", version, r.Agents, r.Targeted, r.Installed, len(canary), len(canary))
		}
		return ""
	})
	if r := releaseOf(st, version); r.Rollout.Percent != 25 || r.Rollout.String() != "25%" {
		t.Fatalf("status shows the policy %+v", r.Rollout)
	}
	for _, a := range agents {
		if !canary[a] && downloadedVersion(a, version) {
			t.Fatalf("%s, outside the canary, downloaded %s", a.Name, version)
		}
	}
	t.Logf("status at 25%%:\n%s", MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir).Stdout)

	r := MustRun(t, "rollout", "set", "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable", "--version", version, "--percent", "100", "--json")
	var res api.RolloutResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || len(res.Changed) != 1 || res.Changed[0].Rollout.Percent != 100 {
		t.Fatalf("rollout set --json: %q, %v", r.Stdout, err)
	}
	settled(t, s, d, time.Minute, "everyone installs "+version, listed, func(st api.Status) string {
		for _, a := range agents {
			if got := a.Current(); got != version {
				return fmt.Sprintf("%s runs %q", a.Name, got)
			}
		}
		if r := releaseOf(st, version); r.Targeted != 8 || r.Installed != 8 {
			return fmt.Sprintf("status of %s: %d targeted, %d installed; want 8, 8", version, r.Targeted, r.Installed)
		}
		return ""
	})
	t.Logf("status at 100%%:\n%s", MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir).Stdout)

	// Errors are one line naming what is wrong.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown release", []string{"rollout", "set", "--version", "9.9.9", "--percent", "10"}, "rollout set: channel \"stable\" has no release 9.9.9"},
		{"percent out of range", []string{"rollout", "set", "--version", version, "--percent", "150"}, "--percent 150: out of range: want 0 to 100"},
		{"bad ring", []string{"rollout", "set", "--version", version, "--percent", "5", "--ring", "Canary"}, "--ring: ring \"Canary\""},
		{"yank of an unknown release", []string{"yank", "--version", "9.9.9"}, "yank: channel \"stable\" has no release 9.9.9"},
		{"pause without a version", []string{"rollout", "pause"}, `"version"`},
	} {
		args := append(c.args, "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable")
		assertRefused(t, c.name, Run(t, args...), c.want)
	}
}

// TestRolloutHealthCheckAndYank: a release whose health check fails is rolled back on every
// agent and not tried again; yank keeps it from the others; yank --rollback sends the agents
// back to their previous release without a download; a new agent never installs a yanked one.
func TestRolloutHealthCheckAndYank(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	logs := t.TempDir()
	hooks := func(name string) []string {
		log := filepath.Join(logs, name+".log")
		return []string{
			"--post-install", `echo "post $PEERPATCH_VERSION after ${PEERPATCH_PREVIOUS:-none}" >> ` + log,
			"--health-check", `echo "health $PEERPATCH_VERSION" >> ` + log + `; test ! -e "$PEERPATCH_DIR/BROKEN" || { echo "app does not start" >&2; exit 1; }`,
		}
	}
	hookLog := func(a *Agent) string {
		b, _ := os.ReadFile(filepath.Join(logs, a.Name+".log"))
		return strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), "; ")
	}
	s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", rolloutSize, 1))
	var agents []*Agent
	for i := range 3 {
		name := fmt.Sprintf("agent%d", i+1)
		agents = append(agents, StartAgent(t, d, name, "stable", []string{s.URL}, hooks(name)...))
	}
	AwaitInstalled(t, time.Minute, "1.0.0", agents...)
	var ids []string
	for _, a := range agents {
		ids = append(ids, agentID(t, a))
	}

	broken := WriteRelease(t, t.TempDir(), "app", rolloutSize, 2)
	if err := os.WriteFile(filepath.Join(broken, "BROKEN"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Publish(t, d, "stable", "2.0.0", broken)
	settled(t, s, d, time.Minute, "2.0.0 rolled back everywhere", ids, func(st api.Status) string {
		reps := reportsOf(st)
		for i, a := range agents {
			r := reps[ids[i]]
			if a.Current() != "1.0.0" || r.State != api.StateRolledBack || r.TargetVersion != "2.0.0" || r.InstalledVersion != "1.0.0" {
				return fmt.Sprintf("%s runs %q, reports %s %s→%s", a.Name, a.Current(), r.State, r.TargetVersion, r.InstalledVersion)
			}
			if !strings.Contains(r.Error, "health check failed: exit status 1: app does not start") {
				return fmt.Sprintf("%s reports error %q", a.Name, r.Error)
			}
		}
		if r := releaseOf(st, "2.0.0"); r.RolledBack != 3 || r.Installed != 0 {
			return fmt.Sprintf("status of 2.0.0: %d rolled back, %d installed", r.RolledBack, r.Installed)
		}
		return ""
	})
	t.Logf("status after the failed health check:\n%s", MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir).Stdout)

	// The admin yanks 2.0.0 (no rollback needed) and publishes a fix.
	MustRun(t, "yank", "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable", "--version", "2.0.0")
	s.Publish(t, d, "stable", "3.0.0", WriteRelease(t, t.TempDir(), "app", rolloutSize, 3))
	AwaitInstalled(t, time.Minute, "3.0.0", agents...)
	for _, a := range agents {
		// 2.0.0 was tried once: not again after it failed, though the agent saw newer metadata.
		// The health check runs after the switch: wait for it.
		want := "post 1.0.0 after none; health 1.0.0; post 2.0.0 after 1.0.0; health 2.0.0; post 3.0.0 after 1.0.0; health 3.0.0"
		got := hookLog(a)
		for deadline := time.Now().Add(30 * time.Second); got != want && strings.HasPrefix(want, got) && time.Now().Before(deadline); got = hookLog(a) {
			time.Sleep(50 * time.Millisecond)
		}
		if got != want {
			t.Errorf("%s ran hooks: %s\nwant: %s", a.Name, got, want)
		}
		if a.Previous() != "1.0.0" {
			t.Errorf("%s: previous is %q, want 1.0.0", a.Name, a.Previous())
		}
	}

	// 3.0.0 turns out bad too: yank it with rollback.
	r := MustRun(t, "yank", "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable", "--version", "3.0.0", "--rollback")
	t.Logf("yank: %s", strings.TrimSpace(r.Stdout))
	settled(t, s, d, time.Minute, "back on 1.0.0", ids, func(st api.Status) string {
		reps := reportsOf(st)
		for i, a := range agents {
			if r := reps[ids[i]]; a.Current() != "1.0.0" || r.State != api.StateRolledBack || r.TargetVersion != "3.0.0" {
				return fmt.Sprintf("%s runs %q, reports %s from %s", a.Name, a.Current(), r.State, r.TargetVersion)
			}
		}
		if r := releaseOf(st, "3.0.0"); r.RolledBack != 3 || !r.Rollout.Yanked || !r.Rollout.Rollback {
			return fmt.Sprintf("status of 3.0.0: %d rolled back, policy %s", r.RolledBack, r.Rollout)
		}
		return ""
	})
	for _, a := range agents {
		if len(a.JSONLines("reusing kept install")) == 0 {
			t.Errorf("%s did not reuse its kept 1.0.0", a.Name)
		}
		if n := strings.Count(hookLog(a), "post 1.0.0"); n != 2 {
			t.Errorf("%s ran post-install for 1.0.0 %d times, want 2 (install, rollback)", a.Name, n)
		}
	}

	// A new agent gets neither yanked release.
	late := StartAgent(t, d, "late", "stable", []string{s.URL})
	AwaitInstalled(t, time.Minute, "1.0.0", late)
	settled(t, s, d, 30*time.Second, "the new agent settles", []string{agentID(t, late)}, func(api.Status) string { return "" })
	for _, v := range []string{"2.0.0", "3.0.0"} {
		if downloadedVersion(late, v) {
			t.Fatalf("the new agent downloaded yanked %s", v)
		}
		if _, err := os.Stat(filepath.Join(late.Install, "releases", v)); err == nil {
			t.Fatalf("the new agent holds yanked %s", v)
		}
	}
	if late.Current() != "1.0.0" {
		t.Fatalf("the new agent runs %q", late.Current())
	}
	t.Logf("status at the end:\n%s", MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir).Stdout)
}

// TestRolloutInstallWindow: an agent whose window opens in a few seconds downloads at once and
// installs only when the window opens; one whose window is hours away waits, but installs an
// urgent release at once.
func TestRolloutInstallWindow(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	now := time.Now().UTC()
	soon := now.Add(20 * time.Second).Truncate(time.Second)
	later := now.Add(12 * time.Hour).Truncate(time.Second)
	window := func(start time.Time) string {
		return "daily " + start.Format("15:04:05") + "-" + start.Add(time.Hour).Format("15:04:05")
	}
	a := StartAgent(t, d, "soon", "stable", []string{s.URL}, "--install-window", window(soon), "--timezone", "UTC")
	b := StartAgent(t, d, "later", "stable", []string{s.URL}, "--install-window", window(later), "--timezone", "UTC")
	idA, idB := agentID(t, a), agentID(t, b)
	s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", rolloutSize, 1))

	waiting := func(st api.Status, id, version string, opens time.Time) string {
		r := reportsOf(st)[id]
		if r.State != api.StateWaitingWindow || r.TargetVersion != version || r.Total == 0 || r.Completed != r.Total {
			return fmt.Sprintf("agent %s reports %s %s (%d of %d bytes)", id, r.State, r.TargetVersion, r.Completed, r.Total)
		}
		if r.NextWindow == nil || !r.NextWindow.Equal(opens) {
			return fmt.Sprintf("agent %s: next window %v, want %s", id, r.NextWindow, opens)
		}
		return ""
	}
	st := settled(t, s, d, 15*time.Second, "both download 1.0.0 and wait", []string{idA, idB}, func(st api.Status) string {
		if why := waiting(st, idA, "1.0.0", soon); why != "" {
			return why
		}
		return waiting(st, idB, "1.0.0", later)
	})
	if time.Now().After(soon) {
		t.Fatal("the machine is too slow: the window opened before the agent was seen waiting")
	}
	if a.Current() != "" || b.Current() != "" {
		t.Fatalf("installed outside the window: %q, %q", a.Current(), b.Current())
	}
	if r := releaseOf(st, "1.0.0"); r.Waiting != 2 {
		t.Fatalf("status of 1.0.0: %d waiting, want 2", r.Waiting)
	}
	t.Logf("status while waiting:\n%s", MustRun(t, "status", "--seeder", s.URL, "--keys", d.Dir).Stdout)

	AwaitInstalled(t, time.Minute, "1.0.0", a)
	if time.Now().Before(soon) {
		t.Fatalf("installed before the window opened at %s", soon)
	}
	if b.Current() != "" {
		t.Fatalf("the agent with a window hours away installed %s", b.Current())
	}

	MustRun(t, "publish", "--seeder", s.URL, "--keys", d.Dir, "--channel", "stable", "--version", "2.0.0", "--urgent",
		WriteRelease(t, t.TempDir(), "app", rolloutSize, 2))
	AwaitInstalled(t, time.Minute, "2.0.0", a, b)
}

// TestRolloutForgedBySeeder: a seeder holding the online keys cannot change a rollout decision:
// agents refuse targets metadata whose policy it altered or removed, or that it replays from
// before a yank, and the seeder's rollout endpoint refuses metadata the targets key did not sign.
func TestRolloutForgedBySeeder(t *testing.T) {
	t.Parallel()
	l := newAtkLab(t)
	l.publish(t, "stable", "1.0.0")
	a := newAtkAgent(t)
	a.install(t, l, "1.0.0")
	tree := WriteRelease(t, filepath.Join(l.dir, "stable", "2.0.0"), "app", atkSize, 2)
	MustRun(t, "publish", "--seeder", l.s.URL, "--keys", l.d.Dir, "--channel", "stable", "--version", "2.0.0", "--rollout", "0", tree)
	l.trees["stable/2.0.0"] = tree
	a.install(t, l, "1.0.0") // at 0%: nobody takes 2.0.0

	genuine := l.repo(t)
	const policy = "releases/stable/2.0.0/rollout"
	attacker, _ := atkFreshKey(t)
	forge := func(edit func(*metadata.TargetsType), sign func(*metadata.Metadata[metadata.TargetsType]) []byte) []byte {
		m := atkParse[metadata.TargetsType](t, genuine.targets)
		edit(&m.Signed)
		m.Signed.Version = genuine.targetsV + 1
		return sign(m)
	}
	to100 := func(tg *metadata.TargetsType) {
		raw := json.RawMessage(`{"percent":100}`)
		tg.Targets[policy].Custom = &raw
	}
	remove := func(tg *metadata.TargetsType) { delete(tg.Targets, policy) }
	withKey := func(s string) func(*metadata.Metadata[metadata.TargetsType]) []byte {
		return func(m *metadata.Metadata[metadata.TargetsType]) []byte {
			if s == "snapshot.pem" {
				return atkSign(t, m, l.key(t, s))
			}
			return atkSign(t, m, attacker)
		}
	}
	keepSignatures := func(m *metadata.Metadata[metadata.TargetsType]) []byte {
		m.Signatures = atkParse[metadata.TargetsType](t, genuine.targets).Signatures
		b, err := m.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, c := range []struct {
		name    string
		targets []byte
	}{
		{"policy raised to 100%, signed with the snapshot key", forge(to100, withKey("snapshot.pem"))},
		{"policy raised to 100%, signed with an attacker's key", forge(to100, withKey(""))},
		{"policy raised to 100%, the genuine signatures kept", forge(to100, keepSignatures)},
		{"policy removed (100%), the genuine signatures kept", forge(remove, keepSignatures)},
	} {
		l.p.reset()
		l.chain(t, l.p, c.targets, genuine.snapV+1+int64(i), genuine.tsV+1+int64(i))
		a.refused(t, l, c.name, l.p.URL, "", "targets", "bad signature")
		a.untouched(t, l, "1.0.0")
	}

	// The seeder's endpoint takes only metadata signed with the targets key.
	forged := forge(to100, withKey("snapshot.pem"))
	body, _ := json.Marshal(api.RolloutRequest{Metadata: forged})
	tok, err := os.ReadFile(filepath.Join(l.d.Dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	code, msg := postJSON(t, l.s.URL+api.PathRollout, strings.TrimSpace(string(tok)), body)
	if code != 403 || !strings.Contains(msg, "bad signature") {
		t.Fatalf("rollout endpoint with metadata signed by the snapshot key: HTTP %d %s", code, msg)
	}

	// The genuine decisions, on an agent that has not seen the forgeries (whose timestamps,
	// signed with the real online key, went above the genuine seeder's): 100%, then a yank
	// with rollback.
	b := newAtkAgent(t)
	b.install(t, l, "1.0.0")
	MustRun(t, "rollout", "set", "--seeder", l.s.URL, "--keys", l.d.Dir, "--channel", "stable", "--version", "2.0.0", "--percent", "100")
	beforeYank := l.repo(t)
	b.install(t, l, "2.0.0")
	MustRun(t, "yank", "--seeder", l.s.URL, "--keys", l.d.Dir, "--channel", "stable", "--version", "2.0.0", "--rollback")
	b.install(t, l, "1.0.0")
	yanked := l.repo(t)

	// The seeder replays the targets from before the yank (genuinely signed) with fresh
	// snapshot and timestamp: the agent, which saw the yank, refuses the older targets.
	l.chain(t, l.p, beforeYank.targets, yanked.snapV+1, yanked.tsV+1)
	b.refused(t, l, "targets from before the yank replayed", l.p.URL, "", "targets", "version")
	b.untouched(t, l, "1.0.0")
}

// postJSON POSTs body with a bearer token and returns the status and the error text.
func postJSON(t *testing.T, url, token string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, api.ErrorText(resp.StatusCode, b)
}
