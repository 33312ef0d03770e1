package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/peerpatch/peerpatch/pkg/config"
	"github.com/peerpatch/peerpatch/pkg/rollout"
)

// rateFlags are the flags parsed with rate: a config file's values for them are checked as
// the file is read, so that a bad one is reported with its file and line.
var rateFlags = map[string]bool{"upload-rate": true, "download-rate": true}

// flagChecks check, as the file is read, config values of flags whose command checks them only
// later, so that a bad one is reported with its file and line. (--install-window checks its
// values itself, as they are set.)
var flagChecks = map[string]func(string) error{
	"ring": rollout.ValidRing,
	"timezone": func(tz string) error {
		_, err := rollout.ParseSchedule(nil, tz)
		return err
	},
}

// withConfig gives cmd, a daemon command, a --config FILE flag: a YAML file that sets any of
// its options by flag name (package config; commented examples in configs/). Flags on the
// command line override the file.
//
// urfave/cli checks required flags before any hook could read the file, so withConfig takes
// that check over: the flags cmd marks Required are no longer required by the cli, say
// "(required)" in their usage, and must be set by flag or file once the file is merged.
func withConfig(cmd *cli.Command) *cli.Command {
	schema := configSchema(cmd)
	var required []string
	for _, f := range cmd.Flags {
		if unrequire(f) {
			required = append(required, f.Names()[0])
		}
	}
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{
		Name: "config", TakesFile: true,
		Usage: "YAML `FILE` setting these options by flag name (e.g. interval: 5m); flags given here override it",
	})
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if err := mergeConfig(c, schema); err != nil {
			return err
		}
		if err := checkRequired(c, required); err != nil {
			return err
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	return cmd
}

// configSchema is the set of options a config file may set for cmd: each of its flags, by
// its name, with the kind of value the flag takes.
func configSchema(cmd *cli.Command) config.Schema {
	schema := config.Schema{Command: cmd.Name, Options: make(map[string]config.Kind, len(cmd.Flags))}
	for _, f := range cmd.Flags {
		if kind, ok := flagKind(f); ok && f.Names()[0] != "config" {
			schema.Options[f.Names()[0]] = kind
		}
	}
	return schema
}

// flagKind is the kind of config value of the flag f; ok is false for a flag type a config
// file cannot set (TestConfigCoversEveryFlag keeps the daemon commands clear of them).
func flagKind(f cli.Flag) (kind config.Kind, ok bool) {
	switch f.(type) {
	case *cli.StringFlag:
		return config.String, true
	case *cli.StringSliceFlag:
		return config.List, true
	case *cli.BoolFlag:
		return config.Bool, true
	case *cli.IntFlag:
		return config.Int, true
	case *cli.DurationFlag:
		return config.Duration, true
	case *cli.GenericFlag: // a repeatable flag whose values keep their commas (windowList)
		return config.List, true
	}
	return 0, false
}

// unrequire clears Required on f and adds "(required)" to its usage; it reports whether f was
// required.
func unrequire(f cli.Flag) bool {
	var required *bool
	var usage *string
	switch f := f.(type) {
	case *cli.StringFlag:
		required, usage = &f.Required, &f.Usage
	case *cli.StringSliceFlag:
		required, usage = &f.Required, &f.Usage
	case *cli.BoolFlag:
		required, usage = &f.Required, &f.Usage
	case *cli.IntFlag:
		required, usage = &f.Required, &f.Usage
	case *cli.DurationFlag:
		required, usage = &f.Required, &f.Usage
	case *cli.GenericFlag:
		required, usage = &f.Required, &f.Usage
	default:
		return false
	}
	if !*required {
		return false
	}
	*required = false
	*usage += " (required)"
	return true
}

// mergeConfig reads the --config file, if any, and sets every option it names that the
// command line does not, through the flag itself, so a value parses as the flag would.
func mergeConfig(c *cli.Context, schema config.Schema) error {
	if !c.IsSet("config") {
		return nil
	}
	file, err := config.Load(c.String("config"), schema)
	if err != nil {
		return err
	}
	for _, s := range file.Settings {
		if c.IsSet(s.Key) { // the command line overrides the file
			continue
		}
		for _, v := range s.Values {
			if rateFlags[s.Key] {
				if _, err := parseRate(v); err != nil {
					return file.Errorf(s, err)
				}
			}
			if check := flagChecks[s.Key]; check != nil {
				if err := check(v); err != nil {
					return file.Errorf(s, err)
				}
			}
			if err := c.Set(s.Key, v); err != nil {
				return file.Errorf(s, err)
			}
		}
	}
	return nil
}

// checkRequired reports the required options set neither by flag nor by the config file, in
// the words urfave/cli uses for missing flags.
func checkRequired(c *cli.Context, required []string) error {
	var missing []string
	for _, name := range required {
		if !c.IsSet(name) {
			missing = append(missing, name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("Required flag %q not set: give --%s, or %s: in the --config file", missing[0], missing[0], missing[0])
	}
	return fmt.Errorf("Required flags %q not set: give --%s, or those keys in the --config file",
		strings.Join(missing, ", "), strings.Join(missing, ", --"))
}
