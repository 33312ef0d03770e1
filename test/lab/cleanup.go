package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A run holds an exclusive flock on <lockDir>/<id>.lock for its whole life. Everything it makes
// carries its two-hex-digit id after the prefix: namespaces pplab-<id>-<node>, links
// pplab<id><node>, the work directory <tmp>/pplab-<id>. A resource whose id has no held lock is
// a leftover of a crashed run; cleanStale removes it, so two labs can run side by side.

// runLock is a held run id.
type runLock struct {
	id string
	f  *os.File
}

func lockDir() string { return filepath.Join(os.TempDir(), Prefix+"-locks") }

// acquireRun picks a free run id and locks it.
func acquireRun() (*runLock, error) {
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	for range 64 {
		b := make([]byte, 1)
		rand.Read(b)
		id := hex.EncodeToString(b)
		f, err := os.CreateTemp(dir, ".new-")
		if err != nil {
			return nil, fmt.Errorf("create lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		// The lock file appears under its final name already locked.
		err = os.Link(f.Name(), filepath.Join(dir, id+".lock"))
		os.Remove(f.Name())
		if err == nil {
			return &runLock{id: id, f: f}, nil
		}
		f.Close()
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create lock: %w", err)
		}
	}
	return nil, errors.New("no free lab run id: 64 tries")
}

// release removes the lock file and drops the lock.
func (l *runLock) release() {
	os.Remove(filepath.Join(lockDir(), l.id+".lock"))
	l.f.Close()
}

// workDir is where run id keeps its files.
func workDir(id string) string { return filepath.Join(os.TempDir(), Prefix+"-"+id) }

// cleanStale removes what crashed runs left: processes in their namespaces, their mounts,
// namespaces, links, work directories and lock files.
func cleanStale(ctx context.Context, log *slog.Logger) error {
	ids, err := leftoverIDs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, removeStaleProbes(ctx))
	for _, id := range ids {
		l, alive := tryLock(id)
		if alive {
			log.Info("another lab run is active; leaving its resources", "run", id)
			continue
		}
		log.Warn("removing leftovers of an earlier lab run", "run", id)
		errs = append(errs, removeRun(ctx, id))
		if l != nil {
			l.release()
		}
	}
	return errors.Join(errs...)
}

// removeStaleProbes deletes the probe namespaces (pplab-probe-<pid>) of processes that are gone.
func removeStaleProbes(ctx context.Context) error {
	nss, err := command(ctx, "ip", "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range namespaces(nss) {
		pid, ok := strings.CutPrefix(ns, Prefix+"-probe-")
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		if _, err := command(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tryLock takes id's lock if its lock file exists and nobody holds it. alive reports that a
// live run holds it.
func tryLock(id string) (l *runLock, alive bool) {
	f, err := os.OpenFile(filepath.Join(lockDir(), id+".lock"), os.O_RDWR, 0)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, true
	}
	return &runLock{id: id, f: f}, false
}

// leftoverIDs lists the run ids found in namespace, link and directory names and lock files.
func leftoverIDs(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	add := func(id string) {
		if len(id) == 2 {
			if _, err := hex.DecodeString(id); err == nil {
				seen[id] = true
			}
		}
	}
	nss, err := command(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range namespaces(nss) {
		if rest, ok := strings.CutPrefix(ns, Prefix+"-"); ok && len(rest) > 2 {
			add(rest[:2])
		}
	}
	links, err := command(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range linkNames(links) {
		if rest, ok := strings.CutPrefix(l, Prefix); ok && len(rest) > 2 {
			add(rest[:2])
		}
	}
	for _, pattern := range []string{filepath.Join(os.TempDir(), Prefix+"-??"), filepath.Join(lockDir(), "??.lock")} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			add(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), Prefix+"-"), ".lock"))
		}
	}
	var ids []string
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// namespaces parses `ip netns list`: "name (id: 3)" per line.
func namespaces(out string) []string {
	var ns []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			ns = append(ns, f[0])
		}
	}
	return ns
}

// linkNames parses `ip -o link show`: "12: name@if2: <…" per line.
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// removeRun kills the processes left in run id's namespaces and removes its resources.
func removeRun(ctx context.Context, id string) error {
	var errs []error
	nss, err := command(ctx, "ip", "netns", "list")
	if err != nil {
		return err
	}
	var mine []string
	for _, ns := range namespaces(nss) {
		if strings.HasPrefix(ns, Prefix+"-"+id+"-") {
			mine = append(mine, ns)
		}
	}
	for _, ns := range mine {
		pids, _ := command(ctx, "ip", "netns", "pids", ns)
		for _, p := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if len(mine) > 0 {
		time.Sleep(200 * time.Millisecond) // let the killed processes go, so mounts are free
	}
	errs = append(errs, unmountUnder(ctx, workDir(id)))
	for _, ns := range mine {
		if _, err := command(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := command(ctx, "ip", "-o", "link", "show")
	if err == nil {
		for _, l := range linkNames(links) {
			if strings.HasPrefix(l, Prefix+id) {
				if _, err := command(ctx, "ip", "link", "del", l); err != nil && linkExists(l) {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := os.RemoveAll(workDir(id)); err != nil {
		errs = append(errs, fmt.Errorf("remove work directory: %w", err))
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(ctx context.Context, dir string) error {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 1 && strings.HasPrefix(fs[1], dir+"/") {
			points = append(points, fs[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if _, err := command(ctx, "umount", p); err != nil {
			if _, lerr := command(ctx, "umount", "-l", p); lerr != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// linkExists reports whether the host has a link called name (a veth goes away by itself,
// shortly after its namespace).
func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}
