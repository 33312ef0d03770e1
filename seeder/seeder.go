// Package seeder is Peerpatch's origin: it stores published releases, keeps the TUF repository
// (signing snapshot and timestamp with the online keys), seeds every release over BitTorrent,
// serves the same bytes as a BEP 19 web seed, runs the tracker, and collects agents' reports.
package seeder

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Layout of DataDir.
const (
	stateFile   = "state.db"
	releasesDir = "releases" // releases/<channel>/<version>/<name>...; the web seed's file tree
	stagingDir  = "staging"  // uploads in progress; emptied at start
	swarmDir    = "swarm"
)

// record is what the store keeps of a release.
type record struct {
	Manifest    release.Manifest `json:"manifest"`
	InfoBytes   []byte           `json:"info"`
	Pieces      []byte           `json:"pieces"` // signed SHA-256 per piece, concatenated
	PublishedAt time.Time        `json:"published_at"`
	// Pending is set while the release is on disk but not yet in signed metadata; a seeder that
	// starts and finds it removes the release unless the metadata has it.
	Pending bool `json:"pending,omitempty"`
}

func releaseKey(channel, version string) string { return channel + "/" + version }

// live is a release being seeded.
type live struct {
	rec     record
	torrent *swarm.Torrent
	// Bytes sent over HTTP: as the origin's shares (POST /api/v1/share) and as a web seed.
	shareBytes, webSeedBytes atomic.Int64
	shares                   shares
}

// httpBytes is what the origin sent of the release over HTTP: shares and web seed.
func (l *live) httpBytes() int64 { return l.shareBytes.Load() + l.webSeedBytes.Load() }

// Seeder is a running seeder.
type Seeder struct {
	cfg     Config
	log     *slog.Logger
	db      *store.DB
	repo    *trust.Repo
	swarm   *swarm.Client
	tracker *swarm.Tracker
	// shareSlots holds a token per share being sent (see handleShare).
	shareSlots chan struct{}
	// shareSends holds a token per share whose bytes are being sent (see shareSends).
	shareSends chan struct{}
	admin      deploy.Token
	agent      deploy.Token
	// metricsToken, if set (--metrics-token-file), also opens GET /metrics.
	metricsToken deploy.Token
	meters       *meters

	publishMu sync.Mutex // one publish at a time

	mu         sync.Mutex
	live       map[string]*live
	announcers map[string]map[netip.AddrPort]bool // agent id → addresses it announced
	ready      atomic.Bool
	// stopping is closed when the seeder begins to shut down: it ends long polls (see handleWatch).
	stopping chan struct{}
	woken    atomic.Int64 // watchers woken by the current change, to space them out
}

// Run starts a seeder and serves until ctx ends; then it shuts down cleanly and returns nil.
func Run(ctx context.Context, cfg Config) error {
	s, ln, err := start(cfg)
	if err != nil {
		return err
	}
	return s.serve(ctx, ln)
}

func start(cfg Config) (_ *Seeder, _ net.Listener, err error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	s := &Seeder{cfg: cfg, log: cfg.Logger, tracker: swarm.NewTracker(), live: make(map[string]*live), shareSlots: make(chan struct{}, shareSlots), shareSends: make(chan struct{}, shareSends),
		announcers: make(map[string]map[netip.AddrPort]bool), stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.admin, err = deploy.ReadToken(filepath.Join(cfg.KeysDir, deploy.AdminTokenFile)); err != nil {
		return nil, nil, err
	}
	if s.agent, err = deploy.ReadToken(filepath.Join(cfg.KeysDir, deploy.AgentTokenFile)); err != nil {
		return nil, nil, err
	}
	if cfg.MetricsTokenFile != "" {
		if s.metricsToken, err = deploy.ReadToken(cfg.MetricsTokenFile); err != nil {
			return nil, nil, fmt.Errorf("--metrics-token-file: %w", err)
		}
	}
	s.meters = newMeters(s)
	online, err := trust.LoadOnline(cfg.KeysDir)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create --data %q: %w", cfg.DataDir, err)
	}
	if s.db, err = store.Open(filepath.Join(cfg.DataDir, stateFile)); err != nil {
		return nil, nil, err
	}
	if s.repo, err = trust.OpenRepo(metaStore{s.db}, online, cfg.KeysDir, time.Now()); err != nil {
		return nil, nil, err
	}
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, stagingDir)); err != nil {
		return nil, nil, fmt.Errorf("clear staging area: %w", err)
	}
	// Bind the API before the swarm, so a busy port fails fast and names the flag.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	if cfg.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	// The seeder announces its releases to its own tracker, through its public URL.
	base, err := api.NewTransport(cfg.TLSCert)
	if err != nil {
		return nil, nil, err
	}
	s.swarm, err = swarm.New(swarm.Config{
		DataDir:            filepath.Join(cfg.DataDir, swarmDir),
		ListenAddr:         cfg.PeerListen,
		Origin:             true,
		UploadRate:         cfg.UploadRate,
		MaxConnsPerTorrent: cfg.MaxPeersPerRelease,
		NoPeers:            cfg.MaxPeersPerRelease == 0,
		Transport:          api.NewAuth(string(s.admin), cfg.PublicURL).Transport(base),
		RestrictPeers:      true,
		AllowPeer:          s.tracker.Knows, // only enrolled agents announce
		Logger:             s.log,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := s.resume(); err != nil {
		return nil, nil, err
	}
	return s, ln, nil
}

// resume seeds every published release again and removes what a crash left half-published.
func (s *Seeder) resume() error {
	published := make(map[string]bool)
	for _, t := range s.repo.Targets() {
		published[t.Name] = true
	}
	var recs []record
	err := s.db.ForEach(store.Releases, func(key string, raw []byte) error {
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("release %s: %w", key, err)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load releases: %w", err)
	}
	for _, r := range recs {
		m := &r.Manifest
		if r.Pending {
			if !published[release.BundleTarget(m.Channel, m.Version)] {
				s.log.Warn("removing release that was never signed", "channel", m.Channel, "version", m.Version)
				if err := s.forget(r); err != nil {
					return err
				}
				continue
			}
			r.Pending = false
			if err := s.db.Put(store.Releases, releaseKey(m.Channel, m.Version), r); err != nil {
				return err
			}
		}
		if err := s.seed(r); err != nil {
			// One broken release must not keep the others from being served.
			s.log.Error("cannot seed release", "channel", m.Channel, "version", m.Version, "err", err)
		}
	}
	if err := s.removeUnrecorded(); err != nil {
		return err
	}
	s.log.Info("seeding releases", "count", len(s.live))
	return nil
}

// forget removes an unsigned release: its files, its pieces file and its record.
func (s *Seeder) forget(r record) error {
	m := &r.Manifest
	if err := os.RemoveAll(s.releaseDir(m.Channel, m.Version)); err != nil {
		return fmt.Errorf("remove release %s %s: %w", m.Channel, m.Version, err)
	}
	return errors.Join(
		s.db.Delete(store.Meta, piecesFile(&r)),
		s.db.Delete(store.Releases, releaseKey(m.Channel, m.Version)))
}

// removeUnrecorded deletes release directories without a record: a crash between moving an
// upload into place and recording it. Such a release was never signed.
func (s *Seeder) removeUnrecorded() error {
	root := filepath.Join(s.cfg.DataDir, releasesDir)
	channels, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list releases: %w", err)
	}
	for _, ch := range channels {
		versions, err := os.ReadDir(filepath.Join(root, ch.Name()))
		if err != nil {
			return fmt.Errorf("list releases: %w", err)
		}
		for _, v := range versions {
			_, err := s.db.GetRaw(store.Releases, releaseKey(ch.Name(), v.Name()))
			if !errors.Is(err, store.ErrNotFound) {
				continue
			}
			s.log.Warn("removing unrecorded release directory", "channel", ch.Name(), "version", v.Name())
			if err := os.RemoveAll(filepath.Join(root, ch.Name(), v.Name())); err != nil {
				return fmt.Errorf("remove unrecorded release: %w", err)
			}
		}
	}
	return nil
}

func (s *Seeder) releaseDir(channel, version string) string {
	return filepath.Join(s.cfg.DataDir, releasesDir, channel, version)
}

// seed adds a stored release to the swarm.
func (s *Seeder) seed(r record) error {
	m := &r.Manifest
	pieces, err := release.DecodePieces(r.Pieces, m.NumPieces())
	if err != nil {
		return fmt.Errorf("seed %s %s: %w", m.Channel, m.Version, err)
	}
	tf, err := swarm.CheckInfo(r.InfoBytes, m)
	if err != nil {
		return fmt.Errorf("seed %s %s: %w", m.Channel, m.Version, err)
	}
	t, err := s.swarm.Add(swarm.Spec{
		Torrent:  tf,
		Manifest: m,
		Pieces:   pieces,
		Dir:      s.releaseDir(m.Channel, m.Version),
		Trackers: []string{s.cfg.PublicURL + api.PathAnnounce},
	})
	if err != nil {
		return fmt.Errorf("seed %s %s: %w", m.Channel, m.Version, err)
	}
	if !t.Complete() {
		s.log.Warn("release files are incomplete on disk; seeding what verifies", "channel", m.Channel, "version", m.Version)
	}
	s.mu.Lock()
	s.live[releaseKey(m.Channel, m.Version)] = &live{rec: r, torrent: t}
	s.mu.Unlock()
	return nil
}

// unseed stops seeding a release that was not signed after all (see publish).
func (s *Seeder) unseed(key string) {
	s.mu.Lock()
	l := s.live[key]
	delete(s.live, key)
	s.mu.Unlock()
	if l != nil {
		l.torrent.Drop()
	}
}

func (s *Seeder) lookup(channel, version string) *live {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[releaseKey(channel, version)]
}

// latest returns the highest published version of a channel, "" if none.
func (s *Seeder) latest(channel string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := ""
	for _, l := range s.live {
		m := &l.rec.Manifest
		if m.Channel == channel && (best == "" || release.CompareVersions(m.Version, best) > 0) {
			best = m.Version
		}
	}
	return best
}

func (s *Seeder) releases() []api.Release {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Release, 0, len(s.live))
	for _, l := range s.live {
		if l.rec.Pending {
			continue // being published
		}
		m := &l.rec.Manifest
		st := l.torrent.Stats()
		ih, _ := swarm.ParseInfoHash(m.InfoHash)
		peers, seeders := s.tracker.Peers(ih)
		out = append(out, api.Release{
			Channel: m.Channel, Version: m.Version, InfoHash: m.InfoHash, Length: m.Length(),
			PublishedAt: l.rec.PublishedAt, OriginBytes: st.Uploaded + l.httpBytes(),
			Peers: peers, Seeders: seeders,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return release.CompareVersions(out[i].Version, out[j].Version) < 0
	})
	return out
}

func (s *Seeder) serve(ctx context.Context, ln net.Listener) error {
	ln = unsentListener{Listener: ln, log: s.log}
	defer s.close()
	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCert != "" {
			errc <- srv.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
			return
		}
		errc <- srv.Serve(ln)
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.refreshLoop(ctx)
	}()
	s.ready.Store(true)
	s.log.Info("seeder ready", "listen", ln.Addr().String(), "publicURL", s.cfg.PublicURL, "peerPort", s.swarm.Port())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve %s: %w", s.cfg.Listen, err)
	}
	s.ready.Store(false)
	close(s.stopping)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdown); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = fmt.Errorf("shut down HTTP server: %w", serr)
	}
	wg.Wait()
	s.log.Info("seeder stopped")
	return err
}

// refreshLoop keeps the online metadata fresh.
func (s *Seeder) refreshLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if changed, err := s.repo.Refresh(time.Now()); err != nil {
			s.log.Error("refresh timestamp", "err", err)
		} else if changed {
			s.log.Info("re-signed timestamp")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Seeder) close() {
	if s.swarm != nil {
		s.swarm.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// metaStore adapts the state file to trust.MetaStore.
type metaStore struct{ db *store.DB }

func (m metaStore) GetMeta(name string) ([]byte, error) {
	b, err := m.db.GetRaw(store.Meta, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("metadata %q: %w", name, trust.ErrNotFound)
	}
	return b, err
}

func (m metaStore) PutMeta(files map[string][]byte) error { return m.db.PutRaw(store.Meta, files) }

// piecesFile is the name under which the TUF client fetches a release's pieces target
// (consistent snapshots: <dir>/<sha256>.<base>).
func piecesFile(r *record) string {
	name := release.PiecesTarget(r.Manifest.Channel, r.Manifest.Version)
	return "targets/" + path.Join(path.Dir(name), verify.Sum(r.Pieces).String()+"."+path.Base(name))
}
