package swarm

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
)

func TestFileReaders(t *testing.T) {
	dir := t.TempDir()
	info := &metainfo.Info{Name: "rel", PieceLength: 4, Files: []metainfo.FileInfo{
		{Path: []string{"a"}, Length: 3},
		{Path: []string{"empty"}, Length: 0},
		{Path: []string{"sub", "b"}, Length: 5},
		{Path: []string{"c"}, Length: 4},
	}}
	write := func(name, data string) {
		p := filepath.Join(dir, "rel", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "abc")
	write("empty", "")
	write("sub/b", "defgh")
	// c is missing for now.
	r := newFileReaders(dir, info)
	defer r.Close()

	tests := []struct {
		name    string
		off     int64
		n       int
		want    string
		wantErr error
	}{
		{name: "within a file", off: 1, n: 2, want: "bc"},
		{name: "across files and an empty one", off: 1, n: 5, want: "bcdef"},
		{name: "into a missing file", off: 6, n: 4, want: "gh", wantErr: io.EOF},
		{name: "past the end", off: 12, n: 1, want: "", wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, tt.n)
			n, err := r.ReadAt(b, tt.off)
			if got := string(b[:n]); got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q, %v", tt.n, tt.off, got, err, tt.want, tt.wantErr)
			}
		})
	}

	// A file that appears later is read (the missing one was not cached), and a short one
	// ends the read with io.EOF.
	write("c", "ij")
	b := make([]byte, 4)
	if n, err := r.ReadAt(b, 8); string(b[:n]) != "ij" || err != io.EOF {
		t.Errorf("short file: ReadAt = %q, %v; want \"ij\", EOF", b[:n], err)
	}
	write("c", "ijkl")
	all := make([]byte, 12)
	if n, err := r.ReadAt(all, 0); err != nil || !bytes.Equal(all[:n], []byte("abcdefghijkl")) {
		t.Errorf("whole torrent: ReadAt = %q, %v", all[:n], err)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(b, 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("after Close: ReadAt error %v, want fs.ErrClosed", err)
	}
}
