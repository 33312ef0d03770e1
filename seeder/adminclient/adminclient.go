// Package adminclient is the admin side of a seeder's API: publishing a release (hashing it,
// building its torrent, signing it into TUF targets with the deployment's targets key, and
// streaming it to the seeder), changing rollout policies (signed here too), and reading the
// fleet status.
package adminclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
	"github.com/peerpatch/peerpatch/seeder"
)

// Sentinel errors.
var (
	// ErrVersionOrder: the version is not above the channel's current one.
	ErrVersionOrder = errors.New("version must be greater than the channel's current version")
	// ErrUnknownRelease: the seeder's metadata lists no such release.
	ErrUnknownRelease = errors.New("unknown release")
)

// Client talks to one seeder with the admin token.
type Client struct {
	base      string
	tokenFile string
	http      *http.Client
}

// New returns a client for the seeder at base, authenticated with the admin token of the
// deployment in keysDir. caFile (optional) holds PEM certificates for an https seeder.
func New(base, keysDir, caFile string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--seeder %q: want an http(s)://host:port URL", base)
	}
	base = strings.TrimSuffix(base, "/")
	tokenFile := filepath.Join(keysDir, deploy.AdminTokenFile)
	tok, err := deploy.ReadToken(tokenFile)
	if err != nil {
		return nil, err
	}
	tr, err := api.NewTransport(caFile)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, tokenFile: tokenFile, http: &http.Client{Transport: api.NewAuth(string(tok), base).Transport(tr)}}, nil
}

// Publish builds, signs and uploads the release at path (a file or a directory).
func (c *Client) Publish(ctx context.Context, keysDir, channel, version, path string) (*api.Published, error) {
	return c.PublishAs(ctx, keysDir, "", channel, version, path)
}

// PublishAs is Publish signed by role: "" for the top-level targets (keysDir/keys/targets.pem),
// else a delegated role such as ci, whose metadata is signed with keysDir/keys/<role>.pem. The
// seeder refuses a release outside the paths delegated to the role.
func (c *Client) PublishAs(ctx context.Context, keysDir, role, channel, version, path string) (*api.Published, error) {
	return c.PublishRelease(ctx, keysDir, channel, version, path, PublishOptions{Role: role, Rollout: rollout.Default()})
}

// PublishOptions are the optional parts of a publish.
type PublishOptions struct {
	// Role signs as a delegated role (see PublishAs); "" with the targets key.
	Role string
	// Rollout is the release's rollout policy, signed with it as the target
	// releases/<channel>/<version>/rollout unless it is rollout.Default() (a release without
	// one is rolled out to everyone).
	Rollout rollout.Policy
	// PieceLength is the torrent's piece size, a power of two from 16 KiB to 16 MiB; 0 picks
	// it from the release's size (release.PieceLength).
	PieceLength int64
}

// PublishRelease is Publish with options.
func (c *Client) PublishRelease(ctx context.Context, keysDir, channel, version, path string, opts PublishOptions) (*api.Published, error) {
	role := opts.Role
	if err := opts.Rollout.Validate(); err != nil {
		return nil, err
	}
	if err := release.ValidChannel(channel); err != nil {
		return nil, fmt.Errorf("--channel: %w", err)
	}
	if err := release.ValidVersion(version); err != nil {
		return nil, fmt.Errorf("--version: %w", err)
	}
	current, err := c.get(ctx, api.PathTUF+"targets.json")
	if err != nil {
		return nil, fmt.Errorf("read current targets: %w", err)
	}
	if err := checkOrder(current, channel, version); err != nil {
		return nil, err
	}
	var currentRole []byte
	if role != "" {
		if err := trust.ValidRoleName(role); err != nil {
			return nil, fmt.Errorf("--role: %w", err)
		}
		if currentRole, err = c.get(ctx, api.PathTUF+role+".json"); err != nil {
			return nil, fmt.Errorf("read current %s targets: %w", role, err)
		}
		if err := checkOrder(currentRole, channel, version); err != nil {
			return nil, err
		}
	}
	layout, err := release.Build(ctx, path, opts.PieceLength)
	if err != nil {
		return nil, err
	}
	layout.Manifest.Channel, layout.Manifest.Version = channel, version
	_, infoHash, err := swarm.InfoBytes(layout)
	if err != nil {
		return nil, err
	}
	m := layout.Manifest
	m.InfoHash = infoHash
	if err := m.Validate(); err != nil {
		return nil, err
	}
	custom, err := json.Marshal(&m)
	if err != nil {
		return nil, err
	}
	pieces := release.EncodePieces(layout.PiecesSHA256)
	add := []trust.Target{
		{Name: release.BundleTarget(channel, version), Length: layout.Length, SHA256: layout.SHA256, Custom: custom},
		{Name: release.PiecesTarget(channel, version), Length: int64(len(pieces)), SHA256: verify.Sum(pieces)},
	}
	if !opts.Rollout.IsDefault() {
		t, err := policyTarget(channel, version, opts.Rollout)
		if err != nil {
			return nil, err
		}
		add = append(add, t)
	}
	var signed []byte
	if role == "" {
		signed, err = trust.AddTargets(keysDir, current, add, time.Now())
	} else {
		signed, err = trust.AddDelegatedTargets(keysDir, role, current, currentRole, add, time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("sign targets: %w", err)
	}
	return c.upload(ctx, signed, &m, role, path)
}

// checkOrder refuses early, before hashing anything, a version that the seeder would refuse.
func checkOrder(targetsJSON []byte, channel, version string) error {
	_, targets, err := trust.ReadTargets(targetsJSON)
	if err != nil {
		return fmt.Errorf("read current targets: %w", err)
	}
	prefix := "releases/" + channel + "/"
	for _, t := range targets {
		v, ok := strings.CutPrefix(t.Name, prefix)
		if !ok || !strings.HasSuffix(v, "/bundle") {
			continue
		}
		v = strings.TrimSuffix(v, "/bundle")
		if release.CompareVersions(version, v) <= 0 {
			return fmt.Errorf("channel %q has %s: %s: %w", channel, v, version, ErrVersionOrder)
		}
	}
	return nil
}

// upload streams the signed targets and the files as one multipart request.
func (c *Client) upload(ctx context.Context, signed []byte, m *release.Manifest, role, path string) (*api.Published, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeParts(mw, signed, m, path))
	}()
	q := url.Values{"channel": {m.Channel}, "version": {m.Version}}
	if role != "" {
		q.Set("role", role)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.PathPublish+"?"+q.Encode(), pr)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		return nil, fmt.Errorf("upload to %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return nil, c.refusal(resp.StatusCode, body)
	}
	var res api.Published
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("read publish answer: %w", err)
	}
	return &res, nil
}

func writeParts(mw *multipart.Writer, signed []byte, m *release.Manifest, path string) error {
	w, err := mw.CreateFormField(api.PartTargets)
	if err != nil {
		return err
	}
	if _, err := w.Write(signed); err != nil {
		return err
	}
	for _, f := range m.Files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, api.PartFile, filepath.Base(f.Path)))
		h.Set("Content-Type", "application/octet-stream")
		h.Set(seeder.HeaderPath, f.Path)
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		src := path
		if m.Dir {
			src = filepath.Join(path, filepath.FromSlash(f.Path))
		}
		if err := copyFile(w, src); err != nil {
			return err
		}
	}
	return mw.Close()
}

func copyFile(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Status returns the fleet view.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	b, err := c.get(ctx, api.PathStatus)
	if err != nil {
		return nil, err
	}
	var st api.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	return &st, nil
}

// Agents lists the enrolled agents with their last reports.
func (c *Client) Agents(ctx context.Context) ([]api.Agent, error) {
	b, err := c.get(ctx, api.PathAgents)
	if err != nil {
		return nil, err
	}
	var res struct {
		Agents []api.Agent `json:"agents"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("read agents: %w", err)
	}
	return res.Agents, nil
}

// Revoke revokes an agent's credential: it gets nothing more from the seeder, peers included.
func (c *Client) Revoke(ctx context.Context, id string) (*api.Agent, error) {
	b, err := c.do(ctx, http.MethodPost, api.PathAgents+"/"+url.PathEscape(id)+"/revoke")
	if err != nil {
		return nil, err
	}
	var a api.Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("read revoke answer: %w", err)
	}
	return &a, nil
}

func (c *Client) get(ctx context.Context, p string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, p)
}

func (c *Client) do(ctx context.Context, method, p string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.base+p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.base+p, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.refusal(resp.StatusCode, b)
	}
	return b, nil
}

// refusal explains a non-2xx answer, naming the admin token file when that was the problem.
func (c *Client) refusal(code int, body []byte) error {
	if code == http.StatusUnauthorized {
		return fmt.Errorf("seeder %s refused the admin token in %s (HTTP 401)", c.base, c.tokenFile)
	}
	return fmt.Errorf("seeder %s refused: %s", c.base, api.ErrorText(code, body))
}
