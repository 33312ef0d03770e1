package lab

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Install is what the lab found in an agent's install directory after a phase.
type Install struct {
	// Current is the version I/current points at ("" if there is none).
	Current string `json:"current"`
	// Identical: I/current holds exactly the published files, byte for byte.
	Identical bool `json:"identical"`
	// Diff says how I/current differs from the release, if it does.
	Diff string `json:"diff,omitempty"`
	// Leftovers are staging directories or temporary links in I (a crash mid-install leaves
	// them; the next install removes them).
	Leftovers []string `json:"leftovers,omitempty"`
	// Err is a failure to read I.
	Err string `json:"err,omitempty"`
}

// Clean: nothing half-installed — either no current release or a complete identical one.
func (in *Install) Clean() bool {
	return in.Err == "" && (in.Current == "" || in.Identical)
}

// checkInstall inspects an agent's install directory against the release of version.
func checkInstall(dir, version string, want tree) Install {
	var in Install
	link, err := os.Readlink(filepath.Join(dir, "current"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		in.Err = err.Error()
	default:
		in.Current = filepath.Base(link)
		got, err := hashTree(filepath.Join(dir, "current"))
		if err != nil {
			in.Err = err.Error()
			break
		}
		in.Diff = want.diff(got)
		in.Identical = in.Diff == "" && in.Current == version
		if in.Current != version {
			in.Diff = strings.TrimPrefix(in.Diff+"; current is "+in.Current+", not "+version, "; ")
		}
	}
	in.Leftovers = leftovers(dir)
	return in
}

// leftovers lists staging directories under I/releases and temporary links in I.
func leftovers(dir string) []string {
	var out []string
	ents, _ := os.ReadDir(filepath.Join(dir, "releases"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".staging-") {
			out = append(out, "releases/"+e.Name())
		}
	}
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".current-") || strings.HasPrefix(e.Name(), ".previous-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// stagedBytes is how many bytes the install staging directories under I/releases hold, and
// whether there is one.
func stagedBytes(dir string) (int64, bool) {
	ents, err := os.ReadDir(filepath.Join(dir, "releases"))
	if err != nil {
		return 0, false
	}
	var n int64
	found := false
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".staging-") {
			continue
		}
		found = true
		filepath.WalkDir(filepath.Join(dir, "releases", e.Name()), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	return n, found
}
