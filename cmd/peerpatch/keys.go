package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage the deployment's TUF keys",
		Subcommands: []*cli.Command{{
			Name:  "rotate",
			Usage: "replace the key of a role (root, targets, snapshot or timestamp) with a new one",
			Description: "Makes a new key for --role in D/keys (the old file is kept as <name>.pem.old-<unix time>;\n" +
				"for root, root-1.pem is replaced), signs root version N+1 naming it instead of the old key\n" +
				"with the root keys in D/keys (old and new, for root), re-signs the current targets with a new\n" +
				"targets key, and posts them to the seeder, which checks the chain, stores N+1.root.json and\n" +
				"signs a new snapshot and timestamp. Then D/root.json becomes the new root. Agents follow the\n" +
				"chain without reinstall and stop trusting the old key. For snapshot and timestamp the seeder\n" +
				"loads the new key from its own --keys directory, so run this where the seeder's D is.",
			Flags: []cli.Flag{
				seederFlag(),
				&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (root keys, admin token)"},
				&cli.StringFlag{Name: "role", Required: true, Usage: "`role` whose key to rotate: root, targets, snapshot or timestamp"},
				caFlag(),
			},
			Action: func(c *cli.Context) error {
				cl, err := newAdminClient(c)
				if err != nil {
					return err
				}
				rot, err := cl.Rotate(c.Context, c.String("keys"), c.String("role"))
				if err != nil {
					return fmt.Errorf("keys rotate: %w", err)
				}
				fmt.Fprintf(c.App.Writer, "rotated the %s key: new %s, old kept as %s; root version %d\n",
					rot.Role, filepath.Base(rot.KeyFile), filepath.Base(rot.OldFile), rot.Version)
				return nil
			},
		}},
	}
}

func delegateCommand() *cli.Command {
	return &cli.Command{
		Name:  "delegate",
		Usage: "delegate target path patterns (e.g. one channel) to a new role with its own key, for CI",
		Description: "Makes D/keys/<name>.pem (mode 0600), adds to the targets a terminating delegation of the\n" +
			"--paths patterns to role <name> with that key, signs the targets with the targets key and the\n" +
			"role's empty metadata with the new key, and has the seeder verify and serve both. Then\n" +
			"`publish --role <name>` with D/keys/<name>.pem (and the admin token) publishes releases inside\n" +
			"the paths; the seeder refuses others and agents ignore them. Patterns are TUF shell globs\n" +
			"matched segment by segment: 'releases/stable/*/*' covers every release of channel stable.",
		Flags: []cli.Flag{
			seederFlag(),
			&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (targets key, admin token)"},
			&cli.StringFlag{Name: "name", Required: true, Usage: "role `name`, e.g. ci"},
			&cli.StringSliceFlag{Name: "paths", Required: true, Usage: "target path `pattern`s, e.g. 'releases/stable/*/*' (repeatable or comma-separated)"},
			caFlag(),
		},
		Action: func(c *cli.Context) error {
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			del, err := cl.Delegate(c.Context, c.String("keys"), c.String("name"), c.StringSlice("paths"))
			if err != nil {
				return fmt.Errorf("delegate: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "delegated %s to role %s, key %s\n",
				strings.Join(c.StringSlice("paths"), ", "), c.String("name"), del.KeyFile)
			return nil
		},
	}
}
