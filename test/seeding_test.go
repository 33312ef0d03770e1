package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSeedingPolicy: an agent with --seed-for stops seeding its installed release once that
// time has passed, and deletes its swarm copy; the installed release stays as it was.
func TestSeedingPolicy(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	rel := WriteRelease(t, t.TempDir(), "app", 1<<20, 3)
	pub := s.Publish(t, d, "stable", "1.0.0", rel)
	a := StartAgent(t, d, "agent", "stable", []string{s.URL}, "--seed-for", "2s")
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)
	copyDir := filepath.Join(a.Data, "swarm", pub.InfoHash)
	if _, err := os.Stat(copyDir); err != nil {
		t.Fatalf("no swarm copy right after the install: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(a.JSONLines("stopped seeding")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent never stopped seeding with --seed-for 2s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("the swarm copy is still there after seeding stopped (stat: %v)", err)
	}
	SameTree(t, rel, filepath.Join(a.Install, "current"))
}
