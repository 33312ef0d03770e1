package lab

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The lab re-executes the test binary as its node-side helpers (file server, HTTP client).
	if len(os.Args) > 1 && os.Args[1] == HelperArg {
		os.Exit(HelperMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestLabSmall runs a small fleet (N=4, F=32 MiB, crash-install: one agent SIGKILLed while
// downloading, one while installing, both restarted) and its plain-HTTP baseline in network
// namespaces, and checks correctness only: every agent installed the release byte-identical,
// nothing is half-installed, every HTTP client fetched identical bytes. It never checks timings.
func TestLabSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet lab: skipped in -short mode")
	}
	if err := Available(t.Context()); err != nil {
		t.Skipf("fleet lab skipped: %v", err)
	}
	sc, err := Lookup("crash-install")
	if err != nil {
		t.Fatal(err)
	}
	if sc, err = sc.Apply(Overrides{Agents: 4, Bundle: 32 << 20, Rate: 20 << 20}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := Run(t.Context(), Config{
		Scenarios: []Scenario{sc},
		OutDir:    t.TempDir(),
		Self:      []string{os.Args[0], HelperArg},
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("lab run: %v", err)
	}
	t.Logf("lab run took %s", time.Since(start).Round(time.Millisecond))
	if len(rep.Scenarios) != 1 {
		t.Fatalf("report has %d scenarios, want 1", len(rep.Scenarios))
	}
	s := rep.Scenarios[0]
	t.Logf("\n%s", rep.Table())
	for _, ph := range []*PhaseResult{s.Peerpatch, s.HTTP} {
		if ph == nil {
			t.Fatal("a phase is missing from the report")
		}
		for _, a := range ph.Nodes {
			v, ok := a.Verdict()
			if !ok || !a.Expected || !a.Install.Identical || len(a.Install.Leftovers) > 0 {
				t.Errorf("%s %s: outcome %s, install %s, leftovers %v, errors %v", ph.Method, a.Name, a.Outcome, v, a.Install.Leftovers, a.Errors)
			}
		}
		if ph.Finished != len(ph.Nodes) {
			t.Errorf("%s: %d of %d agents finished", ph.Method, ph.Finished, len(ph.Nodes))
		}
	}
	if !s.OK {
		t.Errorf("scenario not ok: %s", strings.Join(s.Problems, "; "))
	}
	tl := s.Peerpatch.Timeline
	if len(tl) == 0 {
		t.Fatal("Peerpatch phase has no timeline")
	}
	for _, p := range tl {
		if len(p.AgentSent) != len(s.Peerpatch.Nodes) || len(p.AgentReceived) != len(s.Peerpatch.Nodes) {
			t.Fatalf("timeline at %.1f s: %d and %d agent counters, want %d", p.At, len(p.AgentSent), len(p.AgentReceived), len(s.Peerpatch.Nodes))
		}
	}
	last := tl[len(tl)-1]
	for i, a := range s.Peerpatch.Nodes {
		if a.Outcome == "installed" && last.AgentReceived[i] < int64(sc.Bundle) {
			t.Errorf("%s installed but its timeline says it received %d bytes of %d", a.Name, last.AgentReceived[i], int64(sc.Bundle))
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestBuiltinScenarios(t *testing.T) {
	all, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"baseline": true, "seeder-dies": true, "churn": true, "crash-install": true, "bad-peer": true, "disk-full": true,
		"baseline-n8": true, "baseline-n32": true, "origin-fast": true, "origin-slow": true}
	for _, s := range all {
		delete(want, s.Name)
		if _, err := s.Apply(Overrides{Agents: 4, Bundle: 32 << 20}); err != nil {
			t.Errorf("%s at N=4: %v", s.Name, err)
		}
	}
	for n := range want {
		t.Errorf("builtin scenario %s is missing", n)
	}
}

// TestExperimentScenarios parses the scenario files kept for one-off comparisons.
func TestExperimentScenarios(t *testing.T) {
	files, err := filepath.Glob("experiments/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no experiment scenarios: %v", err)
	}
	for _, f := range files {
		if _, err := Lookup(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseScenario(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "ok", yaml: "name: x\nagents: 4\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n"},
		{name: "unknown key", yaml: "name: x\nagents: 4\nbundle: 32MiB\nagnets: 3\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n", wantErr: "agnets"},
		{name: "unknown nested key", yaml: "name: x\nagents: 4\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, dn: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n", wantErr: "dn"},
		{name: "bad size", yaml: "name: x\nagents: 4\nbundle: lots\n", wantErr: "lots"},
		{name: "no agents", yaml: "name: x\nagents: 0\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n", wantErr: "agents"},
		{name: "piece size not a power of two", yaml: "name: x\nagents: 4\nbundle: 32MiB\npiece_size: 300KiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n", wantErr: "piece_size"},
		{name: "unknown fault", yaml: "name: x\nagents: 4\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\nfaults: [{kind: meteor}]\n", wantErr: "meteor"},
		{name: "seeder dies without mirror", yaml: "name: x\nagents: 4\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\nfaults: [{kind: kill-seeder, at: 30%}]\n", wantErr: "mirror"},
		{name: "mirror without caps", yaml: "name: x\nagents: 4\nbundle: 32MiB\nmirror: true\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\n", wantErr: "links.mirror"},
		{name: "share over 100%", yaml: "name: x\nagents: 4\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\nfaults: [{kind: kill-agents, share: 150%}]\n", wantErr: "share"},
		{name: "too many targets", yaml: "name: x\nagents: 2\nbundle: 32MiB\nlinks: {seeder: {up: 20MiB, down: 20MiB}, agent: {up: 1MiB, down: 2MiB}}\nfaults: [{kind: kill-downloading, agents: 2}, {kind: disk-full}]\n", wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseScenario([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Links.Agent.Down != 2<<20 || s.Bundle != 32<<20 {
					t.Errorf("parsed %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnits(t *testing.T) {
	var p Percent
	if err := p.UnmarshalText([]byte("30%")); err != nil || math.Abs(float64(p)-0.3) > 1e-9 {
		t.Errorf("30%% = %v, %v", p, err)
	}
	if err := p.UnmarshalText([]byte("0.25")); err != nil || p != 0.25 {
		t.Errorf("0.25 = %v, %v", p, err)
	}
	var a Amount
	if err := a.UnmarshalText([]byte("50%")); err != nil || a.Of(32<<20, 0) != 16<<20 {
		t.Errorf("50%% of 32 MiB = %v, %v", a.Of(32<<20, 0), err)
	}
	if err := a.UnmarshalText([]byte("8MiB")); err != nil || a.Of(32<<20, 0) != 8<<20 {
		t.Errorf("8MiB = %v, %v", a.Of(32<<20, 0), err)
	}
	if (Amount{}).Of(32, 7) != 7 {
		t.Error("unset amount does not give the default")
	}
	var f Fault
	if f.restarts(4) != 0 {
		t.Error("a fault without restart_after restarts agents")
	}
	f.RestartAfter = Duration(time.Second)
	half := Percent(0.5)
	if f.restarts(4) != 4 {
		t.Error("restart unset should restart every killed agent")
	}
	f.Restart = &half
	if f.restarts(4) != 2 || f.restarts(1) != 0 {
		t.Errorf("restart 50%% of 4 = %d, of 1 = %d; want 2 and 0", f.restarts(4), f.restarts(1))
	}
}

func TestKumarRoss(t *testing.T) {
	const mib = 1 << 20
	even := func(n int, up, down float64) Caps {
		c := Caps{OriginUp: 20 * mib, SeederUp: 20 * mib}
		for range n {
			c.AgentUp = append(c.AgentUp, up)
			c.AgentDown = append(c.AgentDown, down)
		}
		return c
	}
	tests := []struct {
		name      string
		f         float64
		caps      Caps
		tmin, htt float64
	}{
		// The lab's default: N=16, F=256 MiB, 20 MiB/s everywhere: F/u_s = 12.8 s dominates.
		{"lab default", 256 * mib, even(16, 20*mib, 20*mib), 12.8, 16 * 12.8 * WireFactor},
		// Slow agent downloads dominate.
		{"slow downloads", 256 * mib, even(4, 20*mib, 5*mib), 51.2, 51.2 * WireFactor},
		// Weak uploads: the fleet's total upload dominates: 64·256/(20+64·1) MiB/s.
		{"weak uploads", 256 * mib, even(64, 1*mib, 100*mib), 64 * 256.0 / 84, 64 * 12.8 * WireFactor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := KumarRoss(tt.f, tt.caps)
			if math.Abs(b.TMin-tt.tmin) > 1e-6 {
				t.Errorf("T_min = %v, want %v (%+v)", b.TMin, tt.tmin, b)
			}
			if h := HTTPExpected(tt.f, tt.caps); math.Abs(h-tt.htt) > 1e-6 {
				t.Errorf("HTTP expected = %v, want %v", h, tt.htt)
			}
		})
	}
	if b := KumarRoss(1, Caps{}); b.TMin != 0 {
		t.Errorf("no agents: T_min %v, want 0", b.TMin)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, tt := range []struct{ q, want float64 }{{0.5, 3}, {0.99, 5}, {1, 5}, {0.2, 1}, {0, 1}} {
		if got := quantile(xs, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}

func TestTrailAt(t *testing.T) {
	tl := []TimelinePoint{
		{At: 1.0, OriginBytes: 20, AgentReceived: []int64{5, 7}},
		{At: 2.9, OriginBytes: 58}, // no agent counters: not a point to read
		{At: 3.2, OriginBytes: 64, AgentReceived: []int64{40, 50, 60}},
		{At: 4.2, OriginBytes: 84, AgentReceived: []int64{80, 80, 80}},
	}
	for _, tt := range []struct {
		name      string
		tl        []TimelinePoint
		at        float64
		wantAt    float64
		wantTrail int64
		wantOK    bool
	}{
		{"first point at or after", tl, 3, 3.2, 64 - 50, true},
		{"a point exactly at", tl, 1, 1.0, 20 - 6, true},
		{"later point", tl, 4, 4.2, 84 - 80, true},
		{"after the last point", tl, 5, 0, 0, false},
		{"no timeline", nil, 3, 0, 0, false},
	} {
		at, trail, ok := trailAt(tt.tl, tt.at)
		if at != tt.wantAt || trail != tt.wantTrail || ok != tt.wantOK {
			t.Errorf("%s: trailAt(%v) = %v, %d, %v; want %v, %d, %v", tt.name, tt.at, at, trail, ok, tt.wantAt, tt.wantTrail, tt.wantOK)
		}
	}
}

func TestTbfArgs(t *testing.T) {
	got := strings.Join(tbfArgs(20<<20), " ")
	if want := "root tbf rate 167772160bit burst 83886 latency 100ms"; got != want {
		t.Errorf("tbfArgs(20 MiB/s) = %q, want %q", got, want)
	}
	if got := tbfArgs(1 << 20); got[5] != "32768" {
		t.Errorf("small rates keep a 32 KiB bucket, got %v", got)
	}
	r, err := parseTbfRate(`[{"kind":"tbf","handle":"8004:","root":true,"refcnt":3,"options":{"rate":20971520,"burst":86004,"lat":100000}}]`)
	if err != nil || r != 20<<20 {
		t.Errorf("parseTbfRate = %v, %v", r, err)
	}
	if _, err := parseTbfRate(`[{"kind":"noqueue","root":true,"options":{}}]`); err == nil {
		t.Error("parseTbfRate accepted output without tbf")
	}
}

func TestParseIPOutput(t *testing.T) {
	ns := namespaces("pplab-3f-a01 (id: 5)\npplab-3f-seeder (id: 4)\nother\n")
	if strings.Join(ns, ",") != "pplab-3f-a01,pplab-3f-seeder,other" {
		t.Errorf("namespaces = %v", ns)
	}
	links := linkNames("1: lo: <LOOPBACK,UP> mtu 65536\n12: pplab3fa01@if2: <BROADCAST> mtu 1500\n13: pplab3fbr: <BROADCAST> mtu 1500\n")
	if strings.Join(links, ",") != "lo,pplab3fa01,pplab3fbr" {
		t.Errorf("linkNames = %v", links)
	}
}

func TestTreeDiff(t *testing.T) {
	want := tree{"a": {1}, "b": {2}, "c": {3}}
	if d := want.diff(tree{"a": {1}, "b": {2}, "c": {3}}); d != "" {
		t.Errorf("identical trees differ: %s", d)
	}
	d := want.diff(tree{"a": {1}, "b": {9}, "d": {4}})
	if d != "missing c; different b; extra d" {
		t.Errorf("diff = %q", d)
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name string
		a    AgentResult
		ok   bool
	}{
		{"installed identical", AgentResult{Expected: true, Install: Install{Current: "1.0.0", Identical: true}}, true},
		{"expected, nothing installed", AgentResult{Expected: true}, false},
		{"corrupt", AgentResult{Expected: true, Install: Install{Current: "1.0.0", Diff: "different bin/app"}}, false},
		{"down, nothing installed", AgentResult{}, true},
		{"down, corrupt current", AgentResult{Install: Install{Current: "1.0.0", Diff: "missing x"}}, false},
		{"unreadable", AgentResult{Expected: true, Install: Install{Err: "permission denied"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, ok := tt.a.Verdict(); ok != tt.ok {
				t.Errorf("Verdict = %q, %v; want ok %v", v, ok, tt.ok)
			}
		})
	}
}

func TestReportRoundTrip(t *testing.T) {
	sc, err := Lookup("churn")
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Date: time.Now().UTC(), Scenarios: []ScenarioResult{{
		Scenario: sc, Run: 1, Caps: Caps{OriginUp: 1 << 20, SeederUp: 1 << 20, AgentUp: []float64{1 << 20}, AgentDown: []float64{1 << 20}},
		Peerpatch: &PhaseResult{Method: "peerpatch", Makespan: 3, Nodes: []AgentResult{{Name: "a01", Finished: 3, Expected: true, Install: Install{Current: "1.0.0", Identical: true}}}},
		HTTP:      &PhaseResult{Method: "http", Makespan: 5, Nodes: []AgentResult{{Name: "a01", Finished: 5, Expected: true}}},
	}}}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(dir + "/report.json")
	if err != nil {
		t.Fatal(err)
	}
	g, w := got.Scenarios[0].Scenario, rep.Scenarios[0].Scenario
	if g.Name != w.Name || g.Bundle != w.Bundle || len(g.Faults) != 1 || g.Faults[0].RestartAfter != w.Faults[0].RestartAfter ||
		*g.Faults[0].Restart != *w.Faults[0].Restart || g.Faults[0].At != w.Faults[0].At || g.Links != w.Links {
		t.Errorf("scenario after a JSON round trip: %+v, want %+v", g, w)
	}
	for _, f := range []string{"report.md", "churn.png", "summary.png"} {
		if fi, err := os.Stat(dir + "/" + f); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

// TestNodeCongestionControl checks that a node's namespace uses the lab's TCP congestion
// control, whatever the host's is (this host's kernel defaults to BBR).
func TestNodeCongestionControl(t *testing.T) {
	if err := Available(t.Context()); err != nil {
		t.Skipf("fleet lab skipped: %v", err)
	}
	n, err := newNetwork(t.Context(), "tc", slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	nd, err := n.AddNode(t.Context(), "a01", agentIP(1), Link{Up: 20 << 20, Down: 20 << 20})
	if err != nil {
		t.Fatal(err)
	}
	out, err := command(t.Context(), "ip", "netns", "exec", nd.Netns, "cat", congestionControlFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != CongestionControl {
		t.Errorf("node %s uses %q, want %q", nd.Name, got, CongestionControl)
	}
}
