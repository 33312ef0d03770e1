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
	awaitLog(t, a, "stopped seeding", "the agent never stopped seeding with --seed-for 2s")
	if _, err := os.Stat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("the swarm copy is still there after seeding stopped (stat: %v)", err)
	}
	SameTree(t, rel, filepath.Join(a.Install, "current"))
}

// msgSwarmChanged is what an agent logs when it stops seeding a swarm copy that changed.
const msgSwarmChanged = "stopped seeding: swarm copy changed after it was verified"

// TestChangedInstallStopsSeeding: installed files are hard links to the swarm copy the agent
// seeds, so a file changed in place under releases/ changes what it would seed. The agent keeps
// seeding an untouched install; once a file is changed, it stops seeding that release and
// deletes its swarm copy, and leaves the install as it is.
func TestChangedInstallStopsSeeding(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	rel := WriteRelease(t, t.TempDir(), "app", 1<<20, 3)
	pub := s.Publish(t, d, "stable", "1.0.0", rel)
	a := StartAgent(t, d, "agent", "stable", []string{s.URL})
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)
	copyDir := filepath.Join(a.Data, "swarm", pub.InfoHash)
	installed := filepath.Join(a.Install, "releases", "1.0.0", "etc", "app.conf")
	fi, err := os.Stat(installed)
	if err != nil {
		t.Fatal(err)
	}
	linked, err := os.Stat(filepath.Join(copyDir, "app", "etc", "app.conf"))
	if err != nil {
		t.Fatalf("no swarm copy after the install: %v", err)
	}
	if !os.SameFile(fi, linked) {
		t.Fatal("the installed file is not a link to the swarm copy's")
	}

	// A few cycles (--interval 1s) of an untouched install change nothing.
	time.Sleep(3 * time.Second)
	if lines := a.JSONLines(msgSwarmChanged); len(lines) != 0 {
		t.Fatalf("the agent saw a change nobody made: %v", lines)
	}
	if _, err := os.Stat(copyDir); err != nil {
		t.Fatalf("swarm copy of an untouched install: %v", err)
	}

	f, err := os.OpenFile(installed, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("#"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	awaitLog(t, a, msgSwarmChanged, "the agent never noticed the installed file changed in place")
	if _, err := os.Stat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("the swarm copy is still there after seeding stopped (stat: %v)", err)
	}
	if b, err := os.ReadFile(installed); err != nil || b[0] != '#' {
		t.Fatalf("the install was touched: %q, %v", b, err)
	}
}

// awaitLog waits up to 30 s for a's log to hold a JSON line with msg, and fails with why if not.
func awaitLog(t *testing.T, a *Agent, msg, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(a.JSONLines(msg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
