package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/verify"
)

// stager builds the install copy of a release while it downloads, and checks that copy as it
// grows: a goroutine reads every staged piece back and compares its SHA-256 with the signed
// one, as soon as the piece is staged (a linked piece is compared with the verified bytes
// instead: see below). The install then only syncs and renames the copy.
// Writing the copy at install was the slow part of an install (8 to 10 s in the fleet lab when
// 16 agents installed at once), and checking it at install still took 1.2 to 1.6 s at N=8; both
// now overlap the download. The check is per piece, not per file, because pieces arrive in any
// order: a file's SHA-256 can only be computed in order, so it waited for the first piece
// missing and did most of its hashing after the last piece had arrived (the install waited 0.4
// to 0.9 s per agent for it at N=16 in the fleet lab, of a 15-16 s makespan, where 16 agents
// shared 2 cores). The signed piece digests bind the bytes as the file digests do: both are
// signed targets of the release (release.PiecesTarget), and a piece counts in the swarm only
// once its SHA-256 matches. The bundle's digest is not computed again either: hashing every
// byte a second time cost each agent 0.2 CPU s per 256 MiB.
//
// Where it can, the stager links instead of copying: every staged file is a hard link to its
// swarm copy, so the bytes are written once and stored once, and a verified piece is staged by
// noting it. Writing a second copy cost each agent about a sixth of its CPU (in the fleet lab
// at N=16, interleaved runs: 3.1-4.1 CPU s per 256 MiB linked, 4.2-5.3 copied) and doubled
// the disk used. A linked piece is read back and compared with the bytes the swarm has just
// checked against the same signed digest and written into that very file: hashing it again was
// half of the SHA-256 an agent did and about a seventh of its CPU (a profile of 16 agents at
// N=16), and the comparison still finds bytes on disk other than the verified ones. Where the
// install and data directories are on different filesystems, or --copy-install is set, each
// verified piece is written into a separate copy instead.
//
// A staging copy that fails the check (or is incomplete, after a restart) is dropped and the
// install links or copies from the swarm copy, checking every file against its signed digest.
type stager struct {
	dir     string // releases/.staging-<version>-*
	m       *release.Manifest
	digests []verify.Digest // the signed SHA-256 of every piece
	files   []*os.File      // in manifest order
	linked  bool            // files are hard links to the swarm copy's: staging writes nothing
	// linkErr says why the copy is not linked when the stager was asked to link it.
	linkErr error

	mu      sync.Mutex
	staged  []bool // per piece
	scratch []byte // a linked piece read back (see piece)
	n       int    // pieces staged
	err     error  // the first failure; staging stopped then

	toCheck chan int      // pieces staged, for the check (room for every piece: never blocks)
	stop    chan struct{} // closed when staging stops early
	stopped sync.Once
	checked chan error // the check's outcome, sent once
}

// newStager creates the staging directory in releases and every file of m in it, and starts
// checking what is staged against digests, the signed SHA-256 of each of m's pieces. With src,
// the swarm copy's root (see swarmFile), every staged file is a hard link to its swarm file
// (created at its final size if the download has not yet); if that fails (linkErr says why),
// or without src, every file is a new one at its final size (sparse until written).
func newStager(releases string, m *release.Manifest, digests []verify.Digest, src string) (*stager, error) {
	if len(digests) != m.NumPieces() {
		return nil, fmt.Errorf("stage %s: %d piece digests for %d pieces", m.Version, len(digests), m.NumPieces())
	}
	var linkErr error
	if src != "" {
		s, err := openStager(releases, m, digests, src)
		if err == nil {
			return s, nil
		}
		linkErr = err
	}
	s, err := openStager(releases, m, digests, "")
	if err != nil {
		return nil, err
	}
	s.linkErr = linkErr
	return s, nil
}

func openStager(releases string, m *release.Manifest, digests []verify.Digest, src string) (_ *stager, err error) {
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return nil, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	dir, err := os.MkdirTemp(releases, stagingPrefix+m.Version+"-")
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", m.Version, err)
	}
	s := &stager{
		dir: dir, m: m, digests: digests, staged: make([]bool, m.NumPieces()), linked: src != "",
		toCheck: make(chan int, m.NumPieces()), stop: make(chan struct{}), checked: make(chan error, 1),
	}
	defer func() {
		if err != nil {
			s.discard()
		}
	}()
	if s.linked {
		s.scratch = make([]byte, m.PieceLength)
		if err := linkFiles(m, src, dir, true); err != nil {
			return nil, err
		}
	}
	for _, f := range m.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		var fh *os.File
		if s.linked {
			fh, err = os.Open(p)
		} else {
			fh, err = createSized(p, f.Length, os.O_EXCL)
		}
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", m.Version, err)
		}
		s.files = append(s.files, fh)
	}
	go func(files []*os.File) { s.checked <- s.check(files) }(s.files)
	return s, nil
}

// createSized opens the file p for writing (creating it and its directory, with flag added to
// the open's) and extends it to size if it is shorter.
func createSized(p string, size int64, flag int) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|flag, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := fh.Stat()
	if err == nil && fi.Size() < size {
		err = fh.Truncate(size)
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	return fh, nil
}

// linkFiles makes every file of m under dst a hard link to its swarm file under src. With
// create, a swarm file the download has not written yet is created at its final size (the
// swarm storage writes in place); without, a missing one is an error.
func linkFiles(m *release.Manifest, src, dst string, create bool) error {
	for _, f := range m.Files {
		from := swarmFile(m, src, f)
		if create {
			fh, err := createSized(from, f.Length, 0)
			if err != nil {
				return fmt.Errorf("link %s: %w", m.Version, err)
			}
			fh.Close()
		}
		to := filepath.Join(dst, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return fmt.Errorf("link %s: %w", m.Version, err)
		}
		if err := os.Link(from, to); err != nil {
			return fmt.Errorf("link %s: %w", m.Version, err)
		}
	}
	return nil
}

// swarmFile is where file f of m is in the swarm copy whose root is src (the swarm directory
// joined with m.Name): src itself for a single-file release.
func swarmFile(m *release.Manifest, src string, f release.File) string {
	if !m.Dir {
		return src
	}
	return filepath.Join(src, filepath.FromSlash(f.Path))
}

// piece stages verified piece i: it writes data into the staging files, or, linked, reads the
// piece back from them and compares it with data. A failure (a full disk, or bytes other than
// data) stops staging and removes the copy at once, so it takes no space from the download.
func (s *stager) piece(i int, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || i < 0 || i >= len(s.staged) || s.staged[i] || int64(len(data)) != s.m.PieceSize(i) {
		return
	}
	err := s.m.Spans(i, func(k int, pieceOff, fileOff, n int64) error {
		if s.linked {
			got := s.scratch[:n]
			if _, err := s.files[k].ReadAt(got, fileOff); err != nil {
				return fmt.Errorf("check staged %q: %w", s.m.Files[k].Path, err)
			}
			if !bytes.Equal(got, data[pieceOff:pieceOff+n]) {
				return fmt.Errorf("staged piece %d (of %s) differs from the verified bytes: %w",
					i, strings.Join(s.m.FilesOfPiece(i), ", "), verify.ErrMismatch)
			}
			startWriteback(s.files[k], fileOff, n)
			return nil
		}
		if _, err := s.files[k].WriteAt(data[pieceOff:pieceOff+n], fileOff); err != nil {
			return err
		}
		startWriteback(s.files[k], fileOff, n)
		return nil
	})
	if err != nil {
		s.failLocked(err)
		return
	}
	s.staged[i] = true
	s.n++
	s.toCheck <- i
}

// check reads every copied piece back, as it is staged, and compares its SHA-256 with the signed
// one (linked pieces were compared as they were staged); then every file's size with the signed
// length. It returns nil if all match, the first mismatch (matching verify.ErrMismatch) or read
// error otherwise, or an error if staging stops first.
func (s *stager) check(files []*os.File) error {
	var buf []byte
	if !s.linked {
		buf = make([]byte, s.m.PieceLength)
	}
	for range len(s.digests) {
		var i int
		select {
		case i = <-s.toCheck:
		case <-s.stop:
			return errors.New("staging stopped")
		}
		if s.linked {
			continue // compared as it was staged (see piece)
		}
		data := buf[:s.m.PieceSize(i)]
		err := s.m.Spans(i, func(k int, pieceOff, fileOff, n int64) error {
			if _, err := files[k].ReadAt(data[pieceOff:pieceOff+n], fileOff); err != nil {
				return fmt.Errorf("check staged %q: %w", s.m.Files[k].Path, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if got := verify.Sum(data); got != s.digests[i] {
			return fmt.Errorf("staged piece %d (of %s): SHA-256 %s, signed %s: %w",
				i, strings.Join(s.m.FilesOfPiece(i), ", "), got, s.digests[i], verify.ErrMismatch)
		}
	}
	for k, f := range files {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("check staged %q: %w", s.m.Files[k].Path, err)
		}
		if fi.Size() != s.m.Files[k].Length {
			return fmt.Errorf("staged %q: %d bytes, signed %d: %w", s.m.Files[k].Path, fi.Size(), s.m.Files[k].Length, verify.ErrMismatch)
		}
	}
	return nil
}

// finish ends staging. If every piece was staged and the check passed, it syncs the files to
// disk and returns the staging directory, for the install to rename; otherwise it removes the
// copy and returns "" and why.
func (s *stager) finish() (string, error) {
	s.mu.Lock()
	if s.err == nil && s.n != len(s.staged) {
		s.failLocked(fmt.Errorf("staged %d of %d pieces", s.n, len(s.staged)))
	}
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	// Every piece is staged: the check ends once it has read the rest.
	if err := <-s.checked; err != nil {
		s.fail(fmt.Errorf("staged copy failed its check: %w", err))
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Sync(), f.Close())
	}
	s.files = nil
	if err := errors.Join(errs...); err != nil {
		s.failLocked(err)
		return "", err
	}
	s.err = errors.New("staging finished")
	return s.dir, nil
}

// discard stops staging and removes the copy.
func (s *stager) discard() { s.fail(errors.New("staging discarded")) }

func (s *stager) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

// failLocked stops staging (keeping the first error), stops the check and removes the copy.
func (s *stager) failLocked(err error) {
	if s.err == nil {
		s.err = err
	}
	s.stopped.Do(func() { close(s.stop) })
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
	os.RemoveAll(s.dir)
}
