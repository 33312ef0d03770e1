// Package swarm runs Peerpatch's private BitTorrent swarm. It is the only package that imports
// github.com/anacrolix/torrent: the client configuration for an enterprise swarm (no DHT, no PEX,
// no UPnP, no WebTorrent, no uTP; peers only from Peerpatch's tracker), storage that counts a
// piece only when its SHA-256 matches the signed metadata, rate limits, web seeds held back as a
// fallback, the announce loop, and the tracker's peer store.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// Sentinel errors.
var (
	// ErrNotRegistered: the library tried to open storage for a torrent Peerpatch did not add.
	ErrNotRegistered = errors.New("torrent not registered with signed piece hashes")
	// ErrMetadataMismatch: a torrent disagrees with the signed release metadata.
	ErrMetadataMismatch = errors.New("torrent disagrees with signed metadata")
	// ErrStalled: a download made no progress for the stall timeout.
	ErrStalled = errors.New("download stalled")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("swarm client closed")
)

// Peer ID prefixes (Azureus style). The origin's prefix lets agents count bytes from the origin
// apart from bytes from their neighbours; it is used for statistics only, never for trust.
const (
	OriginPeerIDPrefix = "-PPO001-"
	AgentPeerIDPrefix  = "-PPA001-"
)

// Config configures a swarm client.
type Config struct {
	// keepCompletePeers has the library keep connections between complete peers, leaving them
	// to the sweep (see sweepLoop); for tests.
	keepCompletePeers bool
	// DataDir holds piece completion state; torrent data goes where Add says.
	DataDir string
	// ListenAddr is the host:port for peer connections; port 0 picks one.
	ListenAddr string
	// Origin marks the seeder's client (peer ID prefix, connection cap).
	Origin bool
	// UploadRate and DownloadRate cap the client's peer traffic in bytes per second; 0 is
	// unlimited. DownloadRate also caps web-seed reads.
	UploadRate, DownloadRate int64
	// MaxConnsPerTorrent caps established peer connections per torrent (default
	// DefaultMaxConns); an agent in a swarm of exactly one peer more gets one more connection,
	// a full mesh (see Torrent.meshCap).
	MaxConnsPerTorrent int
	// NoPeers keeps the client out of the swarm: it neither accepts, dials nor uploads to
	// peers, and does not announce. The origin serving shares keeps its torrents only to read
	// pieces.
	NoPeers bool
	// PersistCompletion keeps piece completion in DataDir/pieces.db (bbolt), so a restarted
	// client resumes without fetching verified pieces again. Without it, completion is taken
	// from complete files on disk (the seeder's case: it holds only complete releases).
	PersistCompletion bool
	// Transport carries tracker and web-seed requests: it adds the deployment's credential to
	// requests bound for a seeder (see api.Auth) and verifies TLS against the deployment's
	// roots. Nil is http.DefaultTransport.
	Transport http.RoundTripper
	// RestrictPeers makes the client accept and dial only peers whose address a tracker
	// handed out, AllowPeer approves or CheckPeer confirms: only enrolled agents announce,
	// so only they get in.
	RestrictPeers bool
	// AllowPeer approves peer addresses besides those the trackers handed out: the seeder
	// approves what its own tracker knows.
	AllowPeer func(netip.Addr) bool
	// CheckPeer asks a tracker whether an unknown caller's address belongs to the fleet. It
	// runs in the background (see allowlist); agents set it, so a newcomer gets in at once
	// rather than at the agent's next announce.
	CheckPeer CheckFunc
	// Logger receives the client's logs.
	Logger *slog.Logger
}

// DefaultMaxConns is the default cap on a client's peer connections per torrent. A peer's
// upload is split among the peers it serves, and every connection costs CPU in the library's
// request bookkeeping: with fewer, each piece reaches a neighbour sooner and an agent spends
// less. In the lab at N=16 (256 MiB, 64 KiB requests, interleaved runs) 6 connections gave
// 1.49-1.66 × T_min at 2.3-2.6 CPU s per agent, 8 gave 1.66-1.72 at 2.5-2.6, and 50 (a full
// mesh) 1.93-2.14 at 3.0-3.3.
const DefaultMaxConns = 6

func (c *Config) setDefaults() {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:0"
	}
	if c.MaxConnsPerTorrent <= 0 {
		c.MaxConnsPerTorrent = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Transport == nil {
		c.Transport = http.DefaultTransport
	}
}

// CheckFunc reports whether a tracker knows addr as a member of the fleet, and the ports it
// announced (none if the tracker does not say).
type CheckFunc func(ctx context.Context, addr netip.Addr) (ports []uint16, known bool, err error)

// Client is a swarm client: it seeds and downloads the torrents added to it.
type Client struct {
	cfg     Config
	log     *slog.Logger
	cl      *torrent.Client
	storage *verifyingStorage
	peerID  [20]byte
	http    *http.Client // announces and web seeds

	mu       sync.Mutex
	closed   bool
	torrents map[[20]byte]*Torrent
	origins  map[*torrent.Peer]bool // connections to the origin, for byte accounting

	upload   *rate.Limiter // nil when unlimited
	download *rate.Limiter // nil when unlimited; also paces origin shares
	peers    *allowlist    // who may connect: tracker-known peers (RestrictPeers), never banned ones

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a swarm client. Close it when done.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	host, portStr, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("swarm listen address %q: %w", cfg.ListenAddr, err)
	}
	if _, err := strconv.ParseUint(portStr, 10, 16); err != nil {
		return nil, fmt.Errorf("swarm listen address %q: bad port: %w", cfg.ListenAddr, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("swarm data directory: %w", err)
	}
	var completion storage.PieceCompletion
	if cfg.PersistCompletion {
		if completion, err = openCompletion(cfg.DataDir); err != nil {
			return nil, err
		}
	} else {
		completion = storage.NewMapPieceCompletion()
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		storage:  newVerifyingStorage(cfg.DataDir, completion, !cfg.PersistCompletion, cfg.Logger),
		torrents: make(map[[20]byte]*Torrent),
		origins:  make(map[*torrent.Peer]bool),
		http:     &http.Client{Transport: cfg.Transport},
	}
	prefix := AgentPeerIDPrefix
	if cfg.Origin {
		prefix = OriginPeerIDPrefix
	}
	c.peerID = newPeerID(prefix)

	tc := torrent.NewDefaultClientConfig()
	tc.DataDir = cfg.DataDir
	tc.DefaultStorage = c.storage
	tc.PeerID = string(c.peerID[:])
	tc.SetListenAddr(cfg.ListenAddr)
	if ip := net.ParseIP(host); ip != nil {
		// A literal address binds one family only.
		tc.DisableIPv6 = ip.To4() != nil
		tc.DisableIPv4 = ip.To4() == nil
	}
	tc.Seed = true
	tc.NoDHT = true
	tc.DisablePEX = true
	tc.NoDefaultPortForwarding = true
	tc.DisableWebtorrent = true
	tc.DisableUTP = true
	tc.DisableTrackers = true // Peerpatch announces itself; see announce.go.
	tc.MaxUnverifiedBytes = 0 // the default limit starves uploads among agents early on
	// A request may move to another peer only once it is this old: with none, requests moved
	// between peers within a round trip under load and each agent received 6-15 MiB of a
	// 256 MiB release twice (lab, N=8); with 1 s, 0.1-3 MiB, and the makespan went from
	// 1.46-1.49 to 1.29-1.40 × T_min (at N=16 later, 300 ms gave 1.18 and 1.17 against 1.16 and
	// 1.21). A peer that went away loses its requests at once anyway.
	tc.StealRequestGrace = time.Second
	tc.EstablishedConnsPerTorrent = cfg.MaxConnsPerTorrent
	// Two agents that learn of each other at once dial each other at once; the library keeps
	// both connections unless told otherwise, so a connection cap counts some neighbours twice.
	// In the lab at N=8 with 6 connections, agents had 3 to 5 distinct neighbours of 7; with
	// this, 6 (both ends keep the connection the peer with the higher ID dialled).
	tc.DropDuplicatePeerIds = true
	tc.DropMutuallyCompletePeers = !cfg.keepCompletePeers
	if cfg.NoPeers {
		tc.NoUpload = true
		tc.AcceptPeerConnections = false
		tc.DialForPeerConns = false
	}
	tc.Slogger = slog.New(atMostWarn{cfg.Logger.Handler()}).With("component", "bittorrent")
	if cfg.UploadRate > 0 {
		c.upload = rate.NewLimiter(rate.Limit(cfg.UploadRate), burst(cfg.UploadRate))
		tc.UploadRateLimiter = c.upload
	}
	if cfg.DownloadRate > 0 {
		c.download = rate.NewLimiter(rate.Limit(cfg.DownloadRate), burst(cfg.DownloadRate))
		tc.DownloadRateLimiter = c.download
	}
	c.peers = newAllowlist(cfg.RestrictPeers, cfg.AllowPeer, cfg.CheckPeer, cfg.Logger)
	c.peers.dial = c.dialBack
	tc.IPBlocklist = c.peers
	tc.Callbacks.CompletedHandshake = c.onHandshake
	tc.Callbacks.ReadExtendedHandshake = limitRequests
	tc.Callbacks.PeerConnClosed = c.onConnClosed
	tc.Callbacks.ReceivedUsefulData = append(tc.Callbacks.ReceivedUsefulData, c.onUsefulData)

	cl, err := torrent.NewClient(tc)
	if err != nil {
		completion.Close()
		return nil, fmt.Errorf("start swarm client on %s: %w", cfg.ListenAddr, err)
	}
	c.cl = cl
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.RestrictPeers && cfg.CheckPeer != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.peers.run(c.ctx)
		}()
	}
	return c, nil
}

// burst sizes a limiter's bucket: at least one block (chunkSize; the library refuses a peer's
// request longer than its upload burst) and the 64 KiB it reads at once, at most a tenth of a
// second of traffic above that.
func burst(rate int64) int {
	return int(max(chunkSize, min(rate/10, math.MaxInt32)))
}

// UploadLimiter is the client's upload rate limiter, nil when unlimited. The seeder's web seed
// shares it, so peers and web-seed readers together stay within one upload budget.
func (c *Client) UploadLimiter() *rate.Limiter { return c.upload }

// Port is the port the client accepts peer connections on.
func (c *Client) Port() int { return c.cl.LocalPort() }

// Close drops every torrent and stops the client.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.cl.Close()
	<-c.cl.Closed()
	return c.storage.Close()
}

// peerRequests is the most block requests a client keeps outstanding with one peer. An
// anacrolix peer reads and sends the requests it holds in no particular order (a Go map), so a
// deep queue of requests spanning several pieces completes all of them late, at once, and a
// piece spreads further only once it is whole. In the lab at N=8 (64 KiB blocks, 6 connections),
// interleaved quick runs gave 1.25-1.32 × T_min with the library's depth (up to hundreds), 1.31
// with 16, 1.22-1.24 with 8, 1.17-1.19 with 4, 1.15-1.16 with 3, 1.15-1.21 with 2 and 1.18-1.20
// with 1; with 128 KiB blocks, 2 gave 1.14-1.15 and 3 gave 1.15-1.17, and at N=16 3 gave 1.18
// and 1.19, 4 gave 1.22 and 1.22, against 1.16 and 1.17 with 2. With 256 KiB blocks (chunkSize)
// one request carries as much as two did: see chunkSize for the figures. One block in flight
// carries 256 KiB per round trip: 12 MiB/s a connection at 20 ms.
const peerRequests = 1

// limitRequests caps what a peer says it accepts (its reqq) at peerRequests: the library sends
// a peer at most that many requests at once, and reads the value after this callback.
func limitRequests(_ *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
	if m.Reqq == 0 || m.Reqq > peerRequests {
		m.Reqq = peerRequests
	}
}

func (c *Client) onHandshake(pc *torrent.PeerConn, _ torrent.InfoHash) {
	if string(pc.PeerID[:len(OriginPeerIDPrefix)]) != OriginPeerIDPrefix {
		return
	}
	c.mu.Lock()
	c.origins[&pc.Peer] = true
	c.mu.Unlock()
}

// dialBack calls a newcomer the tracker just confirmed (see allowlist) for every torrent: its
// first call was refused, and it would call again only after its next announce.
func (c *Client) dialBack(peer netip.AddrPort) {
	addr := &net.TCPAddr{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
	for _, t := range c.torrentList() {
		t.t.AddPeers([]torrent.PeerInfo{{Addr: addr, Source: torrent.PeerSourceTracker}})
	}
}

// torrentList returns the client's torrents, taken under its lock.
func (c *Client) torrentList() []*Torrent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.torrents))
}

func (c *Client) onConnClosed(pc *torrent.PeerConn) {
	c.mu.Lock()
	delete(c.origins, &pc.Peer)
	c.mu.Unlock()
}

func (c *Client) onUsefulData(ev torrent.ReceivedUsefulDataEvent) {
	n := int64(len(ev.Message.Piece))
	c.mu.Lock()
	t := c.torrents[ev.Peer.Torrent().InfoHash()]
	origin := c.origins[ev.Peer]
	c.mu.Unlock()
	if t == nil {
		return
	}
	if origin {
		t.fromOrigin.Add(n)
		return
	}
	t.fromPeers.Add(n)
	if addr, ok := peerAddr(ev.Peer); ok {
		t.blame.record(int(ev.Message.Index), int64(ev.Message.Begin), addr, len(ev.Message.Piece))
	}
}

// ban refuses the address of a peer that sent corrupt blocks from now on and drops its
// connections (bans are per IP address: see SECURITY.md).
func (c *Client) ban(peer netip.AddrPort, t *Torrent, piece int) {
	ip := peer.Addr()
	c.log.Warn("banned a peer that sent corrupt data", "peer", peer.String(), "infohash", t.m.InfoHash, "piece", piece)
	c.peers.ban(ip)
	for _, t := range c.torrentList() {
		for _, pc := range t.t.PeerConns() {
			if addr, ok := peerAddr(&pc.Peer); ok && addr.Addr() == ip {
				pc.Close()
			}
		}
	}
}

// atMostWarn logs the swarm library's records at warning level at most: its errors concern
// single peers or chunks, and Peerpatch reports what matters to an operator itself (a full
// disk, a stalled download), once.
type atMostWarn struct{ h slog.Handler }

func (a atMostWarn) Enabled(ctx context.Context, l slog.Level) bool {
	return a.h.Enabled(ctx, min(l, slog.LevelWarn))
}

func (a atMostWarn) Handle(ctx context.Context, r slog.Record) error {
	r.Level = min(r.Level, slog.LevelWarn)
	return a.h.Handle(ctx, r)
}

func (a atMostWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return atMostWarn{a.h.WithAttrs(attrs)}
}
func (a atMostWarn) WithGroup(name string) slog.Handler { return atMostWarn{a.h.WithGroup(name)} }
