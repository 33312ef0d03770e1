//go:build !windows

package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// errNotWindows is what `peerpatch service` says outside Windows.
var errNotWindows = errors.New("service: Windows services only; on Linux run the agent with the systemd unit " +
	"configs/peerpatch-agent.service, on macOS with the launchd job configs/com.peerpatch.agent.plist " +
	"(README.md, \"Installing the agent\")")

func defaultServiceLogFile() string { return "" }

func installService(*cli.Context, service) error  { return errNotWindows }
func uninstallService(*cli.Context, string) error { return errNotWindows }
func runService(*cli.Context, service) error      { return errNotWindows }
