package lab

import (
	"fmt"
	"os"
	"path/filepath"
)

// corruptSwarmCopy flips one byte in every `every` bytes of every file under dir, in place.
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
		return fh.Sync()
	})
	if err != nil {
		return flipped, fmt.Errorf("corrupt swarm copy: %w", err)
	}
	return flipped, nil
}
