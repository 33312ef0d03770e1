package agent

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/release"
)

// Config configures an agent. Each field is one `peerpatch agent` flag.
type Config struct {
	// DataDir (--data) holds the agent's state file, TUF metadata and the swarm copies of
	// releases (the copies it seeds; never the installed ones).
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
	// FallbackAfter (--fallback-after) is how long a download may go without progress before
	// web seeds are used (default 10s).
	FallbackAfter time.Duration
	// StallTimeout (--stall-timeout) is how long a download may go without progress before
	// the cycle fails (default 2m).
	StallTimeout time.Duration
	// Logger receives the agent's logs.
	Logger *slog.Logger
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
	if c.UploadRate < 0 || c.DownloadRate < 0 {
		return fmt.Errorf("--upload-rate and --download-rate must not be negative")
	}
	if c.FallbackAfter <= 0 {
		c.FallbackAfter = 10 * time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
