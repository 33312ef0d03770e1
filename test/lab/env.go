package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Names of the published release.
const (
	channel = "stable"
	version = "1.0.0"
)

// Ports inside the namespaces.
const (
	seederPort = "8080" // the seeder's HTTP API, tracker and web seed; the mirror's file server
	httpPort   = "8081" // the plain-HTTP origin of the baseline
)

// env is what both phases of a scenario share: the nodes, the release, the binaries.
type env struct {
	sc      *Scenario
	bin     string   // peerpatch
	self    []string // argv prefix that runs a lab helper
	dir     string   // the scenario's files
	logDir  string   // node logs, kept until the scenario ends
	log     *slog.Logger
	net     *Network
	seeder  *Node
	mirror  *Node
	agents  []*Node
	bad     []*Node
	release *releaseFiles
}

// caps are the caps the kernel reported for the N agents and the origin.
func (e *env) caps() Caps {
	c := Caps{SeederUp: e.seeder.Up, OriginUp: e.seeder.Up}
	if e.mirror != nil {
		c.OriginUp += e.mirror.Up
	}
	for _, a := range e.agents {
		c.AgentUp = append(c.AgentUp, a.Up)
		c.AgentDown = append(c.AgentDown, a.Down)
	}
	return c
}

// startNode starts a long-running process in a node and waits until it logs a JSON line whose
// msg is ready.
func (e *env) startNode(ctx context.Context, name string, nd *Node, argv []string, ready string) (*proc, error) {
	readyc := make(chan struct{})
	var seen bool
	p, err := startProc(procSpec{
		name: name, netns: nd.Netns, argv: argv, log: filepath.Join(e.logDir, name+".log"),
		line: func(_ *proc, b []byte) {
			var l struct {
				Msg string `json:"msg"`
			}
			if !seen && json.Unmarshal(b, &l) == nil && l.Msg == ready {
				seen = true
				close(readyc)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-readyc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %w", name, p.exitError())
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		p.kill()
		return nil, fmt.Errorf("%s not ready within 30s:\n%s", name, p.lastLines())
	}
}

// nsOutput runs a command in a namespace and returns its stdout.
func nsOutput(ctx context.Context, timeout time.Duration, nd *Node, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return command(ctx, "ip", append([]string{"netns", "exec", nd.Netns}, argv...)...)
}

// cpuTimes reads the machine's busy and total CPU time (USER_HZ ticks) from /proc/stat.
func cpuTimes() (busy, total int64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal (guest time is already in user and nice)
	for i, s := range fields[1:9] {
		v, _ := strconv.ParseInt(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// busyMeter measures the machine's busy share between start and read.
type busyMeter struct{ busy, total int64 }

func startBusy() busyMeter {
	b, t := cpuTimes()
	return busyMeter{b, t}
}

func (m busyMeter) read() float64 {
	b, t := cpuTimes()
	if t <= m.total {
		return 0
	}
	return float64(b-m.busy) / float64(t-m.total)
}

// cpuShare is cpu seconds as a share of the machine's CPU time from from to to.
func cpuShare(cpu float64, from, to time.Time) float64 {
	wall := to.Sub(from).Seconds() * float64(runtime.NumCPU())
	if wall <= 0 {
		return 0
	}
	return cpu / wall
}
