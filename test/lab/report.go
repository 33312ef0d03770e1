package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Write writes report.json, report.md and the charts into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Peerpatch == nil {
			continue
		}
		if err := writeScenarioChart(filepath.Join(dir, s.chartName()), s); err != nil {
			return err
		}
	}
	if err := writeSummaryChart(filepath.Join(dir, "summary.png"), r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// key names a scenario run: "baseline", "baseline#2".
func (s *ScenarioResult) key() string {
	if s.Run > 1 {
		return fmt.Sprintf("%s#%d", s.Scenario.Name, s.Run)
	}
	return s.Scenario.Name
}

func (s *ScenarioResult) chartName() string {
	if s.Run > 1 {
		return fmt.Sprintf("%s-%d.png", s.Scenario.Name, s.Run)
	}
	return s.Scenario.Name + ".png"
}

// Markdown is the report for people.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Peerpatch fleet lab\n\n")
	fmt.Fprintf(&b, "Date: %s  \nMachine: %s  \nPeerpatch: %s\n\n", r.Date.Format("2006-01-02 15:04 MST"), r.Machine, r.Peerpatch)
	if r.TCP != "" {
		fmt.Fprintf(&b, "TCP congestion control: %s in every node.\n\n", r.TCP)
	}
	if r.Machine.GuestMemory != "" {
		fmt.Fprintf(&b, "Memory: %s.\n\n", r.Machine.GuestMemory)
	}
	b.WriteString(readingGuide)
	b.WriteString("\n## Summary\n\n")
	b.WriteString(r.Table())
	b.WriteString("\n![summary](summary.png)\n")
	if rep := r.reproducibility(); rep != "" {
		b.WriteString("\n## Reproducibility\n\n")
		b.WriteString(rep)
	}
	for i := range r.Scenarios {
		r.Scenarios[i].section(&b)
	}
	return b.String()
}

const readingGuide = `Each scenario runs twice on the same network namespaces and tc caps: once with Peerpatch
(a seeder, agents, faults if any), once as the **plain HTTP baseline** (the seeder's node serves
the release over plain HTTP, every agent node fetches it, no faults).

- **makespan**: from the moment ` + "`publish`" + ` returned (the release is stored, signed and
  seeded) until the last agent expected to finish installed it; for HTTP, from the common start
  of the fetches until the last one ended.
- **T_min** = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) (Kumar & Ross), on the caps read back from
  the kernel after shaping; u_s counts the seeder and the mirror. **÷T_min** is the makespan ratio.
- **HTTP expected** = max(N·F/u_s, F/d_min) × 1514/1448 (TCP/IP/Ethernet headers at MTU 1500).
- **origin ÷ F**: bytes the seeder and the mirror sent (veth counters of their links) divided by
  F. With segmentation offload the counters see TCP/IP headers once per up-to-64 KiB packet, so
  they are payload plus a fraction of a percent: the floor is 1.0, plain HTTP about N.
- **from peers**: share of the payload the agents logged as received from other agents. Agents
  log it when a download ends, so the bytes of a process killed mid-download are missing from
  these columns; **wire in** (the agent's link counter) counts everything it received.
- **CPU s/agent (per GiB)**: rusage of the agent processes (user + system), and the same per GiB
  of release received. **Agent RSS**: peak is ru_maxrss; idle is the largest VmRSS of the
  installed agents 15 s after the last one installed (they still seed, but nobody needs
  anything; about 22 MiB of it is the binary's file pages, shared by all agents on one host).
  The CPU figures include those 15 s.
- **host CPU**: the machine's busy share during the Peerpatch phase, and in brackets the share
  its processes (agents, seeder, mirror) used by rusage; near 100% the figures measure the CPU
  rather than the links, and a busy share well above the lab's means other load on the machine.
- **verdict**: every agent expected to finish holds I/current byte-identical to the release, and
  no agent holds anything half-installed.
- **Trail** (in a scenario's section, where the origin is the only source and no faster than an
  agent's download): the origin's wire bytes minus the mean agent's, read from the timeline 3 s
  after the publish. An agent whose download is no faster than the origin's upload never makes
  up what it trails by, so the last agents finish at least that much of their download after
  the origin's last byte. An origin sending below its cap is trailed by less.
`

// Table is the summary table in Markdown.
func (r *Report) Table() string {
	var b strings.Builder
	b.WriteString("| scenario | N × F | caps | T_min | Peerpatch makespan (÷T_min) | HTTP makespan (÷T_min) | HTTP expected | speed-up | origin ÷ F Peerpatch / HTTP | p50 / p99 Peerpatch | p50 / p99 HTTP | from peers | CPU s/agent (per GiB) | agent RSS peak / idle | host CPU | verdict |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		pp, h := s.Peerpatch, s.HTTP
		row := []string{s.key(), fmt.Sprintf("%d × %s", s.Scenario.Agents, s.Scenario.Bundle), capsText(s), secs(s.Bound.TMin)}
		if pp == nil {
			row = append(row, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", s.verdict())
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
			continue
		}
		row = append(row, fmt.Sprintf("%s (%.2f)", secs(pp.Makespan), pp.Ratio))
		if h != nil {
			row = append(row, fmt.Sprintf("%s (%.2f)", secs(h.Makespan), h.Ratio), secs(s.HTTPExpected), fmt.Sprintf("%.1f×", h.Makespan/pp.Makespan),
				fmt.Sprintf("%.2f / %.2f", pp.OriginRatio, h.OriginRatio))
		} else {
			row = append(row, "—", secs(s.HTTPExpected), "—", fmt.Sprintf("%.2f / —", pp.OriginRatio))
		}
		row = append(row, secs(pp.P50)+" / "+secs(pp.P99))
		if h != nil {
			row = append(row, secs(h.P50)+" / "+secs(h.P99))
		} else {
			row = append(row, "—")
		}
		row = append(row, pct(pp.FromPeers, pp.FromPeers+pp.FromOrigin), fmt.Sprintf("%.1f (%.1f)", pp.AgentCPU, pp.AgentCPU/gib(s.Scenario.Bundle)),
			Size(pp.AgentPeakRSS).String()+" / "+Size(pp.AgentIdleRSS).String(), fmt.Sprintf("%.0f%% (lab %.0f%%)", 100*pp.HostBusy, 100*pp.LabCPU), s.verdict())
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String()
}

// verdict is the scenario's last column.
func (s *ScenarioResult) verdict() string {
	if s.Peerpatch == nil {
		return "did not run: " + strings.Join(s.Problems, "; ")
	}
	ok := 0
	for _, a := range s.Peerpatch.Nodes {
		if _, good := a.Verdict(); good && a.Expected {
			ok++
		}
	}
	v := fmt.Sprintf("%d/%d installed identical", ok, s.Peerpatch.Expected)
	if n := s.Scenario.Agents - s.Peerpatch.Expected; n > 0 {
		v += fmt.Sprintf(" (%d left down, none half-installed)", n)
	}
	if s.OK {
		return "ok: " + v
	}
	return "**FAILED**: " + v
}

func capsText(s *ScenarioResult) string {
	c := s.Caps
	if len(c.AgentUp) == 0 {
		return "—"
	}
	allSame := c.SeederUp == c.AgentUp[0]
	for i := range c.AgentUp {
		allSame = allSame && c.AgentUp[i] == c.AgentUp[0] && c.AgentDown[i] == c.AgentUp[0]
	}
	if allSame {
		return rate(c.AgentUp[0]) + " up & down"
	}
	return fmt.Sprintf("seeder ↑%s, agents ↑%s ↓%s", rate(c.SeederUp), rate(c.AgentUp[0]), rate(c.AgentDown[0]))
}

func rate(bps float64) string { return Size(bps).String() + "/s" }

func secs(s float64) string { return fmt.Sprintf("%.1f s", s) }

// trailAfter is when the report reads the trail (see trailAt): by then the swarm is under way.
const trailAfter = 3.0

// trailAt is how far the mean agent trailed the origin at the timeline's first point at or
// after at seconds (returned as t): the origin's wire bytes minus the mean of the agents'
// received wire bytes. The report's legend says what it bounds.
func trailAt(tl []TimelinePoint, at float64) (t float64, trail int64, ok bool) {
	for _, p := range tl {
		if p.At < at || len(p.AgentReceived) == 0 {
			continue
		}
		var sum int64
		for _, r := range p.AgentReceived {
			sum += r
		}
		return p.At, p.OriginBytes - sum/int64(len(p.AgentReceived)), true
	}
	return 0, 0, false
}

func pct(part, whole int64) string {
	if whole <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}

// section writes a scenario's details.
func (s *ScenarioResult) section(b *strings.Builder) {
	sc := &s.Scenario
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n", s.key(), strings.TrimSpace(sc.Description))
	if s.Peerpatch == nil {
		fmt.Fprintf(b, "Did not run: %s\n", strings.Join(s.Problems, "; "))
		return
	}
	fmt.Fprintf(b, "![%s](%s)\n\n", s.key(), s.chartName())
	c := s.Caps
	fmt.Fprintf(b, "- N = %d agents, F = %s in pieces of %s", sc.Agents, sc.Bundle, Size(s.PieceSize))
	if sc.Mirror {
		fmt.Fprintf(b, ", a web-seed mirror (↑%s)", rate(c.OriginUp-c.SeederUp))
	}
	fmt.Fprintf(b, ".\n- Caps read back from tc: seeder ↑%s; agents ↑%s ↓%s.\n", rate(c.SeederUp), rate(c.AgentUp[0]), rate(c.AgentDown[0]))
	fmt.Fprintf(b, "- T_min = max(F/u_s = %.2f s, F/d_min = %.2f s, N·F/(u_s+Σu_i) = %.2f s) = **%.2f s**.\n",
		s.Bound.Origin, s.Bound.Download, s.Bound.Fleet, s.Bound.TMin)
	pp := s.Peerpatch
	fmt.Fprintf(b, "- Peerpatch: %d/%d expected agents installed; makespan **%s = %.2f × T_min**; p50 %s, p99 %s. "+
		"The origin sent %s on the wire (seeder %s, mirror %s) = **%.2f × F**; the seeder's own count since the publish (status API, payload) is %s. "+
		"The agents sent each other %s; they logged %s from peers and %s from the origin (%s from peers). "+
		"Host CPU %.0f%% busy, %.0f%% by the lab's processes; the harness was at most %.1f s late.\n",
		pp.Finished, pp.Expected, secs(pp.Makespan), pp.Ratio, secs(pp.P50), secs(pp.P99),
		Size(pp.SeederBytes+pp.MirrorBytes), Size(pp.SeederBytes), Size(pp.MirrorBytes), pp.OriginRatio, seederCount(pp.SeederReported),
		Size(pp.AgentsSent), Size(pp.FromPeers), Size(pp.FromOrigin), pct(pp.FromPeers, pp.FromPeers+pp.FromOrigin), 100*pp.HostBusy, 100*pp.LabCPU, pp.Stall)
	if at, tr, ok := trailAt(pp.Timeline, trailAfter); ok && pp.BadSent == 0 && len(c.AgentDown) > 0 && c.AgentDown[0] > 0 && c.OriginUp <= c.AgentDown[0] {
		// Where the origin is the only source and no faster than an agent's download.
		fmt.Fprintf(b, "- Trail: %.1f s in, the origin had sent %.1f MiB more than the mean agent had received (wire bytes), %.2f s of an agent's download cap.\n",
			at, float64(tr)/(1<<20), float64(tr)/float64(c.AgentDown[0]))
	}
	if pp.BadSent > 0 {
		fmt.Fprintf(b, "- The corrupt peers sent %s of garbage (%.2f × F).\n", Size(pp.BadSent), float64(pp.BadSent)/float64(sc.Bundle))
	}
	fmt.Fprintf(b, "- Seeder: %.1f CPU s, peak RSS %s. Agents: %.1f CPU s each on average (%.1f CPU s per GiB received), peak RSS at most %s, idle RSS at most %s.\n",
		pp.SeederCPU, Size(pp.SeederRSS), pp.AgentCPU, pp.AgentCPU/gib(sc.Bundle), Size(pp.AgentPeakRSS), Size(pp.AgentIdleRSS))
	if h := s.HTTP; h != nil {
		fmt.Fprintf(b, "- Plain HTTP: %d/%d fetched identical; makespan **%s = %.2f × T_min**, expected N·F/u_s × 1514/1448 = %s "+
			"(measured ÷ expected = %.3f); p50 %s, p99 %s; the origin sent %.2f × F. Host CPU %.0f%% busy, %.0f%% by the lab's processes.\n",
			h.Finished, h.Expected, secs(h.Makespan), h.Ratio, secs(s.HTTPExpected), h.Makespan/s.HTTPExpected,
			secs(h.P50), secs(h.P99), h.OriginRatio, 100*h.HostBusy, 100*h.LabCPU)
	}
	if len(pp.Events) > 0 {
		b.WriteString("\nEvents (seconds after the start: the publish, or for corrupt peers the start of the N agents):\n\n")
		for _, e := range pp.Events {
			fmt.Fprintf(b, "- %6.1f s: %s\n", e.At, e.What)
		}
	}
	b.WriteString("\n| agent | outcome | finished | processes | from peers | from origin | bad pieces | wire in | wire out | CPU s | peak RSS | I/current | faults |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range pp.Nodes {
		v, _ := a.Verdict()
		fin := "—"
		if a.Finished > 0 {
			fin = secs(a.Finished)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %d | %s | %s | %.1f | %s | %s | %s |\n",
			a.Name, a.Outcome, fin, a.Processes, Size(a.FromPeers), Size(a.FromOrigin), a.BadPieces, Size(a.WireIn), Size(a.WireOut),
			a.CPU, Size(a.PeakRSS), v, strings.Join(a.Faults, "; "))
	}
	if len(s.Problems) > 0 {
		b.WriteString("\nProblems:\n\n")
		for _, p := range s.Problems {
			fmt.Fprintf(b, "- %s\n", strings.ReplaceAll(p, "\n", " ⏎ "))
		}
	}
}

func seederCount(n int64) string {
	if n < 0 {
		return "nothing (it was down at the end)"
	}
	return Size(n).String()
}

// reproducibility compares runs of the same scenario, and the plain-HTTP baselines of runs
// with the same N, F and caps.
func (r *Report) reproducibility() string {
	var b strings.Builder
	byName := map[string][]*ScenarioResult{}
	byShape := map[string][]*ScenarioResult{}
	var names, shapes []string
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Peerpatch == nil {
			continue
		}
		if len(byName[s.Scenario.Name]) == 0 {
			names = append(names, s.Scenario.Name)
		}
		byName[s.Scenario.Name] = append(byName[s.Scenario.Name], s)
		if s.HTTP != nil {
			shape := fmt.Sprintf("N=%d, F=%s, %s", s.Scenario.Agents, s.Scenario.Bundle, capsText(s))
			if len(byShape[shape]) == 0 {
				shapes = append(shapes, shape)
			}
			byShape[shape] = append(byShape[shape], s)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		runs := byName[n]
		if len(runs) < 2 {
			continue
		}
		var pp, h []float64
		var busy []string
		for _, s := range runs {
			pp = append(pp, s.Peerpatch.Makespan)
			busy = append(busy, fmt.Sprintf("%.0f%%/%.0f%%", 100*s.Peerpatch.HostBusy, 100*s.Peerpatch.LabCPU))
			if s.HTTP != nil {
				h = append(h, s.HTTP.Makespan)
			}
		}
		fmt.Fprintf(&b, "- %s, %d runs: Peerpatch makespans %s (spread %s; host CPU busy / used by the lab: %s)",
			n, len(runs), list(pp), spread(pp), strings.Join(busy, ", "))
		if len(h) > 1 {
			fmt.Fprintf(&b, "; plain HTTP %s (spread %s)", list(h), spread(h))
		}
		b.WriteString(".\n")
	}
	for _, sh := range shapes {
		runs := byShape[sh]
		if len(runs) < 2 {
			continue
		}
		var h []float64
		for _, s := range runs {
			h = append(h, s.HTTP.Makespan)
		}
		fmt.Fprintf(&b, "- plain HTTP at %s, %d runs (every scenario runs one): makespans %s (spread %s), expected %s.\n",
			sh, len(runs), list(h), spread(h), secs(runs[0].HTTPExpected))
	}
	if b.Len() > 0 {
		return "Spread = (max − min) ÷ mean.\n\n" + b.String()
	}
	return ""
}

func list(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.1f", x))
	}
	return strings.Join(s, ", ") + " s"
}

func spread(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	lo, hi, sum := xs[0], xs[0], 0.0
	for _, x := range xs {
		lo, hi, sum = min(lo, x), max(hi, x), sum+x
	}
	if sum == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*(hi-lo)/(sum/float64(len(xs))))
}

// ReadReport reads a report.json written by Write (to render it again).
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// gib is a size in GiB.
func gib(s Size) float64 { return float64(s) / (1 << 30) }
