//go:build unix

package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunHook(t *testing.T) {
	dir := t.TempDir()
	env := hookEnv{Channel: "stable", Version: "2.0.0", Dir: dir, Previous: "1.0.0"}
	tests := []struct {
		name    string
		command string
		timeout time.Duration
		wantErr string // "" for success
		check   func(t *testing.T)
	}{
		{name: "success", command: "true"},
		{name: "environment and directory", command: `test "$PEERPATCH_CHANNEL $PEERPATCH_VERSION $PEERPATCH_PREVIOUS $PEERPATCH_HOOK" = "stable 2.0.0 1.0.0 health check" && test "$PEERPATCH_DIR" = "$(pwd)" && touch ran`,
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(dir, "ran")); err != nil {
					t.Error("the hook did not run in the release directory")
				}
			}},
		{name: "exit status with the output's tail", command: `echo starting; echo "service did not come up" >&2; exit 3`,
			wantErr: "health check failed: exit status 3: starting service did not come up"},
		{name: "long output keeps the end", command: `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; exit 1`,
			wantErr: "line 499"},
		{name: "timeout kills what it started", command: `sleep 30 & sleep 30; echo never`, timeout: 300 * time.Millisecond,
			wantErr: "timed out after 300ms (killed)"},
		{name: "not found", command: "/nonexistent/hook", wantErr: "exit status 127"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			start := time.Now()
			err := runHook(context.Background(), hookHealthCheck, tt.command, env, timeout)
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("runHook took %s", took)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var he *HookError
				if !errors.As(err, &he) || he.Hook != hookHealthCheck || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("runHook = %v, want a *HookError containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "line 0 ") {
					t.Errorf("the error carries the whole output: %d bytes", len(err.Error()))
				}
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

// hookLog makes a hook command that appends "<name> <version>" to a log file and fails when
// the release holds a file named fail-<name>.
func hookLog(t *testing.T, log, name string) string {
	t.Helper()
	return `echo "` + name + ` $PEERPATCH_VERSION" >> ` + log + `; test ! -e "$PEERPATCH_DIR/fail-` + name + `"`
}

func readLog(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Join(strings.Split(strings.TrimSpace(string(b)), "\n"), ", ")
}

func TestInstallHooks(t *testing.T) {
	tests := []struct {
		name     string
		fail     string // the hook that fails on 3.0.0
		wantLog  string
		wantErr  error
		switched bool // 3.0.0 ends up installed
	}{
		{name: "all pass", wantLog: "pre 3.0.0, post 3.0.0, health 3.0.0", switched: true},
		{name: "pre-install fails: no switch", fail: "pre", wantLog: "pre 3.0.0"},
		{name: "post-install fails: switched back", fail: "post", wantLog: "pre 3.0.0, post 3.0.0", wantErr: ErrRolledBack},
		{name: "health check fails: switched back", fail: "health", wantLog: "pre 3.0.0, post 3.0.0, health 3.0.0", wantErr: ErrRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t)
			r1 := newDirRelease(t, a, "1.0.0", map[string]string{"app": "one"})
			r2 := newDirRelease(t, a, "2.0.0", map[string]string{"app": "two"})
			files := map[string]string{"app": "three"}
			if tt.fail != "" {
				files["fail-"+tt.fail] = ""
			}
			r3 := newDirRelease(t, a, "3.0.0", files)
			mustInstall(t, a, r1)
			mustInstall(t, a, r2)

			log := filepath.Join(t.TempDir(), "hooks.log")
			a.cfg.PreInstall, a.cfg.PostInstall, a.cfg.HealthCheck = hookLog(t, log, "pre"), hookLog(t, log, "post"), hookLog(t, log, "health")
			err := a.install(context.Background(), r3.m, r3.bundle, discard)
			if got := readLog(t, log); got != tt.wantLog {
				t.Errorf("hooks ran: %q, want %q", got, tt.wantLog)
			}
			if tt.switched {
				if err != nil {
					t.Fatal(err)
				}
				assertLink(t, a, currentLink, "3.0.0")
				assertLink(t, a, previousLink, "2.0.0")
				assertState(t, a, "3.0.0", "2.0.0")
				return
			}
			var he *HookError
			if !errors.As(err, &he) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("install = %v, want a *HookError (and %v)", err, tt.wantErr)
			}
			if tt.wantErr != nil && !strings.Contains(err.Error(), "rolled back to 2.0.0") {
				t.Errorf("error %q does not say where it went back to", err)
			}
			assertLink(t, a, currentLink, "2.0.0")
			assertLink(t, a, previousLink, "1.0.0")
			assertState(t, a, "2.0.0", "1.0.0")
			assertReleaseDirs(t, a, "1.0.0", "2.0.0", "3.0.0") // 3.0.0 is kept: a later retry reuses it
		})
	}
}

// TestInstallHookFailsFirstInstall: the very first install fails its health check; current
// is removed again.
func TestInstallHookFailsFirstInstall(t *testing.T) {
	a := newTestAgent(t)
	r1 := newDirRelease(t, a, "1.0.0", map[string]string{"app": "one"})
	a.cfg.HealthCheck = "exit 1"
	err := a.install(context.Background(), r1.m, r1.bundle, discard)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "rolled back to no release") {
		t.Fatalf("install = %v", err)
	}
	for _, l := range []string{currentLink, previousLink} {
		if _, err := os.Lstat(filepath.Join(a.cfg.InstallDir, l)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists after the switch back: %v", l, err)
		}
	}
	assertState(t, a, "", "")
}

// TestInstallRollbackFromYanked: going back from a yanked 3.0.0 to the kept 2.0.0 needs no
// swarm copy, runs the hooks, and leaves no previous link to the yanked release.
func TestInstallRollbackFromYanked(t *testing.T) {
	a := newTestAgent(t)
	r2 := newDirRelease(t, a, "2.0.0", map[string]string{"app": "two"})
	r3 := newDirRelease(t, a, "3.0.0", map[string]string{"app": "three"})
	mustInstall(t, a, r2)
	mustInstall(t, a, r3)
	if err := os.RemoveAll(filepath.Dir(r2.swarm)); err != nil { // no swarm copy of 2.0.0
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "hooks.log")
	a.cfg.PostInstall = hookLog(t, log, "post")
	if !a.keptInstall("2.0.0") {
		t.Fatal("2.0.0 is not kept")
	}
	if err := a.installAs(context.Background(), r2.m, r2.bundle, true, discard); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, log); got != "post 2.0.0" {
		t.Errorf("hooks ran: %q", got)
	}
	assertLink(t, a, currentLink, "2.0.0")
	if _, err := os.Lstat(filepath.Join(a.cfg.InstallDir, previousLink)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("previous still exists: %v", err)
	}
	assertState(t, a, "2.0.0", "")
	assertReleaseDirs(t, a, "2.0.0")
	assertSameTree(t, filepath.Join(a.cfg.InstallDir, currentLink), r2.src)
}

// TestSteadyReport: the report of an agent with nothing to do says rolled_back while it runs
// the release it went back to.
func TestSteadyReport(t *testing.T) {
	a := newTestAgent(t)
	if r := a.steady(""); r.State != "idle" {
		t.Errorf("nothing installed: %+v", r)
	}
	if r := a.steady("1.0.0"); r.State != "installed" {
		t.Errorf("installed: %+v", r)
	}
	a.putState(keyRolledBack+"stable", rolledBack{From: "2.0.0", To: "1.0.0", Reason: "health check failed"})
	if r := a.steady("1.0.0"); r.State != "rolled_back" || r.TargetVersion != "2.0.0" || r.Error != "health check failed" {
		t.Errorf("rolled back: %+v", r)
	}
	if r := a.steady("3.0.0"); r.State != "installed" {
		t.Errorf("after another install: %+v", r)
	}
}
