package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/peerpatch/peerpatch/agent"
	"github.com/peerpatch/peerpatch/demo"
	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/seeder"
	"github.com/peerpatch/peerpatch/seeder/adminclient"
)

// run builds the CLI and runs it; errors become one line on stderr and exit status 1.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdout, os.Stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(os.Stderr, "peerpatch: %v\n", err)
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "peerpatch",
		Usage: "publish software releases and deliver them to a fleet over a private, verified BitTorrent swarm",
		Description: "An admin publishes a release to a seeder, which signs it into TUF metadata and seeds it.\n" +
			"Agents on every workstation download it mostly from each other, verify every byte against\n" +
			"the signed metadata, install it atomically and keep seeding. Start with `peerpatch demo`.",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return err },
		Commands: []*cli.Command{
			initCommand(), withConfig(seederCommand()), publishCommand(), withConfig(agentCommand()), statusCommand(), agentsCommand(),
			rolloutCommand(), yankCommand(), keysCommand(), delegateCommand(), demoCommand(), serviceCommand(),
		},
	}
}

// logger builds the slog logger of the global flags; logs go to stderr.
func logger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
}

// rate parses a byte rate flag such as "20MiB" or "0" (unlimited).
func rate(c *cli.Context, name string) (int64, error) {
	n, err := parseRate(c.String(name))
	if err != nil {
		return 0, fmt.Errorf("--%s %q: %w", name, c.String(name), err)
	}
	return n, nil
}

// parseRate parses bytes per second such as "20MiB"; "" and "0" are unlimited (0).
func parseRate(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("want bytes per second such as 8MiB: %w", err)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("want bytes per second such as 8MiB: %s is too large", s)
	}
	return int64(n), nil
}

// pieceSize parses a piece size such as "1MiB"; "" is 0, the release's default.
func pieceSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err == nil {
		err = release.ValidPieceLength(int64(min(n, math.MaxInt64)))
	}
	if err != nil {
		return 0, fmt.Errorf("want a power of two from 16KiB to 16MiB, such as 1MiB: %w", err)
	}
	return int64(n), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a new deployment: trust anchor, keys and tokens",
		Description: "Writes D/root.json (the trust anchor every agent installs), private keys under D/keys\n" +
			"(mode 0600; root keys 2-of-3, targets key for publish, snapshot and timestamp keys for the\n" +
			"seeder), D/admin.token (publish, status) and D/agent.token (fleet enrolment).\n" +
			"Refuses to touch an existing D. Keep the root keys offline.",
		Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Required: true, Usage: "new deployment directory `D`"}},
		Action: func(c *cli.Context) error {
			if err := deploy.Init(c.String("dir"), time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "deployment created in %s\n", c.String("dir"))
			return nil
		},
	}
}

func seederCommand() *cli.Command {
	return &cli.Command{
		Name:  "seeder",
		Usage: "run the origin: release store, TUF metadata, tracker, BitTorrent seed and web seed",
		Description: "Serves until SIGINT or SIGTERM, then exits 0. Writes only under --data; restarting on\n" +
			"the same --data resumes seeding everything published. GET /healthz answers 200 once ready.\n" +
			"GET /metrics serves Prometheus metrics to the admin token or the --metrics-token-file token.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "state and release directory `S`"},
			&cli.StringFlag{Name: "listen", Required: true, Usage: "`HOST:PORT` of the HTTP API, web seed and tracker"},
			&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (online keys, tokens)"},
			&cli.StringFlag{Name: "public-url", Usage: "base `URL` agents use (default http://--listen)"},
			&cli.StringSliceFlag{Name: "webseed", Usage: "extra web-seed mirror `URL` serving a copy of S/releases (repeatable)"},
			&cli.StringFlag{Name: "peer-listen", Usage: "`HOST:PORT` for BitTorrent peers (default: --listen host, any port)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate `file`: serve https (with --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key `file` of --tls-cert"},
			&cli.StringFlag{Name: "upload-rate", Value: "0", Usage: "cap on what the origin sends, e.g. 50MiB (per second; 0 = unlimited)"},
			&cli.IntFlag{Name: "max-peers", Value: 0, Usage: "also seed each release over BitTorrent to `N` agents at once (0: only hand out pieces through the scheduler, each about once)"},
			&cli.StringFlag{Name: "metrics-token-file", Usage: "`file` holding a token that opens GET /metrics and nothing else, for Prometheus (the admin token opens it too)"},
		},
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			up, err := rate(c, "upload-rate")
			if err != nil {
				return err
			}
			return seeder.Run(c.Context, seeder.Config{
				DataDir: c.String("data"), Listen: c.String("listen"), KeysDir: c.String("keys"),
				PublicURL: c.String("public-url"), WebSeeds: c.StringSlice("webseed"),
				PeerListen: c.String("peer-listen"), UploadRate: up, MaxPeersPerRelease: c.Int("max-peers"),
				TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), MetricsTokenFile: c.String("metrics-token-file"),
				Logger: log,
			})
		},
	}
}

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "publish a file or directory as a new release of a channel",
		ArgsUsage: "PATH",
		Description: "Hashes PATH, builds its torrent, signs it into the TUF targets with the targets key in\n" +
			"--keys and streams it to the seeder. Exits 0 once the seeder has stored, signed and begun\n" +
			"seeding the release. --version must be greater than the channel's current version.\n" +
			"--role R signs with D/keys/R.pem into the delegated role R (see delegate): the seeder and\n" +
			"agents refuse a release outside the paths delegated to R.\n" +
			"--rollout, --ring and --urgent sign a rollout policy with the release (see rollout): e.g.\n" +
			"--rollout 10 --ring canary rolls it out to 10% of the channel's agents and the canary ring.",
		Flags: []cli.Flag{
			seederFlag(),
			&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (targets key, admin token)"},
			caFlag(),
			&cli.StringFlag{Name: "channel", Required: true, Usage: "release `channel`, e.g. stable"},
			&cli.StringFlag{Name: "version", Required: true, Usage: "release `version` (semver, e.g. 1.4.2)"},
			&cli.StringFlag{Name: "role", Usage: "sign as delegated `role` (e.g. ci) with D/keys/<role>.pem instead of the targets key"},
			&cli.IntFlag{Name: "rollout", Value: 100, Usage: "roll the release out to this `PERCENT` (0 to 100) of the channel's agents"},
			&cli.StringSliceFlag{Name: "ring", Usage: "also roll it out to the agents of `ring` (agent --ring), whatever the percent (repeatable)"},
			&cli.BoolFlag{Name: "urgent", Usage: "let agents install it outside their maintenance windows"},
			&cli.StringFlag{Name: "piece-size", Usage: "torrent piece `size`, a power of two from 16KiB to 16MiB (default: from the release's size, 256KiB to 4MiB, at most 512 pieces)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("publish: want exactly one PATH argument, got %d", c.NArg())
			}
			policy, err := policyFlags(c, "rollout", rollout.Policy{Urgent: c.Bool("urgent")})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			pieceLength, err := pieceSize(c.String("piece-size"))
			if err != nil {
				return fmt.Errorf("publish: --piece-size %q: %w", c.String("piece-size"), err)
			}
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			res, err := cl.PublishRelease(c.Context, c.String("keys"), c.String("channel"), c.String("version"), c.Args().First(),
				adminclient.PublishOptions{Role: c.String("role"), Rollout: policy, PieceLength: pieceLength})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, res)
			}
			fmt.Fprintf(c.App.Writer, "published %s %s: %s in %d files, %d pieces, infohash %s\n",
				res.Channel, res.Version, humanize.IBytes(uint64(res.Length)), res.Files, res.Pieces, res.InfoHash)
			return nil
		},
	}
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "keep a workstation on the newest release of a channel, and seed it for neighbours",
		Description: "Keeps --install-dir/current (a symlink; on Windows a directory junction) pointing at the\n" +
			"installed release, whose contents equal the published PATH; --install-dir/previous points at\n" +
			"the one before.\n" +
			"--once: one update cycle, then exit 0 if the channel's newest release is installed,\n" +
			"non-zero otherwise. Without --once: runs until signalled, seeding what it holds.\n" +
			"The newest release means the newest one rolled out to this agent by the releases' signed\n" +
			"rollout policies (percent of the fleet, --ring, paused, yanked). Hooks run with sh -c (cmd /C\n" +
			"on Windows) in the release's directory, with PEERPATCH_CHANNEL, PEERPATCH_VERSION,\n" +
			"PEERPATCH_DIR and PEERPATCH_PREVIOUS set; if --post-install or --health-check fails, the agent\n" +
			"switches back to the release it ran before and does not retry until the policy changes.\n" +
			"--install-window (e.g. 'Mon-Fri 01:00-05:00', 'daily 22:00-06:00'; repeatable): downloads\n" +
			"happen any time, the switch only inside a window unless the release is urgent.\n" +
			"--metrics-listen serves Prometheus metrics; SIGINT or SIGTERM stops the agent cleanly (exit 0),\n" +
			"and a download in progress resumes at the next start.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "agent state directory `A`"},
			&cli.StringSliceFlag{Name: "seeder", Required: true, Usage: "seeder base `URL` (repeatable, tried in order)"},
			&cli.StringFlag{Name: "trust", Required: true, Usage: "the deployment's `root.json`"},
			&cli.StringFlag{Name: "token-file", Required: true, Usage: "`file` holding the agent token"},
			caFlag(),
			&cli.StringFlag{Name: "channel", Required: true, Usage: "release `channel` to follow"},
			&cli.StringFlag{Name: "install-dir", Required: true, Usage: "install directory `I`"},
			&cli.BoolFlag{Name: "once", Usage: "run one update cycle and exit"},
			&cli.DurationFlag{Name: "interval", Value: time.Minute, Usage: "time between update checks (jittered ±20%); between checks the agent long-polls the seeder, so a publish starts a check at once"},
			&cli.StringFlag{Name: "peer-listen", Value: "0.0.0.0:0", Usage: "`HOST:PORT` for BitTorrent peers"},
			&cli.StringFlag{Name: "upload-rate", Value: "0", Usage: "upload cap per second, e.g. 10MiB (0 = unlimited)"},
			&cli.StringFlag{Name: "download-rate", Value: "0", Usage: "download cap per second (0 = unlimited)"},
			&cli.IntFlag{Name: "max-peers", Value: swarm.DefaultMaxConns, Usage: "peer connections per release: `N` neighbours to swap pieces with (fewer keep each busy and cost less CPU; N+1, a full mesh, when the release has exactly N+1 other peers)"},
			&cli.DurationFlag{Name: "fallback-after", Value: 10 * time.Second, Usage: "use web seeds for any piece after this long without progress (at most 3s once the seeder cannot be reached; then each agent also fetches its own part of the pieces no peer has at once)"},
			&cli.DurationFlag{Name: "stall-timeout", Value: 2 * time.Minute, Usage: "fail a download after this long without progress"},
			&cli.StringSliceFlag{Name: "ring", Usage: "rollout `ring` this agent belongs to, e.g. canary (repeatable)"},
			&cli.StringFlag{Name: "pre-install", Usage: "`command` run before switching to a release; if it fails, the switch is not done"},
			&cli.StringFlag{Name: "post-install", Usage: "`command` run after switching to a release; if it fails, the agent switches back"},
			&cli.StringFlag{Name: "health-check", Usage: "`command` run after --post-install; if it fails, the agent switches back"},
			&cli.DurationFlag{Name: "hook-timeout", Value: time.Minute, Usage: "kill a hook (and what it started) after this long; it has failed"},
			&cli.GenericFlag{Name: "install-window", Value: &windowList{}, Usage: "maintenance window `SPEC` for installs, e.g. 'Mon-Fri 01:00-05:00' (repeatable; default: any time)"},
			&cli.StringFlag{Name: "timezone", Usage: "IANA time `zone` of --install-window, e.g. Europe/Paris (default: local time)"},
			&cli.BoolFlag{Name: "copy-install", Usage: "install each release as a copy; by default its files are hard links to the swarm copy the agent seeds (one write, half the disk) where --install-dir and --data share a filesystem, so files under releases/ must not be changed in place (a release whose files change stops being seeded)"},
			&cli.IntFlag{Name: "keep", Value: 2, Usage: "installed releases kept on disk (`K` ≥ 2: current, previous and the newest others)"},
			&cli.DurationFlag{Name: "seed-for", Usage: "stop seeding an installed release after this long (0: as long as it is kept)"},
			&cli.StringFlag{Name: "seed-ratio", Value: "0", Usage: "stop seeding an installed release once it sent `R` times its size, e.g. 1.5 (0: no limit)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics, without authentication (default: off)"},
		},
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			up, err := rate(c, "upload-rate")
			if err != nil {
				return err
			}
			down, err := rate(c, "download-rate")
			if err != nil {
				return err
			}
			seedRatio, err := strconv.ParseFloat(c.String("seed-ratio"), 64)
			if err != nil || math.IsNaN(seedRatio) || math.IsInf(seedRatio, 0) {
				return fmt.Errorf("--seed-ratio %q: want a number such as 1.5", c.String("seed-ratio"))
			}
			return agent.Run(c.Context, agent.Config{
				DataDir: c.String("data"), Seeders: c.StringSlice("seeder"), TrustFile: c.String("trust"),
				TokenFile: c.String("token-file"), CAFile: c.String("ca"), Channel: c.String("channel"), InstallDir: c.String("install-dir"),
				Once: c.Bool("once"), Interval: c.Duration("interval"), PeerListen: c.String("peer-listen"),
				UploadRate: up, DownloadRate: down, MaxPeers: c.Int("max-peers"), FallbackAfter: c.Duration("fallback-after"),
				StallTimeout: c.Duration("stall-timeout"), Rings: c.StringSlice("ring"),
				PreInstall: c.String("pre-install"), PostInstall: c.String("post-install"), HealthCheck: c.String("health-check"),
				HookTimeout: c.Duration("hook-timeout"), InstallWindows: c.Generic("install-window").(*windowList).specs,
				Timezone: c.String("timezone"), MetricsListen: c.String("metrics-listen"),
				CopyInstall: c.Bool("copy-install"), Keep: c.Int("keep"), SeedFor: c.Duration("seed-for"), SeedRatio: seedRatio, Logger: log,
			})
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the fleet: each agent's channel, installed version and state, and each release's rollout",
		Flags: []cli.Flag{
			seederFlag(),
			&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (admin token)"},
			caFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON: a top-level \"agents\" array and a \"releases\" array"},
		},
		Action: func(c *cli.Context) error {
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			return printStatus(c.App.Writer, st)
		},
	}
}

func agentsCommand() *cli.Command {
	flags := []cli.Flag{
		seederFlag(),
		&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (admin token)"},
		caFlag(),
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
	}
	return &cli.Command{
		Name:  "agents",
		Usage: "list enrolled agents, or revoke one",
		Description: "Agents enrol with the fleet token (agent.token) and get their own credential. A revoked\n" +
			"agent gets nothing more from the seeder: no metadata, torrents, web-seed bytes or peers, and\n" +
			"its address leaves the tracker. If its machine is compromised, also replace agent.token.",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list enrolled agents with their last report",
				Flags: flags,
				Action: func(c *cli.Context) error {
					cl, err := newAdminClient(c)
					if err != nil {
						return err
					}
					agents, err := cl.Agents(c.Context)
					if err != nil {
						return fmt.Errorf("agents list: %w", err)
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, struct {
							Agents []api.Agent `json:"agents"`
						}{agents})
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "AGENT\tHOST\tENROLLED\tREVOKED\tCHANNEL\tRINGS\tINSTALLED\tSTATE\tTARGET\tLAST REPORT\tERROR")
					for _, a := range agents {
						revoked, channel, rings, installed, state, target, last, errText := "-", "-", "-", "-", "-", "-", "never", ""
						if a.RevokedAt != nil {
							revoked = a.RevokedAt.Format(time.RFC3339)
						}
						if r := a.LastReport; r != nil {
							channel, rings, installed, state = r.Channel, orDash(strings.Join(r.Rings, ",")), orDash(r.InstalledVersion), r.State
							target, last, errText = orDash(r.TargetVersion), humanize.Time(r.Time), oneLine(r.Error)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Hostname, a.EnrolledAt.Format(time.RFC3339),
							revoked, channel, rings, installed, state, target, last, errText)
					}
					return w.Flush()
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke an agent's credential",
				ArgsUsage: "AGENT-ID",
				Flags:     flags,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("agents revoke: want exactly one AGENT-ID argument, got %d", c.NArg())
					}
					cl, err := newAdminClient(c)
					if err != nil {
						return err
					}
					a, err := cl.Revoke(c.Context, c.Args().First())
					if err != nil {
						return fmt.Errorf("agents revoke: %w", err)
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, a)
					}
					fmt.Fprintf(c.App.Writer, "revoked agent %s (%s)\n", a.ID, a.Hostname)
					return nil
				},
			},
		},
	}
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole story on this machine: a deployment, a seeder, N agents and a release",
		Description: "Creates a temporary deployment, starts a seeder and N agents on loopback with upload caps\n" +
			"(the seeder no faster than an agent, so the swarm matters), publishes a generated release,\n" +
			"shows live progress, and prints the time, bytes from the origin versus from peers, and\n" +
			"the verification result. Cleans up after itself.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 5, Usage: "number of agents"},
			&cli.StringFlag{Name: "size", Value: "64MiB", Usage: "release size in `BYTES` (e.g. 64MiB)"},
			&cli.StringFlag{Name: "rate", Value: "16MiB", Usage: "upload cap per second of the seeder and of each agent"},
			&cli.IntFlag{Name: "origin-peers", Usage: "the seeder's connections per release (default: the seeder's --max-peers default)"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
		},
		Action: func(c *cli.Context) error {
			size, err := humanize.ParseBytes(c.String("size"))
			if err != nil || size == 0 {
				return fmt.Errorf("--size %q: want a byte count such as 64MiB", c.String("size"))
			}
			r, err := rate(c, "rate")
			if err != nil {
				return err
			}
			if c.Int("agents") < 1 {
				return fmt.Errorf("--agents must be at least 1")
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			out := c.App.Writer
			if c.Bool("json") {
				out = c.App.ErrWriter // stdout carries the JSON summary alone
			}
			sum, err := demo.Run(c.Context, demo.Config{
				Agents: c.Int("agents"), Size: int64(size), Rate: r, OriginPeers: c.Int("origin-peers"),
				Out: out, Logger: log,
			})
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, sum); err != nil {
					return err
				}
			}
			if !sum.OK() {
				return errors.New("demo: not every agent installed a verified release")
			}
			return nil
		},
	}
}

// Flags shared by the commands that talk to a seeder (new values: flags keep parse state).
func seederFlag() cli.Flag {
	return &cli.StringFlag{Name: "seeder", Required: true, Usage: "seeder base `URL`"}
}

func caFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca", Usage: "PEM `file` of certificates to verify an https seeder with (besides the system's)"}
}

// newAdminClient is the admin client of the --seeder, --keys and --ca flags.
func newAdminClient(c *cli.Context) (*adminclient.Client, error) {
	return adminclient.New(c.String("seeder"), c.String("keys"), c.String("ca"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
