//go:build !unix

package agent

import "os/exec"

// shellCommand runs command with cmd /C (Windows).
func shellCommand(command string) (string, []string) { return "cmd", []string{"/C", command} }

// killGroup leaves the default: a cancelled or timed-out hook is killed, not what it started.
func killGroup(*exec.Cmd) {}
