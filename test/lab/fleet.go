package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// fleet is the Peerpatch phase of a scenario: a seeder, an optional web-seed mirror, N agents
// (and corrupt peers), a publish, the faults, and the figures.
type fleet struct {
	*env
	deploy     string
	seederData string
	seederURL  string
	seederArgv []string
	mirrorRoot string
	seeder     *proc
	seederDead bool
	seederBack time.Time // when to restart a killed seeder
	seederProc []*proc
	mirror     *proc
	agents     []*agentRun
	bad        []*agentRun
	pub        api.Published

	events chan agentEvent
	quit   chan struct{}
	once   sync.Once

	t0       time.Time
	start    map[string]Counters
	busy     busyMeter
	faults   *faultPlan
	res      *PhaseResult
	lastTick time.Time // last timeline sample
	lastLoop time.Time // last tick of the phase loop
}

func newFleet(e *env) *fleet {
	return &fleet{env: e, events: make(chan agentEvent, 1024), quit: make(chan struct{}),
		res: &PhaseResult{Method: "peerpatch", Agents: e.sc.Agents, SeederReported: -1}}
}

// send hands an event to the phase loop, or drops it once the loop has ended.
func (f *fleet) send(ev agentEvent) {
	select {
	case f.events <- ev:
	case <-f.quit:
	}
}

// since is seconds since t0.
func (f *fleet) since(t time.Time) float64 { return t.Sub(f.t0).Seconds() }

func (f *fleet) event(format string, args ...any) {
	at := 0.0
	if !f.t0.IsZero() {
		at = f.since(time.Now())
	}
	what := fmt.Sprintf(format, args...)
	f.res.Events = append(f.res.Events, Event{At: at, What: what})
	f.log.Info("lab event", "scenario", f.sc.Name, "t", fmt.Sprintf("%.1fs", at), "what", what)
}

// run runs the phase. The error is for a lab failure (a node that cannot start); what the
// agents did, good or bad, is in the result.
func (f *fleet) run(ctx context.Context) (*PhaseResult, error) {
	defer f.stopAll()
	if err := f.setup(ctx); err != nil {
		return nil, err
	}
	if err := f.deliver(ctx); err != nil {
		return nil, err
	}
	f.finish(ctx)
	return f.res, nil
}

// setup makes the deployment and starts the mirror and the seeder.
func (f *fleet) setup(ctx context.Context) error {
	f.deploy = filepath.Join(f.dir, "deploy")
	if _, err := command(ctx, f.bin, "init", "--dir", f.deploy); err != nil {
		return fmt.Errorf("peerpatch init: %w", err)
	}
	f.seederData = filepath.Join(f.dir, "seeder")
	f.seederURL = "http://" + seederIP + ":" + seederPort
	f.seederArgv = []string{f.bin, "--log-format", "json", "--log-level", "info", "seeder",
		"--data", f.seederData, "--listen", seederIP + ":" + seederPort, "--keys", f.deploy,
		"--peer-listen", seederIP + ":6881"}
	if f.env.mirror != nil {
		f.mirrorRoot = filepath.Join(f.dir, "mirror")
		if err := os.MkdirAll(f.mirrorRoot, 0o755); err != nil {
			return fmt.Errorf("mirror directory: %w", err)
		}
		argv := append(append([]string(nil), f.self...), "serve", "--dir", f.mirrorRoot, "--listen", mirrorIP+":"+seederPort)
		p, err := f.startNode(ctx, "mirror", f.env.mirror, argv, msgServing)
		if err != nil {
			return fmt.Errorf("start mirror: %w", err)
		}
		f.mirror = p
		f.seederArgv = append(f.seederArgv, "--webseed", "http://"+mirrorIP+":"+seederPort)
	}
	f.seederArgv = append(f.seederArgv, f.sc.SeederArgs...)
	if err := f.startSeeder(ctx); err != nil {
		return err
	}
	for _, nd := range f.env.agents {
		a := newAgentRun(nd.Name, nd, filepath.Join(f.dir, nd.Name))
		a.argv = agentArgs(f.bin, a, f.deploy, f.seederURL, f.sc.AgentArgs)
		f.agents = append(f.agents, a)
	}
	for _, nd := range f.env.bad {
		a := newAgentRun(nd.Name, nd, filepath.Join(f.dir, nd.Name))
		a.argv = agentArgs(f.bin, a, f.deploy, f.seederURL, f.sc.AgentArgs)
		a.bad = true
		f.bad = append(f.bad, a)
	}
	var err error
	f.faults, err = newFaultPlan(ctx, f)
	return err
}

func (f *fleet) startSeeder(ctx context.Context) error {
	p, err := f.startNode(ctx, "seeder", f.env.seeder, f.seederArgv, logSeederReady)
	if err != nil {
		return fmt.Errorf("start seeder: %w", err)
	}
	f.seeder, f.seederDead = p, false
	f.seederProc = append(f.seederProc, p)
	return nil
}

// deliver publishes the release and runs the phase loop until every agent expected to
// install has, or cannot any more, or the phase times out.
func (f *fleet) deliver(ctx context.Context) error {
	if len(f.bad) > 0 {
		return f.deliverWithBadPeers(ctx)
	}
	if err := f.startAgents(ctx, f.agents); err != nil {
		return err
	}
	var err error
	if f.start, err = snapshot(f.env.net.nodes); err != nil {
		return err
	}
	f.busy = startBusy()
	if err := f.publish(ctx); err != nil {
		return err
	}
	f.t0 = time.Now()
	f.event("published %s %s: %s in %d pieces of %s", channel, version, Size(f.pub.Length), f.pub.Pieces, Size(f.pieceSize()))
	if err := f.copyToMirror(ctx); err != nil {
		return err
	}
	return f.loop(ctx, f.allSettled, f.sc.timeout(), true)
}

// deliverWithBadPeers lets the corrupt peers install the release first, corrupts their swarm
// copies, then starts the N agents: the figures count from that start.
func (f *fleet) deliverWithBadPeers(ctx context.Context) error {
	if err := f.startAgents(ctx, f.bad); err != nil {
		return err
	}
	if err := f.publish(ctx); err != nil {
		return err
	}
	if err := f.copyToMirror(ctx); err != nil {
		return err
	}
	installed := func() bool {
		for _, a := range f.bad {
			if a.installedAt.IsZero() {
				return false
			}
		}
		return true
	}
	if err := f.loop(ctx, installed, f.sc.timeout(), false); err != nil {
		return err
	}
	if !installed() {
		return errors.New("the corrupt peers did not install the release")
	}
	for _, a := range f.bad {
		// Stopped meanwhile, the agent cannot see its files change (see corruptSwarmCopy).
		a.cur.signal(syscall.SIGSTOP)
		n, err := corruptSwarmCopy(filepath.Join(a.data, "swarm", f.pub.InfoHash), int64(f.faults.every()))
		a.cur.signal(syscall.SIGCONT)
		if err != nil {
			return err
		}
		a.faults = append(a.faults, fmt.Sprintf("swarm copy corrupted: %d bytes flipped", n))
	}
	var err error
	if f.start, err = snapshot(f.env.net.nodes); err != nil {
		return err
	}
	f.busy = startBusy()
	f.t0 = time.Now()
	f.event("corrupt peers %s seed a corrupted copy; starting the %d agents", names(f.bad), len(f.agents))
	for _, a := range f.agents {
		if err := a.start(f.logDir, f.send); err != nil {
			return err
		}
	}
	return f.loop(ctx, f.allSettled, f.sc.timeout(), true)
}

func names(as []*agentRun) string {
	var n []string
	for _, a := range as {
		n = append(n, a.name)
	}
	return strings.Join(n, ",")
}

func (f *fleet) pieceSize() int64 {
	if f.pub.Pieces == 0 {
		return 0
	}
	return (f.pub.Length + int64(f.pub.Pieces) - 1) / int64(f.pub.Pieces)
}

// startAgents starts agents and waits until each is enrolled and waiting for a release.
func (f *fleet) startAgents(ctx context.Context, as []*agentRun) error {
	for _, a := range as {
		if err := a.start(f.logDir, f.send); err != nil {
			return err
		}
	}
	waiting := func() bool {
		for _, a := range as {
			if !a.waiting {
				return false
			}
		}
		return true
	}
	if err := f.loop(ctx, waiting, time.Minute, false); err != nil {
		return err
	}
	if !waiting() {
		return fmt.Errorf("agents did not come up within a minute: %v", f.notWaiting(as))
	}
	return nil
}

func (f *fleet) notWaiting(as []*agentRun) []string {
	var out []string
	for _, a := range as {
		if !a.waiting {
			out = append(out, a.name+": "+a.cur.lastLines())
		}
	}
	return out
}

// publish publishes the release from the seeder's namespace (the admin is on the origin host).
func (f *fleet) publish(ctx context.Context) error {
	t := time.Now()
	args := []string{"publish", "--seeder", f.seederURL, "--keys", f.deploy, "--channel", channel, "--version", version, "--json"}
	if f.sc.PieceSize > 0 {
		args = append(args, "--piece-size", fmt.Sprint(int64(f.sc.PieceSize)))
	}
	out, err := nsOutput(ctx, 5*time.Minute, f.env.seeder, append(append([]string{f.bin}, args...), f.release.dir)...)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := json.Unmarshal([]byte(out), &f.pub); err != nil {
		return fmt.Errorf("publish --json output %q: %w", out, err)
	}
	f.log.Info("published", "scenario", f.sc.Name, "took", time.Since(t).Round(time.Millisecond), "infohash", f.pub.InfoHash)
	return nil
}

// copyToMirror copies the seeder's releases/ tree to the mirror, as rsync would.
func (f *fleet) copyToMirror(ctx context.Context) error {
	if f.mirrorRoot == "" {
		return nil
	}
	src := filepath.Join(f.seederData, "releases", channel)
	if _, err := command(ctx, "cp", "-a", src, f.mirrorRoot+"/"); err != nil {
		return fmt.Errorf("copy releases to the mirror: %w", err)
	}
	return nil
}

// loop handles events until done() holds, ctx ends or timeout passes. armed turns the faults
// and the timeline on.
func (f *fleet) loop(ctx context.Context, done func() bool, timeout time.Duration, armed bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-f.events:
			f.handle(ctx, ev, armed)
		case now := <-tick.C:
			if armed {
				if !f.lastLoop.IsZero() {
					f.res.Stall = max(f.res.Stall, now.Sub(f.lastLoop).Seconds()-0.2)
				}
				f.lastLoop = now
				f.tick(ctx, now)
			}
			if now.After(deadline) {
				if armed {
					f.event("timeout after %s", timeout)
				}
				return nil
			}
		}
	}
	return nil
}

func (f *fleet) handle(ctx context.Context, ev agentEvent, armed bool) {
	a := ev.a
	switch {
	case ev.note != "":
		f.event("%s", ev.note)
	case ev.p != a.cur:
		// A line or the exit of a process that was replaced.
	case ev.installKill:
		f.faults.killInstalling(a, ev.staged)
	case ev.exit:
		if !a.killed {
			a.addError(fmt.Sprintf("process exited on its own: %v", ev.p.exitError()))
			f.event("%s exited on its own: %v", a.name, ev.p.result())
		}
	default:
		a.observe(&ev.line)
		if ev.line.Msg == logDownloading && len(a.procs) > 1 && a.resumeNoted != ev.p {
			// What a restarted agent kept: the pieces it had verified before the kill.
			a.resumeNoted = ev.p
			f.event("%s: %s", a.name, a.fault(f.since(ev.line.Time), "restarted process resumes with %s already verified", Size(ev.line.Verified)))
		}
		if ev.line.Msg == logWebSeeds && armed {
			f.event("%s: no progress from peers; turns to the web seeds", a.name)
		}
		if armed && !a.bad {
			f.faults.observe(ctx, a, &ev.line)
		}
	}
}

// stopping reports whether the phase is over (its processes are being stopped).
func (f *fleet) stopping() bool {
	select {
	case <-f.quit:
		return true
	default:
		return false
	}
}

func (f *fleet) tick(ctx context.Context, now time.Time) {
	for _, a := range f.agents {
		if c, err := a.node.counters(); err == nil {
			a.received = c.Received - f.start[a.name].Received
		}
	}
	f.faults.tick(ctx, now)
	if now.Sub(f.lastTick) >= time.Second {
		f.lastTick = now
		f.sample(now)
	}
}

// allSettled: every agent expected to install has installed or is down for good.
func (f *fleet) allSettled() bool {
	for _, a := range f.agents {
		if a.expected && !a.settled() {
			return false
		}
	}
	return true
}

// progress is the share of N·F the agents hold (see agentRun.held).
func (f *fleet) progress() float64 {
	var sum int64
	for _, a := range f.agents {
		sum += a.held(f.pub.Length)
	}
	return float64(sum) / float64(int64(len(f.agents))*max(f.pub.Length, 1))
}

// stopAll ends the loop's event intake and stops every process: agents first, with SIGTERM.
func (f *fleet) stopAll() {
	f.once.Do(func() { close(f.quit) })
	var wg sync.WaitGroup
	for _, a := range append(append([]*agentRun(nil), f.agents...), f.bad...) {
		if a.running() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.cur.stop(10 * time.Second)
			}()
		}
	}
	wg.Wait()
	for _, p := range []*proc{f.seeder, f.mirror} {
		if p != nil {
			p.stop(10 * time.Second)
		}
	}
}
