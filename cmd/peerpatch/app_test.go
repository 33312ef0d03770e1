package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestContractFlags checks that every command and flag of the CLI contract in DESIGN.md exists.
func TestContractFlags(t *testing.T) {
	contract := map[string][]string{
		"init":    {"dir"},
		"seeder":  {"data", "listen", "keys", "public-url", "webseed"},
		"publish": {"seeder", "keys", "channel", "version", "json"},
		"agent":   {"data", "seeder", "trust", "token-file", "channel", "install-dir", "once"},
		"status":  {"seeder", "keys", "json"},
		"demo":    {"agents", "size"},
	}
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for name, flags := range contract {
		cmd := findCommand(app, name)
		if cmd == nil {
			t.Errorf("command %q missing", name)
			continue
		}
		for _, f := range flags {
			if !hasFlag(cmd, f) {
				t.Errorf("%s: flag --%s missing", name, f)
			}
		}
	}
}

// TestServiceUnitsUseRealFlags checks the flags the example systemd units pass.
func TestServiceUnitsUseRealFlags(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for unit, name := range map[string]string{
		"../../configs/peerpatch-seeder.service": "seeder",
		"../../configs/peerpatch-agent.service":  "agent",
	} {
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		exec := regexp.MustCompile(`(?m)^ExecStart=.*$`).FindString(text)
		_, after, ok := strings.Cut(exec, " "+name+" ")
		if !ok {
			t.Fatalf("%s: ExecStart does not run %q: %q", unit, name, exec)
		}
		cmd := findCommand(app, name)
		for _, m := range regexp.MustCompile(`--([a-z-]+)`).FindAllStringSubmatch(after, -1) {
			if !hasFlag(cmd, m[1]) {
				t.Errorf("%s passes --%s, which `peerpatch %s` does not have", unit, m[1], name)
			}
		}
	}
}

func TestHelpAndErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "help", args: []string{"peerpatch", "--help"}, wantOut: "publish"},
		{name: "agent help", args: []string{"peerpatch", "agent", "--help"}, wantOut: "--install-dir"},
		{name: "missing flag", args: []string{"peerpatch", "init"}, wantErr: `"dir"`},
		{name: "unknown flag", args: []string{"peerpatch", "status", "--nope"}, wantErr: "nope"},
		{name: "bad rate", args: []string{"peerpatch", "seeder", "--data", "x", "--listen", "127.0.0.1:0", "--keys", "y", "--upload-rate", "fast"}, wantErr: "--upload-rate"},
		{name: "bad log level", args: []string{"peerpatch", "--log-level", "loud", "agent", "--data", "a", "--seeder", "http://127.0.0.1:1", "--trust", "t", "--token-file", "f", "--channel", "c", "--install-dir", "i"}, wantErr: "--log-level"},
		{name: "publish without path", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0"}, wantErr: "PATH"},
		{name: "rollout help", args: []string{"peerpatch", "rollout", "--help"}, wantOut: "pause"},
		{name: "yank help", args: []string{"peerpatch", "yank", "--help"}, wantOut: "--rollback"},
		{name: "publish rollout out of range", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--rollout", "101", "p"},
			wantErr: "publish: --rollout 101: out of range: want 0 to 100"},
		{name: "publish bad ring", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--ring", "A B", "p"},
			wantErr: `--ring: ring "A B"`},
		{name: "rollout percent out of range", args: []string{"peerpatch", "rollout", "set", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--percent", "-5"},
			wantErr: "rollout set: --percent -5: out of range: want 0 to 100"},
		{name: "rollout set without percent", args: []string{"peerpatch", "rollout", "set", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0"},
			wantErr: `"percent"`},
		{name: "bad install window", args: []string{"peerpatch", "agent", "--data", "a", "--seeder", "http://127.0.0.1:1", "--trust", "t", "--token-file", "f", "--channel", "c", "--install-dir", "i", "--install-window", "Mon 1am-5am"},
			wantErr: `invalid install window "Mon 1am-5am"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := newApp(&out, &errb).Run(tt.args)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("output %q lacks %q", out.String(), tt.wantOut)
			}
		})
	}
}

func findCommand(app *cli.App, name string) *cli.Command {
	for _, c := range app.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
