package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Hooks, by the name they have in errors and reports.
const (
	hookPreInstall  = "pre-install hook"
	hookPostInstall = "post-install hook"
	hookHealthCheck = "health check"
)

// hookOutputTail is how much of a failed hook's output (stdout and stderr together, the end)
// its error carries.
const hookOutputTail = 1 << 10

// hookWaitDelay is how long a hook's output pipes stay open after the hook exited or was
// killed, for processes it left behind.
const hookWaitDelay = 2 * time.Second

// HookError is a hook command that failed: a non-zero exit, a timeout, or a command that
// could not start.
type HookError struct {
	Hook   string // hookPreInstall, hookPostInstall or hookHealthCheck
	Err    error
	Output string // the tail of what it wrote
}

func (e *HookError) Error() string {
	msg := fmt.Sprintf("%s failed: %v", e.Hook, e.Err)
	if out := strings.TrimSpace(e.Output); out != "" {
		msg += ": " + strings.Join(strings.Fields(out), " ")
	}
	return msg
}

func (e *HookError) Unwrap() error { return e.Err }

// hookEnv is what a hook is told about the install, as PEERPATCH_* environment variables.
type hookEnv struct {
	Channel, Version string
	Dir              string // the release's directory, InstallDir/releases/<version>
	Previous         string // the version installed before ("" if none)
}

// runHook runs command (through the shell: `sh -c` on unix, `cmd /C` on Windows) in the
// release's directory with the PEERPATCH_* variables added to the agent's environment, within
// timeout; a command that outlives it is killed with the processes it started. It returns nil
// or a *HookError.
func runHook(ctx context.Context, name, command string, env hookEnv, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	shell, args := shellCommand(command)
	cmd := exec.CommandContext(ctx, shell, args...)
	cmd.Dir = env.Dir
	cmd.Env = append(os.Environ(),
		"PEERPATCH_CHANNEL="+env.Channel,
		"PEERPATCH_VERSION="+env.Version,
		"PEERPATCH_DIR="+env.Dir,
		"PEERPATCH_PREVIOUS="+env.Previous,
		"PEERPATCH_HOOK="+name,
	)
	out := &tailBuffer{max: hookOutputTail}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = hookWaitDelay
	killGroup(cmd)
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("timed out after %s (killed)", timeout)
	case errors.Is(ctx.Err(), context.Canceled):
		err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return &HookError{Hook: name, Err: err, Output: out.String()}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
