package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback has the kernel begin writing n bytes of f at off to disk, without waiting
// for it. The staged copy is synced before the install renames it: written back as it is
// staged, that sync has little left to do when the download ends.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE) // advice: an error changes nothing
}
