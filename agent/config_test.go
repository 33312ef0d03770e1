package agent

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/rollout"
)

func validConfig() Config {
	return Config{
		DataDir:    "/var/lib/peerpatch",
		Seeders:    []string{"http://seeder.example:8080/", "https://10.0.0.2:8443"},
		TrustFile:  "/etc/peerpatch/root.json",
		TokenFile:  "/etc/peerpatch/token",
		Channel:    "stable",
		InstallDir: "/opt/app",
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(c *Config)
		wantErr string // substring; "" for success
	}{
		{name: "valid", modify: func(c *Config) {}},
		{name: "missing data", modify: func(c *Config) { c.DataDir = "" }, wantErr: "--data"},
		{name: "missing trust", modify: func(c *Config) { c.TrustFile = "" }, wantErr: "--trust"},
		{name: "missing token file", modify: func(c *Config) { c.TokenFile = "" }, wantErr: "--token-file"},
		{name: "missing install dir", modify: func(c *Config) { c.InstallDir = "" }, wantErr: "--install-dir"},
		{name: "missing seeder", modify: func(c *Config) { c.Seeders = nil }, wantErr: "--seeder"},
		{name: "seeder without scheme", modify: func(c *Config) { c.Seeders = []string{"seeder:8080"} }, wantErr: "--seeder"},
		{name: "seeder ftp", modify: func(c *Config) { c.Seeders = []string{"ftp://seeder:21"} }, wantErr: "--seeder"},
		{name: "seeder without host", modify: func(c *Config) { c.Seeders = []string{"http://"} }, wantErr: "--seeder"},
		{name: "seeder unparsable", modify: func(c *Config) { c.Seeders = []string{"http://[::1"} }, wantErr: "--seeder"},
		{name: "second seeder bad", modify: func(c *Config) { c.Seeders = []string{"http://ok:1", "nope"} }, wantErr: `"nope"`},
		{name: "empty channel", modify: func(c *Config) { c.Channel = "" }, wantErr: "--channel"},
		{name: "upper-case channel", modify: func(c *Config) { c.Channel = "Stable" }, wantErr: "--channel"},
		{name: "channel with slash", modify: func(c *Config) { c.Channel = "a/b" }, wantErr: "--channel"},
		{name: "channel starting with dash", modify: func(c *Config) { c.Channel = "-x" }, wantErr: "--channel"},
		{name: "negative upload rate", modify: func(c *Config) { c.UploadRate = -1 }, wantErr: "--upload-rate"},
		{name: "negative download rate", modify: func(c *Config) { c.DownloadRate = -1 }, wantErr: "--download-rate"},
		{name: "negative max-peers", modify: func(c *Config) { c.MaxPeers = -1 }, wantErr: "--max-peers"},
		{name: "rings and windows", modify: func(c *Config) {
			c.Rings, c.InstallWindows, c.Timezone = []string{"canary", "it"}, []string{"Mon-Fri 01:00-05:00", "daily 22:00-06:00"}, "UTC"
		}},
		{name: "bad ring", modify: func(c *Config) { c.Rings = []string{"Canary"} }, wantErr: "--ring"},
		{name: "bad window", modify: func(c *Config) { c.InstallWindows = []string{"Mon-Fri 1am-5am"} }, wantErr: "--install-window"},
		{name: "bad time zone", modify: func(c *Config) { c.Timezone = "Nowhere/Special" }, wantErr: "--timezone"},
		{name: "keep 5, seed for an hour or twice the size", modify: func(c *Config) { c.Keep, c.SeedFor, c.SeedRatio = 5, time.Hour, 2 }},
		{name: "keep 1", modify: func(c *Config) { c.Keep = 1 }, wantErr: "--keep"},
		{name: "negative seed-for", modify: func(c *Config) { c.SeedFor = -time.Second }, wantErr: "--seed-for"},
		{name: "negative seed-ratio", modify: func(c *Config) { c.SeedRatio = -1 }, wantErr: "--seed-ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestConfigValidateDefaults(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name   string
		modify func(c *Config)
		want   func(t *testing.T, c *Config)
	}{
		{
			name:   "defaults filled",
			modify: func(c *Config) {},
			want: func(t *testing.T, c *Config) {
				if c.Interval != time.Minute {
					t.Errorf("Interval = %v, want 1m", c.Interval)
				}
				if c.FallbackAfter != 10*time.Second {
					t.Errorf("FallbackAfter = %v, want 10s", c.FallbackAfter)
				}
				if c.StallTimeout != 2*time.Minute {
					t.Errorf("StallTimeout = %v, want 2m", c.StallTimeout)
				}
				if c.PeerListen != "0.0.0.0:0" {
					t.Errorf("PeerListen = %q, want 0.0.0.0:0", c.PeerListen)
				}
				if c.Logger == nil || c.Clock == nil {
					t.Error("Logger or Clock not set")
				}
				if c.HookTimeout != time.Minute {
					t.Errorf("HookTimeout = %v, want 1m", c.HookTimeout)
				}
				if !c.schedule.Open(time.Now()) {
					t.Error("without windows the schedule is not always open")
				}
				if c.Seeders[0] != "http://seeder.example:8080" || c.Seeders[1] != "https://10.0.0.2:8443" {
					t.Errorf("Seeders = %q, want trailing slashes trimmed", c.Seeders)
				}
			},
		},
		{
			name: "negative durations replaced",
			modify: func(c *Config) {
				c.Interval, c.FallbackAfter, c.StallTimeout = -time.Second, -time.Second, -time.Second
			},
			want: func(t *testing.T, c *Config) {
				if c.Interval != time.Minute || c.FallbackAfter != 10*time.Second || c.StallTimeout != 2*time.Minute {
					t.Errorf("durations = %v %v %v, want defaults", c.Interval, c.FallbackAfter, c.StallTimeout)
				}
			},
		},
		{
			name: "explicit values kept",
			modify: func(c *Config) {
				c.Interval, c.FallbackAfter, c.StallTimeout = 5*time.Second, time.Second, 3*time.Second
				c.PeerListen, c.Logger, c.UploadRate, c.DownloadRate = "127.0.0.1:6881", logger, 1000, 2000
			},
			want: func(t *testing.T, c *Config) {
				if c.Interval != 5*time.Second || c.FallbackAfter != time.Second || c.StallTimeout != 3*time.Second {
					t.Errorf("durations = %v %v %v, want 5s 1s 3s", c.Interval, c.FallbackAfter, c.StallTimeout)
				}
				if c.PeerListen != "127.0.0.1:6881" || c.Logger != logger || c.UploadRate != 1000 || c.DownloadRate != 2000 {
					t.Errorf("explicit values changed: %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			if err := c.validate(); err != nil {
				t.Fatal(err)
			}
			tt.want(t, &c)
		})
	}
}

// TestMayInstall: the install windows, on an injected clock, decide when an agent switches;
// urgent releases and rollbacks switch at once.
func TestMayInstall(t *testing.T) {
	c := validConfig()
	c.InstallWindows, c.Timezone = []string{"Mon-Fri 01:00-05:00", "Sat,Sun 00:00-24:00"}, "UTC"
	var now time.Time
	c.Clock = func() time.Time { return now }
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: c}
	monday := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		now      time.Time
		dec      rollout.Decision
		wantOK   bool
		wantNext time.Time
	}{
		{name: "inside", now: monday.Add(2 * time.Hour), dec: rollout.Decision{Version: "2.0.0"}, wantOK: true},
		{name: "before", now: monday.Add(30 * time.Minute), dec: rollout.Decision{Version: "2.0.0"}, wantNext: monday.Add(time.Hour)},
		{name: "after", now: monday.Add(6 * time.Hour), dec: rollout.Decision{Version: "2.0.0"}, wantNext: monday.Add(25 * time.Hour)},
		{name: "Friday evening: Saturday midnight", now: monday.Add(4*24*time.Hour + 20*time.Hour), dec: rollout.Decision{Version: "2.0.0"}, wantNext: monday.Add(5 * 24 * time.Hour)},
		{name: "urgent", now: monday.Add(6 * time.Hour), dec: rollout.Decision{Version: "2.0.0", Urgent: true}, wantOK: true},
		{name: "rollback", now: monday.Add(6 * time.Hour), dec: rollout.Decision{Version: "1.0.0", Rollback: true, Urgent: true}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.now
			ok, next := a.mayInstall(tt.dec)
			if ok != tt.wantOK || !tt.wantOK && !next.Equal(tt.wantNext) {
				t.Fatalf("mayInstall at %s = %v, %s; want %v, %s", tt.now, ok, next, tt.wantOK, tt.wantNext)
			}
		})
	}
}
