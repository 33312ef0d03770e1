package trust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	MetadataDir string            // local trusted metadata cache; created 0700 if missing
	Root        []byte            // trust anchor (the deployment's root.json); used when MetadataDir has no root.json yet
	MetadataURL string            // base URL of metadata, e.g. "http://127.0.0.1:8080/tuf/"
	TargetsURL  string            // base URL of target files, e.g. "http://127.0.0.1:8080/tuf/targets/"
	Transport   http.RoundTripper // used for all fetches; nil = http.DefaultTransport
}

// Client is the agent side of TUF, a wrapper over go-tuf's updater. It is
// safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	mu      sync.Mutex
	up      *updater.Updater // of the last successful Refresh
	targets []Target
}

// NewClient checks cfg and creates cfg.MetadataDir if missing.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.MetadataDir == "" || cfg.MetadataURL == "" || cfg.TargetsURL == "" {
		return nil, errors.New("new TUF client: MetadataDir, MetadataURL and TargetsURL are required")
	}
	if err := os.MkdirAll(cfg.MetadataDir, 0o700); err != nil {
		return nil, fmt.Errorf("new TUF client: %w", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.MetadataDir, "root.json")); err != nil && len(cfg.Root) == 0 {
		return nil, fmt.Errorf("new TUF client: no trusted root.json in %s and no Root given", cfg.MetadataDir)
	}
	return &Client{cfg: cfg}, nil
}

// Refresh runs the TUF client workflow (root chain, timestamp, snapshot,
// top-level targets) with a new updater, persisting trusted metadata to
// MetadataDir. Errors say which role failed and why.
func (c *Client) Refresh() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	root, err := os.ReadFile(filepath.Join(c.cfg.MetadataDir, "root.json"))
	if errors.Is(err, fs.ErrNotExist) {
		root = c.cfg.Root
	} else if err != nil {
		return fmt.Errorf("refresh root metadata: read trusted root: %w", err)
	}
	cfg, err := config.New(c.cfg.MetadataURL, root)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	f := fetcher.NewDefaultFetcher()
	// A mirror that trickles bytes must not hold the agent forever (slow retrieval).
	f.SetHTTPClient(&http.Client{Transport: c.cfg.Transport, Timeout: fetchTimeout})
	rec := &recorder{Fetcher: f}
	cfg.Fetcher = rec
	cfg.LocalMetadataDir = c.cfg.MetadataDir
	cfg.LocalTargetsDir = filepath.Join(c.cfg.MetadataDir, "targets")
	cfg.RemoteTargetsURL = c.cfg.TargetsURL
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("refresh root metadata: load trusted root: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return refreshError(up, rec, err)
	}
	list, err := toTargets(up.GetTopLevelTargets())
	if err != nil {
		return fmt.Errorf("refresh targets metadata: %w", err)
	}
	list = append(list, delegatedTargets(up)...)
	slices.SortFunc(list, func(a, b Target) int { return strings.Compare(a.Name, b.Name) })
	c.up, c.targets = up, list
	return nil
}

// delegatedTargets loads the roles the top-level targets delegate to (one level) and returns
// their targets that go-tuf's path-checked walk resolves to them: a target a delegated role
// signs outside its delegated paths (or shadowed by another role) is left out. go-tuf loads a
// delegated role only while resolving a target path, so each role is loaded by resolving a
// probe path built from its first pattern. A role that fails to load or verify is left out.
func delegatedTargets(up *updater.Updater) []Target {
	top := up.GetTrustedMetadataSet().Targets[metadata.TARGETS]
	if top == nil || top.Signed.Delegations == nil {
		return nil
	}
	var list []Target
	for _, dr := range top.Signed.Delegations.Roles {
		probe := ""
		for _, p := range dr.Paths {
			for _, cand := range []string{probeFor(p) + ".peerpatch-probe", probeFor(p)} {
				if ok, _ := dr.IsDelegatedPath(cand); ok && probe == "" {
					probe = cand
				}
			}
		}
		if probe == "" {
			continue
		}
		_, _ = up.GetTargetInfo(probe) // loads and verifies dr's metadata; the probe itself is absent
		m := up.GetTrustedMetadataSet().Targets[dr.Name]
		if m == nil {
			continue
		}
		for name, tf := range m.Signed.Targets {
			if got, err := up.GetTargetInfo(name); err != nil || got != tf {
				continue // outside dr's paths or found in another role first
			}
			t, err := toTargets(map[string]*metadata.TargetFiles{name: tf})
			if err != nil {
				continue
			}
			list = append(list, t...)
		}
	}
	return list
}

// probeFor returns a target path that the shell pattern p matches in the common cases
// ("*" and "?" one letter, "[...]" its first listed character).
func probeFor(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*', '?':
			b.WriteByte('x')
		case '[':
			j := i + 1
			if j < len(p) && (p[j] == '!' || p[j] == '^') {
				return p // negated classes: no simple probe
			}
			end := strings.IndexByte(p[j:], ']')
			if end <= 0 {
				return p
			}
			b.WriteByte(p[j])
			i = j + end
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteByte(p[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Targets returns the targets of the last successful Refresh, in name order: the top-level
// ones and those of delegated roles that lie inside the paths delegated to them.
func (c *Client) Targets() []Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.targets)
}

// SnapshotVersion is the version of the snapshot metadata of the last successful Refresh (0
// before one). The seeder signs a new snapshot for every change of any targets metadata, so it
// says which decisions of the repository a client has seen.
func (c *Client) SnapshotVersion() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return 0
	}
	if s := c.up.GetTrustedMetadataSet().Snapshot; s != nil {
		return s.Signed.Version
	}
	return 0
}

// Download fetches target name (as of the last successful Refresh), verifies
// its length and SHA-256 and returns its bytes. Verified files are cached
// under MetadataDir/targets.
func (c *Client) Download(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil, fmt.Errorf("download %s: no successful refresh yet", name)
	}
	if !slices.ContainsFunc(c.targets, func(t Target) bool { return t.Name == name }) {
		return nil, fmt.Errorf("download %s: %w", name, ErrNotFound)
	}
	info, err := c.up.GetTargetInfo(name)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}
	if _, data, err := c.up.FindCachedTarget(info, ""); err == nil && data != nil {
		return data, nil
	}
	_, data, err := c.up.DownloadTarget(info, "", "")
	if uerr := unauthorized(err); uerr != nil {
		return nil, fmt.Errorf("download %s: %w", name, uerr)
	}
	if errors.Is(err, &metadata.ErrLengthOrHashMismatch{}) || errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		return nil, fmt.Errorf("download %s: %w: %w", name, ErrHashMismatch, err)
	}
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}
	return data, nil
}

// fetchTimeout bounds one metadata or target download.
const fetchTimeout = 30 * time.Second

// recorder is a go-tuf fetcher that remembers the last URL fetched and its
// bytes, so that Refresh errors can name the failing role and its expiry.
type recorder struct {
	fetcher.Fetcher
	url  string
	data []byte
}

func (r *recorder) DownloadFile(url string, maxLength int64, timeout time.Duration) ([]byte, error) {
	r.url, r.data = url, nil
	b, err := r.Fetcher.DownloadFile(url, maxLength, timeout)
	r.data = b
	return b, err
}

// refreshError turns a go-tuf Refresh error into one line naming the role
// that failed (the one fetched last) and why.
func refreshError(up *updater.Updater, rec *recorder, err error) error {
	if uerr := unauthorized(err); uerr != nil {
		return uerr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("refresh %s: no complete answer within %s from %s (a stalled or slow mirror): %w",
			path.Base(rec.url), fetchTimeout, rec.url, err)
	}
	role := strings.TrimSuffix(path.Base(rec.url), ".json")
	role = role[strings.IndexByte(role, '.')+1:] // "3.snapshot" -> "snapshot"
	trusted := up.GetTrustedMetadataSet()
	var signed struct {
		Signed struct {
			Expires time.Time `json:"expires"`
		} `json:"signed"`
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	_ = json.Unmarshal(rec.data, &signed) // best effort: only used to explain err
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		// Name the first trusted role that expired: a mirror replaying an expired timestamp
		// of the same version makes go-tuf keep its stored copy and fail a step later.
		until := signed.Signed.Expires
		switch {
		case trusted.Root.Signed.IsExpired(trusted.RefTime):
			role, until = metadata.ROOT, trusted.Root.Signed.Expires
		case trusted.Timestamp != nil && trusted.Timestamp.Signed.IsExpired(trusted.RefTime):
			role, until = metadata.TIMESTAMP, trusted.Timestamp.Signed.Expires
		case trusted.Snapshot != nil && trusted.Snapshot.Signed.IsExpired(trusted.RefTime):
			role, until = metadata.SNAPSHOT, trusted.Snapshot.Signed.Expires
		}
		return fmt.Errorf("refresh %s metadata: %w: was valid until %s", role, ErrExpired, until.Format(time.RFC3339))
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		known := false
		for _, s := range signed.Signatures {
			known = known || trusted.Root.Signed.Keys[s.KeyID] != nil
		}
		if !known {
			return fmt.Errorf("refresh %s metadata: %w: not signed by the trusted root (no key the trusted root lists signed it: another deployment, or a revoked key?)", role, ErrBadSignature)
		}
		return fmt.Errorf("refresh %s metadata: %w: %w", role, ErrBadSignature, err)
	}
	return fmt.Errorf("refresh %s metadata: %w", role, err)
}

// unauthorized returns ErrUnauthorized (HTTP 401) or ErrForbidden (HTTP 403), with the URL,
// if err is such an answer.
func unauthorized(err error) error {
	var he *metadata.ErrDownloadHTTP
	if !errors.As(err, &he) {
		return nil
	}
	switch he.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w (HTTP 401 on %s)", ErrUnauthorized, he.URL)
	case http.StatusForbidden:
		return fmt.Errorf("%w (HTTP 403 on %s)", ErrForbidden, he.URL)
	}
	return nil
}
