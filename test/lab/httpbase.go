package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// plainHTTP is the baseline a user would otherwise pick: the origin node serves the release
// over plain HTTP and every agent node fetches it with a plain HTTP client, on the same links.
// It runs without faults.
type plainHTTP struct {
	*env
	res *PhaseResult
}

// fetchResult is what the phase learned of one agent's fetch.
type fetchResult struct {
	p    *proc
	line helperLine
	out  string
}

func (h *plainHTTP) run(ctx context.Context) (*PhaseResult, error) {
	h.res = &PhaseResult{Method: "http", Agents: len(h.agents), Expected: len(h.agents), SeederReported: -1}
	argv := append(append([]string(nil), h.self...), "serve", "--dir", filepath.Dir(h.release.dir), "--listen", seederIP+":"+httpPort)
	srv, err := h.startNode(ctx, "http-origin", h.seeder, argv, msgServing)
	if err != nil {
		return nil, fmt.Errorf("start plain-HTTP origin: %w", err)
	}
	defer srv.stop(5 * time.Second)

	list := filepath.Join(h.dir, "http-files")
	if err := os.WriteFile(list, []byte(strings.Join(h.release.paths, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write file list: %w", err)
	}
	t0 := time.Now().Add(time.Second) // every client starts at the same instant
	fetches := make([]*fetchResult, len(h.agents))
	var mu sync.Mutex
	for i, nd := range h.agents {
		fr := &fetchResult{out: filepath.Join(h.dir, nd.Name, "http")}
		fetches[i] = fr
		argv := append(append([]string(nil), h.self...), "fetch", "--base", "http://"+seederIP+":"+httpPort,
			"--list", list, "--out", fr.out, "--start-at", strconv.FormatInt(t0.UnixNano(), 10))
		fr.p, err = startProc(procSpec{
			name: nd.Name + "-http", netns: nd.Netns, argv: argv, log: filepath.Join(h.logDir, nd.Name+"-http.log"),
			line: func(_ *proc, b []byte) {
				if l, ok := parseHelperLine(b); ok {
					mu.Lock()
					fr.line = l
					mu.Unlock()
				}
			},
		})
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, fr := range fetches {
			if fr != nil && fr.p != nil {
				fr.p.kill()
			}
		}
	}()
	select {
	case <-time.After(time.Until(t0)):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	start, err := snapshot(h.net.nodes)
	if err != nil {
		return nil, err
	}
	busy := startBusy()
	timeout := time.After(h.sc.timeout())
	for _, fr := range fetches {
		select {
		case <-fr.p.done:
		case <-timeout:
			h.res.Problems = append(h.res.Problems, "timeout")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	end, err := snapshot(h.net.nodes)
	if err != nil {
		return nil, err
	}
	ended := time.Now()
	h.res.HostBusy = busy.read()
	for _, fr := range fetches {
		fr.p.kill()
	}

	var times []float64
	var cpu float64
	for i, nd := range h.agents {
		fr := fetches[i]
		mu.Lock()
		line := fr.line
		mu.Unlock()
		r := AgentResult{Name: nd.Name, Expected: true, Processes: 1, FromOrigin: line.Bytes}
		r.WireIn = end[nd.Name].Received - start[nd.Name].Received
		r.WireOut = end[nd.Name].Sent - start[nd.Name].Sent
		r.CPU, r.PeakRSS = fr.p.cpuSeconds(), fr.p.peakRSS()
		cpu += r.CPU
		h.res.AgentPeakRSS = max(h.res.AgentPeakRSS, r.PeakRSS)
		h.res.FromOrigin += line.Bytes
		if line.Msg == msgFetched && fr.p.result() == nil {
			r.Outcome, r.Finished = "fetched", line.End.Sub(t0).Seconds()
			times = append(times, r.Finished)
			r.Install = checkFetched(filepath.Join(fr.out, releaseName), h.release.want)
		} else {
			r.Outcome = "failed"
			r.Errors = []string{strings.TrimSpace(line.Err + " " + fr.p.lastLines())}
		}
		if v, ok := r.Verdict(); !ok {
			h.res.Problems = append(h.res.Problems, fmt.Sprintf("%s: %s", r.Name, v))
		}
		h.res.Nodes = append(h.res.Nodes, r)
	}
	h.res.AgentCPU = cpu / float64(max(len(h.agents), 1))
	srv.stop(5 * time.Second)
	h.res.LabCPU = cpuShare(cpu+srv.cpuSeconds(), srv.started, ended)
	h.res.SeederBytes = end["seeder"].Sent - start["seeder"].Sent
	for _, nd := range h.agents {
		h.res.AgentsSent += end[nd.Name].Sent - start[nd.Name].Sent
	}
	h.res.OriginRatio = float64(h.res.SeederBytes) / float64(h.release.size)
	h.res.Finished = len(times)
	if len(times) > 0 {
		h.res.P50, h.res.P99, h.res.Makespan = quantile(times, 0.5), quantile(times, 0.99), quantile(times, 1)
	}
	return h.res, nil
}

// checkFetched compares a fetched tree with the release.
func checkFetched(dir string, want tree) Install {
	in := Install{Current: version}
	got, err := hashTree(dir)
	if err != nil {
		in.Err = err.Error()
		return in
	}
	in.Diff = want.diff(got)
	in.Identical = in.Diff == ""
	return in
}
