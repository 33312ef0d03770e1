//go:build windows

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// maxServiceLog is the size over which the service's log file is moved to FILE.1 at start.
const maxServiceLog = 10 << 20

// stopWait is how long the service manager is told to wait for the agent to stop.
const stopWait = 30 * time.Second

func defaultServiceLogFile() string {
	dir := os.Getenv("ProgramData")
	if dir == "" {
		dir = `C:\ProgramData`
	}
	return filepath.Join(dir, "Peerpatch", "agent.log")
}

// installService registers s with the service manager: automatic (delayed) start, and a
// restart 10s, 30s and 60s after a failure (an exit with an error counts; the count resets
// after a day without one). It runs as LocalSystem; see README.md for a lesser account.
func installService(c *cli.Context, s service) error {
	cfg, err := filepath.Abs(s.Config)
	if err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	if err := checkAgentConfig(cfg); err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	logFile := s.LogFile
	if logFile != "" {
		if logFile, err = filepath.Abs(logFile); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("service install: find this program: %w", err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service install: connect to the service manager (run from an elevated prompt): %w", err)
	}
	defer m.Disconnect()
	if old, err := m.OpenService(s.Name); err == nil {
		old.Close()
		return fmt.Errorf("service install: service %s exists already: `peerpatch service uninstall --name %s` first", s.Name, s.Name)
	}
	args := []string{"--log-level", c.String("log-level"), "--log-format", c.String("log-format"),
		"service", "run", "--name", s.Name, "--config", cfg, "--log-file", logFile}
	sv, err := m.CreateService(s.Name, exe, mgr.Config{
		DisplayName:      "Peerpatch agent",
		Description:      "Keeps this machine on the newest release of its channel, verified, and seeds it for its neighbours.",
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true,
	}, args...)
	if err != nil {
		return fmt.Errorf("service install: create service %s: %w", s.Name, err)
	}
	defer sv.Close()
	err = sv.SetRecoveryActions([]mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: time.Minute},
	}, uint32((24 * time.Hour).Seconds()))
	if err == nil {
		err = sv.SetRecoveryActionsOnNonCrashFailures(true)
	}
	if err != nil {
		sv.Delete()
		return fmt.Errorf("service install: set restart on failure: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "installed service %s: %s %s\nstart it with: sc.exe start %s\n", s.Name, exe, strings.Join(args, " "), s.Name)
	return nil
}

// uninstallService stops the service (if it runs) and removes it.
func uninstallService(c *cli.Context, name string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service uninstall: connect to the service manager (run from an elevated prompt): %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("service uninstall: service %s: %w", name, err)
	}
	defer sv.Close()
	if st, err := sv.Control(svc.Stop); err == nil {
		deadline := time.Now().Add(stopWait)
		for st.State != svc.Stopped && time.Now().Before(deadline) {
			time.Sleep(300 * time.Millisecond)
			if st, err = sv.Query(); err != nil {
				break
			}
		}
	} else if !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("service uninstall: stop %s: %w", name, err)
	}
	if err := sv.Delete(); err != nil {
		return fmt.Errorf("service uninstall: remove %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "removed service %s\n", name)
	return nil
}

// runService runs the agent of s.Config under the service manager until it says stop.
func runService(c *cli.Context, s service) error {
	inService, err := svc.IsWindowsService()
	if err != nil {
		return fmt.Errorf("service run: %w", err)
	}
	if !inService {
		return errors.New("service run: not started by the Windows service manager; in a console, run `peerpatch agent --config FILE`")
	}
	out := io.Writer(io.Discard)
	if s.LogFile != "" {
		f, err := openServiceLog(s.LogFile)
		if err != nil {
			return fmt.Errorf("service run: --log-file: %w", err)
		}
		defer f.Close()
		out = &lockedWriter{w: f}
	}
	args := []string{"peerpatch", "--log-level", c.String("log-level"), "--log-format", c.String("log-format"),
		"agent", "--config", s.Config}
	return svc.Run(s.Name, &agentService{args: args, out: out})
}

// openServiceLog opens the log file for appending, first moving it to FILE.1 if it is large.
func openServiceLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxServiceLog {
		os.Rename(path, path+".1") // replaces an older FILE.1
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// lockedWriter serializes writes: the agent's logs and this file's own lines share the file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// agentService is the agent as a svc.Handler: `peerpatch agent` with args, stopped by
// cancelling its context, as SIGTERM does on unix.
type agentService struct {
	args []string
	out  io.Writer
}

var _ svc.Handler = (*agentService)(nil)

func (a *agentService) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- newApp(a.out, a.out).RunContext(ctx, a.args) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case err := <-done:
			// The agent ended by itself: it could not start (a config or a port), or failed.
			// A service-specific exit code makes the service manager apply the restarts.
			if err != nil {
				fmt.Fprintf(a.out, "peerpatch: %v\n", err)
				return true, 1
			}
			return false, 0
		case r := <-req:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait / time.Millisecond)}
				cancel()
				if err := <-done; err != nil {
					fmt.Fprintf(a.out, "peerpatch: %v\n", err)
					return true, 1
				}
				return false, 0
			}
		}
	}
}
