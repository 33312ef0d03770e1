package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Names inside InstallDir.
const (
	releasesSub   = "releases" // releases/<version>/: installed copies
	currentLink   = "current"  // → releases/<version>
	previousLink  = "previous"
	stagingPrefix = ".staging-"
)

// install copies the release from its swarm copy into InstallDir/releases/<version>, verifying
// every file and the whole bundle against the signed hashes on the bytes it writes, then
// switches InstallDir/current to it with one rename. The old target becomes previous.
func (a *Agent) install(ctx context.Context, m *release.Manifest, bundle trust.Target, log *slog.Logger) error {
	dir := a.cfg.InstallDir
	releases := filepath.Join(dir, releasesSub)
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	final := filepath.Join(releases, m.Version)
	if _, err := os.Stat(final); err == nil {
		// A crash after the copy, before the switch: keep it only if it still verifies.
		err := verify.Tree(ctx, a.entries(m, final, false), bundle.SHA256)
		if err != nil && !errors.Is(err, verify.ErrMismatch) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check earlier install %s: %w", final, err)
		}
		if err != nil {
			log.Warn("discarding unverifiable earlier install", "dir", final, "err", err)
			if err := os.RemoveAll(final); err != nil {
				return fmt.Errorf("install: %w", err)
			}
		}
	}
	if _, err := os.Stat(final); errors.Is(err, fs.ErrNotExist) {
		staging, err := os.MkdirTemp(releases, stagingPrefix+m.Version+"-")
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		defer os.RemoveAll(staging)
		if err := verify.Tree(ctx, a.entries(m, staging, true), bundle.SHA256); err != nil {
			return fmt.Errorf("copy and verify into %s: %w", releases, err)
		}
		if err := os.Rename(staging, final); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	prev, _ := os.Readlink(filepath.Join(dir, currentLink))
	target := filepath.Join(releasesSub, m.Version)
	if err := switchLink(dir, currentLink, target); err != nil {
		return err
	}
	// Reinstalling the current version (a crash after the switch, before the state was
	// written) keeps the previous release as it was.
	previous := ""
	if prev != "" && prev != target {
		if err := switchLink(dir, previousLink, prev); err != nil {
			return err
		}
		previous = filepath.Base(prev)
	} else if l, err := os.Readlink(filepath.Join(dir, previousLink)); err == nil {
		if _, err := os.Stat(filepath.Join(dir, l)); err == nil {
			previous = filepath.Base(l)
		}
	}
	err := a.db.Update(store.State, func(_, put func(string, any) error) error {
		if previous != "" {
			if err := put(keyPrevious+m.Channel, previous); err != nil {
				return err
			}
		}
		return put(keyInstalled+m.Channel, m.Version)
	})
	if err != nil {
		return err
	}
	a.removeOldInstalls(m.Version, previous)
	return nil
}

// entries maps the release's files from the swarm copy to dst (copy) or checks them in dst.
func (a *Agent) entries(m *release.Manifest, dst string, copy bool) []verify.Entry {
	src := filepath.Join(a.swarmPath(m), m.Name)
	es := make([]verify.Entry, len(m.Files))
	for i, f := range m.Files {
		e := verify.Entry{Path: f.Path, Length: f.Length, SHA256: f.SHA256}
		from := src
		if m.Dir {
			from = filepath.Join(src, filepath.FromSlash(f.Path))
		}
		to := filepath.Join(dst, filepath.FromSlash(f.Path))
		if copy {
			e.Src, e.Dst = from, to
		} else {
			e.Src = to
		}
		es[i] = e
	}
	return es
}

// switchLink points dir/name at target atomically: a new symlink renamed over the old one.
func switchLink(dir, name, target string) error {
	b := make([]byte, 6)
	rand.Read(b)
	tmp := filepath.Join(dir, "."+name+"-"+hex.EncodeToString(b))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	defer d.Close()
	return d.Sync()
}

// removeOldInstalls deletes installed releases other than current and previous, and staging
// leftovers of crashed installs.
func (a *Agent) removeOldInstalls(current, previous string) {
	releases := filepath.Join(a.cfg.InstallDir, releasesSub)
	ents, err := os.ReadDir(releases)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, stagingPrefix) && (name == current || name == previous) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(releases, name)); err != nil {
			a.log.Warn("remove old install", "dir", name, "err", err)
		}
	}
}
