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
	"slices"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// Names inside InstallDir. current and previous are symbolic links, relative to InstallDir;
// on Windows, directory junctions (see install_windows.go).
const (
	releasesSub   = "releases" // releases/<version>/: installed copies
	currentLink   = "current"  // → releases/<version>
	previousLink  = "previous"
	stagingPrefix = ".staging-"
)

// install copies the release from its swarm copy into InstallDir/releases/<version>, verifying
// every file and the whole bundle against the signed hashes on the bytes it writes, then
// switches InstallDir/current to it with one rename. The old target becomes previous. With
// hooks configured, see installAs.
func (a *Agent) install(ctx context.Context, m *release.Manifest, bundle trust.Target, log *slog.Logger) error {
	return a.installAs(ctx, m, bundle, false, log)
}

// installAs is install, with the hooks: the pre-install hook runs before the switch (if it
// fails, nothing is switched); the post-install hook and the health check after it (if one
// fails, current and previous are switched back as they were, and the error wraps the
// *HookError and ErrRolledBack). An install already in InstallDir/releases/<version> is kept
// if it still verifies, so no swarm copy is needed then. rollback marks a switch back from a
// yanked release: previous is then removed rather than pointed at the yanked one.
func (a *Agent) installAs(ctx context.Context, m *release.Manifest, bundle trust.Target, rollback bool, log *slog.Logger) error {
	began := time.Now()
	dir := a.cfg.InstallDir
	releases := filepath.Join(dir, releasesSub)
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	final := filepath.Join(releases, m.Version)
	if _, err := os.Stat(final); err == nil {
		// A crash after the copy, before the switch, or a release kept as previous: keep it
		// only if it still verifies.
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
		// The copy staged during the download was checked as it was staged (see stager);
		// without one, link or copy the swarm copy, checking every byte.
		staging := a.takeStaged(m.Version)
		if staging == "" {
			if staging, err = a.stageFromSwarm(ctx, m, bundle, releases, log); err != nil {
				return err
			}
		}
		defer os.RemoveAll(staging)
		if err := os.Rename(staging, final); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	before := a.getString(keyInstalled + m.Channel)
	env := hookEnv{Channel: m.Channel, Version: m.Version, Dir: final, Previous: before}
	if err := a.hook(ctx, hookPreInstall, a.cfg.PreInstall, env, log); err != nil {
		return err
	}
	prev, _ := readLink(dir, currentLink)
	oldPrevious, _ := readLink(dir, previousLink)
	target := filepath.Join(releasesSub, m.Version)
	if err := switchLink(dir, currentLink, target); err != nil {
		return err
	}
	// Reinstalling the current version (a crash after the switch, before the state was
	// written) keeps the previous release as it was.
	previous := ""
	switch {
	case rollback:
		if err := removeLink(dir, previousLink); err != nil {
			return err
		}
	case prev != "" && prev != target:
		if err := switchLink(dir, previousLink, prev); err != nil {
			return err
		}
		previous = filepath.Base(prev)
	default:
		if l, err := readLink(dir, previousLink); err == nil {
			if _, err := os.Stat(filepath.Join(dir, l)); err == nil {
				previous = filepath.Base(l)
			}
		}
	}
	err := a.hook(ctx, hookPostInstall, a.cfg.PostInstall, env, log)
	if err == nil {
		err = a.hook(ctx, hookHealthCheck, a.cfg.HealthCheck, env, log)
	}
	if err != nil {
		// Back to the links as they were. After a crash between an earlier switch and its
		// state, current already pointed here: the state says what ran before.
		cur, old := prev, oldPrevious
		if cur == target {
			cur, old = "", ""
			if before != "" && before != m.Version {
				cur = filepath.Join(releasesSub, before)
			}
			if p := a.getString(keyPrevious + m.Channel); p != "" && p != before {
				old = filepath.Join(releasesSub, p)
			}
		}
		if rerr := errors.Join(setLink(dir, currentLink, cur), setLink(dir, previousLink, old)); rerr != nil {
			return errors.Join(err, fmt.Errorf("switch back: %w", rerr))
		}
		to := "no release"
		if cur != "" {
			to = filepath.Base(cur)
		}
		log.Warn("switched back", "to", to, "err", err)
		a.meters.rollbacks.Inc()
		return fmt.Errorf("%w (%w to %s)", err, ErrRolledBack, to)
	}
	err = a.db.Update(store.State, func(_, put func(string, any) error) error {
		if previous != "" || rollback {
			if err := put(keyPrevious+m.Channel, previous); err != nil {
				return err
			}
		}
		return put(keyInstalled+m.Channel, m.Version)
	})
	if err != nil {
		return err
	}
	a.meters.installs.Inc()
	a.meters.installTime.Observe(time.Since(began).Seconds())
	if rollback {
		a.meters.rollbacks.Inc()
	}
	a.removeOldInstalls(m.Version, previous)
	return nil
}

// hook runs one configured hook command ("" = none) for env.
func (a *Agent) hook(ctx context.Context, name, command string, env hookEnv, log *slog.Logger) error {
	if command == "" {
		return nil
	}
	start := time.Now()
	err := runHook(ctx, name, command, env, a.cfg.HookTimeout)
	if err != nil {
		log.Warn("hook failed", "hook", name, "took", time.Since(start).Round(time.Millisecond), "err", err)
		return err
	}
	log.Info("hook succeeded", "hook", name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// entries maps the release's files from the swarm copy to dst (copy) or checks them in dst.
func (a *Agent) entries(m *release.Manifest, dst string, copy bool) []verify.Entry {
	src := a.swarmRoot(m)
	es := make([]verify.Entry, len(m.Files))
	for i, f := range m.Files {
		e := verify.Entry{Path: f.Path, Length: f.Length, SHA256: f.SHA256}
		from := swarmFile(m, src, f)
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

// stageFromSwarm makes a staging copy of m in releases from its swarm copy and checks every
// file against the signed metadata: hard links where the agent links installs and can (see
// stager), a copy otherwise.
func (a *Agent) stageFromSwarm(ctx context.Context, m *release.Manifest, bundle trust.Target, releases string, log *slog.Logger) (string, error) {
	mkdir := func() (string, error) {
		dir, err := os.MkdirTemp(releases, stagingPrefix+m.Version+"-")
		if err != nil {
			return "", fmt.Errorf("install: %w", err)
		}
		return dir, nil
	}
	staging, err := mkdir()
	if err != nil {
		return "", err
	}
	copy := true
	if src := a.linkSource(m); src != "" {
		if err := linkFiles(m, src, staging, false); err != nil {
			log.Info("cannot link the install to the swarm copy; copying it", "err", err)
			os.RemoveAll(staging)
			if staging, err = mkdir(); err != nil {
				return "", err
			}
		} else {
			copy = false
		}
	}
	if err := verify.Tree(ctx, a.entries(m, staging, copy), bundle.SHA256); err != nil {
		os.RemoveAll(staging)
		return "", fmt.Errorf("stage and verify into %s: %w", releases, err)
	}
	return staging, nil
}

// tempLink is a fresh name in dir for a link that becomes dir/name (see tempLinkPattern).
func tempLink(dir, name string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return filepath.Join(dir, "."+name+"-"+hex.EncodeToString(b))
}

// tempLinkPattern matches the names tempLink gives, for filepath.Match.
func tempLinkPattern(name string) string {
	return "." + name + "-" + strings.Repeat("[0-9a-f]", 12)
}

// setLink points dir/name at target, or removes it for "".
func setLink(dir, name, target string) error {
	if target == "" {
		return removeLink(dir, name)
	}
	return switchLink(dir, name, target)
}

// removeLink removes the link dir/name (a symlink, or a junction on Windows) if it exists.
func removeLink(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// removeOldInstalls deletes installed releases beyond the --keep newest (current and previous
// are always kept), and staging directories and temporary links of crashed installs.
func (a *Agent) removeOldInstalls(current, previous string) {
	for _, name := range []string{currentLink, previousLink} {
		tmps, _ := filepath.Glob(filepath.Join(a.cfg.InstallDir, tempLinkPattern(name)))
		for _, tmp := range tmps {
			if err := os.Remove(tmp); err != nil {
				a.log.Warn("remove temporary link", "link", tmp, "err", err)
			}
		}
	}
	releases := filepath.Join(a.cfg.InstallDir, releasesSub)
	ents, err := os.ReadDir(releases)
	if err != nil {
		return
	}
	keep := map[string]bool{current: true}
	if previous != "" {
		keep[previous] = true
	}
	var others []string
	for _, e := range ents {
		if name := e.Name(); !strings.HasPrefix(name, stagingPrefix) && !keep[name] && release.ValidVersion(name) == nil {
			others = append(others, name)
		}
	}
	slices.SortFunc(others, func(x, y string) int { return release.CompareVersions(y, x) })
	for _, v := range others[:max(0, min(len(others), a.cfg.Keep-len(keep)))] {
		keep[v] = true
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, stagingPrefix) && keep[name] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(releases, name)); err != nil {
			a.log.Warn("remove old install", "dir", name, "err", err)
		}
	}
}
