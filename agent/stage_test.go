package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStagedInstall stages a release piece by piece, as a download does, then installs it.
func TestStagedInstall(t *testing.T) {
	files := map[string]string{
		"bin/app":      strings.Repeat("app ", 20000), // 80,000 bytes: pieces cross files
		"empty":        "",
		"lib/data.txt": strings.Repeat("data", 5000),
		"share/doc":    "notes",
	}
	tests := []struct {
		name    string
		skip    int                               // piece left unstaged; -1: none
		damage  func(t *testing.T, staged string) // after staging
		noSwarm bool                              // remove the swarm copy before the install
	}{
		{name: "staged copy is installed without the swarm copy", skip: -1, noSwarm: true},
		{name: "damaged staged copy is copied again", skip: -1, damage: func(t *testing.T, staged string) {
			p := filepath.Join(staged, "lib", "data.txt")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[100] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "incomplete staging keeps no copy", skip: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t)
			src := filepath.Join(t.TempDir(), "app")
			writeFiles(t, src, files)
			r := placeReleaseWith(t, a, "1.0.0", src, 16<<10)
			if r.m.NumPieces() < 5 {
				t.Fatalf("%d pieces, want several", r.m.NumPieces())
			}
			var all bytes.Buffer
			for _, f := range r.m.Files {
				b, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				all.Write(b)
			}
			releases := filepath.Join(a.cfg.InstallDir, releasesSub)
			st, err := newStager(releases, r.m)
			if err != nil {
				t.Fatal(err)
			}
			// Out of order, as pieces verify in a swarm, and one twice.
			for i := r.m.NumPieces() - 1; i >= 0; i-- {
				if i == tt.skip {
					continue
				}
				end := min(int64(i+1)*r.m.PieceLength, int64(all.Len()))
				st.piece(i, all.Bytes()[int64(i)*r.m.PieceLength:end])
			}
			st.piece(0, all.Bytes()[:r.m.PieceLength])
			a.keepStaged(r.m.Version, st, true, discard)
			staged := a.staged[r.m.Version]
			if tt.skip >= 0 {
				if staged != "" {
					t.Errorf("kept staging copy %s with piece %d missing", staged, tt.skip)
				}
				if _, err := os.Stat(st.dir); !os.IsNotExist(err) {
					t.Errorf("incomplete staging directory left: %v", err)
				}
			} else if staged == "" {
				t.Fatal("no staging copy kept")
			}
			if tt.damage != nil {
				tt.damage(t, staged)
			}
			if tt.noSwarm {
				if err := os.RemoveAll(r.swarm); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.install(context.Background(), r.m, r.bundle, discard); err != nil {
				t.Fatalf("install: %v", err)
			}
			assertSameTree(t, filepath.Join(a.cfg.InstallDir, "current"), src)
			assertReleaseDirs(t, a, "1.0.0")
		})
	}
}
