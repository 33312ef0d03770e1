package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/release"
	"github.com/peerpatch/peerpatch/pkg/store"
)

func TestTrustVersion(t *testing.T) {
	a := newTestAgent(t)
	reopen := func(t *testing.T) {
		t.Helper()
		if err := a.db.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(filepath.Join(a.cfg.DataDir, stateFile))
		if err != nil {
			t.Fatal(err)
		}
		a.db = db
	}
	// Steps run in order against the same state file.
	steps := []struct {
		name     string
		channel  string // default "stable"
		version  string
		reopen   bool // close and reopen the state file first
		rollback bool
		highest  string // highest trusted afterwards
	}{
		{name: "first version", version: "1.0.0", highest: "1.0.0"},
		{name: "newer", version: "1.1.0", highest: "1.1.0"},
		{name: "older refused", version: "1.0.5", rollback: true, highest: "1.1.0"},
		{name: "older refused after reopen", version: "1.0.5", reopen: true, rollback: true, highest: "1.1.0"},
		{name: "first version refused after reopen", version: "1.0.0", rollback: true, highest: "1.1.0"},
		{name: "pre-release of trusted version refused", version: "1.1.0-rc.1", rollback: true, highest: "1.1.0"},
		{name: "equal version", version: "1.1.0", highest: "1.1.0"},
		{name: "equal version after reopen", version: "1.1.0", reopen: true, highest: "1.1.0"},
		{name: "equal with v prefix", version: "v1.1.0", highest: "1.1.0"},
		{name: "other channel is independent", channel: "beta", version: "0.1.0", highest: "0.1.0"},
		{name: "newer again", version: "2.0.0", highest: "2.0.0"},
		{name: "previous highest now refused", version: "1.1.0", reopen: true, rollback: true, highest: "2.0.0"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a.cfg.Channel = "stable"
			if s.channel != "" {
				a.cfg.Channel = s.channel
			}
			if s.reopen {
				reopen(t)
			}
			err := a.trustVersion(s.version)
			switch {
			case s.rollback && !errors.Is(err, ErrRollback):
				t.Errorf("trustVersion(%s) = %v, want ErrRollback", s.version, err)
			case s.rollback && !strings.Contains(err.Error(), s.version):
				t.Errorf("error %q does not name the offered version", err)
			case !s.rollback && err != nil:
				t.Errorf("trustVersion(%s) = %v, want nil", s.version, err)
			}
			// "v1.1.0" and "1.1.0" are the same version; either spelling may be stored.
			if got := a.getString(keyTrusted + a.cfg.Channel); got == "" || release.CompareVersions(got, s.highest) != 0 {
				t.Errorf("highest trusted = %q, want %q", got, s.highest)
			}
		})
	}
}
