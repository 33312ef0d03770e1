package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// corruptSwarmCopy flips one byte in every `every` bytes of every file under dir, in place, and
// sets each file's modification time back, as a failing disk or a peer that lies would: an
// agent stops seeding a swarm copy whose files it sees modified after it verified them.
func corruptSwarmCopy(dir string, every int64) (int64, error) {
	var flipped int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fh, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer fh.Close()
		fi, err := fh.Stat()
		if err != nil {
			return err
		}
		b := make([]byte, 1)
		for off := min(int64(1000), fi.Size()/2); off < fi.Size(); off += every {
			if _, err := fh.ReadAt(b, off); err != nil {
				return err
			}
			b[0] ^= 0xff
			if _, err := fh.WriteAt(b, off); err != nil {
				return err
			}
			flipped++
		}
		if err := fh.Sync(); err != nil {
			return err
		}
		return os.Chtimes(p, time.Time{}, fi.ModTime())
	})
	if err != nil {
		return flipped, fmt.Errorf("corrupt swarm copy: %w", err)
	}
	return flipped, nil
}
