package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrNotRoot: the lab makes namespaces, links and mounts, which needs root.
	ErrNotRoot = errors.New("the lab needs root (network namespaces, tc, tmpfs mounts)")
	// ErrNoNetns: `ip netns` or `tc` does not work here.
	ErrNoNetns = errors.New("network namespaces or tc do not work here")
)

// Config says what a lab run does.
type Config struct {
	// Scenarios to run, in order, with their overrides applied. A scenario listed twice runs
	// twice; the report compares the runs.
	Scenarios []Scenario
	// OutDir receives report.json, report.md and the charts ("" writes nothing).
	OutDir string
	// LogDir, if set, keeps every node's log under LogDir/<scenario>-<run>/.
	LogDir string
	// Source is the repository to build peerpatch from (default: the one holding this file).
	Source string
	// Binary is a peerpatch binary to use instead of building one.
	Binary string
	// Revision names the peerpatch under test in the report (default: the commit of Source,
	// with "-dirty" if it has uncommitted changes).
	Revision string
	// Self is the command that runs a lab helper: a program and the arguments that come before
	// the helper's name (a binary whose main hands HelperArg to HelperMain).
	Self []string
	// SkipHTTP leaves out the plain-HTTP baseline.
	SkipHTTP bool
	// HostMemory leaves the host's handling of freed memory as it is (see hostmem.go).
	HostMemory bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Available reports whether the lab can run here: root, and a network namespace can be made.
func Available(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, tool := range []string{"ip", "tc", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found", ErrNoNetns, tool)
		}
	}
	probe := fmt.Sprintf("%s-probe-%d", Prefix, os.Getpid())
	if _, err := command(ctx, "ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	defer command(context.WithoutCancel(ctx), "ip", "netns", "del", probe)
	if _, err := command(ctx, "tc", "-n", probe, "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32k", "latency", "50ms"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	return nil
}

// Run runs the scenarios and returns the report, also written to cfg.OutDir. It removes
// everything it made when it ends, and the leftovers of crashed runs when it starts.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Self) == 0 {
		return nil, errors.New("lab: Config.Self is empty")
	}
	if err := Available(ctx); err != nil {
		return nil, err
	}
	if err := cleanStale(ctx, log); err != nil {
		log.Warn("could not remove every leftover of an earlier run", "err", err)
	}
	lock, err := acquireRun()
	if err != nil {
		return nil, err
	}
	defer lock.release()
	wd := workDir(lock.id)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	defer func() {
		if err := removeRun(context.WithoutCancel(ctx), lock.id); err != nil {
			log.Warn("teardown", "err", err)
		}
	}()
	log.Info("lab run", "run", lock.id, "workDir", wd, "scenarios", len(cfg.Scenarios))
	mem := &guestMemory{}
	if !cfg.HostMemory {
		if mem, err = holdGuestMemory(cfg.Self, log); err != nil {
			log.Warn("cannot keep freed memory in the guest; figures include the host's page faults", "err", err)
		}
	}
	defer func() {
		if err := mem.release(); err != nil {
			log.Warn("teardown", "err", err)
		}
	}()

	bin := cfg.Binary
	if bin == "" {
		if bin, err = build(ctx, cfg.Source, wd); err != nil {
			return nil, err
		}
	}
	rev := cfg.Revision
	if rev == "" {
		rev = revision(cfg.Source)
	}
	rep := &Report{Date: time.Now().UTC(), Machine: readMachine(), Peerpatch: rev, TCP: CongestionControl}
	rep.Machine.GuestMemory = mem.String()
	runs := map[string]int{}
	var errs []error
	for _, sc := range cfg.Scenarios {
		runs[sc.Name]++
		log.Info("scenario", "name", sc.Name, "run", runs[sc.Name], "agents", sc.Agents, "bundle", sc.Bundle.String())
		res, err := runScenario(ctx, &cfg, sc, runs[sc.Name], lock.id, bin, mem, log)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if err != nil {
			log.Error("scenario failed to run", "name", sc.Name, "err", err)
			errs = append(errs, fmt.Errorf("scenario %s: %w", sc.Name, err))
			res = &ScenarioResult{Scenario: sc, Run: runs[sc.Name], Problems: []string{err.Error()}}
		}
		rep.Scenarios = append(rep.Scenarios, *res)
		if cfg.OutDir != "" {
			if err := rep.Write(cfg.OutDir); err != nil {
				return rep, err
			}
		}
	}
	return rep, errors.Join(errs...)
}

// runScenario builds the scenario's network, runs both phases on it and tears it down.
func runScenario(ctx context.Context, cfg *Config, sc Scenario, run int, id, bin string, mem *guestMemory, log *slog.Logger) (res *ScenarioResult, err error) {
	dir := filepath.Join(workDir(id), fmt.Sprintf("%s-%d", sc.Name, run))
	e := &env{sc: &sc, bin: bin, self: cfg.Self, dir: dir, logDir: filepath.Join(dir, "logs"), log: log}
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create scenario directory: %w", err)
	}
	teardown := context.WithoutCancel(ctx)
	defer func() {
		if cfg.LogDir != "" {
			keepLogs(e.logDir, filepath.Join(cfg.LogDir, fmt.Sprintf("%s-%d", sc.Name, run)))
		}
		err = errors.Join(err, unmountUnder(teardown, dir))
		if e.net != nil {
			err = errors.Join(err, e.net.Close(teardown))
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove scenario files: %w", rerr))
		}
	}()
	// What a phase fills with file pages: every node's copy of the release, and some.
	phaseMemory := int64(sc.Agents+sc.badPeers()+2) * int64(sc.Bundle) * 5 / 4
	mem.touch(ctx, phaseMemory, log)
	settle(ctx, log)
	if e.net, err = newNetwork(ctx, id, log); err != nil {
		return nil, err
	}
	if e.seeder, err = e.net.AddNode(ctx, "seeder", seederIP, sc.Links.Seeder); err != nil {
		return nil, err
	}
	if sc.Mirror {
		if e.mirror, err = e.net.AddNode(ctx, "mirror", mirrorIP, sc.Links.Mirror); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= sc.Agents; i++ {
		nd, err := e.net.AddNode(ctx, agentName(i), agentIP(i), sc.Links.Agent)
		if err != nil {
			return nil, err
		}
		e.agents = append(e.agents, nd)
	}
	for i := 1; i <= sc.badPeers(); i++ {
		nd, err := e.net.AddNode(ctx, badName(i), badIP(i), sc.Links.Agent)
		if err != nil {
			return nil, err
		}
		e.bad = append(e.bad, nd)
	}
	if e.release, err = writeRelease(filepath.Join(dir, "release"), int64(sc.Bundle), sc.Seed); err != nil {
		return nil, err
	}
	res = &ScenarioResult{Scenario: sc, Run: run, Caps: e.caps()}
	res.Bound = KumarRoss(float64(e.release.size), res.Caps)
	res.HTTPExpected = HTTPExpected(float64(e.release.size), res.Caps)

	fl := newFleet(e)
	res.Peerpatch, err = fl.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("peerpatch phase: %w", err)
	}
	res.PieceSize = fl.pieceSize()
	// The next phase starts on clean disks: unmount the small disks, drop the phase's files.
	if err := unmountUnder(teardown, dir); err != nil {
		return nil, err
	}
	for _, a := range append(fl.agents, fl.bad...) {
		os.RemoveAll(filepath.Join(dir, a.name))
	}
	os.RemoveAll(fl.seederData)
	os.RemoveAll(fl.mirrorRoot)

	if !cfg.SkipHTTP && !sc.SkipHTTP {
		mem.touch(ctx, phaseMemory, log)
		settle(ctx, log)
		h := &plainHTTP{env: e}
		if res.HTTP, err = h.run(ctx); err != nil {
			return nil, fmt.Errorf("plain-HTTP phase: %w", err)
		}
	}
	res.judge()
	return res, nil
}

// judge sets the ratios and the verdict.
func (r *ScenarioResult) judge() {
	for _, ph := range []*PhaseResult{r.Peerpatch, r.HTTP} {
		if ph == nil {
			continue
		}
		if r.Bound.TMin > 0 {
			ph.Ratio = ph.Makespan / r.Bound.TMin
		}
		for _, p := range ph.Problems {
			r.Problems = append(r.Problems, ph.Method+": "+p)
		}
	}
	r.OK = len(r.Problems) == 0
}

// build compiles peerpatch from the source tree into dir.
func build(ctx context.Context, src, dir string) (string, error) {
	if src == "" {
		src = sourceRoot()
	}
	bin := filepath.Join(dir, "peerpatch")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "nosqlite", "-o", bin, "./cmd/peerpatch")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build peerpatch in %s: %w\n%s", src, err, out)
	}
	return bin, nil
}

// sourceRoot is the repository this file belongs to.
func sourceRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// revision names the source revision: the commit, "-dirty" with uncommitted changes, or
// "unknown" outside a git checkout. It never writes to the repository (no index refresh).
func revision(src string) string {
	if src == "" {
		src = sourceRoot()
	}
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", src}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		rev += "-dirty"
	}
	return rev
}

// keepLogs copies a scenario's node logs to dst.
func keepLogs(src, dst string) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return
	}
	os.RemoveAll(dst)
	exec.Command("cp", "-a", src, dst).Run()
}

// settle waits, before a phase, until the disk is synced and the host is quiet: the phase before
// wrote N agents × two copies of F (16 GiB at N=32) and removed them, and the kernel went on
// discarding the freed blocks for about 8 s after baseline-n32. Started at once, baseline-n8
// after baseline-n32 took 1.55-1.56 × T_min in three runs (1.29-1.31 alone, the same hour); one
// such pair with settle gave 1.28, but the next full lab still had 1.76 there, so this was not
// all of it: the rest was the freed memory going back to the hypervisor (see hostmem.go). Quiet
// is under 10% busy for two seconds in a row; settle gives up after two minutes and says so.
func settle(ctx context.Context, log *slog.Logger) {
	const (
		quiet   = 0.10
		streak  = 2
		giveUp  = 2 * time.Minute
		sampled = time.Second
	)
	began := time.Now()
	syscall.Sync()
	calm := 0
	for m := startBusy(); calm < streak; m = startBusy() {
		if time.Since(began) > giveUp {
			log.Warn("host still busy before the phase; running it anyway", "waited", giveUp)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(sampled):
		}
		if m.read() < quiet {
			calm++
		} else {
			calm = 0
		}
	}
	log.Info("host settled", "took", time.Since(began).Round(100*time.Millisecond))
}
