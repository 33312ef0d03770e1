package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Default strike points of the faults that do not say.
const (
	defaultKillAt       = 0.3 // kill-seeder: share of N·F held by the fleet
	defaultKillAgentsAt = 0.4 // kill-agents: same
	defaultDownloadAt   = 0.5 // kill-downloading: share of F held by the agent
	defaultInstallAt    = 0.3 // kill-installing: share of F copied into staging
	defaultEvery        = 64 << 10
)

// faultPlan strikes a scenario's faults during the Peerpatch phase. It runs on the phase
// loop's goroutine only (the install watchers hand their findings back as events).
type faultPlan struct {
	f     *fleet
	items []*faultItem
	order []*agentRun // the order in which agents are picked, from the scenario's seed
	taken map[*agentRun]bool
	grown map[*agentRun]bool
}

// faultItem is one fault and what it did.
type faultItem struct {
	Fault
	targets []*agentRun
	fired   bool
	hit     map[*agentRun]bool
}

// newFaultPlan picks the agents each fault strikes and prepares them (a small disk).
func newFaultPlan(ctx context.Context, f *fleet) (*faultPlan, error) {
	pl := &faultPlan{f: f, taken: map[*agentRun]bool{}, grown: map[*agentRun]bool{}}
	rng := rand.New(rand.NewPCG(f.sc.Seed, 0x1ab))
	for _, i := range rng.Perm(len(f.agents)) {
		pl.order = append(pl.order, f.agents[i])
	}
	for _, fl := range f.sc.Faults {
		it := &faultItem{Fault: fl, hit: map[*agentRun]bool{}}
		pl.items = append(pl.items, it)
		switch fl.Kind {
		case FaultKillDownloading, FaultKillInstalling, FaultDiskFull:
			it.targets = pl.pick(fl.count(len(f.agents)), func(*agentRun) bool { return true })
		}
		if fl.Kind == FaultDiskFull {
			for _, a := range it.targets {
				if err := pl.smallDisk(ctx, a, it); err != nil {
					return nil, err
				}
			}
		}
	}
	return pl, nil
}

// pick takes up to n agents, in plan order, that no other fault took and that ok accepts.
func (pl *faultPlan) pick(n int, ok func(*agentRun) bool) []*agentRun {
	var out []*agentRun
	for _, a := range pl.order {
		if len(out) == n {
			break
		}
		if !pl.taken[a] && ok(a) {
			pl.taken[a] = true
			out = append(out, a)
		}
	}
	return out
}

// every is the corrupt peers' corruption stride.
func (pl *faultPlan) every() Size {
	for _, it := range pl.items {
		if it.Kind == FaultCorruptPeer && it.Every > 0 {
			return it.Every
		}
	}
	return defaultEvery
}

func at(v Percent, def float64) float64 {
	if v > 0 {
		return float64(v)
	}
	return def
}

// smallDisk puts the agent's --data on a tmpfs of the fault's size.
func (pl *faultPlan) smallDisk(ctx context.Context, a *agentRun, it *faultItem) error {
	size := it.Size.Of(pl.f.sc.Bundle, pl.f.sc.Bundle/2)
	if err := os.MkdirAll(a.data, 0o700); err != nil {
		return fmt.Errorf("disk-full: %w", err)
	}
	if _, err := command(ctx, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), Prefix+"-disk", a.data); err != nil {
		return fmt.Errorf("disk-full: %w", err)
	}
	a.expected = it.GrowAfter > 0
	a.faults = append(a.faults, fmt.Sprintf("--data on a %s tmpfs", size))
	return nil
}

// observe reacts to one of agent a's log lines.
func (pl *faultPlan) observe(_ context.Context, a *agentRun, l *logLine) {
	f := pl.f
	for _, it := range pl.items {
		switch it.Kind {
		case FaultKillInstalling:
			if slices.Contains(it.targets, a) && !it.hit[a] && l.Msg == logDownloaded {
				it.hit[a] = true
				pl.watchInstall(a, int64(at(it.At, defaultInstallAt)*float64(f.pub.Length)))
			}
		case FaultDiskFull:
			if slices.Contains(it.targets, a) && a.noSpace && !it.hit[a] {
				it.hit[a] = true
				f.event("%s: %s", a.name, a.fault(f.since(time.Now()), "reports the full disk: %s", a.errors[len(a.errors)-1]))
				if it.GrowAfter > 0 {
					a.growAt = time.Now().Add(it.GrowAfter.D())
				}
			}
		}
	}
}

// strike fires the faults whose moment, a share of the transfer, has come.
func (pl *faultPlan) strike() {
	f := pl.f
	for _, it := range pl.items {
		switch it.Kind {
		case FaultKillSeeder:
			if !it.fired && f.progress() >= at(it.At, defaultKillAt) {
				it.fired = true
				pl.killSeeder(it)
			}
		case FaultKillAgents:
			if !it.fired && f.progress() >= at(it.At, defaultKillAgentsAt) {
				it.fired = true
				pl.killAgents(it)
			}
		case FaultKillDownloading:
			for _, a := range it.targets {
				if !it.hit[a] && a.running() && a.installedAt.IsZero() && a.downloadedAt.IsZero() &&
					float64(a.received) >= at(it.At, defaultDownloadAt)*float64(f.pub.Length) {
					it.hit[a] = true
					pl.kill(a, it.RestartAfter, "SIGKILL while downloading, its link having delivered %s of %s", Size(a.received), Size(f.pub.Length))
				}
			}
		}
	}
}

// kill SIGKILLs the agent's process; it starts again after restartAfter (0: never).
func (pl *faultPlan) kill(a *agentRun, restartAfter Duration, format string, args ...any) {
	f := pl.f
	a.killed = true
	a.cur.signal(syscall.SIGKILL)
	what := fmt.Sprintf(format, args...)
	if restartAfter > 0 {
		a.restart = time.Now().Add(restartAfter.D())
		what += fmt.Sprintf("; restart in %s", restartAfter.D())
	} else {
		a.expected = false
		what += "; stays down"
	}
	f.event("%s: %s", a.name, a.fault(f.since(time.Now()), "%s", what))
}

func (pl *faultPlan) killSeeder(it *faultItem) {
	f := pl.f
	f.seeder.signal(syscall.SIGKILL)
	f.seederDead = true
	what := fmt.Sprintf("seeder: SIGKILL with the fleet holding %.0f%% of N·F", 100*f.progress())
	if it.RestartAfter > 0 {
		f.seederBack = time.Now().Add(it.RestartAfter.D())
		what += fmt.Sprintf("; restart in %s", it.RestartAfter.D())
	}
	f.event("%s", what)
}

func (pl *faultPlan) killAgents(it *faultItem) {
	f := pl.f
	victims := pl.pick(it.count(len(f.agents)), func(a *agentRun) bool { return a.running() && a.installedAt.IsZero() })
	for i, a := range victims {
		restart := it.RestartAfter
		if i >= it.restarts(len(victims)) {
			restart = 0
		}
		pl.kill(a, restart, "SIGKILL mid-transfer (fleet at %.0f%% of N·F), its link having delivered %s", 100*f.progress(), Size(a.received))
	}
}

// watchInstall polls the agent's staging directory every 2 ms, once it has downloaded, and
// asks the phase loop for the kill once stagedMin bytes are copied.
func (pl *faultPlan) watchInstall(a *agentRun, stagedMin int64) {
	f, p := pl.f, a.cur
	current := filepath.Join(a.install, "current")
	go func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) && !p.exited() {
			if n, ok := stagedBytes(a.install); ok && n >= stagedMin {
				f.send(agentEvent{a: a, p: p, installKill: true, staged: n})
				return
			}
			if _, err := os.Readlink(current); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		f.send(agentEvent{a: a, note: a.name + ": the install ended before the kill (fault missed)"})
	}()
}

// killInstalling is the install watcher's kill, run on the phase loop.
func (pl *faultPlan) killInstalling(a *agentRun, staged int64) {
	for _, it := range pl.items {
		if it.Kind == FaultKillInstalling && slices.Contains(it.targets, a) {
			if !a.running() || !a.installedAt.IsZero() {
				pl.f.event("%s: the install ended before the kill (fault missed)", a.name)
				return
			}
			pl.kill(a, it.RestartAfter, "SIGKILL while installing, %s of %s copied into staging", Size(staged), Size(pl.f.pub.Length))
			return
		}
	}
}

// tick strikes what is due, restarts what is due and grows full disks.
func (pl *faultPlan) tick(ctx context.Context, now time.Time) {
	f := pl.f
	pl.strike()
	for _, a := range f.agents {
		if !a.restart.IsZero() && now.After(a.restart) && !a.running() {
			if err := a.start(f.logDir, f.send); err != nil {
				a.addError(err.Error())
				a.restart = time.Time{}
				continue
			}
			f.event("%s: restarted", a.name)
		}
		if !a.growAt.IsZero() && now.After(a.growAt) && !pl.grown[a] {
			pl.grown[a] = true
			a.growAt = time.Time{}
			size := 2*f.pub.Length + 64<<20
			if _, err := command(ctx, "mount", "-o", fmt.Sprintf("remount,size=%d", size), a.data); err != nil {
				f.event("%s: cannot grow the disk: %v", a.name, err)
				continue
			}
			f.event("%s: %s", a.name, a.fault(f.since(now), "disk grown to %s", Size(size)))
		}
	}
	if !f.seederBack.IsZero() && now.After(f.seederBack) && f.seeder.exited() {
		f.seederBack = time.Time{}
		if err := f.startSeeder(ctx); err != nil {
			f.event("seeder: restart failed: %v", err)
			return
		}
		f.event("seeder: restarted")
	}
}
