// Package release defines a release's identity (channel and version), its
// manifest (the TUF target's custom data) and its layout: the files, the
// SHA-256 of each file and of the whole release, and the BitTorrent v1 piece
// hashes, all computed by Build in one read of the bytes on disk.
package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/peerpatch/peerpatch/pkg/verify"
	"golang.org/x/mod/semver"
)

// Sentinel errors.
var (
	// ErrInvalidManifest reports a manifest that fails Validate.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrInvalidChannel reports a bad channel name.
	ErrInvalidChannel = errors.New("invalid channel")
	// ErrInvalidVersion reports a bad version.
	ErrInvalidVersion = errors.New("invalid version")
	// ErrInvalidPieceLength reports a piece length that is not a power of two in [16 KiB, 16 MiB].
	ErrInvalidPieceLength = errors.New("invalid piece length")
	// ErrEmptyRelease reports a release without any bytes.
	ErrEmptyRelease = errors.New("empty release")
	// ErrNotRegular reports a path in a release that is neither a regular file nor a directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrChanged reports a file whose size changed while Build read it.
	ErrChanged = errors.New("file changed during build")
	// ErrPiecesLength reports piece hashes of the wrong length.
	ErrPiecesLength = errors.New("wrong length of piece hashes")
)

// Piece length limits accepted by Validate and Build.
const (
	MinPieceLength = 16 << 10
	MaxPieceLength = 16 << 20
)

// File is one file of a release.
type File struct {
	Path   string        `json:"path"` // slash-separated, relative; for a single-file release the file's base name
	Length int64         `json:"length"`
	SHA256 verify.Digest `json:"sha256"`
}

// UnmarshalJSON decodes f, naming its path if the digest is bad.
func (f *File) UnmarshalJSON(b []byte) error {
	var raw struct {
		Path   string `json:"path"`
		Length int64  `json:"length"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	d, err := verify.ParseDigest(raw.SHA256)
	if err != nil {
		return fmt.Errorf("file %q: %w", clip(raw.Path), err)
	}
	*f = File{Path: raw.Path, Length: raw.Length, SHA256: d}
	return nil
}

// Manifest is what a release's signed TUF target carries in its "custom" field.
type Manifest struct {
	Channel     string `json:"channel"`
	Version     string `json:"version"`
	Name        string `json:"name"`     // base name of the published path = the torrent's info name
	Dir         bool   `json:"dir"`      // the published path was a directory
	InfoHash    string `json:"infohash"` // hex BitTorrent v1 infohash (40 chars), set by the caller
	PieceLength int64  `json:"piece_length"`
	Files       []File `json:"files"` // in torrent order
}

// Length returns the sum of the file lengths.
func (m *Manifest) Length() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Length
	}
	return n
}

// NumPieces returns the number of pieces, 0 if PieceLength is not positive.
func (m *Manifest) NumPieces() int {
	if m.PieceLength <= 0 {
		return 0
	}
	return numPieces(m.Length(), m.PieceLength)
}

func numPieces(total, pieceLength int64) int {
	n := total / pieceLength
	if total%pieceLength != 0 {
		n++
	}
	return int(n)
}

// PieceSize returns the length of piece i (the last one may be short), 0 if i is out of range.
func (m *Manifest) PieceSize(i int) int64 {
	if i < 0 || i >= m.NumPieces() {
		return 0
	}
	return min(m.PieceLength, m.Length()-int64(i)*m.PieceLength)
}

// Spans calls fn for each part of piece i that lies in a file, in order: the file's index in
// Files, the part's offset in the piece and in the file, and its length. fn's error stops the
// walk and is returned.
func (m *Manifest) Spans(i int, fn func(k int, pieceOff, fileOff, n int64) error) error {
	off := int64(i) * m.PieceLength
	end := off + m.PieceSize(i)
	var base int64
	for k, f := range m.Files {
		fileEnd := base + f.Length
		if lo, hi := max(off, base), min(end, fileEnd); lo < hi {
			if err := fn(k, lo-off, lo-base, hi-lo); err != nil {
				return err
			}
		}
		base = fileEnd
	}
	return nil
}

// FilesOfPiece returns the paths of the files overlapping piece i, for error
// messages. It returns nil if i is out of range.
func (m *Manifest) FilesOfPiece(i int) []string {
	if i < 0 || i >= m.NumPieces() {
		return nil
	}
	start := int64(i) * m.PieceLength
	end := start + m.PieceLength
	var paths []string
	var off int64
	for _, f := range m.Files {
		if f.Length > 0 && off < end && off+f.Length > start {
			paths = append(paths, f.Path)
		}
		off += f.Length
	}
	return paths
}

// Validate checks everything an agent relies on: a valid channel and version,
// a Name that is one clean path element, a piece length that is a power of
// two in [16 KiB, 16 MiB], a 40-character lowercase hex infohash, clean
// relative file paths (no "..", "." or empty element, no backslash, valid
// UTF-8) sorted in byte order without duplicates or file/directory clashes,
// lengths ≥ 0 with a positive total, and, unless Dir, exactly one file whose
// Path is Name.
func (m *Manifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("release: %w: %w", ErrInvalidManifest, err)
	}
	return nil
}

func (m *Manifest) validate() error {
	if err := checkChannel(m.Channel); err != nil {
		return err
	}
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if !isLowerHex(m.InfoHash, 40) {
		return fmt.Errorf("infohash %q: want 40 lowercase hex characters", clip(m.InfoHash))
	}
	return m.validateLayout()
}

// validateLayout checks the parts of m that Build sets.
func (m *Manifest) validateLayout() error {
	if err := checkElem(m.Name); err != nil {
		return fmt.Errorf("name %q: %w", clip(m.Name), err)
	}
	if err := checkPieceLength(m.PieceLength); err != nil {
		return err
	}
	if !m.Dir && (len(m.Files) != 1 || m.Files[0].Path != m.Name) {
		return fmt.Errorf("a single-file release needs exactly one file named %q", m.Name)
	}
	isFile := make(map[string]bool, len(m.Files))
	var total int64
	for i, f := range m.Files {
		if err := checkPath(f.Path); err != nil {
			return fmt.Errorf("file %q: %w", clip(f.Path), err)
		}
		if i > 0 && f.Path <= m.Files[i-1].Path {
			return fmt.Errorf("file %q: not after %q (paths must be unique and sorted)", f.Path, m.Files[i-1].Path)
		}
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if isFile[dir] {
				return fmt.Errorf("file %q: %q is a file, not a directory", f.Path, dir)
			}
		}
		isFile[f.Path] = true
		if f.Length < 0 || f.Length > math.MaxInt64-total {
			return fmt.Errorf("file %q: invalid length %d", f.Path, f.Length)
		}
		total += f.Length
	}
	if total == 0 {
		return fmt.Errorf("%w: no bytes", ErrEmptyRelease)
	}
	return nil
}

func checkPieceLength(n int64) error {
	if n < MinPieceLength || n > MaxPieceLength || bits.OnesCount64(uint64(n)) != 1 {
		return fmt.Errorf("%w %d: want a power of two from %d to %d", ErrInvalidPieceLength, n, MinPieceLength, MaxPieceLength)
	}
	return nil
}

// checkPath checks a clean relative slash-separated path.
func checkPath(p string) error {
	for elem := range strings.SplitSeq(p, "/") {
		if err := checkElem(elem); err != nil {
			return err
		}
	}
	return nil
}

// checkElem checks one path element.
func checkElem(e string) error {
	switch {
	case e == "":
		return errors.New("empty path element")
	case e == "." || e == "..":
		return fmt.Errorf("%q path element", e)
	case strings.ContainsAny(e, "/\\\x00"):
		return errors.New("slash, backslash or NUL in path element")
	case !utf8.ValidString(e):
		return errors.New("path is not valid UTF-8")
	}
	return nil
}

// ParseManifest decodes a JSON manifest and validates it. Unknown fields are
// ignored, for forward compatibility.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("release: parse manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// PieceLength is the piece size policy: the smallest power of two from 256 KiB
// to 4 MiB giving at most 512 pieces. A piece travels whole, origin → agent → agent, so its
// size sets how long each hop takes and how far the fleet trails the origin; every piece also
// costs each agent a fixed amount of work (a hash, a have message to every peer, a request
// round, a completion record). In the fleet lab, 256 KiB pieces of a 256 MiB release were 8 to
// 15% slower than 1 MiB ones, at 10% more CPU. Once agents stopped hashing each staged piece
// a second time and each block for blame, 512 KiB pieces beat 1 MiB: at N=16, quick runs gave
// 1.12-1.16 × T_min (8 runs, median 1.14) against 1.14-1.16 and once 1.27 (13 runs, median
// 1.16), at the same CPU. Much fewer pieces leave too little to trade: 4 MiB pieces of a
// 256 MiB release were slower again, and cost the origin 1.09 copies.
func PieceLength(total int64) int64 {
	n := int64(256 << 10)
	for n < 4<<20 && numPieces(total, n) > 512 {
		n *= 2
	}
	return n
}

// ValidPieceLength checks that n is a power of two from MinPieceLength to MaxPieceLength.
func ValidPieceLength(n int64) error {
	if err := checkPieceLength(n); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// ValidChannel checks that s matches ^[a-z0-9][a-z0-9._-]{0,63}$.
func ValidChannel(s string) error {
	if err := checkChannel(s); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

func checkChannel(s string) error {
	ok := len(s) >= 1 && len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%w %q: want 1-64 characters of [a-z0-9._-], starting with a letter or digit", ErrInvalidChannel, clip(s))
	}
	return nil
}

// ValidVersion checks that s is a full semantic version (major.minor.patch
// with an optional pre-release) with an optional leading "v" and no build
// metadata, e.g. "1.2.3", "2026.11.26" or "v1.0.0-rc.1".
func ValidVersion(s string) error {
	if err := checkVersion(s); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

func checkVersion(s string) error {
	v := withV(s)
	// Canonical drops build metadata and fills in a short "v1.2", so
	// equality means a full version without "+".
	if !semver.IsValid(v) || semver.Canonical(v) != v {
		return fmt.Errorf("%w %q: want a semantic version like 1.2.3 or v1.0.0-rc.1, without build metadata", ErrInvalidVersion, clip(s))
	}
	return nil
}

// CompareVersions compares two versions by semantic version precedence,
// ignoring a leading "v": -1 if a < b, 0 if equal, +1 if a > b. An invalid
// version is less than any valid one.
func CompareVersions(a, b string) int {
	return semver.Compare(withV(a), withV(b))
}

func withV(s string) string {
	if strings.HasPrefix(s, "v") {
		return s
	}
	return "v" + s
}

// BundleTarget returns the TUF target name of a release's bytes.
func BundleTarget(channel, version string) string {
	return "releases/" + channel + "/" + version + "/bundle"
}

// PiecesTarget returns the TUF target name of a release's per-piece SHA-256 digests.
func PiecesTarget(channel, version string) string {
	return "releases/" + channel + "/" + version + "/pieces"
}

// RolloutTarget returns the TUF target name of a release's rollout policy (package rollout):
// a target of length 0 whose signed custom field holds the policy.
func RolloutTarget(channel, version string) string {
	return "releases/" + channel + "/" + version + "/rollout"
}

// ParseTarget splits a target name "releases/<channel>/<version>/<kind>" with a valid channel
// and version; ok is false for any other name.
func ParseTarget(name string) (channel, version, kind string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "releases" || checkChannel(parts[1]) != nil || checkVersion(parts[2]) != nil {
		return "", "", "", false
	}
	return parts[1], parts[2], parts[3], true
}

// EncodePieces concatenates the digests.
func EncodePieces(d []verify.Digest) []byte {
	b := make([]byte, 0, len(d)*len(verify.Digest{}))
	for _, x := range d {
		b = append(b, x[:]...)
	}
	return b
}

// DecodePieces splits b into exactly n digests.
func DecodePieces(b []byte, n int) ([]verify.Digest, error) {
	const size = len(verify.Digest{})
	if n < 0 || n > len(b)/size || len(b) != n*size {
		return nil, fmt.Errorf("release: decode pieces: %w: got %d bytes, want %d pieces of %d bytes", ErrPiecesLength, len(b), n, size)
	}
	d := make([]verify.Digest, n)
	for i := range d {
		d[i] = verify.Digest(b[i*size : (i+1)*size])
	}
	return d, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	const limit = 100
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
