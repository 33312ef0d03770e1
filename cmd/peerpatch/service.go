package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// defaultServiceName is the Windows service `peerpatch service install` creates.
const defaultServiceName = "peerpatch-agent"

// service is what `peerpatch service` subcommands act on.
type service struct {
	Name    string // Windows service name
	Config  string // the agent's --config file
	LogFile string // where the service's logs go ("" for none)
}

// serviceCommand runs the agent as a Windows service: install registers `peerpatch service
// run` with the service manager, which starts it at boot and restarts it when it fails; run
// is what the service manager starts. On Linux and macOS the command says to use the systemd
// unit or the launchd job in configs/ (service_other.go).
func serviceCommand() *cli.Command {
	name := func() cli.Flag {
		return &cli.StringFlag{Name: "name", Value: defaultServiceName, Usage: "Windows service `name`"}
	}
	cfg := func() cli.Flag {
		return &cli.StringFlag{Name: "config", Required: true, TakesFile: true,
			Usage: "the agent's YAML config `FILE` (see configs/agent.yaml); install records its absolute path"}
	}
	logFile := func() cli.Flag {
		return &cli.StringFlag{Name: "log-file", Value: defaultServiceLogFile(), TakesFile: true,
			Usage: "`FILE` the service appends its logs to (a service has no console); moved to FILE.1 at start once over 10 MiB"}
	}
	spec := func(c *cli.Context) service {
		return service{Name: c.String("name"), Config: c.String("config"), LogFile: c.String("log-file")}
	}
	return &cli.Command{
		Name:  "service",
		Usage: "run the agent as a Windows service (install, uninstall, run)",
		Description: "Windows only. `peerpatch service install --config C:\\ProgramData\\Peerpatch\\agent.yaml`, from an\n" +
			"elevated prompt, registers the service (automatic start, restarted 10s, 30s and 60s after a\n" +
			"failure) to run `peerpatch service run` with that config, the global --log-level and\n" +
			"--log-format given to install, and its logs in --log-file. Start it with `sc.exe start\n" +
			"peerpatch-agent`; stopping it stops the agent cleanly (downloads resume at the next start).\n" +
			"On Linux use the systemd unit configs/peerpatch-agent.service, on macOS the launchd job\n" +
			"configs/com.peerpatch.agent.plist.",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "register the agent as a Windows service (run elevated)",
				Flags: []cli.Flag{name(), cfg(), logFile()},
				Action: func(c *cli.Context) error {
					return installService(c, spec(c))
				},
			},
			{
				Name:  "uninstall",
				Usage: "stop and remove the agent's Windows service (run elevated)",
				Flags: []cli.Flag{name()},
				Action: func(c *cli.Context) error {
					return uninstallService(c, c.String("name"))
				},
			},
			{
				Name:  "run",
				Usage: "run the agent under the Windows service manager (what install registers)",
				Flags: []cli.Flag{name(), cfg(), logFile()},
				Action: func(c *cli.Context) error {
					return runService(c, spec(c))
				},
			},
		},
	}
}

// checkAgentConfig parses file as `peerpatch agent --config file` would, without running the
// agent: a service should not be installed with a config that cannot start it.
func checkAgentConfig(file string) error {
	app := newApp(io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if cmd.Name == "agent" {
			cmd.Action = func(*cli.Context) error { return nil }
		}
	}
	if err := app.Run([]string{"peerpatch", "agent", "--config", file}); err != nil {
		return fmt.Errorf("--config %s: %w", file, err)
	}
	return nil
}
