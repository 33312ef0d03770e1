package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCorruptSwarmCopy: every file under the directory has a byte flipped every `every` bytes,
// and keeps its modification time, so that the agent seeding it does not notice.
func TestCorruptSwarmCopy(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a.bin": 10000, "sub/b.bin": 3000, "empty": 0}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for name, n := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	flipped, err := corruptSwarmCopy(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// a.bin at 1000, 5096, 9192; b.bin at 1000.
	if flipped != 4 {
		t.Errorf("flipped %d bytes, want 4", flipped)
	}
	for name, n := range files {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if n > 1000 && bytes.Equal(b, make([]byte, n)) {
			t.Errorf("%s: unchanged", name)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(old) {
			t.Errorf("%s: modified %v, want %v kept", name, fi.ModTime(), old)
		}
	}
}
