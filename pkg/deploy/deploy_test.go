package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitWritesSecretsPrivately(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if err := Init(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{
		".": 0o700, AdminTokenFile: 0o600, AgentTokenFile: 0o600, RootFile: 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	admin, err := ReadToken(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	agent, err := ReadToken(filepath.Join(dir, AgentTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if admin.Equal(string(agent)) {
		t.Fatal("admin and agent tokens are equal")
	}
	if s := fmt.Sprint(admin); strings.Contains(s, string(admin)) {
		t.Fatalf("formatting a token reveals it: %q", s)
	}
}

func TestInitRefusesExisting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(dir string)
	}{
		{name: "empty dir", setup: func(dir string) { os.Mkdir(dir, 0o700) }},
		{name: "deployment", setup: func(dir string) { Init(dir, time.Now()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			tc.setup(dir)
			before, _ := os.ReadDir(dir)
			if err := Init(dir, time.Now()); !errors.Is(err, ErrExists) {
				t.Fatalf("Init on an existing dir: %v, want ErrExists", err)
			}
			after, _ := os.ReadDir(dir)
			if len(before) != len(after) {
				t.Fatalf("Init changed an existing dir: %d entries, then %d", len(before), len(after))
			}
		})
	}
}

func TestReadTokenRefusesMalformed(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"empty", ""}, {"short", "abc\n"}, {"two words", "0123456789abcdef 0123456789abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t")
			os.WriteFile(p, []byte(tc.body), 0o600)
			_, err := ReadToken(p)
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadToken(%q): %v, want ErrBadToken naming the file", tc.body, err)
			}
		})
	}
	if _, err := ReadToken(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("ReadToken of a missing file succeeded")
	}
}
