package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/rollout"
)

// rolloutFlags are the flags of the commands that change a release's rollout policy.
func rolloutFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		seederFlag(),
		&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (targets key, or the --role key, and admin token)"},
		caFlag(),
		&cli.StringFlag{Name: "channel", Required: true, Usage: "release `channel`"},
		&cli.StringFlag{Name: "version", Required: true, Usage: "release `version`"},
		&cli.StringFlag{Name: "role", Usage: "sign as delegated `role` (e.g. ci) with D/keys/<role>.pem instead of the targets key"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
	}, extra...)
}

func rolloutCommand() *cli.Command {
	change := func(name, usage string, edit func(c *cli.Context, p *rollout.Policy) error, extra ...cli.Flag) *cli.Command {
		return &cli.Command{
			Name:  name,
			Usage: usage,
			Flags: rolloutFlags(extra...),
			Action: func(c *cli.Context) error {
				return changeRollout(c, "rollout "+name, edit)
			},
		}
	}
	return &cli.Command{
		Name:  "rollout",
		Usage: "show or change which agents take part in a release: percent, rings, pause",
		Description: "A release's rollout policy is signed TUF metadata, like the release itself: each change signs\n" +
			"new targets metadata (version N+1) here with the targets key (or --role R with D/keys/R.pem)\n" +
			"and has the seeder check that only rollout policies changed, so the seeder cannot forge one.\n" +
			"An agent takes part when a stable hash of (its id, channel, version) falls below the percent,\n" +
			"or its --ring is listed; raising the percent only adds agents. A release without a policy\n" +
			"goes to everyone. Paused: no new installs; agents that have it keep it. See also yank.",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "show a release's current rollout policy",
				Flags: []cli.Flag{
					seederFlag(),
					&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (root.json, admin token)"},
					caFlag(),
					&cli.StringFlag{Name: "channel", Required: true, Usage: "release `channel`"},
					&cli.StringFlag{Name: "version", Required: true, Usage: "release `version`"},
					&cli.BoolFlag{Name: "json", Usage: "print the policy as JSON"},
				},
				Action: func(c *cli.Context) error {
					cl, err := newAdminClient(c)
					if err != nil {
						return err
					}
					r, err := cl.Rollout(c.Context, c.String("keys"), c.String("channel"), c.String("version"))
					if err != nil {
						return fmt.Errorf("rollout show: %w", err)
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, api.ReleasePolicy{Channel: c.String("channel"), Version: c.String("version"), Rollout: r.Policy})
					}
					signed := "no policy: everyone"
					if r.Role != "" {
						signed = "signed by " + r.Role
					}
					fmt.Fprintf(c.App.Writer, "%s %s: %s (%s)\n", c.String("channel"), c.String("version"), r.Policy, signed)
					return nil
				},
			},
			change("set", "set the percent of the channel's agents (and the rings) a release goes to",
				func(c *cli.Context, p *rollout.Policy) error {
					next, err := policyFlags(c, "percent", *p)
					*p = next
					return err
				},
				&cli.IntFlag{Name: "percent", Required: true, Usage: "`PERCENT` (0 to 100) of the channel's agents"},
				&cli.StringSliceFlag{Name: "ring", Usage: "also the agents of `ring` (repeatable); replaces the release's rings, none if not given"},
			),
			change("pause", "stop new installs of a release (agents that have it keep it)",
				func(_ *cli.Context, p *rollout.Policy) error { p.Paused = true; return nil }),
			change("resume", "resume the installs of a paused release",
				func(_ *cli.Context, p *rollout.Policy) error { p.Paused = false; return nil }),
		},
	}
}

func yankCommand() *cli.Command {
	return &cli.Command{
		Name:  "yank",
		Usage: "withdraw a release: no agent installs it any more; --rollback also sends back those that run it",
		Description: "Signs the release's rollout policy as yanked (see rollout). Agents that do not have the release\n" +
			"never install it; with --rollback, agents that run it go back to the newest release below it\n" +
			"that is rolled out to them (usually I/previous, reused without a download), at once, whatever\n" +
			"their maintenance windows. The release stays listed, so the agents' rollback guard holds.",
		Flags: rolloutFlags(&cli.BoolFlag{Name: "rollback", Usage: "send the agents that run it back to the release before"}),
		Action: func(c *cli.Context) error {
			return changeRollout(c, "yank", func(c *cli.Context, p *rollout.Policy) error {
				p.Yanked, p.Rollback = true, c.Bool("rollback")
				return nil
			})
		},
	}
}

// changeRollout runs a rollout change of command what with edit.
func changeRollout(c *cli.Context, what string, edit func(*cli.Context, *rollout.Policy) error) error {
	if err := edit(c, &rollout.Policy{Percent: 100}); err != nil { // bad flags: before any request
		return fmt.Errorf("%s: %w", what, err)
	}
	cl, err := newAdminClient(c)
	if err != nil {
		return err
	}
	var editErr error
	res, err := cl.ChangeRollout(c.Context, c.String("keys"), c.String("role"), c.String("channel"), c.String("version"),
		func(p *rollout.Policy) { editErr = edit(c, p) })
	if editErr != nil {
		err = editErr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	if len(res.Changed) == 0 {
		fmt.Fprintf(c.App.Writer, "%s %s: rollout unchanged\n", c.String("channel"), c.String("version"))
		return nil
	}
	for _, p := range res.Changed {
		fmt.Fprintf(c.App.Writer, "%s %s: rollout %s (signed by %s; seeder metadata version %d)\n",
			p.Channel, p.Version, p.Rollout, res.Role, res.MetadataVersion)
	}
	return nil
}

// policyFlags returns base with the percent of flag percentFlag and the rings of --ring, checked.
func policyFlags(c *cli.Context, percentFlag string, base rollout.Policy) (rollout.Policy, error) {
	p := base
	p.Percent = c.Int(percentFlag)
	if p.Percent < 0 || p.Percent > 100 {
		return p, fmt.Errorf("--%s %d: out of range: want 0 to 100", percentFlag, p.Percent)
	}
	p.Rings = nil
	for _, r := range c.StringSlice("ring") {
		if err := rollout.ValidRing(r); err != nil {
			return p, fmt.Errorf("--ring: %w", err)
		}
		if !slices.Contains(p.Rings, r) {
			p.Rings = append(p.Rings, r)
		}
	}
	return p, p.Validate()
}

// windowList is the value of --install-window: repeatable, each value one window spec checked
// as it is set (a StringSliceFlag would split "Sat,Sun 00:00-24:00" at the comma).
type windowList struct{ specs []string }

func (w *windowList) Set(spec string) error {
	if _, err := rollout.ParseWindow(spec); err != nil {
		return err
	}
	w.specs = append(w.specs, spec)
	return nil
}

func (w *windowList) String() string {
	if w == nil {
		return ""
	}
	return strings.Join(w.specs, "; ")
}

// printStatus writes the fleet view as text: agents, then releases with their rollout.
func printStatus(out io.Writer, st *api.Status) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AGENT\tHOST\tCHANNEL\tINSTALLED\tSTATE\tTARGET\tPROGRESS\tFROM PEERS\tFROM ORIGIN\tLAST REPORT\tERROR")
	for _, a := range st.Agents {
		progress := "-"
		if a.Total > 0 {
			progress = fmt.Sprintf("%.0f%%", 100*float64(a.Completed)/float64(a.Total))
		}
		target := orDash(a.TargetVersion)
		if a.NextWindow != nil {
			target += " (window " + a.NextWindow.Local().Format("Mon 15:04:05") + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Hostname, a.Channel,
			orDash(a.InstalledVersion), a.State, target, progress, humanize.IBytes(uint64(a.BytesFromPeers)),
			humanize.IBytes(uint64(a.BytesFromOrigin)), humanize.Time(a.Time), oneLine(a.Error))
	}
	fmt.Fprintln(w, "\nCHANNEL\tVERSION\tROLLOUT\tTARGETED\tDOWNLOADING\tWAITING\tINSTALLED\tFAILED\tROLLED BACK\tFROM PEERS\tSIZE\tPEERS\tSEEDERS\tORIGIN SENT\tPUBLISHED")
	for _, r := range st.Releases {
		policy := r.Rollout.String()
		if r.RolloutError != "" {
			policy = "invalid policy"
		}
		share := "-"
		if r.BytesFromPeers+r.BytesFromOrigin > 0 {
			share = fmt.Sprintf("%.0f%%", 100*r.PeerShare)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Channel, r.Version, policy,
			r.Targeted, r.Agents, r.Downloading, r.Waiting, r.Installed, r.Failed, r.RolledBack, share,
			humanize.IBytes(uint64(r.Length)), r.Peers, r.Seeders, humanize.IBytes(uint64(r.OriginBytes)), r.PublishedAt.Format(time.RFC3339))
	}
	return w.Flush()
}
