package lab

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// releaseName is the published directory's name: agents install it as I/current, the web seed
// serves it under <channel>/<version>/app/.
const releaseName = "app"

// tree maps each regular file's slash path under a root to its SHA-256.
type tree map[string][sha256.Size]byte

// releaseFiles is the release the lab publishes.
type releaseFiles struct {
	dir   string // the published directory, …/app
	paths []string
	want  tree
	size  int64
}

// writeRelease writes a release of size bytes under parent/app: a big random binary and a few
// small files, as a real application bundle would be.
func writeRelease(parent string, size int64, seed uint64) (*releaseFiles, error) {
	dir := filepath.Join(parent, releaseName)
	small := map[string]string{
		"README.txt":   fmt.Sprintf("Peerpatch lab release, seed %d\n", seed),
		"etc/app.conf": "channel = stable\n",
	}
	var smallBytes int64
	for p, body := range small {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(p)), strings.NewReader(body)); err != nil {
			return nil, err
		}
		smallBytes += int64(len(body))
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	big := io.LimitReader(rand.NewChaCha8(key), max(1, size-smallBytes))
	if err := writeFile(filepath.Join(dir, "bin", "app"), big); err != nil {
		return nil, err
	}
	want, err := hashTree(dir)
	if err != nil {
		return nil, err
	}
	r := &releaseFiles{dir: dir, want: want}
	for p := range want {
		r.paths = append(r.paths, releaseName+"/"+p)
	}
	sort.Strings(r.paths)
	for p := range want {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, err
		}
		r.size += fi.Size()
	}
	return r, nil
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write release: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write release: %w", err)
	}
	_, err = io.Copy(f, r)
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("write release %s: %w", path, err)
	}
	return nil
}

// hashTree hashes every regular file under root (root may be a symlink).
func hashTree(root string) (tree, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("hash tree: %w", err)
	}
	out := tree{}
	err = filepath.WalkDir(real, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		out[filepath.ToSlash(rel)] = [sha256.Size]byte(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hash tree %s: %w", root, err)
	}
	return out, nil
}

// diff describes how got differs from want ("" if identical).
func (want tree) diff(got tree) string {
	var missing, extra, changed []string
	for p, h := range want {
		g, ok := got[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case g != h:
			changed = append(changed, p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			extra = append(extra, p)
		}
	}
	var parts []string
	for _, d := range []struct {
		what  string
		paths []string
	}{{"missing", missing}, {"different", changed}, {"extra", extra}} {
		if len(d.paths) > 0 {
			sort.Strings(d.paths)
			parts = append(parts, d.what+" "+strings.Join(d.paths, ","))
		}
	}
	return strings.Join(parts, "; ")
}
