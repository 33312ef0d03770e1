//go:build !windows

package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// canLink: installs may be hard links to the swarm copy (see stager).
const canLink = true

// switchLink points dir/name at target (relative to dir) atomically: a new symlink renamed
// over the old one, then dir synced, so that a crash leaves the old link or the new one.
func switchLink(dir, name, target string) error {
	tmp := tempLink(dir, name)
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

// readLink is the target of the link dir/name, relative to dir.
func readLink(dir, name string) (string, error) { return os.Readlink(filepath.Join(dir, name)) }
