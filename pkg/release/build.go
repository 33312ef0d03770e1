package release

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

// maxBuffered bounds the memory held in piece buffers by Build.
const maxBuffered = 256 << 20

// Layout is everything Build computes from the bytes on disk, in one read of every file.
type Layout struct {
	Manifest     Manifest        // Channel, Version and InfoHash are left empty for the caller
	Length       int64           // total bytes
	SHA256       verify.Digest   // SHA-256 of the concatenation of all files in torrent order (the TUF target hash)
	PiecesSHA1   []byte          // 20 bytes per piece: BitTorrent v1 piece hashes
	PiecesSHA256 []verify.Digest // SHA-256 per piece
}

// Build reads root, a regular file or a directory, once and computes its
// Layout. A directory contributes its regular files, sorted by slash path in
// byte order, including empty files; empty directories are ignored, and a
// symlink (root included), device, pipe or socket is an error. A single file
// becomes one File named after its base name. A release without bytes is
// refused. pieceLength 0 means PieceLength(total).
//
// One goroutine reads the files into recycled piece buffers, GOMAXPROCS
// workers compute each piece's SHA-1 and SHA-256, and goroutines of their own
// compute the per-file and whole-release SHA-256 in order.
func Build(ctx context.Context, root string, pieceLength int64) (*Layout, error) {
	l, err := build(ctx, root, pieceLength)
	if err != nil {
		return nil, fmt.Errorf("release: build %s: %w", root, err)
	}
	return l, nil
}

func build(ctx context.Context, root string, pieceLength int64) (*Layout, error) {
	m, srcs, err := scan(root)
	if err != nil {
		return nil, err
	}
	total := m.Length()
	if total == 0 {
		return nil, fmt.Errorf("%w: no bytes", ErrEmptyRelease)
	}
	if pieceLength == 0 {
		pieceLength = PieceLength(total)
	}
	m.PieceLength = pieceLength
	if err := m.validateLayout(); err != nil {
		return nil, err
	}
	n := m.NumPieces()
	l := &Layout{
		Manifest:     m,
		Length:       total,
		PiecesSHA1:   make([]byte, n*sha1.Size),
		PiecesSHA256: make([]verify.Digest, n),
	}
	if err := l.hash(ctx, srcs); err != nil {
		return nil, err
	}
	return l, nil
}

// scan lists the files of root in torrent order, with their paths on disk.
func scan(root string) (Manifest, []string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return Manifest{}, nil, err
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return Manifest{}, nil, err
	}
	m := Manifest{Name: filepath.Base(abs), Dir: fi.IsDir()}
	if fi.Mode().IsRegular() {
		m.Files = []File{{Path: m.Name, Length: fi.Size()}}
		return m, []string{abs}, nil
	}
	if !fi.IsDir() {
		return m, nil, notRegular(abs, fi.Mode())
	}

	type entry struct {
		file File
		src  string
	}
	var entries []entry
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return notRegular(p, d.Type())
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(abs, p)
		if err != nil {
			return err
		}
		entries = append(entries, entry{File{Path: filepath.ToSlash(rel), Length: info.Size()}, p})
		return nil
	})
	if err != nil {
		return m, nil, err
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.file.Path, b.file.Path) })
	srcs := make([]string, len(entries))
	for i, e := range entries {
		m.Files = append(m.Files, e.file)
		srcs[i] = e.src
	}
	return m, srcs, nil
}

func notRegular(p string, mode fs.FileMode) error {
	kind := "irregular file"
	switch {
	case mode&fs.ModeSymlink != 0:
		kind = "symlink"
	case mode&fs.ModeDevice != 0:
		kind = "device"
	case mode&fs.ModeNamedPipe != 0:
		kind = "named pipe"
	case mode&fs.ModeSocket != 0:
		kind = "socket"
	}
	return fmt.Errorf("%s: %w (%s)", p, ErrNotRegular, kind)
}

// piece is a recycled piece buffer, shared by the consumers it is sent to.
type piece struct {
	index int
	data  []byte
	refs  atomic.Int32 // consumers yet to finish with it
}

// hash reads srcs, the files of l.Manifest, once and fills in the digests.
func (l *Layout) hash(ctx context.Context, srcs []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// In-order consumers: the per-file digests and, unless it equals the
	// single file's digest, the whole-release digest.
	files := &fileHasher{files: l.Manifest.Files, sums: make([]verify.Digest, len(srcs)), h: verify.New()}
	ordered := []io.Writer{files}
	bundle := verify.New()
	if len(srcs) > 1 {
		ordered = append(ordered, bundle)
	}

	workers := runtime.GOMAXPROCS(0)
	pieceLength := int(l.Manifest.PieceLength)
	nbuf := min(workers+len(ordered)+1, max(4, maxBuffered/pieceLength), len(l.PiecesSHA256))
	free := make(chan *piece, nbuf)
	for range nbuf {
		free <- &piece{data: make([]byte, 0, pieceLength)}
	}
	recycle := func(p *piece) {
		if p.refs.Add(-1) == 0 {
			free <- p
		}
	}

	// Every channel holds up to nbuf pieces, so sends never block.
	var wg sync.WaitGroup
	toWorkers := make(chan *piece, nbuf)
	for range workers {
		wg.Go(func() {
			for p := range toWorkers {
				if ctx.Err() == nil {
					sum := sha1.Sum(p.data)
					copy(l.PiecesSHA1[p.index*sha1.Size:], sum[:])
					l.PiecesSHA256[p.index] = verify.Sum(p.data)
				}
				recycle(p)
			}
		})
	}
	chans := []chan *piece{toWorkers}
	for _, w := range ordered {
		ch := make(chan *piece, nbuf)
		chans = append(chans, ch)
		wg.Go(func() {
			for p := range ch {
				if ctx.Err() == nil {
					w.Write(p.data)
				}
				recycle(p)
			}
		})
	}

	r := reader{free: free, emit: func(p *piece) {
		p.refs.Store(int32(len(chans)))
		for _, ch := range chans {
			ch <- p
		}
	}}
	err := r.read(ctx, l.Manifest.Files, srcs)
	if err != nil {
		cancel()
	}
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err() // consumers skip work once ctx is done
	}
	if err != nil {
		return err
	}
	files.finish()
	for i, sum := range files.sums {
		l.Manifest.Files[i].SHA256 = sum
	}
	l.SHA256 = files.sums[0]
	if len(srcs) > 1 {
		l.SHA256 = verify.Digest(bundle.Sum(nil))
	}
	return nil
}

// reader fills piece buffers with the files' bytes in order.
type reader struct {
	free <-chan *piece
	emit func(*piece)
	cur  *piece // the piece being filled
	next int    // index of the next piece
}

func (r *reader) read(ctx context.Context, files []File, srcs []string) error {
	for i, f := range files {
		if err := r.readFile(ctx, f, srcs[i]); err != nil {
			return err
		}
	}
	if r.cur != nil {
		r.emit(r.cur)
	}
	return nil
}

// readFile reads exactly f.Length bytes from src.
func (r *reader) readFile(ctx context.Context, f File, src string) error {
	fh, err := os.Open(src)
	if err != nil {
		return err
	}
	defer fh.Close()
	for left := f.Length; left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.cur == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case r.cur = <-r.free:
			}
			r.cur.index, r.cur.data = r.next, r.cur.data[:0]
			r.next++
		}
		d := r.cur.data
		n := int(min(left, int64(cap(d)-len(d))))
		if _, err := io.ReadFull(fh, d[len(d):len(d)+n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: %w (shorter than %d bytes)", src, ErrChanged, f.Length)
			}
			return err
		}
		r.cur.data = d[:len(d)+n]
		left -= int64(n)
		if len(r.cur.data) == cap(r.cur.data) {
			r.emit(r.cur)
			r.cur = nil
		}
	}
	var one [1]byte
	if n, err := fh.Read(one[:]); n > 0 {
		return fmt.Errorf("%s: %w (longer than %d bytes)", src, ErrChanged, f.Length)
	} else if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// fileHasher computes the SHA-256 of each file from the release's bytes in order.
type fileHasher struct {
	files []File // read only: the reader reads them too
	sums  []verify.Digest
	i     int   // the file being hashed
	done  int64 // bytes of files[i] hashed
	h     hash.Hash
}

func (fh *fileHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		fh.next()
		k := int(min(int64(len(p)), fh.files[fh.i].Length-fh.done))
		fh.h.Write(p[:k])
		fh.done += int64(k)
		p = p[k:]
	}
	return n, nil
}

// next finishes the complete files before the next byte's file.
func (fh *fileHasher) next() {
	for fh.i < len(fh.files) && fh.done == fh.files[fh.i].Length {
		fh.sums[fh.i] = verify.Digest(fh.h.Sum(nil))
		fh.h.Reset()
		fh.i, fh.done = fh.i+1, 0
	}
}

// finish finishes the remaining (complete or empty) files.
func (fh *fileHasher) finish() { fh.next() }
