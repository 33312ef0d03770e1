// Package demo runs the whole Peerpatch story on one machine, on embedded defaults: a
// temporary deployment, a seeder and N agents on loopback with capped links, a generated
// release, live progress, and a summary of time, origin bytes against peer bytes, and the
// verification of every install. It removes everything it made when it ends.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/peerpatch/peerpatch/agent"
	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/seeder"
	"github.com/peerpatch/peerpatch/seeder/adminclient"
)

// Config sets the demo's size.
type Config struct {
	Agents int   // number of agents
	Size   int64 // release size in bytes
	Rate   int64 // upload cap of the seeder and of each agent, bytes per second
	// OriginPeers caps the seeder's connections per release (0: the seeder's default).
	OriginPeers int
	// Timeout bounds the whole transfer (default 3m).
	Timeout time.Duration
	Out     io.Writer    // progress and summary
	Logger  *slog.Logger // the daemons' logs (warnings and errors are worth showing)
}

// Summary is the demo's result.
type Summary struct {
	Agents      int     `json:"agents"`
	Size        int64   `json:"release_bytes"`
	Rate        int64   `json:"link_bytes_per_second"`
	Seconds     float64 `json:"seconds"`
	BoundSecs   float64 `json:"fluid_bound_seconds"`
	OriginBytes int64   `json:"origin_bytes"`
	OriginRatio float64 `json:"origin_ratio"`
	FromPeers   int64   `json:"agent_bytes_from_peers"`
	FromOrigin  int64   `json:"agent_bytes_from_origin"`
	Installed   int     `json:"agents_installed"`
	Verified    int     `json:"installs_verified"`
}

// OK reports whether every agent installed a release identical to the published one.
func (s *Summary) OK() bool { return s.Installed == s.Agents && s.Verified == s.Agents }

const (
	channel = "stable"
	version = "1.0.0"
)

// Run runs the demo and returns its summary.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmp, err := os.MkdirTemp("", "peerpatch-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	keys := filepath.Join(tmp, "deployment")
	if err := deploy.Init(keys, time.Now()); err != nil {
		return nil, err
	}
	src := filepath.Join(tmp, "app")
	if err := generate(src, cfg.Size); err != nil {
		return nil, fmt.Errorf("generate release: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	seederURL := "http://" + addr
	errc := make(chan error, cfg.Agents+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- seeder.Run(ctx, seeder.Config{DataDir: filepath.Join(tmp, "seeder"), Listen: addr, KeysDir: keys,
			UploadRate: cfg.Rate, MaxPeersPerRelease: cfg.OriginPeers, Logger: cfg.Logger.With("node", "seeder")})
	}()
	if err := awaitHealthy(ctx, seederURL, errc); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "Peerpatch demo: a seeder and %d agents on loopback, every upload capped at %s/s, a %s release\n",
		cfg.Agents, size(cfg.Rate), size(cfg.Size))
	installDirs := make([]string, cfg.Agents)
	for i := range cfg.Agents {
		dir := filepath.Join(tmp, fmt.Sprintf("agent%d", i+1))
		installDirs[i] = filepath.Join(dir, "install")
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := agent.Run(ctx, agent.Config{
				DataDir: filepath.Join(dir, "data"), Seeders: []string{seederURL},
				TrustFile: filepath.Join(keys, deploy.RootFile), TokenFile: filepath.Join(keys, deploy.AgentTokenFile),
				Channel: channel, InstallDir: installDirs[i], Interval: time.Second, PeerListen: "127.0.0.1:0",
				UploadRate: cfg.Rate, Logger: cfg.Logger.With("node", fmt.Sprintf("agent%d", i+1)),
			})
			if err != nil {
				errc <- fmt.Errorf("agent%d: %w", i+1, err)
			}
		}()
	}

	admin, err := adminclient.New(seederURL, keys, "")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pub, err := admin.Publish(ctx, keys, channel, version, src)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "published %s %s (%d files, infohash %s)\n", channel, version, pub.Files, pub.InfoHash)

	st, err := watch(ctx, admin, cfg, pub.Length, errc)
	elapsed := time.Since(start)
	if err != nil {
		return nil, err
	}
	sum := summarize(cfg, st, elapsed, pub)
	if sum.Verified, err = verifyInstalls(src, installDirs); err != nil {
		fmt.Fprintf(cfg.Out, "verification FAILED: %v\n", err)
	}
	printSummary(cfg.Out, sum)
	return sum, nil
}

// generate writes a release directory: a large binary and a few small files.
func generate(dir string, size int64) error {
	small := map[string]string{
		"README.txt":          "Peerpatch demo release " + version + "\n",
		"config/default.conf": "channel = " + channel + "\n",
	}
	var smallBytes int64
	for name, body := range small {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
		smallBytes += int64(len(body))
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "bin", "app"))
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{'p', 'e', 'e', 'r'})
	_, err = io.CopyN(f, r, max(1, size-smallBytes))
	return errors.Join(err, f.Close())
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func awaitHealthy(ctx context.Context, base string, errc <-chan error) error {
	for range 100 {
		resp, err := http.Get(base + api.PathHealth)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-errc:
			return fmt.Errorf("seeder: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("seeder did not become healthy in 10s")
}

// watch shows progress until every agent reports the release installed.
func watch(ctx context.Context, admin *adminclient.Client, cfg Config, total int64, errc <-chan error) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	view := newProgress(cfg.Out, cfg.Agents, total)
	defer view.close()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not every agent installed the release within %s", cfg.Timeout)
		case err := <-errc:
			return nil, err
		case <-tick.C:
		}
		st, err := admin.Status(ctx)
		if err != nil {
			continue
		}
		view.update(st)
		installed := 0
		for _, a := range st.Agents {
			if a.InstalledVersion == version && a.State == api.StateInstalled {
				installed++
			}
		}
		if installed == cfg.Agents {
			view.update(st)
			return st, nil
		}
	}
}

func summarize(cfg Config, st *api.Status, elapsed time.Duration, pub *api.Published) *Summary {
	s := &Summary{Agents: cfg.Agents, Size: pub.Length, Rate: cfg.Rate, Seconds: elapsed.Seconds()}
	for _, a := range st.Agents {
		if a.InstalledVersion == version {
			s.Installed++
		}
		s.FromPeers += a.BytesFromPeers
		s.FromOrigin += a.BytesFromOrigin
	}
	for _, r := range st.Releases {
		if r.Version == version {
			s.OriginBytes = r.OriginBytes
		}
	}
	s.OriginRatio = float64(s.OriginBytes) / float64(s.Size)
	if cfg.Rate > 0 {
		// Kumar & Ross: max(F/u_s, F/d_min, N·F/(u_s+Σu_i)); downloads are uncapped here.
		f, u, n := float64(s.Size), float64(cfg.Rate), float64(cfg.Agents)
		s.BoundSecs = max(f/u, n*f/(u+n*u))
	}
	return s
}

// verifyInstalls compares every install's files with the published tree, by SHA-256.
func verifyInstalls(src string, installDirs []string) (int, error) {
	want, err := release.Build(context.Background(), src, 0)
	if err != nil {
		return 0, err
	}
	ok := 0
	var errs []error
	for _, dir := range installDirs {
		cur, err := filepath.EvalSymlinks(filepath.Join(dir, "current"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := release.Build(context.Background(), cur, want.Manifest.PieceLength)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if got.SHA256 != want.SHA256 || len(got.Manifest.Files) != len(want.Manifest.Files) {
			errs = append(errs, fmt.Errorf("%s differs from the published release", dir))
			continue
		}
		ok++
	}
	return ok, errors.Join(errs...)
}

func printSummary(w io.Writer, s *Summary) {
	fmt.Fprintf(w, "\nSummary\n")
	fmt.Fprintf(w, "  installed:     %d of %d agents on %s %s in %.1fs", s.Installed, s.Agents, channel, version, s.Seconds)
	if s.BoundSecs > 0 {
		fmt.Fprintf(w, " (physical bound %.1fs, ratio %.2f)", s.BoundSecs, s.Seconds/s.BoundSecs)
	}
	fmt.Fprintf(w, "\n  origin sent:   %s = %.2f × the release (plain HTTP to every agent: %d ×)\n", size(s.OriginBytes), s.OriginRatio, s.Agents)
	total := s.FromPeers + s.FromOrigin
	share := 0.0
	if total > 0 {
		share = 100 * float64(s.FromPeers) / float64(total)
	}
	fmt.Fprintf(w, "  agents got:    %s from peers, %s from the origin (%.0f%% from peers)\n", size(s.FromPeers), size(s.FromOrigin), share)
	verdict := "ok"
	if !s.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "  verification:  %s: %d of %d installs identical to the published release (SHA-256 of every file)\n", verdict, s.Verified, s.Agents)
}
