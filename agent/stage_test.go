package agent

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestStagedInstall stages a release piece by piece, out of order as a download does, then
// installs it: from the staged copy when that is complete and passes its check, from the swarm
// copy otherwise.
func TestStagedInstall(t *testing.T) {
	dirFiles := map[string]string{
		"bin/app":      strings.Repeat("app ", 20000), // 80,000 bytes: pieces cross files
		"empty":        "",
		"lib/data.txt": strings.Repeat("data", 5000),
		"share/doc":    "notes",
	}
	single := map[string]string{"app.bin": strings.Repeat("single", 20000)}
	tests := []struct {
		name    string
		files   map[string]string
		skip    int    // piece left unstaged; -1: none
		corrupt int    // piece staged with a flipped byte; -1: none
		wrong   string // a file whose signed digest the stager is given wrong
		noSwarm bool   // remove the swarm copy before the install
		wantLog string // in keepStaged's log: why no copy was kept
	}{
		{name: "staged copy is installed without the swarm copy", files: dirFiles, skip: -1, corrupt: -1, noSwarm: true},
		{name: "single file staged copy is installed without the swarm copy", files: single, skip: -1, corrupt: -1, noSwarm: true},
		{name: "corrupt staged piece fails the check; the install copies", files: dirFiles, skip: -1, corrupt: 3, wantLog: "failed its check"},
		{name: "a file that differs from its signed digest fails the check", files: dirFiles, skip: -1, corrupt: -1, wrong: "lib/data.txt", wantLog: "failed its check"},
		{name: "a single file that differs from its signed digest fails the check", files: single, skip: -1, corrupt: -1, wrong: "app.bin", wantLog: "failed its check"},
		{name: "incomplete staging keeps no copy", files: dirFiles, skip: 2, corrupt: -1, wantLog: "no staging copy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAgent(t)
			tree := filepath.Join(t.TempDir(), "app") // what current must hold
			src := tree                               // what is published
			if len(tt.files) == 1 {
				if err := os.MkdirAll(tree, 0o755); err != nil {
					t.Fatal(err)
				}
				src = filepath.Join(tree, "app.bin")
				if err := os.WriteFile(src, []byte(tt.files["app.bin"]), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFiles(t, src, tt.files)
			}
			r := placeReleaseWith(t, a, "1.0.0", src, 16<<10)
			if r.m.NumPieces() < 5 {
				t.Fatalf("%d pieces, want several", r.m.NumPieces())
			}
			var all bytes.Buffer
			for _, f := range r.m.Files {
				p := src
				if r.m.Dir {
					p = filepath.Join(src, filepath.FromSlash(f.Path))
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				all.Write(b)
			}
			signed := *r.m
			signed.Files = slices.Clone(r.m.Files)
			for i := range signed.Files {
				if signed.Files[i].Path == tt.wrong {
					signed.Files[i].SHA256[0] ^= 1
				}
			}
			releases := filepath.Join(a.cfg.InstallDir, releasesSub)
			st, err := newStager(releases, &signed)
			if err != nil {
				t.Fatal(err)
			}
			// Out of order, as pieces verify in a swarm, and one twice.
			for i := r.m.NumPieces() - 1; i >= 0; i-- {
				if i == tt.skip {
					continue
				}
				end := min(int64(i+1)*r.m.PieceLength, int64(all.Len()))
				data := bytes.Clone(all.Bytes()[int64(i)*r.m.PieceLength : end])
				if i == tt.corrupt {
					data[len(data)/2] ^= 1
				}
				st.piece(i, data)
			}
			st.piece(0, all.Bytes()[:r.m.PieceLength])
			var logged bytes.Buffer
			a.keepStaged(r.m.Version, st, true, slog.New(slog.NewTextHandler(&logged, nil)))
			staged := a.staged[r.m.Version]
			if tt.wantLog == "" && staged == "" {
				t.Fatalf("no staging copy kept: %s", logged.String())
			}
			if tt.wantLog != "" {
				if staged != "" {
					t.Errorf("kept staging copy %s, want none", staged)
				}
				if !strings.Contains(logged.String(), tt.wantLog) {
					t.Errorf("log %q does not say %q", logged.String(), tt.wantLog)
				}
				if _, err := os.Stat(st.dir); !os.IsNotExist(err) {
					t.Errorf("staging directory left: %v", err)
				}
			}
			if tt.noSwarm {
				if err := os.RemoveAll(r.swarm); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.install(context.Background(), r.m, r.bundle, discard); err != nil {
				t.Fatalf("install: %v", err)
			}
			assertSameTree(t, filepath.Join(a.cfg.InstallDir, "current"), tree)
			assertReleaseDirs(t, a, "1.0.0")
		})
	}
}
