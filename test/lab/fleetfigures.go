package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
)

// The Peerpatch phase's figures: the timeline, and at the end the counters, the seeder's own
// count, the processes' usage and the check of every install.

// sample adds a timeline point.
func (f *fleet) sample(now time.Time) {
	c, err := snapshot(f.env.net.nodes)
	if err != nil {
		return
	}
	p := TimelinePoint{At: f.since(now)}
	sent := func(nd *Node) int64 { return c[nd.Name].Sent - f.start[nd.Name].Sent }
	p.OriginBytes = sent(f.env.seeder)
	if f.env.mirror != nil {
		p.OriginBytes += sent(f.env.mirror)
	}
	for _, a := range f.agents {
		out := sent(a.node)
		p.AgentSent = append(p.AgentSent, out)
		p.AgentReceived = append(p.AgentReceived, c[a.node.Name].Received-f.start[a.node.Name].Received)
		p.PeerBytes += out
	}
	for _, a := range f.bad {
		p.BadBytes += sent(a.node)
	}
	for _, a := range f.agents {
		if !a.installedAt.IsZero() {
			p.Finished++
		}
	}
	f.res.Timeline = append(f.res.Timeline, p)
}

// idleSettle is how long the lab waits after the last install before it samples the agents'
// memory at rest.
const idleSettle = 15 * time.Second

// finish takes the figures: counters at once, then the seeder's view, then the processes'
// usage after stopping them, then the installs.
func (f *fleet) finish(ctx context.Context) {
	end, err := snapshot(f.env.net.nodes)
	f.res.HostBusy = f.busy.read()
	now := time.Now()
	f.sample(now)
	if err != nil {
		f.res.Problems = append(f.res.Problems, err.Error())
	}
	if !f.seederDead && f.seeder != nil {
		f.seederStatus(ctx)
	}
	// The memory of the agents that installed, idleSettle after the last one did: they hold
	// the release and seed it, but nobody needs anything any more.
	select {
	case <-ctx.Done():
	case <-time.After(idleSettle):
	}
	idle := make(map[*agentRun]int64)
	for _, a := range f.agents {
		if a.running() && !a.installedAt.IsZero() {
			idle[a] = a.cur.rss()
		}
	}
	f.stopAll()

	var times []float64
	var cpu float64
	for _, a := range f.agents {
		r := AgentResult{Name: a.name, Expected: a.expected, Processes: len(a.procs), FromPeers: a.fromPeers(),
			FromOrigin: a.fromOrigin(), BadPieces: a.badPieces, Faults: a.faults, Errors: a.errors}
		r.WireIn = end[a.name].Received - f.start[a.name].Received
		r.WireOut = end[a.name].Sent - f.start[a.name].Sent
		r.CPU, r.PeakRSS = a.usage()
		r.IdleRSS = idle[a]
		cpu += r.CPU
		f.res.AgentPeakRSS = max(f.res.AgentPeakRSS, r.PeakRSS)
		f.res.AgentIdleRSS = max(f.res.AgentIdleRSS, r.IdleRSS)
		f.res.FromPeers += r.FromPeers
		f.res.FromOrigin += r.FromOrigin
		switch {
		case !a.installedAt.IsZero():
			r.Outcome, r.Finished = "installed", f.since(a.installedAt)
			if a.expected {
				times = append(times, r.Finished)
			}
		case a.noSpace:
			r.Outcome = "disk full"
		case !a.restart.IsZero() || a.killed:
			r.Outcome = "killed"
		case len(a.errors) > 0:
			r.Outcome = "failed"
		default:
			r.Outcome = "timeout"
		}
		f.res.Nodes = append(f.res.Nodes, r)
		if a.expected {
			f.res.Expected++
		}
	}
	f.res.AgentCPU = cpu / float64(max(len(f.agents), 1))
	for _, p := range f.seederProc {
		f.res.SeederCPU += p.cpuSeconds()
		f.res.SeederRSS = max(f.res.SeederRSS, p.peakRSS())
	}
	labCPU := cpu + f.res.SeederCPU
	if f.mirror != nil {
		labCPU += f.mirror.cpuSeconds()
	}
	if len(f.seederProc) > 0 {
		f.res.LabCPU = cpuShare(labCPU, f.seederProc[0].started, now)
	}
	f.res.SeederBytes = end["seeder"].Sent - f.start["seeder"].Sent
	if f.env.mirror != nil {
		f.res.MirrorBytes = end["mirror"].Sent - f.start["mirror"].Sent
	}
	for _, a := range f.agents {
		f.res.AgentsSent += end[a.name].Sent - f.start[a.name].Sent
	}
	for _, a := range f.bad {
		f.res.BadSent += end[a.name].Sent - f.start[a.name].Sent
	}
	f.res.OriginRatio = float64(f.res.SeederBytes+f.res.MirrorBytes) / float64(f.pub.Length)
	f.res.Finished = len(times)
	if len(times) > 0 {
		f.res.P50, f.res.P99 = quantile(times, 0.5), quantile(times, 0.99)
		f.res.Makespan = quantile(times, 1)
	}
	if f.res.Finished < f.res.Expected {
		f.res.Makespan = f.since(now)
		f.res.Problems = append(f.res.Problems, fmt.Sprintf("%d of %d agents expected to install did not", f.res.Expected-f.res.Finished, f.res.Expected))
	}
	f.checkInstalls()
}

// seederStatus reads the seeder's own count of what it sent.
func (f *fleet) seederStatus(ctx context.Context) {
	out, err := nsOutput(ctx, 30*time.Second, f.env.seeder, f.bin, "status", "--seeder", f.seederURL, "--keys", f.deploy, "--json")
	if err != nil {
		f.res.Problems = append(f.res.Problems, fmt.Sprintf("status: %v", err))
		return
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.res.Problems = append(f.res.Problems, fmt.Sprintf("status --json: %v", err))
		return
	}
	for _, r := range st.Releases {
		if r.Version == version {
			f.res.SeederReported = r.OriginBytes
		}
	}
}

// checkInstalls verifies every agent's install directory, two at a time.
func (f *fleet) checkInstalls() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range f.res.Nodes {
		r := &f.res.Nodes[i]
		a := f.agents[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r.Install = checkInstall(a.install, version, f.release.want)
		}()
	}
	wg.Wait()
	for i := range f.res.Nodes {
		r := &f.res.Nodes[i]
		if v, ok := r.Verdict(); !ok {
			f.res.Problems = append(f.res.Problems, fmt.Sprintf("%s: %s", r.Name, v))
		}
		if r.Expected && len(r.Install.Leftovers) > 0 {
			f.res.Problems = append(f.res.Problems, fmt.Sprintf("%s: leftovers after installing: %v", r.Name, r.Install.Leftovers))
		}
	}
}
