package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerpatch/peerpatch/pkg/config"
)

// runRecorded runs args on an app whose daemon commands record their flag values instead of
// running: every flag by name (the parsed value) and every rate flag as "<name> bytes/s".
func runRecorded(t *testing.T, args ...string) (map[string]any, error) {
	t.Helper()
	var got map[string]any
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range []string{"seeder", "agent"} {
		findCommand(app, name).Action = func(c *cli.Context) error {
			got = map[string]any{}
			for _, f := range c.Command.Flags {
				name := f.Names()[0]
				switch f.(type) {
				case *cli.StringSliceFlag:
					got[name] = c.StringSlice(name)
				case *cli.GenericFlag:
					got[name] = c.Generic(name).(*windowList).specs
				default:
					got[name] = c.Value(name)
				}
				if rateFlags[name] {
					n, err := rate(c, name)
					if err != nil {
						return err
					}
					got[name+" bytes/s"] = n
				}
			}
			delete(got, "config")
			delete(got, "help")
			return nil
		}
	}
	err := app.Run(append([]string{"peerpatch"}, args...))
	return got, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "peerpatch.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const agentYAML = `data: /var/lib/a
seeder: [https://a.example, https://b.example]
trust: /etc/peerpatch/root.json
token-file: /etc/peerpatch/agent.token
channel: stable
install-dir: /opt/app
interval: 5m
upload-rate: 20MiB
`

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		config  string   // file contents; "" for no --config
		args    []string // after the command; "CONFIG" becomes the file's path
		want    map[string]any
		wantErr string
	}{
		{
			name:   "file satisfies required",
			config: agentYAML,
			args:   []string{"agent", "--config", "CONFIG"},
			want: map[string]any{
				"data": "/var/lib/a", "seeder": []string{"https://a.example", "https://b.example"},
				"trust": "/etc/peerpatch/root.json", "token-file": "/etc/peerpatch/agent.token",
				"channel": "stable", "install-dir": "/opt/app", "interval": 5 * time.Minute,
				"upload-rate bytes/s": int64(20 << 20),
				// untouched options keep their defaults
				"once": false, "stall-timeout": 2 * time.Minute, "peer-listen": "0.0.0.0:0", "download-rate bytes/s": int64(0),
			},
		},
		{
			name:   "flags override file",
			config: agentYAML,
			args:   []string{"agent", "--channel", "beta", "--seeder", "https://c.example", "--interval", "30s", "--upload-rate", "0", "--config", "CONFIG", "--once"},
			want: map[string]any{
				"data": "/var/lib/a", "channel": "beta", "seeder": []string{"https://c.example"},
				"interval": 30 * time.Second, "upload-rate bytes/s": int64(0), "once": true,
			},
		},
		{
			name:   "seeder from file",
			config: "data: /srv/s\nlisten: 0.0.0.0:7070\nkeys: /etc/d\nwebseed: https://m.example/\nmax-peers: 4\nupload-rate: 1.5GB\n",
			args:   []string{"seeder", "--config", "CONFIG"},
			want: map[string]any{
				"data": "/srv/s", "listen": "0.0.0.0:7070", "keys": "/etc/d", "webseed": []string{"https://m.example/"},
				"max-peers": 4, "upload-rate bytes/s": int64(1_500_000_000), "public-url": "",
			},
		},
		{
			name:   "file and flags share required",
			config: "data: /srv/s\nkeys: /etc/d\n",
			args:   []string{"seeder", "--listen", "127.0.0.1:7070", "--config", "CONFIG"},
			want:   map[string]any{"data": "/srv/s", "listen": "127.0.0.1:7070", "keys": "/etc/d"},
		},
		{
			name:    "required missing from both",
			config:  "data: /srv/s\n",
			args:    []string{"seeder", "--config", "CONFIG"},
			wantErr: `Required flags "listen, keys" not set: give --listen, --keys, or those keys in the --config file`,
		},
		{
			name:    "one required missing",
			config:  strings.Replace(agentYAML, "channel: stable\n", "", 1),
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `Required flag "channel" not set: give --channel, or channel: in the --config file`,
		},
		{
			name:    "required without config",
			args:    []string{"seeder", "--data", "x"},
			wantErr: `Required flags "listen, keys" not set`,
		},
		{
			name:    "empty list does not satisfy required",
			config:  strings.Replace(agentYAML, "seeder: [https://a.example, https://b.example]", "seeder: []", 1),
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `Required flag "seeder" not set`,
		},
		{
			name:    "unknown key",
			config:  "data: /var/lib/a\n\nintervall: 1m\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `: line 3: unknown key "intervall" (did you mean "interval"? agent options: ca, channel, copy-install, data, download-rate, fallback-after, health-check, hook-timeout, install-dir, install-window, interval, keep, max-peers, metrics-listen, once, peer-listen, post-install, pre-install, ring, seed-for, seed-ratio, seeder, stall-timeout, timezone, token-file, trust, upload-rate)`,
		},
		{
			name:    "agent key in seeder file",
			config:  "channel: stable\n",
			args:    []string{"seeder", "--config", "CONFIG"},
			wantErr: `line 1: unknown key "channel" (seeder options: data, keys, listen, max-peers`,
		},
		{
			name:    "bad type",
			config:  "data: [a, b]\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `line 1: key "data": wrong type: want a string, got a list`,
		},
		{
			name:    "bad duration",
			config:  agentYAML + "stall-timeout: 2\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `line 9: key "stall-timeout": bad value: "2": want a duration`,
		},
		{
			name:    "bad int",
			config:  "max-peers: many\n",
			args:    []string{"seeder", "--config", "CONFIG"},
			wantErr: `line 1: key "max-peers": bad value: "many": want an integer`,
		},
		{
			name:    "bad rate",
			config:  "data: x\n# caps\nupload-rate: fast\n",
			args:    []string{"seeder", "--config", "CONFIG"},
			wantErr: `line 3: key "upload-rate": bad value: want bytes per second such as 8MiB`,
		},
		{
			name:    "bad rate overridden by flag",
			config:  agentYAML + "download-rate: fast\n",
			args:    []string{"agent", "--download-rate", "1MiB", "--config", "CONFIG"},
			want:    map[string]any{"download-rate bytes/s": int64(1 << 20)},
			wantErr: "",
		},
		{
			name:    "bad install window",
			config:  agentYAML + "install-window: [Sat 00:00-24:00, 'Mon-Fri 1am-5am']\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `line 9: key "install-window": bad value: invalid install window "Mon-Fri 1am-5am"`,
		},
		{
			name:    "bad ring",
			config:  agentYAML + "ring: Canary\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `line 9: key "ring": bad value: ring "Canary"`,
		},
		{
			name:    "bad time zone",
			config:  agentYAML + "timezone: Mars/Olympus\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: `line 9: key "timezone": bad value: time zone "Mars/Olympus"`,
		},
		{
			name:    "missing file",
			args:    []string{"agent", "--config", filepath.Join(dir, "nope.yaml")},
			wantErr: "config " + filepath.Join(dir, "nope.yaml") + ": no such file or directory",
		},
		{
			name:    "directory",
			args:    []string{"agent", "--config", dir},
			wantErr: "config " + dir + ": is a directory, want a YAML file",
		},
		{
			name:    "not yaml mapping",
			config:  "- data\n",
			args:    []string{"agent", "--config", "CONFIG"},
			wantErr: "line 1: invalid config: want a mapping of option: value, got a list",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := slicesClone(tt.args)
			if tt.config != "" {
				path := writeConfig(t, tt.config)
				for i, a := range args {
					if a == "CONFIG" {
						args[i] = path
					}
				}
			}
			got, err := runRecorded(t, args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v", k, got[k], want)
				}
			}
		})
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// TestConfigParsesLikeFlags gives every option once as flags and once in a file: the commands
// must see the same values, durations and rates included.
func TestConfigParsesLikeFlags(t *testing.T) {
	tests := []struct {
		name  string
		cmd   string
		flags []string
		yaml  string
	}{
		{
			name: "seeder",
			cmd:  "seeder",
			flags: []string{"--data", "/srv/s", "--listen", "0.0.0.0:7070", "--keys", "/etc/d", "--public-url", "https://u.example",
				"--webseed", "https://m1.example/", "--webseed", "https://m2.example/", "--peer-listen", "0.0.0.0:6881",
				"--tls-cert", "c.pem", "--tls-key", "k.pem", "--upload-rate", "50MiB", "--max-peers", "0x10",
				"--metrics-token-file", "/etc/peerpatch/metrics.token"},
			yaml: "data: /srv/s\nlisten: 0.0.0.0:7070\nkeys: /etc/d\npublic-url: https://u.example\n" +
				"webseed:\n  - https://m1.example/\n  - https://m2.example/\npeer-listen: 0.0.0.0:6881\n" +
				"tls-cert: c.pem\ntls-key: k.pem\nupload-rate: 50MiB\nmax-peers: 0x10\nmetrics-token-file: /etc/peerpatch/metrics.token\n",
		},
		{
			name: "agent",
			cmd:  "agent",
			flags: []string{"--data", "/a", "--seeder", "https://a.example", "--seeder", "https://b.example", "--trust", "r.json",
				"--token-file", "t", "--ca", "ca.pem", "--channel", "1.10", "--install-dir", "/i", "--once", "--interval", "1h2m3s",
				"--peer-listen", "[::]:6881", "--upload-rate", "10MiB", "--download-rate", "1.5GB", "--max-peers", "12", "--fallback-after", "1500ms",
				"--stall-timeout", "90s", "--ring", "canary", "--ring", "it", "--pre-install", "systemctl stop app",
				"--post-install", "systemctl start app", "--health-check", "curl -fs http://localhost:8080/health",
				"--hook-timeout", "2m30s", "--install-window", "Sat,Sun 00:00-24:00", "--install-window", "Mon-Fri 22:00-06:00",
				"--timezone", "Europe/Paris", "--metrics-listen", "127.0.0.1:9464", "--copy-install", "--keep", "3", "--seed-for", "1h",
				"--seed-ratio", "1.5"},
			yaml: "data: /a\nseeder: [https://a.example, https://b.example]\ntrust: r.json\ntoken-file: t\nca: ca.pem\n" +
				"channel: 1.10\ninstall-dir: /i\nonce: true\ninterval: 1h2m3s\npeer-listen: '[::]:6881'\n" +
				"upload-rate: 10MiB\ndownload-rate: 1.5GB\nmax-peers: 12\nfallback-after: 1500ms\nstall-timeout: 90s\n" +
				"ring: [canary, it]\npre-install: systemctl stop app\npost-install: systemctl start app\n" +
				"health-check: curl -fs http://localhost:8080/health\nhook-timeout: 2m30s\n" +
				"install-window:\n  - Sat,Sun 00:00-24:00\n  - Mon-Fri 22:00-06:00\ntimezone: Europe/Paris\n" +
				"metrics-listen: 127.0.0.1:9464\ncopy-install: true\nkeep: 3\nseed-for: 1h\nseed-ratio: 1.5\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromFlags, err := runRecorded(t, append([]string{tt.cmd}, tt.flags...)...)
			if err != nil {
				t.Fatal(err)
			}
			fromFile, err := runRecorded(t, tt.cmd, "--config", writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromFlags, fromFile) {
				t.Fatalf("from flags:\n%v\nfrom the file:\n%v", fromFlags, fromFile)
			}
			// Every option was given: the test covers every flag.
			for _, f := range findCommand(newApp(&bytes.Buffer{}, &bytes.Buffer{}), tt.cmd).Flags {
				if name := f.Names()[0]; name != "config" && !slicesContains(tt.flags, "--"+name) {
					t.Errorf("flag --%s is not in the test", name)
				}
			}
		})
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestConfigCoversEveryFlag checks that a config file can set every option of the daemon
// commands, that urfave/cli requires none of them (the config check does), and that help
// still says which are required.
func TestConfigCoversEveryFlag(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range []string{"seeder", "agent"} {
		cmd := findCommand(app, name)
		schema := configSchema(cmd)
		for _, f := range cmd.Flags {
			flag := f.Names()[0]
			if _, ok := schema.Options[flag]; !ok && flag != "config" {
				t.Errorf("%s: --%s cannot be set in a config file", name, flag)
			}
			if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() {
				t.Errorf("%s: --%s is Required for urfave/cli, so a config file cannot set it", name, flag)
			}
			if strings.HasSuffix(flag, "-rate") && !rateFlags[flag] {
				t.Errorf("%s: --%s is not in rateFlags", name, flag)
			}
		}
		var out bytes.Buffer
		if err := newApp(&out, &bytes.Buffer{}).Run([]string{"peerpatch", name, "--help"}); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`--data \S+ +.* \(required\)`).MatchString(out.String()) || !strings.Contains(out.String(), "--config FILE") {
			t.Errorf("%s --help does not mark --data (required) or lacks --config FILE:\n%s", name, out.String())
		}
	}
}

// TestExampleConfigs parses configs/<command>.yaml with the real parser: every key must be an
// option, every option must be in the file, documented above its key as "Required." or with a
// "Default: <value>." that is the flag's default, and the file must run the command.
func TestExampleConfigs(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range []string{"seeder", "agent"} {
		t.Run(name, func(t *testing.T) {
			path := "../../configs/" + name + ".yaml"
			cmd := findCommand(app, name)
			file, err := config.Load(path, configSchema(cmd))
			if err != nil {
				t.Fatal(err)
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(text), "\n")
			set := map[string]bool{}
			for _, s := range file.Settings {
				set[s.Key] = true
				doc := commentAbove(lines, s.Line)
				f := flagNamed(cmd, s.Key)
				if rf, ok := f.(interface{ GetUsage() string }); ok && strings.HasSuffix(rf.GetUsage(), "(required)") {
					if !strings.Contains(doc, "Required.") {
						t.Errorf("%s line %d: %s is required, but its comment does not say Required.", path, s.Line, s.Key)
					}
					continue
				}
				m := regexp.MustCompile(`Default: (\S+?)[.,]?(\s|$)`).FindStringSubmatch(doc)
				if m == nil {
					t.Errorf("%s line %d: the comment of %s has no Default: <value>.", path, s.Line, s.Key)
					continue
				}
				if !isDefault(f, m[1]) {
					t.Errorf("%s line %d: %s: documented Default: %s is not the flag's default", path, s.Line, s.Key, m[1])
				}
			}
			for _, f := range cmd.Flags {
				if flag := f.Names()[0]; flag != "config" && !set[flag] {
					t.Errorf("%s does not document --%s", path, flag)
				}
			}
			if _, err := runRecorded(t, name, "--config", path); err != nil {
				t.Errorf("peerpatch %s --config %s: %v", name, path, err)
			}
		})
	}
}

// commentAbove is the block of comment lines right above line n (1-based), each line's own
// comment excluded.
func commentAbove(lines []string, n int) string {
	var doc []string
	for i := n - 2; i >= 0 && strings.HasPrefix(lines[i], "#"); i-- {
		doc = append([]string{lines[i]}, doc...)
	}
	return strings.Join(doc, "\n")
}

func flagNamed(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		if f.Names()[0] == name {
			return f
		}
	}
	return nil
}

// isDefault reports whether text, a value as written in a config file, is f's default.
func isDefault(f cli.Flag, text string) bool {
	switch f := f.(type) {
	case *cli.StringFlag:
		return text == f.Value || text == `""` && f.Value == ""
	case *cli.StringSliceFlag:
		return text == "[]" && (f.Value == nil || len(f.Value.Value()) == 0)
	case *cli.BoolFlag:
		b, err := strconv.ParseBool(text)
		return err == nil && b == f.Value
	case *cli.IntFlag:
		n, err := strconv.Atoi(text)
		return err == nil && n == f.Value
	case *cli.DurationFlag:
		d, err := time.ParseDuration(text)
		return err == nil && d == f.Value
	case *cli.GenericFlag:
		return text == "[]" && f.Value.String() == ""
	}
	return false
}
