package lab

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeReporting points reportingParams at a directory holding the given parameters.
func fakeReporting(t *testing.T, params map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range params {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := reportingParams
	reportingParams = dir
	t.Cleanup(func() { reportingParams = old })
	t.Setenv("TMPDIR", t.TempDir()) // lockDir, where the saved parameters go
	return dir
}

func readParams(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for name := range heldReporting {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got[name] = strings.TrimSpace(string(b))
	}
	return got
}

func TestHoldGuestMemory(t *testing.T) {
	orig := map[string]string{"min_free_ms": "0", "max_waiting_mib": "1024", "page_reporting_order": "9"}
	tests := []struct {
		name string
		run  func(t *testing.T) // between hold and release
	}{
		{"one run", func(t *testing.T) {}},
		{"another run holds them already", func(t *testing.T) {
			// A run that starts while another holds them (or after one died holding them)
			// finds the lab's values set: what is put back must be the record, not those.
			g, err := holdGuestMemory(nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if !g.held {
				t.Fatal("second hold holds nothing")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeReporting(t, orig)
			g, err := holdGuestMemory(nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			got := readParams(t, dir)
			for name, v := range heldReporting {
				if got[name] != v {
					t.Errorf("while held: %s = %q, want %q", name, got[name], v)
				}
			}
			tt.run(t)
			if err := g.release(); err != nil {
				t.Fatal(err)
			}
			got = readParams(t, dir)
			for name := range heldReporting {
				if got[name] != orig[name] {
					t.Errorf("after release: %s = %q, want %q", name, got[name], orig[name])
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "page_reporting_order")); strings.TrimSpace(string(b)) != "9" {
				t.Errorf("page_reporting_order changed to %q", b)
			}
			if _, err := os.Stat(savedReporting()); !os.IsNotExist(err) {
				t.Errorf("saved parameters left behind: %v", err)
			}
			if err := g.release(); err != nil {
				t.Errorf("second release: %v", err)
			}
		})
	}
}

func TestHoldGuestMemoryWithoutModule(t *testing.T) {
	fakeReporting(t, nil)
	g, err := holdGuestMemory(nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if g.held {
		t.Error("held without the module's parameters")
	}
	if err := g.release(); err != nil {
		t.Error(err)
	}
	if s := g.String(); !strings.Contains(s, "as the host has it") {
		t.Errorf("String() = %q", s)
	}
}

func TestTouchHelper(t *testing.T) {
	if err := touchMain([]string{"--bytes", "8388608"}); err != nil {
		t.Fatal(err)
	}
	if err := touchMain([]string{"--bytes", "0"}); err == nil {
		t.Error("touch of 0 bytes: no error")
	}
}
