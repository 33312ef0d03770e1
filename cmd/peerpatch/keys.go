package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/peerpatch/peerpatch/seeder/adminclient"
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
				&cli.StringFlag{Name: "seeder", Required: true, Usage: "seeder base `URL`"},
				&cli.StringFlag{Name: "keys", Required: true, Usage: "deployment directory `D` (root keys, admin token)"},
				&cli.StringFlag{Name: "role", Required: true, Usage: "`role` whose key to rotate: root, targets, snapshot or timestamp"},
				&cli.StringFlag{Name: "ca", Usage: "PEM `file` of certificates to verify an https seeder with (besides the system's)"},
			},
			Action: func(c *cli.Context) error {
				cl, err := adminclient.New(c.String("seeder"), c.String("keys"), c.String("ca"))
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
