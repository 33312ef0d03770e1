package swarm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/peerpatch/peerpatch/pkg/release"
)

// smallFiles is a small multi-file release: one 256 KiB piece with a zero-length file inside.
func smallFiles() []testFile {
	return []testFile{
		{"a.bin", randBytes(10, 70_000)},
		{"empty.txt", nil},
		{"sub/b.bin", randBytes(11, 5_000)},
	}
}

// buildSingle builds a single-file release.
func buildSingle(t testing.TB) (release.Manifest, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tool.exe")
	if err := os.WriteFile(p, randBytes(12, 300_000), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := release.Build(context.Background(), p, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, ih, err := InfoBytes(l)
	if err != nil {
		t.Fatal(err)
	}
	m := l.Manifest
	m.Channel, m.Version, m.InfoHash = "stable", "2.0.0", ih
	mi, err := Metainfo(info, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, mi
}

// torrentOfInfo wraps an arbitrary info dictionary into a .torrent and returns it with its hex
// infohash.
func torrentOfInfo(t testing.TB, info metainfo.Info) ([]byte, string) {
	t.Helper()
	b, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := Metainfo(b, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return mi, metainfo.HashBytes(b).HexString()
}

// infoOf decodes a release's info dictionary, for making altered copies.
func infoOf(t testing.TB, r *testRelease) metainfo.Info {
	t.Helper()
	var info metainfo.Info
	if err := bencode.Unmarshal(r.info, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// paddedTorrent returns r's .torrent grown to exactly size bytes by a web-seed URL.
func paddedTorrent(t testing.TB, r *testRelease, size int) []byte {
	t.Helper()
	pad := size
	for range 10 {
		b, err := Metainfo(r.info, "", []string{"http://x/" + strings.Repeat("p", max(pad, 0))})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == size {
			return b
		}
		pad += size - len(b)
	}
	t.Fatalf("cannot pad a torrent to %d bytes", size)
	return nil
}

func TestCheckMetainfo(t *testing.T) {
	r := buildRelease(t, "app", smallFiles(), nil)
	single, singleMI := buildSingle(t)

	notPrivate := func(private *bool) func(t *testing.T, m *release.Manifest) []byte {
		return func(t *testing.T, m *release.Manifest) []byte {
			info := infoOf(t, r)
			info.Private = private
			mi, ih := torrentOfInfo(t, info)
			m.InfoHash = ih
			return mi
		}
	}
	f := false
	good := func(*testing.T, *release.Manifest) []byte { return r.mi }

	tests := []struct {
		name string
		// torrent returns the .torrent bytes and may alter the manifest (a copy of r.m).
		torrent func(t *testing.T, m *release.Manifest) []byte
		// manifest, if set, replaces r.m (for the single-file cases).
		manifest     *release.Manifest
		wantErr      bool
		wantMismatch bool   // errors.Is(err, ErrMetadataMismatch)
		wantText     string // in the error
		wantSeeds    []string
		seedCount    int // when wantSeeds is nil: the number of web seeds (long ones are not compared)
	}{
		{name: "good", torrent: good},
		{
			name: "good with web seeds, non-HTTP ones dropped",
			torrent: func(t *testing.T, m *release.Manifest) []byte {
				b, err := Metainfo(r.info, "http://127.0.0.1:1/announce",
					[]string{"http://a.example/r/", "ftp://b.example/", "https://c.example/x", "file:///etc/passwd", "javascript:x"})
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			wantSeeds: []string{"http://a.example/r/", "https://c.example/x"},
		},
		{name: "good single file", manifest: &single, torrent: func(*testing.T, *release.Manifest) []byte { return singleMI }},
		{
			name:    "infohash mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte { m.InfoHash = strings.Repeat("ab", 20); return r.mi },
			wantErr: true, wantMismatch: true, wantText: "infohash",
		},
		{
			name: "torrent of another release",
			torrent: func(t *testing.T, m *release.Manifest) []byte {
				other := buildRelease(t, "app", []testFile{{"a.bin", randBytes(99, 70_000)}}, nil)
				return other.mi
			},
			wantErr: true, wantMismatch: true, wantText: "infohash",
		},
		{
			name:    "name mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte { m.Name = "other"; return r.mi },
			wantErr: true, wantMismatch: true, wantText: "name",
		},
		{
			name:    "piece length mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte { m.PieceLength *= 2; return r.mi },
			wantErr: true, wantMismatch: true, wantText: "piece length",
		},
		{
			name:    "total length mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte { m.Files[2].Length++; return r.mi },
			wantErr: true, wantMismatch: true, wantText: "length",
		},
		{
			name: "file path mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte {
				m.Files = slices.Clone(m.Files)
				m.Files[2].Path = "sub/c.bin"
				return r.mi
			},
			wantErr: true, wantMismatch: true, wantText: "sub/c.bin",
		},
		{
			name: "file lengths moved between files, same total",
			torrent: func(_ *testing.T, m *release.Manifest) []byte {
				m.Files = slices.Clone(m.Files)
				m.Files[0].Length -= 100
				m.Files[2].Length += 100
				return r.mi
			},
			wantErr: true, wantMismatch: true, wantText: "a.bin",
		},
		{
			name: "extra zero-length file",
			torrent: func(_ *testing.T, m *release.Manifest) []byte {
				m.Files = append(slices.Clone(m.Files), release.File{Path: "zzz"})
				return r.mi
			},
			wantErr: true, wantMismatch: true, wantText: "files",
		},
		{
			name: "zero-length file missing",
			torrent: func(_ *testing.T, m *release.Manifest) []byte {
				m.Files = slices.Delete(slices.Clone(m.Files), 1, 2)
				return r.mi
			},
			wantErr: true, wantMismatch: true, wantText: "files",
		},
		{
			name:    "directory flag mismatch",
			torrent: func(_ *testing.T, m *release.Manifest) []byte { m.Dir = false; return r.mi },
			wantErr: true, wantMismatch: true, wantText: "directory",
		},
		{
			name:     "single file claimed as directory",
			manifest: &single,
			torrent:  func(_ *testing.T, m *release.Manifest) []byte { m.Dir = true; return singleMI },
			wantErr:  true, wantMismatch: true, wantText: "directory",
		},
		{name: "private flag false", torrent: notPrivate(&f), wantErr: true, wantMismatch: true, wantText: "not private"},
		{name: "private flag absent", torrent: notPrivate(nil), wantErr: true, wantMismatch: true, wantText: "not private"},
		{
			name: "info not a dictionary",
			torrent: func(t *testing.T, m *release.Manifest) []byte {
				mi, err := Metainfo([]byte("i42e"), "", nil)
				if err != nil {
					t.Fatal(err)
				}
				m.InfoHash = metainfo.HashBytes([]byte("i42e")).HexString()
				return mi
			},
			wantErr: true,
		},
		{name: "garbage", torrent: func(*testing.T, *release.Manifest) []byte { return []byte("<html>not a torrent</html>") }, wantErr: true},
		{name: "empty", torrent: func(*testing.T, *release.Manifest) []byte { return nil }, wantErr: true},
		{name: "random bytes", torrent: func(*testing.T, *release.Manifest) []byte { return randBytes(5, 4096) }, wantErr: true},
		{name: "truncated", torrent: func(*testing.T, *release.Manifest) []byte { return r.mi[:len(r.mi)/2] }, wantErr: true},
		{name: "truncated by one byte", torrent: func(*testing.T, *release.Manifest) []byte { return r.mi[:len(r.mi)-1] }, wantErr: true},
		{
			name:    "trailing garbage",
			torrent: func(*testing.T, *release.Manifest) []byte { return append(slices.Clone(r.mi), "junk"...) },
			wantErr: true,
		},
		{
			name:    "deeply nested lists",
			torrent: func(*testing.T, *release.Manifest) []byte { return bytes.Repeat([]byte("l"), 1<<20) },
			wantErr: true,
		},
		{
			name:      "exactly MaxMetainfoSize",
			torrent:   func(t *testing.T, _ *release.Manifest) []byte { return paddedTorrent(t, r, MaxMetainfoSize) },
			seedCount: 1,
		},
		{
			name:    "oversize by one byte",
			torrent: func(t *testing.T, _ *release.Manifest) []byte { return paddedTorrent(t, r, MaxMetainfoSize+1) },
			wantErr: true, wantMismatch: true, wantText: "limit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := r.m
			if tc.manifest != nil {
				m = *tc.manifest
			}
			m.Files = slices.Clone(m.Files) // cases alter the copy only
			b := tc.torrent(t, &m)
			tf, err := CheckMetainfo(b, &m)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("CheckMetainfo: %v", err)
				}
				if tf == nil || len(tf.infoBytes) == 0 {
					t.Fatal("no info bytes")
				}
				if got := metainfo.HashBytes(tf.infoBytes).HexString(); got != m.InfoHash {
					t.Errorf("info bytes hash to %s, want %s", got, m.InfoHash)
				}
				if tc.wantSeeds == nil {
					if len(tf.WebSeeds) != tc.seedCount {
						t.Errorf("%d web seeds, want %d", len(tf.WebSeeds), tc.seedCount)
					}
				} else if !slices.Equal(tf.WebSeeds, tc.wantSeeds) {
					t.Errorf("WebSeeds = %q, want %q", tf.WebSeeds, tc.wantSeeds)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckMetainfo accepted a bad torrent")
			}
			if tf != nil {
				t.Error("CheckMetainfo returned a TorrentFile with an error")
			}
			if got := errors.Is(err, ErrMetadataMismatch); tc.wantMismatch && !got {
				t.Errorf("error %q does not wrap ErrMetadataMismatch", err)
			}
			if tc.wantText != "" && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}

// TestInfoBytesDeterministic: the publisher and the seeder derive the same infohash from the
// same files independently, and the info dictionary describes the release.
func TestInfoBytesDeterministic(t *testing.T) {
	files := smallFiles()
	a := buildRelease(t, "app", files, nil)
	b := buildRelease(t, "app", files, nil) // another directory, same name and bytes
	if a.m.InfoHash != b.m.InfoHash || !bytes.Equal(a.info, b.info) {
		t.Fatalf("same release, different info: %s vs %s", a.m.InfoHash, b.m.InfoHash)
	}
	info := infoOf(t, a)
	if info.Name != "app" || info.PieceLength != a.m.PieceLength || info.Private == nil || !*info.Private {
		t.Errorf("info = name %q, piece length %d, private %v", info.Name, info.PieceLength, info.Private)
	}
	if !bytes.Equal(info.Pieces, a.layout.PiecesSHA1) {
		t.Error("info pieces are not the layout's SHA-1 piece hashes")
	}
	var paths []string
	for _, f := range info.Files {
		paths = append(paths, strings.Join(f.Path, "/"))
	}
	if want := []string{"a.bin", "empty.txt", "sub/b.bin"}; !slices.Equal(paths, want) {
		t.Errorf("info files = %q, want %q", paths, want)
	}
	single, _ := buildSingle(t)
	if single.Dir {
		t.Error("single-file release marked as directory")
	}
}

// FuzzCheckMetainfo feeds arbitrary bytes to CheckMetainfo, both against a real manifest and
// against one whose infohash is made to match the input (so the checks past the infohash run).
func FuzzCheckMetainfo(f *testing.F) {
	r := buildRelease(f, "app", smallFiles(), nil)
	f.Add(r.mi)
	for _, n := range []int{0, 1, 10, len(r.mi) / 3, len(r.mi) / 2, len(r.mi) - 1} {
		f.Add(r.mi[:n])
	}
	f.Add(randBytes(7, 512))
	f.Add([]byte("d4:infoi42ee"))
	f.Add([]byte("d4:infod4:name3:app12:piece lengthi-1e6:lengthi-5e5:filesle7:privatei1eee"))
	f.Add([]byte("d4:infod5:filesld6:lengthi1e4:pathleeee4:name0:12:piece lengthi0eee"))
	f.Add([]byte("d8:url-listl3:ftp4:httpe4:infodee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := r.m
		m.Files = slices.Clone(r.m.Files)
		tf, err := CheckMetainfo(b, &m)
		if err == nil && !bytes.Equal(tf.infoBytes, r.info) {
			t.Fatalf("accepted a torrent whose info differs from the signed release's")
		}
		mi, err := metainfo.Load(bytes.NewReader(b))
		if err != nil {
			return
		}
		m.InfoHash = mi.HashInfoBytes().HexString()
		tf, err = CheckMetainfo(b, &m)
		if err != nil {
			return
		}
		// Accepted: the info must describe the manifest.
		info, err := metainfo.Load(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		i, err := info.UnmarshalInfo()
		if err != nil {
			t.Fatalf("accepted info that does not parse: %v", err)
		}
		if i.Name != m.Name || i.PieceLength != m.PieceLength || i.TotalLength() != m.Length() || i.Private == nil || !*i.Private {
			t.Fatalf("accepted info %+v for manifest %+v", i, m)
		}
		for _, u := range tf.WebSeeds {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				t.Fatalf("accepted web seed %q", u)
			}
		}
	})
}
