package lab

import (
	"math"
	"sort"
	"time"
)

// Report is one lab run: every scenario, each with its Peerpatch phase and its plain-HTTP
// baseline on the same nodes and caps.
type Report struct {
	Date      time.Time `json:"date"`
	Machine   Machine   `json:"machine"`
	Peerpatch string    `json:"peerpatch"` // source revision of the binary under test
	// TCP is the congestion control every node used (CongestionControl); empty in reports
	// from before the lab set it.
	TCP       string           `json:"tcp,omitempty"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// ScenarioResult is one scenario's figures.
type ScenarioResult struct {
	Scenario Scenario `json:"scenario"`
	// Run numbers repeated runs of the same scenario in one lab run (1, 2, …).
	Run int `json:"run"`
	// Caps are the caps the kernel reported after shaping.
	Caps Caps `json:"caps"`
	// PieceSize is the release's piece length as published.
	PieceSize int64 `json:"piece_size"`
	// Bound is the Kumar–Ross lower bound for the N agents on Caps.
	Bound Bound `json:"bound"`
	// HTTPExpected is the plain-HTTP arithmetic, max(N·F/u_s, F/d_min) × wire overhead.
	HTTPExpected float64      `json:"http_expected_s"`
	Peerpatch    *PhaseResult `json:"peerpatch"`
	HTTP         *PhaseResult `json:"http,omitempty"`
	// OK: every agent expected to finish installed (or fetched) bytes identical to the
	// release, and no agent holds a half-installed release.
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// PhaseResult is one delivery method's figures.
type PhaseResult struct {
	Method string `json:"method"` // "peerpatch" or "http"
	// Agents is N; Finished how many of the agents expected to finish did.
	Agents   int `json:"agents"`
	Expected int `json:"expected"`
	Finished int `json:"finished"`
	// Makespan: from publish (or the start of the HTTP fetches) until the last expected agent
	// finished; Ratio = Makespan / T_min.
	Makespan float64 `json:"makespan_s"`
	Ratio    float64 `json:"makespan_ratio"`
	// P50 and P99 of the agents' completion times (nearest rank).
	P50 float64 `json:"p50_s"`
	P99 float64 `json:"p99_s"`
	// Wire bytes (veth counters, headers included) over the phase: sent by the seeder, by the
	// mirror, by the agents (to each other), and the origin's total divided by F.
	SeederBytes int64 `json:"seeder_wire_bytes"`
	MirrorBytes int64 `json:"mirror_wire_bytes"`
	AgentsSent  int64 `json:"agents_wire_bytes_sent"`
	// BadSent is what the corrupt peers sent (garbage).
	BadSent     int64   `json:"bad_peers_wire_bytes_sent,omitempty"`
	OriginRatio float64 `json:"origin_ratio"`
	// Reported: what the agents logged receiving from peers and from the origin (payload).
	FromPeers  int64 `json:"agent_bytes_from_peers"`
	FromOrigin int64 `json:"agent_bytes_from_origin"`
	// SeederReported is the seeder's own count of what it sent (status API), -1 if unknown.
	SeederReported int64 `json:"seeder_reported_origin_bytes"`
	// CPU and memory of the agents (sum over their processes; peak of their peaks).
	AgentCPU     float64 `json:"agent_cpu_s_mean"`
	AgentPeakRSS int64   `json:"agent_peak_rss_max"`
	// AgentIdleRSS is the largest resident set of an installed agent idleSettle after the last
	// agent installed.
	AgentIdleRSS int64   `json:"agent_idle_rss_max,omitempty"`
	SeederCPU    float64 `json:"seeder_cpu_s"`
	SeederRSS    int64   `json:"seeder_peak_rss"`
	// HostBusy is the share of the machine's CPU time spent busy during the phase: near 1, the
	// figures measure the CPU rather than the links.
	HostBusy float64 `json:"host_cpu_busy"`
	// LabCPU is the share of the machine's CPU time the phase's own processes used (rusage;
	// kernel work for the links is partly outside it). HostBusy well above it means something
	// else was running.
	LabCPU float64 `json:"lab_cpu_share"`
	// Stall is the longest the harness's 200 ms tick was late: a loaded machine shows here.
	Stall    float64         `json:"harness_stall_s"`
	Events   []Event         `json:"events,omitempty"`
	Timeline []TimelinePoint `json:"timeline,omitempty"`
	Nodes    []AgentResult   `json:"agents_detail"`
	Problems []string        `json:"problems,omitempty"`
}

// Event is something the harness did or saw during a phase.
type Event struct {
	At   float64 `json:"t_s"`
	What string  `json:"what"`
}

// TimelinePoint samples a phase once a second.
type TimelinePoint struct {
	At          float64 `json:"t_s"`
	Finished    int     `json:"finished"`
	OriginBytes int64   `json:"origin_wire_bytes"`
	PeerBytes   int64   `json:"peer_wire_bytes"`
	BadBytes    int64   `json:"bad_peer_wire_bytes,omitempty"`
	// AgentSent and AgentReceived are each agent's wire bytes so far, in the order of the
	// phase's agents_detail: what shows which uploads idle, where PeerBytes is their sum.
	AgentSent     []int64 `json:"agent_wire_bytes_sent,omitempty"`
	AgentReceived []int64 `json:"agent_wire_bytes_received,omitempty"`
}

// AgentResult is one agent's outcome.
type AgentResult struct {
	Name string `json:"name"`
	// Outcome: "installed", "fetched", "killed", "disk full", "failed", "timeout".
	Outcome  string   `json:"outcome"`
	Expected bool     `json:"expected_to_finish"`
	Finished float64  `json:"finished_s,omitempty"`
	Faults   []string `json:"faults,omitempty"`
	// Processes is how many processes the agent ran (1 + restarts).
	Processes  int      `json:"processes"`
	FromPeers  int64    `json:"bytes_from_peers"`
	FromOrigin int64    `json:"bytes_from_origin"`
	BadPieces  int64    `json:"bad_pieces"`
	WireIn     int64    `json:"wire_bytes_in"`
	WireOut    int64    `json:"wire_bytes_out"`
	CPU        float64  `json:"cpu_s"`
	PeakRSS    int64    `json:"peak_rss"`
	IdleRSS    int64    `json:"idle_rss,omitempty"`
	Install    Install  `json:"install"`
	Errors     []string `json:"errors,omitempty"`
}

// Verdict is the agent's line in the report: did it end as it must.
func (a *AgentResult) Verdict() (string, bool) {
	in := &a.Install
	switch {
	case in.Err != "":
		return "cannot read install: " + in.Err, false
	case a.Expected && !in.Identical:
		if in.Current == "" {
			return "nothing installed", false
		}
		return "CORRUPT: " + in.Diff, false
	case !in.Clean():
		return "CORRUPT: " + in.Diff, false
	case a.Expected:
		return "identical", true
	case in.Current == "":
		return "nothing installed, nothing half-installed", true
	}
	return "identical", true
}

// quantile is the nearest-rank q-quantile of xs (0 if empty).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
