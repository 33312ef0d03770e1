package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCrossBuild builds peerpatch for every OS and architecture a fleet runs on: Linux,
// Windows and macOS, amd64 and arm64, statically (CGO_ENABLED=0, as `make build`). Fleets are
// mostly Windows and macOS workstations, which the rest of the tests, run on Linux, do not
// compile for. -short skips it (each platform is a full build, slow the first time).
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not cross-compiling peerpatch for linux, windows and darwin on amd64 and arm64")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to cross-compile with: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, goos := range []string{"linux", "windows", "darwin"} {
		for _, goarch := range []string{"amd64", "arm64"} {
			t.Run(goos+"/"+goarch, func(t *testing.T) {
				bin := filepath.Join(out, "peerpatch-"+goos+"-"+goarch)
				if goos == "windows" {
					bin += ".exe"
				}
				cmd := exec.Command(goBin, "build", "-tags", "nosqlite", "-buildvcs=false", "-o", bin, "./cmd/peerpatch")
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("GOOS=%s GOARCH=%s go build: %v\n%s", goos, goarch, err, b)
				}
				if fi, err := os.Stat(bin); err != nil || fi.Size() == 0 {
					t.Fatalf("no binary: %v", err)
				}
			})
		}
	}
}
