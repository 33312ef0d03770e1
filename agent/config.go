package agent

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/swarm"
)

// Config configures an agent. Each field is one `peerpatch agent` flag.
type Config struct {
	// DataDir (--data) holds the agent's state file, TUF metadata and the swarm copies of
	// releases (the copies it seeds, whose files the installed ones link to: see CopyInstall).
	DataDir string
	// Seeders (--seeder) are the seeders' base URLs, tried in order.
	Seeders []string
	// TrustFile (--trust) is the deployment's root.json, the trust anchor.
	TrustFile string
	// TokenFile (--token-file) holds the fleet enrolment token.
	TokenFile string
	// CAFile (--ca) holds PEM certificates to verify https seeders with, besides the system's.
	CAFile string
	// Channel (--channel) is the release channel to follow.
	Channel string
	// InstallDir (--install-dir) receives releases/<version>/ and the current and previous
	// symlinks.
	InstallDir string
	// Once (--once) runs one update cycle and returns.
	Once bool
	// Interval (--interval) is the time between update checks, jittered by ±20% (default 1m).
	Interval time.Duration
	// PeerListen (--peer-listen) is the HOST:PORT for BitTorrent peers (default 0.0.0.0:0).
	PeerListen string
	// UploadRate and DownloadRate (--upload-rate, --download-rate) cap peer and web-seed
	// traffic in bytes per second; 0 is unlimited.
	UploadRate, DownloadRate int64
	// MaxPeers (--max-peers) caps the agent's peer connections per release (default
	// swarm.DefaultMaxConns).
	MaxPeers int
	// FallbackAfter (--fallback-after) is how long a download may go without progress before
	// web seeds are used (default 10s).
	FallbackAfter time.Duration
	// StallTimeout (--stall-timeout) is how long a download may go without progress before
	// the cycle fails (default 2m).
	StallTimeout time.Duration
	// Rings (--ring) are the rollout rings the agent belongs to: a release whose signed
	// rollout policy lists one of them is rolled out to the agent whatever its percent.
	Rings []string
	// PreInstall (--pre-install) is a command run after a release is copied and verified into
	// InstallDir/releases/<version>, before the switch; if it fails, the switch is not done
	// and the agent reports failed with its error and the tail of its output.
	PreInstall string
	// PostInstall (--post-install) is a command run right after the switch to a release.
	PostInstall string
	// HealthCheck (--health-check) is a command run after PostInstall. If PostInstall or
	// HealthCheck fails, the agent switches InstallDir/current back to the release it ran
	// before, reports rolled_back, and does not try the release again until its rollout
	// policy changes.
	HealthCheck string
	// HookTimeout (--hook-timeout) bounds each of those commands (default 1m); a command still
	// running then is killed (with the processes it started) and has failed.
	HookTimeout time.Duration
	// InstallWindows (--install-window) are maintenance windows (rollout.ParseWindow), such as
	// "Mon-Fri 01:00-05:00": the agent downloads any time but switches to a new release only
	// inside one, unless the release's policy is urgent. None: any time.
	InstallWindows []string
	// Timezone (--timezone) is the IANA time zone of InstallWindows ("" = local time).
	Timezone string
	// MetricsListen (--metrics-listen) is the HOST:PORT where the agent serves Prometheus
	// metrics at /metrics, without authentication; "" serves none.
	MetricsListen string
	// Clock returns the current time for InstallWindows (default time.Now); tests set it.
	Clock func() time.Time
	// CopyInstall (--copy-install) installs every release as a copy of its swarm copy. By
	// default each installed file is a hard link to the swarm file the agent seeds (where both
	// directories are on one filesystem): written once, stored once. Linked, the files under
	// InstallDir/releases must not be changed in place (replacing one is fine): the agent stops
	// seeding a release whose files changed after it was verified.
	CopyInstall bool
	// Keep (--keep) is how many installed releases stay on disk: current, previous and the
	// newest others (default 2, at least 2: previous is what a failed health check and a yank
	// with rollback go back to). Older installs are deleted after each install.
	Keep int
	// SeedFor and SeedRatio (--seed-for, --seed-ratio) end seeding of an installed release
	// once it has been seeded that long, or has sent that many times its size to peers,
	// whichever comes first; its swarm copy is then deleted (the install stays). 0 seeds it as
	// long as it is kept. The time counts from the agent's start or the install, whichever is
	// later.
	SeedFor   time.Duration
	SeedRatio float64
	// Logger receives the agent's logs.
	Logger *slog.Logger

	schedule rollout.Schedule // InstallWindows in Timezone, parsed by validate
}

func (c *Config) validate() error {
	for name, v := range map[string]string{"--data": c.DataDir, "--trust": c.TrustFile, "--token-file": c.TokenFile, "--install-dir": c.InstallDir} {
		if v == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	if len(c.Seeders) == 0 {
		return fmt.Errorf("--seeder is required")
	}
	for i, s := range c.Seeders {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--seeder %q: want an http(s)://host:port URL", s)
		}
		c.Seeders[i] = strings.TrimSuffix(s, "/")
	}
	if err := release.ValidChannel(c.Channel); err != nil {
		return fmt.Errorf("--channel: %w", err)
	}
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.PeerListen == "" {
		c.PeerListen = "0.0.0.0:0"
	}
	if c.MaxPeers < 0 {
		return fmt.Errorf("--max-peers %d: must not be negative (0: the default, %d)", c.MaxPeers, swarm.DefaultMaxConns)
	}
	if c.UploadRate < 0 || c.DownloadRate < 0 {
		return fmt.Errorf("--upload-rate and --download-rate must not be negative")
	}
	if c.FallbackAfter <= 0 {
		c.FallbackAfter = 10 * time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 2 * time.Minute
	}
	for _, r := range c.Rings {
		if err := rollout.ValidRing(r); err != nil {
			return fmt.Errorf("--ring: %w", err)
		}
	}
	if c.HookTimeout <= 0 {
		c.HookTimeout = time.Minute
	}
	switch {
	case c.Keep == 0:
		c.Keep = 2
	case c.Keep < 2:
		return fmt.Errorf("--keep %d: keep at least 2 releases (current and previous)", c.Keep)
	}
	if c.SeedFor < 0 || c.SeedRatio < 0 {
		return fmt.Errorf("--seed-for and --seed-ratio must not be negative")
	}
	var err error
	if c.schedule, err = rollout.ParseSchedule(c.InstallWindows, c.Timezone); err != nil {
		return fmt.Errorf("--install-window/--timezone: %w", err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: want HOST:PORT: %w", c.MetricsListen, err)
		}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
