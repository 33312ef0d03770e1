package lab

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Messages of the peerpatch agent's JSON log that the lab follows (agent/agent.go).
const (
	logWaiting     = "waiting for a first release"
	logDownloading = "downloading"
	logDownloaded  = "downloaded"
	logInstalled   = "installed"
	logWebSeeds    = "no progress from peers, using web seeds" // pkg/swarm/torrent.go
	logSeederReady = "seeder ready"                            // seeder/seeder.go
)

// logLine is the part of a peerpatch JSON log line the lab reads.
type logLine struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Msg       string    `json:"msg"`
	Err       string    `json:"err"`
	FromPeers int64     `json:"fromPeers"`
	// Verified is what a download started with (verifiedAlready): pieces kept from before.
	Verified   int64 `json:"verifiedAlready"`
	FromOrigin int64 `json:"fromOrigin"`
	BadPieces  int64 `json:"badPieces"`
}

// interesting reports whether the phase loop needs the line.
func (l *logLine) interesting() bool {
	switch l.Msg {
	case logWaiting, logDownloading, logDownloaded, logInstalled, logWebSeeds:
		return true
	}
	return l.Level == "ERROR" || l.Level == "WARN"
}

func parseLogLine(b []byte) (logLine, bool) {
	var l logLine
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &l) != nil {
		return l, false
	}
	return l, true
}

// agentRun is one agent of the Peerpatch phase across its processes (a restart after a kill
// starts a new process on the same directories).
type agentRun struct {
	name          string
	node          *Node
	data, install string
	argv          []string
	bad           bool // a corrupt peer, not one of the N

	procs   []*proc
	cur     *proc
	killed  bool      // the current process was killed on purpose
	restart time.Time // when to start it again (zero: stays down)

	expected bool // expected to install the release
	waiting  bool // has logged that it waits for a release
	// received is what the agent's link delivered since the phase started (veth counter):
	// the lab's measure of its progress, independent of its logs.
	received int64
	// Received payload as logged: sums over ended processes, plus the current process's
	// figures (an agent logs them when its download ends).
	peersDone, originDone int64
	peers, origin         int64
	badPieces             int64
	downloadedAt          time.Time
	installedAt           time.Time
	noSpace               bool
	resumeNoted           *proc // the process whose resume was recorded
	growAt                time.Time
	faults                []string
	errors                []string
}

// agentEvent is what the phase loop hears: a log line, a process exit, or a note from a
// fault's watcher.
type agentEvent struct {
	a    *agentRun
	p    *proc
	line logLine
	exit bool
	note string
	// installKill: the install watcher asks for the kill; staged bytes are in staging.
	installKill bool
	staged      int64
}

func newAgentRun(name string, node *Node, dir string) *agentRun {
	return &agentRun{name: name, node: node, data: filepath.Join(dir, "data"), install: filepath.Join(dir, "install"), expected: true}
}

// agentArgs are the flags of `peerpatch agent` for a. The log level is info: at debug, the
// swarm library logs every block written and read, which costs CPU the figures would show.
func agentArgs(bin string, a *agentRun, deployDir, seederURL string, extra []string) []string {
	args := []string{bin, "--log-format", "json", "--log-level", "info", "agent",
		"--data", a.data, "--seeder", seederURL,
		"--trust", filepath.Join(deployDir, "root.json"), "--token-file", filepath.Join(deployDir, "agent.token"),
		"--channel", channel, "--install-dir", a.install, "--interval", "1s",
		"--peer-listen", a.node.IP + ":6881"}
	return append(args, extra...)
}

// start starts a new process of the agent; its lines and exit go to send.
func (a *agentRun) start(logDir string, send func(agentEvent)) error {
	spec := procSpec{
		name:  a.name,
		netns: a.node.Netns,
		argv:  a.argv,
		log:   filepath.Join(logDir, a.name+".log"),
		line: func(p *proc, b []byte) {
			if l, ok := parseLogLine(b); ok && l.interesting() {
				send(agentEvent{a: a, p: p, line: l})
			}
		},
	}
	p, err := startProc(spec)
	if err != nil {
		return err
	}
	a.procs = append(a.procs, p)
	a.peersDone += a.peers
	a.originDone += a.origin
	a.peers, a.origin = 0, 0
	a.cur, a.killed, a.restart, a.waiting = p, false, time.Time{}, false
	go func() {
		<-p.done
		send(agentEvent{a: a, p: p, exit: true})
	}()
	return nil
}

// observe updates the agent from one of its current process's log lines.
func (a *agentRun) observe(l *logLine) {
	switch l.Msg {
	case logWaiting:
		a.waiting = true
	case logDownloaded:
		a.peers, a.origin = max(a.peers, l.FromPeers), max(a.origin, l.FromOrigin)
		a.downloadedAt = l.Time
	case logInstalled:
		a.peers, a.origin = max(a.peers, l.FromPeers), max(a.origin, l.FromOrigin)
		a.badPieces += l.BadPieces
		if a.installedAt.IsZero() {
			a.installedAt = l.Time
		}
	}
	if l.Level == "ERROR" {
		msg := l.Msg
		if l.Err != "" {
			msg += ": " + l.Err
		}
		if strings.Contains(strings.ToLower(msg), "no space left") {
			a.noSpace = true
		}
		a.addError(msg)
	}
}

// addError keeps the first few distinct errors.
func (a *agentRun) addError(msg string) {
	for _, e := range a.errors {
		if e == msg {
			return
		}
	}
	if len(a.errors) < 5 {
		a.errors = append(a.errors, msg)
	}
}

// running reports whether the agent has a live process.
func (a *agentRun) running() bool { return a.cur != nil && !a.cur.exited() }

// held is the share of the release the agent holds, as far as the lab can tell: all of it
// once downloaded, else what its link delivered.
func (a *agentRun) held(total int64) int64 {
	if !a.downloadedAt.IsZero() || !a.installedAt.IsZero() {
		return total
	}
	return min(a.received, total)
}

// settled: installed, or down for good.
func (a *agentRun) settled() bool {
	return !a.installedAt.IsZero() || (!a.running() && a.restart.IsZero())
}

// fromPeers and fromOrigin are the payload bytes the agent received over all its processes.
func (a *agentRun) fromPeers() int64  { return a.peersDone + a.peers }
func (a *agentRun) fromOrigin() int64 { return a.originDone + a.origin }

// usage sums CPU seconds and takes the peak RSS over the agent's ended processes.
func (a *agentRun) usage() (cpu float64, rss int64) {
	for _, p := range a.procs {
		cpu += p.cpuSeconds()
		rss = max(rss, p.peakRSS())
	}
	return cpu, rss
}

// fault records what a fault did to the agent, at seconds into the phase, and returns it.
func (a *agentRun) fault(at float64, format string, args ...any) string {
	s := fmt.Sprintf(format, args...)
	a.faults = append(a.faults, fmt.Sprintf("%.1f s: %s", at, s))
	return s
}
