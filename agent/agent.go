// Package agent is Peerpatch's workstation daemon: it learns of new releases from TUF metadata
// served by a seeder (an untrusted mirror), downloads them from the swarm with every piece
// checked against signed SHA-256 hashes, installs them atomically, reports to the seeder and
// keeps seeding for its neighbours.
package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Sentinel errors.
var (
	// ErrNoRelease: the channel has no release in the signed metadata.
	ErrNoRelease = errors.New("no release published on this channel")
	// ErrRollback: the signed metadata offers an older version than one already trusted.
	ErrRollback = errors.New("rollback refused")
	// ErrNotInstalled: --once ended without the newest release installed.
	ErrNotInstalled = errors.New("newest release not installed")
	// ErrNotTargeted: no release of the channel is rolled out to this agent (by the releases'
	// rollout policies) and none is installed.
	ErrNotTargeted = errors.New("no release is rolled out to this agent yet")
	// ErrOutsideWindow: the release to install is downloaded and waits for a maintenance window.
	ErrOutsideWindow = errors.New("outside the install window")
	// ErrRolledBack: a post-install hook or the health check failed, and the agent switched
	// back to the release it ran before.
	ErrRolledBack = errors.New("rolled back")
)

// Layout of DataDir.
const (
	stateFile = "state.db"
	tufDir    = "tuf"
	swarmDir  = "swarm"
)

// held is a release whose swarm copy the agent keeps and seeds.
type held struct {
	Manifest release.Manifest `json:"manifest"`
	Pieces   []byte           `json:"pieces"`
	Torrent  []byte           `json:"torrent"`
	// Modified is, for each file of the swarm copy in manifest order, its modification time
	// (Unix ns) once the download was verified: a file whose time differs no longer holds
	// what was verified (see changedFile). Empty until then.
	Modified []int64 `json:"modified,omitempty"`
}

// Keys of the agent's state bucket.
const (
	keyID         = "id"
	keyInstalled  = "installed/"  // + channel → version
	keyPrevious   = "previous/"   // + channel → version
	keyTrusted    = "trusted/"    // + channel → highest version ever trusted
	keyHeld       = "held/"       // + channel/version → held
	keyCredential = "credential/" // + seeder URL → the credential that seeder gave this agent
	keyFailed     = "failed/"     // + channel/version → failure: hooks failed there under a policy
	keyRolledBack = "rolledback/" // + channel → rolledBack: the last switch back
)

// Agent is a running agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	db       *store.DB
	id       string
	hostname string
	tuf      []*trust.Client // one per seeder
	http     *http.Client    // authorized with the agent's credentials
	// shareHTTP is http without its 30 s bound: a share from a slow origin shared by many
	// agents may take longer; share bounds it by progress instead.
	shareHTTP *http.Client
	base      http.RoundTripper
	auth      *api.Auth
	token     deploy.Token // the fleet enrolment token
	swarm     *swarm.Client

	mu          sync.Mutex
	torrents    map[string]*swarm.Torrent // by version
	seeding     map[string]time.Time      // by version: when this process first saw it complete
	downloading download                  // the release being (or last) downloaded, for metrics
	staged      map[string]string         // by version: a checked staging copy (see stager)
	retired     retired                   // transfer figures of dropped torrents, for metrics

	meters  *meters
	metrics *metricsServer // nil without --metrics-listen

	metadataVersion atomic.Int64 // snapshot version of the last verified metadata, for reports
	announced       int64        // the highest metadata version a seeder's watch answered (see watch)
	busy            atomic.Bool  // a download is under way (see freeIdleMemory)
}

// Run runs the agent until ctx ends (returning nil) or, with Once, for one update cycle:
// nil if the release the agent should run is installed (the channel's newest release that is
// rolled out to it), an error saying why not otherwise.
func Run(ctx context.Context, cfg Config) error {
	a, err := open(cfg)
	if err != nil {
		return err
	}
	defer a.close()
	a.resume()
	a.retireChanged()
	if !cfg.Once {
		go a.freeIdleMemory(ctx)
	}
	for {
		err := a.cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.retireSeeds(time.Now())
		a.retireChanged()
		a.meters.cycle(err)
		if cfg.Once {
			return err
		}
		switch {
		case errors.Is(err, ErrNoRelease):
			a.log.Info("waiting for a first release", "channel", cfg.Channel)
		case errors.Is(err, ErrNotTargeted):
			a.log.Info("waiting for a release rolled out to this agent", "channel", cfg.Channel)
		case errors.Is(err, ErrOutsideWindow):
			a.log.Debug("waiting for the install window", "err", err)
		case err != nil:
			a.log.Error("update cycle failed", "err", err)
		}
		a.await(ctx, time.Duration(float64(cfg.Interval)*(0.8+0.4*mrand.Float64())))
	}
}

// Long polls (see the seeder's handleWatch).
const (
	// maxWatch is the longest watch asked for: under the agent's HTTP timeout (30 s).
	maxWatch = 25 * time.Second
	// minWatch is the shortest watch worth asking for.
	minWatch = 100 * time.Millisecond
	// minCycleGap is the least wait after a check before news starts the next, so that a seeder
	// announcing version after version cannot keep the agent checking without pause.
	minCycleGap = 50 * time.Millisecond
)

// await waits d, or less: until a seeder says it has newer metadata than the agent verified
// last. Between watches that end without news it asks again; if no seeder answers a watch
// (one too old to have it, or none reachable), it waits out d.
func (a *Agent) await(ctx context.Context, d time.Duration) {
	began := time.Now()
	deadline := began.Add(d)
	for time.Until(deadline) >= minWatch {
		news, err := a.watch(ctx, min(time.Until(deadline), maxWatch))
		if ctx.Err() != nil {
			return
		}
		if news {
			deadline = began.Add(minCycleGap)
			break
		}
		if err != nil {
			a.log.Debug("cannot watch for new metadata; checking again at the interval", "err", err)
			break
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
	}
}

// watch long-polls the seeders, the first that answers, for metadata newer than the agent's
// and than any a watch announced before (whether or not the check that followed could fetch it:
// otherwise a seeder whose metadata cannot be verified would wake the agent again at once).
func (a *Agent) watch(ctx context.Context, d time.Duration) (bool, error) {
	have := max(a.metadataVersion.Load(), a.announced)
	q := fmt.Sprintf("%s?after=%d&wait=%.3f", api.PathWatch, have, d.Seconds())
	var errs []error
	for _, s := range a.cfg.Seeders {
		b, err := a.get(ctx, s+q, 1<<10)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var w api.Watch
		if err := json.Unmarshal(b, &w); err != nil {
			errs = append(errs, fmt.Errorf("GET %s: %w", s+api.PathWatch, err))
			continue
		}
		if w.MetadataVersion <= have {
			return false, nil
		}
		a.announced = w.MetadataVersion
		return true, nil
	}
	return false, errors.Join(errs...)
}

func open(cfg Config) (a *Agent, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	root, err := os.ReadFile(cfg.TrustFile)
	if err != nil {
		return nil, fmt.Errorf("read --trust: %w", err)
	}
	token, err := deploy.ReadToken(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	a = &Agent{cfg: cfg, log: cfg.Logger, torrents: make(map[string]*swarm.Torrent), seeding: make(map[string]time.Time)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create --data %q: %w", cfg.DataDir, err)
	}
	if a.db, err = store.Open(filepath.Join(cfg.DataDir, stateFile)); err != nil {
		return nil, err
	}
	if a.id, err = a.identity(); err != nil {
		return nil, err
	}
	a.meters = newMeters(a)
	a.meters.setInstalled(a.getString(keyInstalled + cfg.Channel))
	if cfg.MetricsListen != "" {
		if a.metrics, err = serveMetrics(cfg.MetricsListen, a.meters.reg, a); err != nil {
			return nil, err
		}
	}
	a.hostname, _ = os.Hostname()
	base, err := api.NewTransport(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	a.base, a.token = base, token
	a.auth = api.NewAuth(string(token), cfg.Seeders...)
	for _, s := range cfg.Seeders {
		if cred := a.getString(keyCredential + s); cred != "" {
			a.auth.SetToken(s, cred)
		}
	}
	transport := a.auth.Transport(base)
	a.http = &http.Client{Transport: transport, Timeout: 30 * time.Second}
	a.shareHTTP = &http.Client{Transport: transport} // bounded by shareStall (see share)
	for i, s := range cfg.Seeders {
		c, err := trust.NewClient(trust.ClientConfig{
			MetadataDir: filepath.Join(cfg.DataDir, tufDir, fmt.Sprint(i)),
			Root:        root,
			MetadataURL: s + api.PathTUF,
			TargetsURL:  s + api.PathTUF + "targets/",
			Transport:   transport,
		})
		if err != nil {
			return nil, fmt.Errorf("trust client for %s: %w", s, err)
		}
		a.tuf = append(a.tuf, c)
	}
	a.swarm, err = swarm.New(swarm.Config{
		DataDir:            filepath.Join(cfg.DataDir, swarmDir),
		ListenAddr:         cfg.PeerListen,
		UploadRate:         cfg.UploadRate,
		DownloadRate:       cfg.DownloadRate,
		MaxConnsPerTorrent: cfg.MaxPeers,
		PersistCompletion:  true,
		Transport:          transport,
		RestrictPeers:      true,
		CheckPeer:          a.knownPeer,
		Logger:             a.log,
	})
	if err != nil {
		return nil, err
	}
	a.log.Info("agent started", "id", a.id, "channel", cfg.Channel, "peerPort", a.swarm.Port())
	return a, nil
}

func (a *Agent) close() {
	if a.metrics != nil {
		a.metrics.close()
	}
	if a.swarm != nil {
		a.swarm.Close()
	}
	if a.db != nil {
		a.db.Close()
	}
}

// identity returns the agent's persistent random id.
func (a *Agent) identity() (string, error) {
	var id string
	err := a.db.Get(store.State, keyID, &id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	b := make([]byte, 8)
	rand.Read(b)
	id = hex.EncodeToString(b)
	return id, a.db.Put(store.State, keyID, id)
}

func (a *Agent) getString(key string) string {
	var v string
	if err := a.db.Get(store.State, key, &v); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Error("read state", "key", key, "err", err)
	}
	return v
}

// resume seeds again the releases the agent holds (installed, previous, or half-downloaded).
func (a *Agent) resume() {
	err := a.db.ForEach(store.State, func(key string, raw []byte) error {
		if !strings.HasPrefix(key, keyHeld) {
			return nil
		}
		var h held
		if err := json.Unmarshal(raw, &h); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if _, err := a.add(&h); err != nil {
			a.log.Warn("cannot seed held release", "version", h.Manifest.Version, "err", err)
		}
		return nil
	})
	if err != nil {
		a.log.Error("read held releases", "err", err)
	}
}

// add puts a held release into the swarm (once).
func (a *Agent) add(h *held) (*swarm.Torrent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.torrents[h.Manifest.Version]; t != nil {
		return t, nil
	}
	m := &h.Manifest
	pieces, err := release.DecodePieces(h.Pieces, m.NumPieces())
	if err != nil {
		return nil, err
	}
	tf, err := swarm.CheckMetainfo(h.Torrent, m)
	if err != nil {
		return nil, err
	}
	var trackers []string
	for _, s := range a.cfg.Seeders {
		trackers = append(trackers, s+api.PathAnnounce)
	}
	t, err := a.swarm.Add(swarm.Spec{Torrent: tf, Manifest: m, Pieces: pieces, Dir: a.swarmPath(m), Trackers: trackers})
	if err != nil {
		return nil, err
	}
	a.torrents[m.Version] = t
	return t, nil
}

func (a *Agent) swarmPath(m *release.Manifest) string {
	return filepath.Join(a.cfg.DataDir, swarmDir, m.InfoHash)
}

// linkSource is the root of m's swarm copy (see swarmFile) if installs are hard links to it
// (see stager), "" if they are copies.
func (a *Agent) linkSource(m *release.Manifest) string {
	if a.cfg.CopyInstall || !canLink {
		return ""
	}
	return a.swarmRoot(m)
}

// swarmRoot is the root of m's swarm copy: its file, or the directory of its files.
func (a *Agent) swarmRoot(m *release.Manifest) string {
	return filepath.Join(a.swarmPath(m), m.Name)
}

// listed is a release of the agent's channel in verified metadata, with its rollout policy.
type listed struct {
	m         *release.Manifest
	bundle    trust.Target
	policy    rollout.Policy // rollout.Default() without a rollout target
	policyErr error          // the rollout target did not parse: never installed
}

// releases refreshes the signed metadata from the first seeder that answers and returns the
// releases of the channel it lists, by version, with the newest.
func (a *Agent) releases(ctx context.Context) (map[string]*listed, *listed, *trust.Client, error) {
	var errs []error
	for i, c := range a.tuf {
		if err := a.refresh(ctx, i, c); err != nil {
			errs = append(errs, fmt.Errorf("seeder %s: %w", a.cfg.Seeders[i], err))
			continue
		}
		rels := map[string]*listed{}
		var newest *listed
		prefix := "releases/" + a.cfg.Channel + "/"
		targets := c.Targets()
		for _, t := range targets {
			if !strings.HasPrefix(t.Name, prefix) || !strings.HasSuffix(t.Name, "/bundle") {
				continue
			}
			m, err := release.ParseManifest(t.Custom)
			if err != nil {
				a.log.Warn("ignoring target with a bad manifest", "target", t.Name, "err", err)
				continue
			}
			if m.Channel != a.cfg.Channel || t.Name != release.BundleTarget(m.Channel, m.Version) {
				a.log.Warn("ignoring target whose manifest names another release", "target", t.Name)
				continue
			}
			l := &listed{m: m, bundle: t, policy: rollout.Default()}
			rels[m.Version] = l
			if newest == nil || release.CompareVersions(m.Version, newest.m.Version) > 0 {
				newest = l
			}
		}
		for _, t := range targets {
			ch, v, kind, ok := release.ParseTarget(t.Name)
			if l := rels[v]; ok && kind == "rollout" && ch == a.cfg.Channel && l != nil {
				if l.policy, l.policyErr = rollout.Parse(t.Custom); l.policyErr != nil {
					a.log.Warn("ignoring release with an invalid rollout policy", "version", v, "err", l.policyErr)
				}
			}
		}
		a.metadataVersion.Store(c.SnapshotVersion())
		if newest == nil {
			return nil, nil, nil, fmt.Errorf("channel %q: %w", a.cfg.Channel, ErrNoRelease)
		}
		return rels, newest, c, nil
	}
	return nil, nil, nil, fmt.Errorf("refresh metadata: %w", errors.Join(errs...))
}

// cycle is one update: refresh metadata, choose the release this agent should run (its
// channel's newest release that is rolled out to it: see rollout.Choose), download it, wait
// for the install window and install it, if it is not installed already.
func (a *Agent) cycle(ctx context.Context) error {
	installed := a.getString(keyInstalled + a.cfg.Channel)
	rels, newest, tc, err := a.releases(ctx)
	if err != nil {
		a.report(ctx, api.Report{State: api.StateFailed, Error: err.Error()})
		return err
	}
	// The rollback guard is on the newest release listed, whatever the policies: yanking or
	// pausing a release never removes its target.
	if err := a.trustVersion(newest.m.Version); err != nil {
		a.report(ctx, api.Report{State: api.StateFailed, Error: err.Error()})
		return err
	}
	cands := make([]rollout.Candidate, 0, len(rels))
	for v, l := range rels {
		cands = append(cands, rollout.Candidate{Version: v, Policy: l.policy, Invalid: l.policyErr != nil, Failed: a.failedUnder(v, l.policy)})
	}
	dec := rollout.Choose(rollout.Agent{ID: a.id, Channel: a.cfg.Channel, Rings: a.cfg.Rings, Installed: installed}, cands)
	switch dec.Version {
	case "":
		a.report(ctx, a.steady(""))
		return fmt.Errorf("channel %q: %w (agent id %s)", a.cfg.Channel, ErrNotTargeted, a.id)
	case installed:
		a.report(ctx, a.steady(installed))
		return nil
	}
	l := rels[dec.Version]
	m, bundle := l.m, l.bundle
	log := a.log.With("channel", m.Channel, "version", m.Version)
	if dec.Rollback {
		log.Warn("the installed release was yanked with rollback: going back", "from", installed)
	}
	// A release still in InstallDir/releases (the previous one, or one a hook failed on) is
	// installed from there, verified again, without a download.
	kept := a.keptInstall(m.Version)
	var t *swarm.Torrent
	if kept {
		log.Info("reusing kept install")
	} else if t, err = a.fetch(ctx, m, tc, log); err != nil {
		if ctx.Err() == nil {
			a.report(ctx, api.Report{State: api.StateFailed, TargetVersion: m.Version, Error: err.Error()})
		}
		return fmt.Errorf("update to %s %s: %w", m.Channel, m.Version, err)
	}
	if ok, next := a.mayInstall(dec); !ok {
		log.Info("waiting for the install window", "opens", next, "windows", a.cfg.schedule.String())
		a.report(ctx, withStats(api.Report{State: api.StateWaitingWindow, TargetVersion: m.Version, NextWindow: &next}, a.torrent(m.Version)))
		return fmt.Errorf("%s %s is downloaded; the install window opens at %s: %w", m.Channel, m.Version, next.Format(time.RFC3339), ErrOutsideWindow)
	}
	a.report(ctx, withStats(api.Report{State: api.StateInstalling, TargetVersion: m.Version}, a.torrent(m.Version)))
	err = a.installAs(ctx, m, bundle, dec.Rollback, log)
	var hookErr *HookError
	if err != nil && kept && !errors.As(err, &hookErr) && ctx.Err() == nil {
		log.Warn("kept install unusable; downloading", "err", err)
		if t, err = a.fetch(ctx, m, tc, log); err == nil {
			err = a.installAs(ctx, m, bundle, dec.Rollback, log)
		}
	}
	if errors.Is(err, verify.ErrMismatch) && t != nil {
		// The swarm copy changed on disk after its pieces were verified (a disk fault, a
		// power loss before the data was written): recheck every piece, so that the next
		// cycle fetches again exactly the pieces that are bad.
		log.Warn("swarm copy failed verification; rechecking its pieces", "err", err)
		if verr := t.Verify(ctx); verr != nil {
			log.Error("recheck pieces", "err", verr)
		}
	}
	if errors.Is(err, ErrRolledBack) {
		// Remember, so as not to try it again under this policy, and say so until another
		// release is installed.
		a.putState(keyFailed+m.Channel+"/"+m.Version, failure{Policy: l.policy.Fingerprint(), Reason: err.Error(), At: a.cfg.Clock().UTC()})
		a.putState(keyRolledBack+m.Channel, rolledBack{From: m.Version, To: installed, Reason: err.Error()})
		a.report(ctx, a.steady(installed))
		return fmt.Errorf("update to %s %s: %w", m.Channel, m.Version, err)
	}
	if err != nil {
		if ctx.Err() == nil {
			a.report(ctx, withStats(api.Report{State: api.StateFailed, TargetVersion: m.Version, Error: err.Error()}, a.torrent(m.Version)))
		}
		return fmt.Errorf("update to %s %s: %w", m.Channel, m.Version, err)
	}
	if dec.Rollback {
		a.putState(keyRolledBack+m.Channel, rolledBack{From: installed, To: m.Version,
			Reason: fmt.Sprintf("%s %s was yanked with rollback", m.Channel, installed)})
	} else if err := a.db.Delete(store.State, keyRolledBack+m.Channel); err != nil {
		log.Error("clear rollback record", "err", err)
	}
	if t := a.torrent(m.Version); t != nil {
		st := t.Stats()
		log.Info("installed", "fromPeers", st.FromPeers, "fromOrigin", st.FromOrigin, "badPieces", st.BadPieces)
	} else {
		log.Info("installed")
	}
	a.report(ctx, a.steady(m.Version))
	a.prune()
	// The download's buffers are garbage now and the agent goes back to seeding and polling.
	debug.FreeOSMemory()
	return nil
}

// idleFree is how often an agent that is not downloading gives freed memory back.
const idleFree = 5 * time.Second

// freeIdleMemory gives the memory the agent freed back to the system every idleFree while no
// download is under way, rather than hold it until the runtime's scavenger gets to it minutes
// later: the buffers of uploads to the last neighbours, and of the connections closed once they
// finished too (see swarm's sweep). It costs a garbage collection of the idle agent's small heap.
// In the lab an idle agent holds 31 MiB (22 MiB of it the binary's pages) instead of 41-45 MiB
// at N=8; at N=16, 33 MiB instead of 47-50 (with swarm's sweep).
func (a *Agent) freeIdleMemory(ctx context.Context) {
	tick := time.NewTicker(idleFree)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !a.busy.Load() {
			debug.FreeOSMemory()
		}
	}
}

// mayInstall reports whether the agent may switch as dec says now (by Config.Clock): inside a
// maintenance window, or at once if dec is urgent; if not, when the next window opens.
func (a *Agent) mayInstall(dec rollout.Decision) (bool, time.Time) {
	now := a.cfg.Clock()
	if dec.Urgent || a.cfg.schedule.Open(now) {
		return true, now
	}
	return false, a.cfg.schedule.Next(now)
}

// failure is a release on which a hook or the health check failed, under a rollout policy.
type failure struct {
	Policy string    `json:"policy"` // rollout.Policy.Fingerprint
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// rolledBack is the agent's last switch back: from a release a hook failed on, or that was
// yanked with rollback, to the one it runs.
type rolledBack struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
}

// failedUnder reports whether version failed on this agent under policy p.
func (a *Agent) failedUnder(version string, p rollout.Policy) bool {
	var f failure
	err := a.db.Get(store.State, keyFailed+a.cfg.Channel+"/"+version, &f)
	return err == nil && f.Policy == p.Fingerprint()
}

// keptInstall reports whether InstallDir/releases/<version> exists.
func (a *Agent) keptInstall(version string) bool {
	_, err := os.Stat(filepath.Join(a.cfg.InstallDir, releasesSub, version))
	return err == nil
}

func (a *Agent) putState(key string, v any) {
	if err := a.db.Put(store.State, key, v); err != nil {
		a.log.Error("write state", "key", key, "err", err)
	}
}

// steady is the report of an agent that runs installed ("" for none) and has nothing to do:
// rolled_back while it runs the release it last switched back to, else installed (or idle).
func (a *Agent) steady(installed string) api.Report {
	var rb rolledBack
	if a.db.Get(store.State, keyRolledBack+a.cfg.Channel, &rb) == nil && rb.To == installed {
		return withStats(api.Report{State: api.StateRolledBack, TargetVersion: rb.From, Error: rb.Reason}, a.torrent(rb.From))
	}
	if installed == "" {
		return api.Report{State: api.StateIdle}
	}
	return withStats(api.Report{State: api.StateInstalled}, a.torrent(installed))
}

// torrent returns the swarm torrent of a version this process holds, nil if none.
func (a *Agent) torrent(version string) *swarm.Torrent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.torrents[version]
}

// withStats adds a torrent's transfer figures (if t is not nil) to a report.
func withStats(r api.Report, t *swarm.Torrent) api.Report {
	if t == nil {
		return r
	}
	s := t.Stats()
	r.Completed, r.Total, r.BytesFromPeers, r.BytesFromOrigin, r.Uploaded = s.Completed, s.Total, s.FromPeers, s.FromOrigin, s.Uploaded
	return r
}

// trustVersion records v as trusted, refusing a version below the highest ever trusted.
func (a *Agent) trustVersion(v string) error {
	key := keyTrusted + a.cfg.Channel
	return a.db.Update(store.State, func(get, put func(string, any) error) error {
		var highest string
		if err := get(key, &highest); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if highest != "" && release.CompareVersions(v, highest) < 0 {
			return fmt.Errorf("signed metadata offers %s %s, but %s was already trusted: %w", a.cfg.Channel, v, highest, ErrRollback)
		}
		if v == highest {
			return nil
		}
		return put(key, v)
	})
}

// fetch downloads a release into the swarm directory, every piece verified as it arrives.
func (a *Agent) fetch(ctx context.Context, m *release.Manifest, tc *trust.Client, log *slog.Logger) (*swarm.Torrent, error) {
	h := &held{Manifest: *m}
	key := keyHeld + m.Channel + "/" + m.Version
	if err := a.db.Get(store.State, key, h); errors.Is(err, store.ErrNotFound) {
		if h.Pieces, err = tc.Download(release.PiecesTarget(m.Channel, m.Version)); err != nil {
			return nil, fmt.Errorf("fetch piece hashes: %w", err)
		}
		if h.Torrent, err = a.fetchTorrent(ctx, m); err != nil {
			return nil, err
		}
		if _, err := swarm.CheckMetainfo(h.Torrent, m); err != nil {
			return nil, err
		}
		if err := a.db.Put(store.State, key, h); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	t, err := a.add(h)
	if err != nil {
		return nil, err
	}
	if t.Complete() {
		a.markVerified(key, h)
		return t, nil // downloaded in an earlier cycle (and waiting for an install window)
	}
	start := t.Stats()
	log.Info("downloading", "bytes", start.Total, "verifiedAlready", start.Completed)
	a.mu.Lock()
	a.downloading = download{version: m.Version, t: t}
	a.mu.Unlock()
	began := time.Now()
	var lastReport time.Time
	stage, err := a.newStager(h)
	if err != nil {
		log.Warn("cannot stage the install while downloading; the install will copy the release", "err", err)
	} else {
		if stage.linkErr != nil {
			log.Info("cannot link the install to the swarm copy; staging a copy", "err", stage.linkErr)
		}
		t.OnVerified(stage.piece)
	}
	a.busy.Store(true)
	defer a.busy.Store(false)
	err = t.Download(ctx, swarm.DownloadOptions{
		FallbackAfter: a.cfg.FallbackAfter,
		StallTimeout:  a.cfg.StallTimeout,
		Share:         a.shareFunc(m),
		Progress: func(s swarm.Stats) {
			log.Debug("progress", "completed", s.Completed, "total", s.Total, "fromPeers", s.FromPeers, "fromOrigin", s.FromOrigin, "peers", s.Peers)
			if time.Since(lastReport) >= 2*time.Second {
				lastReport = time.Now()
				a.report(ctx, withStats(api.Report{State: api.StateDownloading, TargetVersion: m.Version}, t))
			}
		},
	})
	if stage != nil {
		t.OnVerified(nil)
		a.keepStaged(m.Version, stage, err == nil, log)
	}
	if err != nil {
		return nil, err
	}
	a.markVerified(key, h)
	a.meters.downloadTime.Observe(time.Since(began).Seconds())
	st := t.Stats()
	log.Info("downloaded", "received", st.FromPeers+st.FromOrigin, "fromPeers", st.FromPeers, "fromOrigin", st.FromOrigin, "wasted", st.Wasted)
	return t, nil
}

// markVerified records, once, the modification times of the files of held release h (stored
// under key), downloaded and verified.
func (a *Agent) markVerified(key string, h *held) {
	if len(h.Modified) != 0 {
		return
	}
	m := &h.Manifest
	times := make([]int64, len(m.Files))
	for i, f := range m.Files {
		fi, err := os.Stat(swarmFile(m, a.swarmRoot(m), f))
		if err != nil {
			a.log.Warn("cannot watch the swarm copy for changes", "version", m.Version, "err", err)
			return
		}
		times[i] = fi.ModTime().UnixNano()
	}
	h.Modified = times
	if err := a.db.Put(store.State, key, h); err != nil {
		a.log.Error("write state", "key", key, "err", err)
	}
}

// changedFile returns a file of h's swarm copy that changed after the copy was verified, and
// how, or "" if none did (or h was not verified yet). Linked installs share the swarm copy's
// files: one changed in place under InstallDir/releases changes what the agent would seed.
func (a *Agent) changedFile(h *held) (path, how string) {
	m := &h.Manifest
	if len(h.Modified) != len(m.Files) {
		return "", ""
	}
	for i, f := range m.Files {
		p := swarmFile(m, a.swarmRoot(m), f)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return p, err.Error()
		case fi.Size() != f.Length:
			return p, fmt.Sprintf("%d bytes, signed %d", fi.Size(), f.Length)
		case fi.ModTime().UnixNano() != h.Modified[i]:
			return p, fmt.Sprintf("modified %s, after it was verified", fi.ModTime().Format(time.RFC3339Nano))
		}
	}
	return "", ""
}

const msgSwarmChanged = "stopped seeding: swarm copy changed after it was verified"

// retireChanged stops seeding, and deletes the swarm copy of, every complete release a file of
// which changed after it was verified (see changedFile): the agent would seed bytes that fail
// their check, and its neighbours would ban it. The install stays as it is.
func (a *Agent) retireChanged() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for v, t := range a.torrents {
		var h held
		if !t.Complete() || a.db.Get(store.State, keyHeld+a.cfg.Channel+"/"+v, &h) != nil {
			continue
		}
		if path, how := a.changedFile(&h); path != "" {
			a.log.Warn(msgSwarmChanged, "version", v, "file", path, "change", how,
				"hint", "installed files are links to the swarm copy unless --copy-install: replace them, never change them in place")
			a.dropLocked(v, t)
		}
	}
}

// newStager starts staging the install of held release h (see stager).
func (a *Agent) newStager(h *held) (*stager, error) {
	m := &h.Manifest
	digests, err := release.DecodePieces(h.Pieces, m.NumPieces())
	if err != nil {
		return nil, err
	}
	return newStager(filepath.Join(a.cfg.InstallDir, releasesSub), m, digests, a.linkSource(m))
}

// keepStaged finishes the staging copy of a download: kept for the install if the download
// completed, every piece was staged and the copy passed its check; removed otherwise.
func (a *Agent) keepStaged(version string, st *stager, complete bool, log *slog.Logger) {
	if !complete {
		st.discard()
		return
	}
	began := time.Now()
	dir, err := st.finish()
	if errors.Is(err, verify.ErrMismatch) {
		log.Warn("staged copy failed its check; the install will copy the release", "err", err)
		return
	}
	if err != nil {
		log.Info("no staging copy; the install will copy the release", "err", err)
		return
	}
	log.Debug("staged copy checked", "dir", dir, "took", time.Since(began).Round(time.Millisecond))
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.staged[version]; old != "" && old != dir {
		os.RemoveAll(old)
	}
	if a.staged == nil {
		a.staged = make(map[string]string)
	}
	a.staged[version] = dir
}

// takeStaged returns the staging copy kept for version ("" if none); the caller owns it.
func (a *Agent) takeStaged(version string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	dir := a.staged[version]
	delete(a.staged, version)
	return dir
}

// fetchTorrent gets the release's .torrent from the first seeder that has it.
func (a *Agent) fetchTorrent(ctx context.Context, m *release.Manifest) ([]byte, error) {
	var errs []error
	for _, s := range a.cfg.Seeders {
		b, err := a.get(ctx, s+api.PathTorrent+m.Channel+"/"+m.Version, swarm.MaxMetainfoSize)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("fetch torrent: %w", errors.Join(errs...))
}

func (a *Agent) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, api.ErrorText(resp.StatusCode, b))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: answer over %d bytes", url, limit)
	}
	return b, nil
}

// report tells the seeders the agent's state; failures are logged, not fatal.
func (a *Agent) report(ctx context.Context, r api.Report) {
	r.ID, r.Hostname, r.Channel, r.Rings = a.id, a.hostname, a.cfg.Channel, a.cfg.Rings
	if r.MetadataVersion == 0 {
		r.MetadataVersion = a.metadataVersion.Load()
	}
	r.InstalledVersion = a.getString(keyInstalled + a.cfg.Channel)
	a.meters.report(&r)
	body, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, s := range a.cfg.Seeders {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s+api.PathReport, bytes.NewReader(body))
		if err != nil {
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := a.http.Do(req)
		if err != nil {
			a.log.Debug("report failed", "seeder", s, "err", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			return
		}
	}
}

// prune stops seeding and deletes the swarm copies of releases older than the previous one.
func (a *Agent) prune() {
	keep := map[string]bool{
		a.getString(keyInstalled + a.cfg.Channel): true,
		a.getString(keyPrevious + a.cfg.Channel):  true,
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for v, t := range a.torrents {
		if !keep[v] {
			a.dropLocked(v, t)
		}
	}
}

// dropLocked stops seeding release v and deletes its swarm copy (a.mu held).
func (a *Agent) dropLocked(v string, t *swarm.Torrent) {
	a.retired.add(t.Stats())
	if a.downloading.t == t {
		a.downloading = download{}
	}
	t.Drop()
	delete(a.torrents, v)
	delete(a.seeding, v)
	var h held
	key := keyHeld + a.cfg.Channel + "/" + v
	if err := a.db.Get(store.State, key, &h); err == nil {
		if err := os.RemoveAll(a.swarmPath(&h.Manifest)); err != nil {
			a.log.Warn("remove old swarm copy", "version", v, "err", err)
		}
	}
	a.db.Delete(store.State, key)
}

// retireSeeds ends the seeding of complete releases past --seed-for or --seed-ratio.
func (a *Agent) retireSeeds(now time.Time) {
	if a.cfg.SeedFor == 0 && a.cfg.SeedRatio == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for v, t := range a.torrents {
		if !t.Complete() {
			continue
		}
		since, ok := a.seeding[v]
		if !ok {
			a.seeding[v] = now
			continue
		}
		st := t.Stats()
		if a.cfg.SeedFor > 0 && now.Sub(since) >= a.cfg.SeedFor || a.cfg.SeedRatio > 0 && float64(st.Uploaded) >= a.cfg.SeedRatio*float64(st.Total) {
			a.log.Info("stopped seeding", "version", v, "seeded", now.Sub(since).Round(time.Second), "uploaded", st.Uploaded)
			a.dropLocked(v, t)
		}
	}
}

// knownPeer asks the seeders whether an address calling this agent belongs to an enrolled
// agent, and on which ports it listens (see swarm.CheckFunc). The first seeder that answers
// decides.
func (a *Agent) knownPeer(ctx context.Context, ip netip.Addr) ([]uint16, bool, error) {
	var errs []error
	for _, s := range a.cfg.Seeders {
		ports, ok, err := a.askPeer(ctx, s, ip)
		if err == nil {
			return ports, ok, nil
		}
		errs = append(errs, err)
	}
	return nil, false, errors.Join(errs...)
}

func (a *Agent) askPeer(ctx context.Context, seeder string, ip netip.Addr) ([]uint16, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, seeder+api.PathPeers+ip.String(), nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("ask %s about peer %s: %w", seeder, ip, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch resp.StatusCode {
	case http.StatusNoContent:
		return api.ParsePeerPorts(resp.Header.Get(api.HeaderPeerPorts)), true, nil
	case http.StatusNotFound:
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("ask %s about peer %s: %s", seeder, ip, api.ErrorText(resp.StatusCode, body))
	}
}

// shareFunc pulls pieces of release m from the origin's scheduler (see swarm.ShareFunc), from
// the first seeder that answers.
func (a *Agent) shareFunc(m *release.Manifest) swarm.ShareFunc {
	return func(ctx context.Context, want []int) (int, []byte, error) {
		body, _ := json.Marshal(api.ShareRequest{Want: want})
		var errs []error
		for _, s := range a.cfg.Seeders {
			i, data, err := a.share(ctx, s+api.PathShare+m.Channel+"/"+m.Version, body, m.PieceLength)
			if err == nil || errors.Is(err, swarm.ErrNoShare) {
				return i, data, err
			}
			errs = append(errs, err)
		}
		return 0, nil, errors.Join(errs...)
	}
}

// shareStall is how long a share may go without a byte before the agent gives up on it. Not a
// bound on the whole share: in the lab, with the origin at 5 MiB/s shared by 32 requests, a
// 1 MiB share took over 30 s now and then; cutting it off wasted what the origin had sent.
const shareStall = 30 * time.Second

func (a *Agent) share(ctx context.Context, url string, body []byte, pieceLength int64) (int, []byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := time.AfterFunc(shareStall, cancel)
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.shareHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(swarm.ProgressReader{R: resp.Body, Progress: func() { stall.Reset(shareStall) }}, pieceLength+1))
	switch {
	case err != nil:
		return 0, nil, fmt.Errorf("POST %s: %w", url, err)
	case resp.StatusCode == http.StatusNoContent, resp.StatusCode == http.StatusNotFound:
		return 0, nil, swarm.ErrNoShare
	case resp.StatusCode == http.StatusTooManyRequests:
		return 0, nil, swarm.ErrShareBusy
	case resp.StatusCode != http.StatusOK:
		return 0, nil, fmt.Errorf("POST %s: %s", url, api.ErrorText(resp.StatusCode, b))
	case int64(len(b)) > pieceLength:
		return 0, nil, fmt.Errorf("POST %s: answer over the piece length %d", url, pieceLength)
	}
	i, err := strconv.Atoi(resp.Header.Get(api.HeaderPiece))
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: bad %s header: %w", url, api.HeaderPiece, err)
	}
	return i, b, nil
}
