package seeder

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
)

// Config configures a seeder. Each field is one `peerpatch seeder` flag.
type Config struct {
	// DataDir (--data) is the only directory the seeder writes: its state file, release files
	// and staging area. Restarting on the same DataDir resumes seeding everything published.
	DataDir string
	// Listen (--listen) is the HOST:PORT of the HTTP API, web seed and tracker.
	Listen string
	// KeysDir (--keys) is the deployment directory: root.json, online keys, tokens.
	KeysDir string
	// PublicURL (--public-url) is the base URL agents and web seeds use; default http://Listen.
	PublicURL string
	// WebSeeds (--webseed) are extra web-seed mirrors put into new torrents: base URLs of any
	// plain HTTP server holding a copy of DataDir/releases.
	WebSeeds []string
	// TLSCert and TLSKey (--tls-cert, --tls-key) are PEM files; with them the seeder serves
	// https only, and PublicURL defaults to https://Listen.
	TLSCert, TLSKey string
	// PeerListen (--peer-listen) is the HOST:PORT for BitTorrent peers; default Listen's host
	// with a free port.
	PeerListen string
	// UploadRate (--upload-rate) caps what the origin sends, to peers and as a web seed
	// together, in bytes per second; 0 is unlimited.
	UploadRate int64
	// MaxPeersPerRelease (--max-peers) lets the origin also seed each release over BitTorrent,
	// to that many agents at once. The default, 0, keeps it out of the swarm: it hands out
	// pieces only through its scheduler (POST /api/v1/share), each about once, and agents
	// swap the rest. BitTorrent seeding sends some pieces twice (measured: 1.3-1.5 × the
	// release with 2 connections).
	MaxPeersPerRelease int
	// MetricsTokenFile (--metrics-token-file) holds a token that opens GET /metrics (as the
	// admin token does) and nothing else: the one to give a Prometheus server.
	MetricsTokenFile string
	// Logger receives the seeder's logs.
	Logger *slog.Logger
}

// validate checks the config and fills defaults; errors name the flag.
func (c *Config) validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data is required")
	}
	if c.KeysDir == "" {
		return fmt.Errorf("--keys is required")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT: %w", c.Listen, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
		if c.TLSCert != "" {
			c.PublicURL = "https://" + c.Listen
		}
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if err := checkBaseURL(c.PublicURL); err != nil {
		return fmt.Errorf("--public-url: %w", err)
	}
	for i, w := range c.WebSeeds {
		if err := checkBaseURL(w); err != nil {
			return fmt.Errorf("--webseed: %w", err)
		}
		c.WebSeeds[i] = strings.TrimSuffix(w, "/")
	}
	if c.PeerListen == "" {
		c.PeerListen = net.JoinHostPort(host, "0")
	}
	if _, _, err := net.SplitHostPort(c.PeerListen); err != nil {
		return fmt.Errorf("--peer-listen %q: want HOST:PORT: %w", c.PeerListen, err)
	}
	if c.UploadRate < 0 {
		return fmt.Errorf("--upload-rate must not be negative")
	}
	if c.MaxPeersPerRelease < 0 {
		return fmt.Errorf("--max-peers must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("%q: want an http(s)://host[:port][/path] URL", s)
	}
	return nil
}
