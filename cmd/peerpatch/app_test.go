package main

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
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

// TestServiceUnitsUseRealFlags checks the service definitions in configs/ (the systemd units
// and the launchd job): each runs a real command with real flags and a --config file; that file
// is the example of the same name in configs/, the real parser accepts the command line with
// it, and a systemd unit may write the directories the config names, runs as a dedicated user,
// restarts on failure and keeps its hardening.
func TestServiceUnitsUseRealFlags(t *testing.T) {
	for _, tc := range []struct {
		file, command string
		writes        []string // config options naming directories the daemon writes
	}{
		{file: "peerpatch-seeder.service", command: "seeder", writes: []string{"data"}},
		{file: "peerpatch-agent.service", command: "agent", writes: []string{"data", "install-dir"}},
		{file: "com.peerpatch.agent.plist", command: "agent"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := "../../configs/" + tc.file
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var argv []string
			var unit map[string][]string
			if strings.HasSuffix(tc.file, ".plist") {
				argv = launchdArguments(t, b)
			} else {
				unit = systemdService(string(b))
				if len(unit["ExecStart"]) != 1 {
					t.Fatalf("want one ExecStart, got %q", unit["ExecStart"])
				}
				argv = strings.Fields(unit["ExecStart"][0])
			}
			if len(argv) < 2 || filepath.Base(argv[0]) != "peerpatch" {
				t.Fatalf("does not run peerpatch: %q", argv)
			}
			args := slicesClone(argv[1:])
			cmdAt := slices.Index(args, tc.command)
			if cmdAt < 0 {
				t.Fatalf("does not run `peerpatch %s`: %q", tc.command, argv)
			}
			cmd := findCommand(newApp(&bytes.Buffer{}, &bytes.Buffer{}), tc.command)
			configAt := -1
			for i, a := range args[cmdAt+1:] {
				if name, ok := strings.CutPrefix(a, "--"); ok && !hasFlag(cmd, name) {
					t.Errorf("passes --%s, which `peerpatch %s` does not have", name, tc.command)
				}
				if a == "--config" {
					configAt = cmdAt + 1 + i + 1
				}
			}
			if configAt < 0 || configAt >= len(args) {
				t.Fatalf("passes no --config FILE: %q", argv)
			}
			example := "../../configs/" + filepath.Base(args[configAt])
			if _, err := os.Stat(example); err != nil {
				t.Fatalf("--config %s: configs/ has no example of that name: %v", args[configAt], err)
			}
			args[configAt] = example
			got, err := runRecorded(t, args...)
			if err != nil {
				t.Fatalf("peerpatch %s (with the example config): %v", strings.Join(args, " "), err)
			}
			if unit == nil {
				return
			}
			rw := strings.Fields(strings.Join(unit["ReadWritePaths"], " "))
			for _, opt := range tc.writes {
				if dir, _ := got[opt].(string); !slices.Contains(rw, dir) {
					t.Errorf("ReadWritePaths %q lacks %s (%s: in %s)", rw, dir, opt, example)
				}
			}
			if user := strings.Join(unit["User"], ""); user == "" || user == "root" {
				t.Errorf("User=%q: want a dedicated user", user)
			}
			for key, want := range map[string]string{
				"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
				"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
			} {
				if got := strings.Join(unit[key], ","); got != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
		})
	}
}

// systemdService returns the [Service] section of a unit: key → values, continuation lines
// joined.
func systemdService(text string) map[string][]string {
	text = strings.ReplaceAll(text, "\\\n", " ")
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			if k, v, ok := strings.Cut(line, "="); ok {
				out[k] = append(out[k], v)
			}
		}
	}
	return out
}

// launchdArguments returns the ProgramArguments of a launchd plist.
func launchdArguments(t *testing.T, b []byte) []string {
	t.Helper()
	var plist struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Text    string   `xml:",chardata"`
				Strings []string `xml:"string"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &plist); err != nil {
		t.Fatalf("plist: %v", err)
	}
	items := plist.Dict.Items
	label := ""
	var args []string
	for i := 0; i+1 < len(items); i++ {
		if items[i].XMLName.Local != "key" {
			continue
		}
		switch items[i].Text {
		case "Label":
			label = items[i+1].Text
		case "ProgramArguments":
			args = items[i+1].Strings
		}
	}
	if label != "com.peerpatch.agent" {
		t.Errorf("Label %q, want com.peerpatch.agent (the file name)", label)
	}
	return args
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
		{name: "publish piece size not a power of two", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--piece-size", "300KiB", "p"},
			wantErr: `publish: --piece-size "300KiB": want a power of two from 16KiB to 16MiB`},
		{name: "publish piece size too big", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--piece-size", "32MiB", "p"},
			wantErr: `--piece-size "32MiB"`},
		{name: "publish piece size not a size", args: []string{"peerpatch", "publish", "--seeder", "http://127.0.0.1:1", "--keys", "k", "--channel", "c", "--version", "1.0.0", "--piece-size", "big", "p"},
			wantErr: `--piece-size "big"`},
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
		{name: "service help", args: []string{"peerpatch", "service", "install", "--help"}, wantOut: "--config FILE"},
		{name: "bad metrics listen", args: []string{"peerpatch", "agent", "--data", "a", "--seeder", "http://127.0.0.1:1", "--trust", "t", "--token-file", "f", "--channel", "c", "--install-dir", "i", "--metrics-listen", "9464"},
			wantErr: `--metrics-listen "9464": want HOST:PORT`},
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
