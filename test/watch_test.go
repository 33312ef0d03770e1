package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentWakesOnPublish: an agent checking for updates once an hour still installs a release
// moments after its publish, twice in a row: between checks it long-polls the seeder.
func TestAgentWakesOnPublish(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	a := StartAgent(t, d, "agent", "stable", []string{s.URL}, "--interval", "1h")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(a.Output(), "waiting for a first release") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not make its first check:\n%s", a.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, v := range []string{"1.0.0", "2.0.0"} {
		src := WriteRelease(t, t.TempDir(), "app", 1<<20, byte(i+1))
		s.Publish(t, d, "stable", v, src)
		AwaitInstalled(t, time.Minute, v, a)
		SameTree(t, src, filepath.Join(a.Install, "current"))
	}
	if n := len(a.JSONLines("waiting for a first release")); n != 1 {
		t.Errorf("the agent checked %d times before the first release, want once", n)
	}
}
