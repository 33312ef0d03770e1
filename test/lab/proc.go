package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process running in a node's namespace. `ip netns exec` execs the command in place,
// so the process id, the exit status and the rusage are the command's own.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}

	mu     sync.Mutex
	tail   []string // last lines of output, for error messages
	err    error
	ended  time.Time
	rusage syscall.Rusage
}

// procSpec says what to start.
type procSpec struct {
	name  string
	netns string   // "" runs on the host
	argv  []string // program and arguments
	log   string   // file that receives every output line
	// line, if set, is called with each line of output (stdout and stderr), in order, from
	// the process's reader goroutine.
	line func(p *proc, line []byte)
}

const tailLines = 20

// startProc starts a process; its output goes to spec.log and spec.line.
func startProc(spec procSpec) (*proc, error) {
	argv := spec.argv
	if spec.netns != "" {
		argv = append([]string{"ip", "netns", "exec", spec.netns}, argv...)
	}
	logf, err := os.OpenFile(spec.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{name: spec.name, cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	// Its own process group: a Ctrl-C at the terminal reaches the harness only, which then
	// stops the nodes in order. Pdeathsig takes the node down if the harness dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p.started = time.Now()
	pw.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer logf.Close()
		p.read(pr, logf, spec.line)
	}()
	go func() {
		err := p.cmd.Wait()
		<-readDone
		p.mu.Lock()
		p.err, p.ended = err, time.Now()
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.rusage = *ru
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) read(r io.ReadCloser, log io.Writer, line func(*proc, []byte)) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			log.Write(b)
			b = []byte(strings.TrimRight(string(b), "\r\n"))
			p.mu.Lock()
			p.tail = append(p.tail, string(b))
			if len(p.tail) > tailLines {
				p.tail = p.tail[len(p.tail)-tailLines:]
			}
			p.mu.Unlock()
			if line != nil {
				line(p, b)
			}
		}
		if err != nil {
			return
		}
	}
}

// signal sends sig to the process (a no-op once it has ended).
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		p.cmd.Process.Signal(sig)
	}
}

// exited reports whether the process has ended and been reaped.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the end.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

// kill sends SIGKILL and waits for the end.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// result is the exit error (nil on status 0) once the process has ended.
func (p *proc) result() error {
	<-p.done
	return p.err
}

// cpuSeconds is user plus system CPU time of the ended process.
func (p *proc) cpuSeconds() float64 {
	<-p.done
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(p.rusage.Utime) + tv(p.rusage.Stime)
}

// peakRSS is the ended process's peak resident set size in bytes (rusage ru_maxrss).
func (p *proc) peakRSS() int64 {
	<-p.done
	return p.rusage.Maxrss << 10
}

// lastLines is the process's last lines of output.
func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// exitError describes how the process ended, with its last output lines.
func (p *proc) exitError() error {
	err := p.result()
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w\n%s", p.name, err, p.lastLines())
}

// runProc runs a process to completion (killing it when ctx ends or after timeout) and returns
// its output lines; the error carries them.
func runProc(ctx context.Context, spec procSpec, timeout time.Duration) ([]string, error) {
	var mu sync.Mutex
	var lines []string
	inner := spec.line
	spec.line = func(p *proc, b []byte) {
		mu.Lock()
		lines = append(lines, string(b))
		mu.Unlock()
		if inner != nil {
			inner(p, b)
		}
	}
	p, err := startProc(spec)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return nil, fmt.Errorf("%s: %w", spec.name, ctx.Err())
	case <-time.After(timeout):
		p.kill()
		return nil, fmt.Errorf("%s: no exit within %s", spec.name, timeout)
	}
	mu.Lock()
	defer mu.Unlock()
	if p.err != nil {
		return lines, fmt.Errorf("%s: %w\n%s", spec.name, p.err, strings.Join(lines, "\n"))
	}
	return lines, nil
}

// rss is the running process's resident set size in bytes (VmRSS), 0 if unknown.
func (p *proc) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
