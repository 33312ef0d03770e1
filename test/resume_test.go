package test

import (
	"path/filepath"
	"testing"
	"time"
)

// TestAgentResumesAfterSIGKILL kills an agent mid-download and checks that the restarted
// agent fetches only what it had not verified: the pieces in flight at the kill, no more.
func TestAgentResumesAfterSIGKILL(t *testing.T) {
	testAgentResumes(t, func(a *Agent) { a.Kill() })
}

// TestAgentResumesAfterSIGTERM stops an agent mid-download with SIGTERM, as systemd, launchd
// and the Windows service manager do: it must exit 0 within 10s (MustCleanShutdown), and the
// restarted agent must fetch only what it had not verified.
func TestAgentResumesAfterSIGTERM(t *testing.T) {
	testAgentResumes(t, func(a *Agent) {
		start := time.Now()
		a.MustCleanShutdown(t)
		t.Logf("the agent exited 0 %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	})
}

// testAgentResumes stops an agent with stop once 40% of a release is verified, restarts it,
// and checks the install and what the restart fetched. The agent's progress log lines say how
// many bytes are in verified pieces ("completed") and how many useful bytes it received
// ("fromPeers" + "fromOrigin"); they come once a second, so the figures "before the stop" are
// those of the last line, at most a second old.
func testAgentResumes(t *testing.T, stop func(*Agent)) {
	const size = 24 << 20
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	rel := WriteRelease(t, t.TempDir(), "app", size, 7)
	pub := s.Publish(t, d, "stable", "1.0.0", rel)
	pieceLen := int64(256 << 10) // the piece size policy's minimum, used for releases this small

	a := StartAgent(t, d, "agent", "stable", []string{s.URL}, "--download-rate", "4MiB")
	var killedAt, receivedBefore int64
	deadline := time.Now().Add(30 * time.Second)
	for killedAt < pub.Length*2/5 {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not reach 40%% in 30s")
		}
		time.Sleep(100 * time.Millisecond)
		if p := a.JSONLines("progress"); len(p) > 0 {
			last := p[len(p)-1]
			killedAt = int64(last["completed"].(float64))
			receivedBefore = int64(last["fromPeers"].(float64) + last["fromOrigin"].(float64))
		}
	}
	stop(a)
	// The last progress line may be up to a second old: count what was logged after it too.
	if p := a.JSONLines("progress"); len(p) > 0 {
		last := p[len(p)-1]
		killedAt = int64(last["completed"].(float64))
		receivedBefore = int64(last["fromPeers"].(float64) + last["fromOrigin"].(float64))
	}
	if a.Current() != "" {
		t.Fatalf("the agent installed %s before it was stopped: the test stopped nothing mid-download", a.Current())
	}

	a.Restart(t)
	AwaitInstalled(t, time.Minute, "1.0.0", a)
	SameTree(t, rel, filepath.Join(a.Install, "current"))

	start := a.JSONLines("downloading")
	done := a.JSONLines("downloaded")
	if len(start) != 1 || len(done) != 1 {
		t.Fatalf("want one downloading and one downloaded line after the restart, got %d and %d", len(start), len(done))
	}
	verifiedAtRestart := int64(start[0]["verifiedAlready"].(float64))
	receivedAfter := int64(done[0]["received"].(float64))
	refetched := receivedBefore + receivedAfter - pub.Length
	t.Logf("release %d bytes; before the stop: %d verified, %d received; after restart: %d verified already, %d received; re-fetched %d bytes (%.1f pieces of %d)",
		pub.Length, killedAt, receivedBefore, verifiedAtRestart, receivedAfter, refetched, float64(refetched)/float64(pieceLen), pieceLen)
	if verifiedAtRestart < killedAt {
		t.Fatalf("restart verified only %d bytes, %d were verified before the stop", verifiedAtRestart, killedAt)
	}
	if receivedAfter > pub.Length-verifiedAtRestart {
		t.Fatalf("restart received %d bytes, more than the %d it lacked", receivedAfter, pub.Length-verifiedAtRestart)
	}
	// In flight at the stop: bytes received but not yet part of a verified piece. The restart
	// fetched exactly what was not verified, so what it fetched twice is at most that.
	if inFlight := receivedBefore - killedAt; refetched > inFlight {
		t.Fatalf("re-fetched %d bytes, more than the %d in flight at the stop", refetched, inFlight)
	}
}
