//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// shellCommand runs command with /bin/sh -c.
func shellCommand(command string) (string, []string) { return "/bin/sh", []string{"-c", command} }

// killGroup puts the hook in a process group of its own and has a cancelled or timed-out hook
// killed with the whole group, so that nothing it started outlives it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
