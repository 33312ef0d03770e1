package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/verify"
)

// wantPieces hashes data split into pieces the way Build must.
func wantPieces(data []byte, pieceLength int) (sha1s []byte, sha256s []verify.Digest) {
	for off := 0; off < len(data); off += pieceLength {
		p := data[off:min(off+pieceLength, len(data))]
		s := sha1.Sum(p)
		sha1s = append(sha1s, s[:]...)
		sha256s = append(sha256s, sha256.Sum256(p))
	}
	return sha1s, sha256s
}

func checkLayout(t *testing.T, l *Layout, data []byte, pieceLength int) {
	t.Helper()
	if l.Length != int64(len(data)) || l.Manifest.Length() != l.Length {
		t.Errorf("Length = %d, manifest %d, want %d", l.Length, l.Manifest.Length(), len(data))
	}
	if want := verify.Digest(sha256.Sum256(data)); l.SHA256 != want {
		t.Errorf("SHA256 = %s, want %s", l.SHA256, want)
	}
	if l.Manifest.PieceLength != int64(pieceLength) {
		t.Errorf("PieceLength = %d, want %d", l.Manifest.PieceLength, pieceLength)
	}
	sha1s, sha256s := wantPieces(data, pieceLength)
	if !bytes.Equal(l.PiecesSHA1, sha1s) {
		t.Errorf("PiecesSHA1 differ (%d bytes, want %d)", len(l.PiecesSHA1), len(sha1s))
	}
	if !reflect.DeepEqual(l.PiecesSHA256, sha256s) {
		t.Errorf("PiecesSHA256 differ (%d, want %d)", len(l.PiecesSHA256), len(sha256s))
	}
	if l.Manifest.NumPieces() != len(sha256s) {
		t.Errorf("NumPieces = %d, want %d", l.Manifest.NumPieces(), len(sha256s))
	}
	if l.Manifest.Channel != "" || l.Manifest.Version != "" || l.Manifest.InfoHash != "" {
		t.Errorf("Build set caller fields: %+v", l.Manifest)
	}
}

func TestBuildFile(t *testing.T) {
	data := randBytes(3*MinPieceLength + 100)
	p := writeFile(t, t.TempDir(), "app.bin", data)

	l, err := Build(context.Background(), p, MinPieceLength)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l, data, MinPieceLength)
	want := []File{{Path: "app.bin", Length: int64(len(data)), SHA256: sha256.Sum256(data)}}
	if l.Manifest.Name != "app.bin" || l.Manifest.Dir || !reflect.DeepEqual(l.Manifest.Files, want) {
		t.Errorf("Manifest = %+v, want name app.bin, one file %+v", l.Manifest, want)
	}

	l, err = Build(context.Background(), p, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l, data, 256<<10)
}

func TestBuildDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dist")
	files := []struct {
		path string
		data []byte
	}{ // in the expected order: '.' sorts before '/'
		{"a.txt", randBytes(10000)},
		{"a/b/c.bin", randBytes(20000)},
		{"a/empty", nil},
		{"b/d", randBytes(7000)},
	}
	for i := len(files) - 1; i >= 0; i-- {
		writeFile(t, root, files[i].path, files[i].data)
	}
	if err := os.MkdirAll(filepath.Join(root, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	l, err := Build(context.Background(), root, MinPieceLength)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	var want []File
	for _, f := range files {
		all = append(all, f.data...)
		want = append(want, File{Path: f.path, Length: int64(len(f.data)), SHA256: sha256.Sum256(f.data)})
	}
	checkLayout(t, l, all, MinPieceLength)
	if l.Manifest.Name != "dist" || !l.Manifest.Dir || !reflect.DeepEqual(l.Manifest.Files, want) {
		t.Errorf("Manifest = %+v, want dir dist with %+v", l.Manifest, want)
	}

	// Pieces: [0,16384) spans a.txt and c.bin; [16384,32768) spans c.bin, the
	// empty file and d; [32768,37000) is short.
	for i, wantFiles := range [][]string{{"a.txt", "a/b/c.bin"}, {"a/b/c.bin", "b/d"}, {"b/d"}, nil} {
		if got := l.Manifest.FilesOfPiece(i); !reflect.DeepEqual(got, wantFiles) {
			t.Errorf("FilesOfPiece(%d) = %q, want %q", i, got, wantFiles)
		}
	}
	// Spans puts every piece together from its files' parts (the empty file has none).
	m := &l.Manifest
	for i := range m.NumPieces() + 1 {
		var got []byte
		err := m.Spans(i, func(k int, pieceOff, fileOff, n int64) error {
			if pieceOff != int64(len(got)) || n <= 0 {
				t.Errorf("piece %d: part of %s at %d (%d bytes), after %d bytes", i, files[k].path, pieceOff, n, len(got))
			}
			got = append(got, files[k].data[fileOff:fileOff+n]...)
			return nil
		})
		lo, hi := min(int64(i)*m.PieceLength, int64(len(all))), min(int64(i+1)*m.PieceLength, int64(len(all)))
		if err != nil || !bytes.Equal(got, all[lo:hi]) {
			t.Errorf("Spans(%d): %d bytes, err %v; want bytes [%d, %d) of the release", i, len(got), err, lo, hi)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	withLink := filepath.Join(dir, "withlink")
	writeFile(t, withLink, "f", []byte("x"))
	if err := os.Symlink("f", filepath.Join(withLink, "link")); err != nil {
		t.Fatal(err)
	}
	linkRoot := filepath.Join(dir, "linkroot")
	if err := os.Symlink(withLink, linkRoot); err != nil {
		t.Fatal(err)
	}
	emptyFile := writeFile(t, dir, "emptyfile", nil)
	emptyDir := filepath.Join(dir, "emptydir")
	writeFile(t, emptyDir, "sub/zero", nil)
	one := writeFile(t, dir, "one", []byte("x"))

	tests := []struct {
		name        string
		path        string
		pieceLength int64
		want        error
		wantMsg     string
	}{
		{name: "symlink inside", path: withLink, want: ErrNotRegular, wantMsg: "link: not a regular file (symlink)"},
		{name: "symlink root", path: linkRoot, want: ErrNotRegular, wantMsg: "(symlink)"},
		{name: "empty file", path: emptyFile, want: ErrEmptyRelease},
		{name: "only empty files", path: emptyDir, want: ErrEmptyRelease},
		{name: "missing", path: filepath.Join(dir, "missing"), want: os.ErrNotExist},
		{name: "piece length not power of two", path: one, pieceLength: 100000, want: ErrInvalidPieceLength},
		{name: "piece length too small", path: one, pieceLength: 8 << 10, want: ErrInvalidPieceLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.path, tt.pieceLength)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Build error = %v, want %v containing %q", err, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestBuildCanceled(t *testing.T) {
	p := writeFile(t, t.TempDir(), "f", randBytes(MinPieceLength))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, p, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build error = %v, want context.Canceled", err)
	}
}

func validManifest() Manifest {
	return Manifest{
		Channel:     "stable",
		Version:     "1.2.3",
		Name:        "dist",
		Dir:         true,
		InfoHash:    strings.Repeat("ab", 20),
		PieceLength: 256 << 10,
		Files: []File{
			{Path: "a.txt", Length: 1},
			{Path: "a/b", Length: 0},
			{Path: "bin/app", Length: 100},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		valid  bool
		want   error // a more specific error than ErrInvalidManifest
	}{
		{name: "valid", valid: true},
		{name: "single file", change: func(m *Manifest) { m.Dir, m.Name, m.Files = false, "app", []File{{Path: "app", Length: 1}} }, valid: true},
		{name: "bad channel", change: func(m *Manifest) { m.Channel = "Stable" }, want: ErrInvalidChannel},
		{name: "empty channel", change: func(m *Manifest) { m.Channel = "" }, want: ErrInvalidChannel},
		{name: "bad version", change: func(m *Manifest) { m.Version = "1.2" }, want: ErrInvalidVersion},
		{name: "build metadata", change: func(m *Manifest) { m.Version = "1.2.3+abc" }, want: ErrInvalidVersion},
		{name: "short infohash", change: func(m *Manifest) { m.InfoHash = "abcd" }},
		{name: "upper infohash", change: func(m *Manifest) { m.InfoHash = strings.Repeat("AB", 20) }},
		{name: "name with slash", change: func(m *Manifest) { m.Name = "a/b" }},
		{name: "name dot dot", change: func(m *Manifest) { m.Name = ".." }},
		{name: "empty name", change: func(m *Manifest) { m.Name = "" }},
		{name: "piece length not power of two", change: func(m *Manifest) { m.PieceLength = 300 << 10 }, want: ErrInvalidPieceLength},
		{name: "piece length too big", change: func(m *Manifest) { m.PieceLength = 32 << 20 }, want: ErrInvalidPieceLength},
		{name: "dot dot path", change: func(m *Manifest) { m.Files[2].Path = "../app" }},
		{name: "absolute path", change: func(m *Manifest) { m.Files[2].Path = "/bin/app" }},
		{name: "empty element", change: func(m *Manifest) { m.Files[2].Path = "bin//app" }},
		{name: "trailing slash", change: func(m *Manifest) { m.Files[2].Path = "bin/app/" }},
		{name: "dot element", change: func(m *Manifest) { m.Files[2].Path = "bin/./app" }},
		{name: "backslash", change: func(m *Manifest) { m.Files[2].Path = `bin\app` }},
		{name: "invalid utf-8", change: func(m *Manifest) { m.Files[2].Path = "bin/\xff" }},
		{name: "duplicate", change: func(m *Manifest) { m.Files[1].Path = "a.txt" }},
		{name: "unsorted", change: func(m *Manifest) { m.Files[0], m.Files[2] = m.Files[2], m.Files[0] }},
		{name: "file is also a directory", change: func(m *Manifest) { m.Files[0].Path = "a" }},
		{name: "negative length", change: func(m *Manifest) { m.Files[0].Length = -1 }},
		{name: "overflowing length", change: func(m *Manifest) { m.Files[2].Length = 1<<63 - 1 }},
		{name: "no bytes", change: func(m *Manifest) { m.Files[0].Length, m.Files[2].Length = 0, 0 }, want: ErrEmptyRelease},
		{name: "no files", change: func(m *Manifest) { m.Files = nil }, want: ErrEmptyRelease},
		{name: "single file with two files", change: func(m *Manifest) { m.Dir = false }},
		{name: "single file named differently", change: func(m *Manifest) { m.Dir, m.Files = false, []File{{Path: "other", Length: 1}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			if tt.change != nil {
				tt.change(&m)
			}
			err := m.Validate()
			if tt.valid {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("Validate error = %v, want ErrInvalidManifest", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Validate error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	m := validManifest()
	m.Files[2].SHA256 = verify.Sum([]byte("app"))
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	withUnknown := bytes.Replace(b, []byte("{"), []byte(`{"future":{"x":1},`), 1)
	got, err := ParseManifest(withUnknown)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	if !reflect.DeepEqual(*got, m) {
		t.Fatalf("ParseManifest = %+v, want %+v", *got, m)
	}
	for _, bad := range []string{"", "null", "{", `{"files":[{"path":"a","sha256":"xyz"}]}`, `{"files":[{"path":"a","length":1}]}`, `{"piece_length":"1"}`} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("ParseManifest(%q) succeeded", bad)
		}
	}
	if _, err := ParseManifest([]byte(`{"files":[{"path":"bin/app","sha256":"xyz"}]}`)); err == nil || !strings.Contains(err.Error(), `file "bin/app"`) {
		t.Errorf("ParseManifest error = %v, want it to name bin/app", err)
	}
}

func TestPieceLength(t *testing.T) {
	const KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
	tests := []struct {
		name  string
		total int64
		want  int64
	}{
		{name: "zero", total: 0, want: 256 * KiB},
		{name: "one byte", total: 1, want: 256 * KiB},
		{name: "512 pieces of 256 KiB", total: 128 * MiB, want: 256 * KiB},
		{name: "one byte more", total: 128*MiB + 1, want: 512 * KiB},
		{name: "256 MiB", total: 256 * MiB, want: 512 * KiB},
		{name: "1 GiB", total: GiB, want: 2 * MiB},
		{name: "2 GiB", total: 2 * GiB, want: 4 * MiB},
		{name: "capped", total: 100 * GiB, want: 4 * MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PieceLength(tt.total); got != tt.want {
				t.Fatalf("PieceLength(%d) = %d, want %d", tt.total, got, tt.want)
			}
		})
	}
}

func TestValidChannel(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{name: "simple", in: "stable", valid: true},
		{name: "punctuation", in: "beta-2.x_y", valid: true},
		{name: "digit first", in: "0", valid: true},
		{name: "64 chars", in: strings.Repeat("a", 64), valid: true},
		{name: "65 chars", in: strings.Repeat("a", 65)},
		{name: "empty", in: ""},
		{name: "upper", in: "Stable"},
		{name: "dash first", in: "-beta"},
		{name: "dot first", in: ".."},
		{name: "slash", in: "a/b"},
		{name: "space", in: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidChannel(tt.in)
			if tt.valid != (err == nil) || err != nil && !errors.Is(err, ErrInvalidChannel) {
				t.Fatalf("ValidChannel(%q) = %v, want valid %v", tt.in, err, tt.valid)
			}
		})
	}
}

func TestValidVersion(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{name: "plain", in: "1.2.3", valid: true},
		{name: "with v", in: "v1.2.3", valid: true},
		{name: "date", in: "2026.11.26", valid: true},
		{name: "pre-release", in: "v1.0.0-rc.1", valid: true},
		{name: "empty", in: ""},
		{name: "v only", in: "v"},
		{name: "short", in: "1.2"},
		{name: "major only", in: "v1"},
		{name: "build metadata", in: "1.2.3+build"},
		{name: "leading zero", in: "2026.01.05"},
		{name: "double v", in: "vv1.2.3"},
		{name: "words", in: "latest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidVersion(tt.in)
			if tt.valid != (err == nil) || err != nil && !errors.Is(err, ErrInvalidVersion) {
				t.Fatalf("ValidVersion(%q) = %v, want valid %v", tt.in, err, tt.valid)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{name: "equal", a: "1.2.3", b: "1.2.3", want: 0},
		{name: "v is ignored", a: "v1.2.3", b: "1.2.3", want: 0},
		{name: "patch", a: "1.2.3", b: "1.2.10", want: -1},
		{name: "major", a: "2.0.0", b: "1.9.9", want: 1},
		{name: "date", a: "2026.11.26", b: "2026.2.1", want: 1},
		{name: "pre-release first", a: "1.0.0-rc.1", b: "1.0.0", want: -1},
		{name: "pre-release numeric", a: "1.0.0-rc.2", b: "1.0.0-rc.10", want: -1},
		{name: "invalid is lowest", a: "junk", b: "0.0.1", want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CompareVersions(tt.a, tt.b); got != tt.want {
				t.Fatalf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	if got := BundleTarget("stable", "1.2.3"); got != "releases/stable/1.2.3/bundle" {
		t.Errorf("BundleTarget = %q", got)
	}
	if got := PiecesTarget("stable", "1.2.3"); got != "releases/stable/1.2.3/pieces" {
		t.Errorf("PiecesTarget = %q", got)
	}
}

func TestPieces(t *testing.T) {
	d := []verify.Digest{verify.Sum([]byte("a")), verify.Sum([]byte("b"))}
	b := EncodePieces(d)
	if len(b) != 64 {
		t.Fatalf("EncodePieces: %d bytes, want 64", len(b))
	}
	got, err := DecodePieces(b, 2)
	if err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("DecodePieces = %v, %v; want %v", got, err, d)
	}
	if got, err := DecodePieces(nil, 0); err != nil || len(got) != 0 {
		t.Fatalf("DecodePieces(nil, 0) = %v, %v", got, err)
	}
	tests := []struct {
		name string
		b    []byte
		n    int
	}{
		{name: "too few bytes", b: b[:63], n: 2},
		{name: "too many bytes", b: append(b, 0), n: 2},
		{name: "fewer pieces", b: b, n: 1},
		{name: "more pieces", b: b, n: 3},
		{name: "negative", b: nil, n: -1},
		{name: "huge", b: b, n: 1 << 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodePieces(tt.b, tt.n); !errors.Is(err, ErrPiecesLength) {
				t.Fatalf("DecodePieces error = %v, want ErrPiecesLength", err)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	valid, _ := json.Marshal(validManifest())
	f.Add(valid)
	f.Add([]byte(`{"channel":"a","version":"1.0.0","name":"x","infohash":"` + strings.Repeat("0", 40) + `","piece_length":16384,"files":[{"path":"x","length":1}]}`))
	f.Add([]byte(`{"files":[{"path":"../x","length":-1,"sha256":"00"}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"piece_length":9223372036854775807,"files":[{"length":9223372036854775807},{"length":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		for i := range min(m.NumPieces(), 4) {
			m.FilesOfPiece(i)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %v, %+v != %+v", err, m2, m)
		}
	})
}

func FuzzDecodePieces(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add(make([]byte, 64), 2)
	f.Add(make([]byte, 63), 2)
	f.Add(make([]byte, 32), -1)
	f.Add(make([]byte, 32), 1<<60)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		d, err := DecodePieces(b, n)
		if err != nil {
			return
		}
		if len(d) != n || !bytes.Equal(EncodePieces(d), b) {
			t.Fatalf("DecodePieces(%d bytes, %d) = %d digests that do not encode back", len(b), n, len(d))
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	data := randBytes(64 << 20)
	p := filepath.Join(b.TempDir(), "big")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Build(context.Background(), p, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// writeFile writes data to dir/name, creating parent directories.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name                   string
		channel, version, kind string
		ok                     bool
	}{
		{name: RolloutTarget("stable", "1.2.0"), channel: "stable", version: "1.2.0", kind: "rollout", ok: true},
		{name: BundleTarget("beta", "v2.0.0-rc.1"), channel: "beta", version: "v2.0.0-rc.1", kind: "bundle", ok: true},
		{name: "releases/stable/latest/rollout"},
		{name: "releases/Stable/1.0.0/rollout"},
		{name: "releases/stable/1.0.0"},
		{name: "releases/stable/1.0.0/rollout/x"},
		{name: "other/stable/1.0.0/rollout"},
	}
	for _, tt := range tests {
		ch, v, kind, ok := ParseTarget(tt.name)
		if ch != tt.channel || v != tt.version || kind != tt.kind || ok != tt.ok {
			t.Errorf("ParseTarget(%q) = %q %q %q %v", tt.name, ch, v, kind, ok)
		}
	}
}
