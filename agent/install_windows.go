//go:build windows

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows, InstallDir\current and InstallDir\previous are directory junctions (NTFS mount
// points) rather than symbolic links: creating a symbolic link needs a privilege that a
// workstation's accounts seldom have, a junction needs none, and every program follows a
// junction to a local directory as it would a directory.
//
// The unix switch (a new link renamed over the old one) does not carry over: a junction is a
// directory, and MoveFileEx with MOVEFILE_REPLACE_EXISTING (os.Rename) refuses to replace a
// directory (ERROR_ACCESS_DENIED), junction or not. Deleting the old junction and renaming a
// new one into place would leave a moment, and after a crash a state, without current.
// Instead, switchLink rewrites the reparse point of the existing junction in place: one
// FSCTL_SET_REPARSE_POINT on InstallDir\current, which NTFS documents as setting a new
// reparse point "or modifying an existing one" (same tag), and applies as one journaled
// metadata change. A reader, and the disk after a crash, sees the old target or the new one,
// never none: the unix crash-recovery semantics of installAs hold unchanged. Only the first
// switch creates the junction: under a temporary name, then renamed into place (nothing is
// replaced then).
//
// A junction holds an absolute path, so InstallDir must be on a local NTFS volume (not a
// network share) and must not be moved; readLink gives the target relative to InstallDir,
// as a symbolic link holds it on unix.

// switchLink points dir\name at target (relative to dir): see above.
func switchLink(dir, name, target string) error {
	abs, err := filepath.Abs(filepath.Join(dir, target))
	if err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	data, err := mountPointReparseData(abs)
	if err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	link := filepath.Join(dir, name)
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createJunction(dir, name, data)
	case err != nil:
		return fmt.Errorf("switch %s: %w", name, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		// A symbolic link made by an older agent: replaced once, not atomically.
		if err := os.Remove(link); err != nil {
			return fmt.Errorf("switch %s: replace symbolic link: %w", name, err)
		}
		return createJunction(dir, name, data)
	}
	// An existing junction: retarget it in place. (On a directory that is not a junction
	// this fails, ERROR_DIR_NOT_EMPTY or ERROR_REPARSE_TAG_MISMATCH: nothing is changed.)
	if err := setReparsePoint(link, data); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return nil
}

// createJunction makes dir\name a new junction with reparse data: made under a temporary
// name, then renamed into place, so dir\name is never an empty directory.
func createJunction(dir, name string, data []byte) error {
	tmp := tempLink(dir, name)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := setReparsePoint(tmp, data); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp) // removes the junction, not its target
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return nil
}

// setReparsePoint sets (or replaces, if it has one of the same tag) the reparse point of the
// directory path, without following an existing one.
func setReparsePoint(path string, data []byte) error {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	h, err := windows.CreateFile(p, windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer windows.CloseHandle(h)
	var n uint32
	if err := windows.DeviceIoControl(h, windows.FSCTL_SET_REPARSE_POINT, unsafe.SliceData(data), uint32(len(data)), nil, 0, &n, nil); err != nil {
		return fmt.Errorf("set junction %s: %w", path, err)
	}
	// Best effort: ask NTFS to write the change through now. NTFS journals it either way, so
	// a crash leaves the old target or the new one.
	windows.FlushFileBuffers(h)
	return nil
}

// readLink is the target of the junction (or symbolic link) dir\name, relative to dir when it
// lies inside it.
func readLink(dir, name string) (string, error) {
	t, err := os.Readlink(filepath.Join(dir, name))
	if err != nil || !filepath.IsAbs(t) {
		return t, err
	}
	base, err := filepath.Abs(dir)
	if err != nil {
		return t, nil
	}
	if rel, err := filepath.Rel(base, t); err == nil && rel != ".." && !strings.HasPrefix(rel, `..\`) {
		return rel, nil
	}
	return t, nil
}

// canLink: installs are copies of the swarm copy on Windows, where linking them (and renaming
// a directory of links whose other names the swarm storage holds open) has not been tried.
const canLink = false
