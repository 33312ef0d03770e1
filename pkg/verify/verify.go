// Package verify checks release bytes against SHA-256 digests.
//
// It hashes with github.com/minio/sha256-simd, streams files through large
// reused buffers, and can copy exactly the verified bytes while checking them.
package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	sha256 "github.com/minio/sha256-simd"
)

// Sentinel errors.
var (
	// ErrInvalidDigest reports a digest that is not exactly 64 hex characters.
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrMismatch matches every *MismatchError with errors.Is.
	ErrMismatch = errors.New("content mismatch")
)

// bufSize is the size of the read buffers.
const bufSize = 1 << 20

// Digest is a SHA-256 digest.
type Digest [32]byte

// String returns d as lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText returns d as lowercase hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses exactly 64 hex characters.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 2*len(d) {
		return fmt.Errorf("verify: parse digest: %w: got %d characters, want %d", ErrInvalidDigest, len(b), 2*len(d))
	}
	var v Digest
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("verify: parse digest: %w: %w", ErrInvalidDigest, err)
	}
	*d = v
	return nil
}

// ParseDigest parses exactly 64 hex characters.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	err := d.UnmarshalText([]byte(s))
	return d, err
}

// New returns a SHA-256 hash.
func New() hash.Hash { return sha256.New() }

// Sum returns the SHA-256 digest of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

// File returns the SHA-256 digest and length of the file at path.
func File(path string) (Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, 0, fmt.Errorf("verify: hash file: %w", err)
	}
	defer f.Close()
	h := New()
	// Hide f's WriterTo so that CopyBuffer uses the large buffer.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, bufSize))
	if err != nil {
		return Digest{}, 0, fmt.Errorf("verify: hash file: %w", err)
	}
	return Digest(h.Sum(nil)), n, nil
}

// Entry is one file to verify (and optionally copy).
type Entry struct {
	Path   string // slash-separated path inside the release, used in error messages
	Src    string // file to read
	Dst    string // if not empty, the verified bytes are written here (parents created 0755, file created O_EXCL 0644, fsynced)
	Length int64
	SHA256 Digest
}

// MismatchError says which file has the wrong length or SHA-256 digest.
// Path is empty when the bundle digest is wrong.
type MismatchError struct {
	Path                  string
	WantLength, GotLength int64
	Want, Got             Digest
}

func (e *MismatchError) Error() string {
	what := "bundle"
	if e.Path != "" {
		what = fmt.Sprintf("file %q", e.Path)
	}
	if e.WantLength != e.GotLength {
		return fmt.Sprintf("%s: length %d, want %d", what, e.GotLength, e.WantLength)
	}
	return fmt.Sprintf("%s: SHA-256 mismatch (want %s, got %s)", what, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Tree streams every entry in order, checking each file's length and SHA-256
// and the SHA-256 of the concatenation of all files in order (bundle, the TUF
// target hash). It writes Dst copies as it reads, so a copy is exactly the
// verified bytes; the Dst of a failing entry is removed, copies of entries
// that passed are kept. A zero bundle skips the bundle check.
//
// Content problems are returned as *MismatchError; other errors are wrapped
// I/O or context errors. The per-file and bundle digests are computed by two
// goroutines over the same buffers.
func Tree(ctx context.Context, entries []Entry, bundle Digest) error {
	checkBundle := bundle != Digest{}
	const nbuf = 3
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, bufSize)
	}
	// The bundle goroutine hashes each filled buffer, then recycles it.
	filled := make(chan []byte, nbuf)
	bundleSum := make(chan Digest, 1)
	go func() {
		h := New()
		for b := range filled {
			if checkBundle {
				h.Write(b)
			}
			free <- b[:cap(b)]
		}
		bundleSum <- Digest(h.Sum(nil))
	}()

	var err error
	for i := range entries {
		if err = verifyEntry(ctx, &entries[i], free, filled); err != nil {
			break
		}
	}
	close(filled)
	got := <-bundleSum
	if err != nil {
		return err
	}
	if checkBundle && got != bundle {
		return &MismatchError{Want: bundle, Got: got}
	}
	return nil
}

// verifyEntry streams one entry through buffers from free, handing every
// filled buffer to the bundle goroutine through filled.
func verifyEntry(ctx context.Context, e *Entry, free chan []byte, filled chan<- []byte) (err error) {
	src, err := os.Open(e.Src)
	if err != nil {
		return fmt.Errorf("verify: file %q: %w", e.Path, err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() != e.Length {
		return &MismatchError{Path: e.Path, WantLength: e.Length, GotLength: fi.Size()}
	}

	var dst *os.File
	if e.Dst != "" {
		if dst, err = create(e.Dst); err != nil {
			return fmt.Errorf("verify: file %q: %w", e.Path, err)
		}
		defer func() {
			if cerr := dst.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("verify: file %q: %w", e.Path, cerr)
			}
			if err != nil {
				os.Remove(e.Dst)
			}
		}()
	}

	// Read at most one byte more than expected, to detect a longer file.
	r := io.LimitReader(src, e.Length+1)
	h := New()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("verify: file %q: %w", e.Path, err)
		}
		buf := <-free
		m, rerr := io.ReadFull(r, buf)
		buf = buf[:m]
		if n += int64(m); n > e.Length {
			free <- buf
			got := n
			if fi, err := src.Stat(); err == nil && fi.Size() > got {
				got = fi.Size()
			}
			return &MismatchError{Path: e.Path, WantLength: e.Length, GotLength: got}
		}
		h.Write(buf)
		if dst != nil {
			if _, err := dst.Write(buf); err != nil {
				free <- buf
				return fmt.Errorf("verify: file %q: %w", e.Path, err)
			}
		}
		filled <- buf
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("verify: file %q: %w", e.Path, rerr)
		}
	}
	if n != e.Length {
		return &MismatchError{Path: e.Path, WantLength: e.Length, GotLength: n}
	}
	if got := Digest(h.Sum(nil)); got != e.SHA256 {
		return &MismatchError{Path: e.Path, WantLength: e.Length, GotLength: n, Want: e.SHA256, Got: got}
	}
	if dst != nil {
		if err := dst.Sync(); err != nil {
			return fmt.Errorf("verify: file %q: %w", e.Path, err)
		}
	}
	return nil
}

// create makes path's parent directories and creates path, which must not exist.
func create(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
