package test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSeederRestartResumesSeeding stops a seeder with SIGTERM (exit 0), starts it again on the
// same --data, and checks that it seeds what was published without rewriting it, and that an
// agent installs from it.
func TestSeederRestartResumesSeeding(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	rel := WriteRelease(t, t.TempDir(), "app", 2<<20, 5)
	s.Publish(t, d, "stable", "1.0.0", rel)
	bin := filepath.Join(s.Data, "releases", "stable", "1.0.0", "app", "bin", "app")
	before, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	s.MustCleanShutdown(t)

	s.Restart(t)
	if got := s.JSONLines("seeding releases"); len(got) != 1 || got[0]["count"] != float64(1) {
		t.Fatalf("restarted seeder logged %v, want one line with count 1", got)
	}
	st := s.Status(t, d)
	if len(st.Releases) != 1 || st.Releases[0].Version != "1.0.0" {
		t.Fatalf("restarted seeder lists releases %+v", st.Releases)
	}
	agentDir := t.TempDir()
	a := &Agent{Name: "agent", Data: filepath.Join(agentDir, "data"), Install: filepath.Join(agentDir, "install")}
	MustRun(t, append([]string{"agent", "--once", "--stall-timeout", "30s"},
		AgentArgs(d, a.Data, a.Install, "stable", s.URL)...)...)
	if a.Current() != "1.0.0" {
		t.Fatalf("agent current = %q after --once, want 1.0.0", a.Current())
	}
	SameTree(t, rel, filepath.Join(a.Install, "current"))
	after, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Fatalf("the restarted seeder rewrote %s", bin)
	}
}
