package swarm

import (
	"path/filepath"
	"testing"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
)

// TestAddChecksOnlyWhatIsOnDisk: Add checks the data already in the torrent's directory, and
// when there is no directory it checks nothing (and forgets stale piece records).
func TestAddChecksOnlyWhatIsOnDisk(t *testing.T) {
	r := buildRelease(t, "app", multiFiles(), nil)
	n := r.m.NumPieces()
	for _, tc := range []struct {
		name         string
		dir          func(dataDir string) string // the torrent's directory
		staleRecords bool                        // every piece recorded complete beforehand
		wantChecks   int64
		wantComplete bool
	}{
		{name: "no directory", dir: func(d string) string { return filepath.Join(d, "new") }},
		{name: "no directory, stale records", dir: func(d string) string { return filepath.Join(d, "new") }, staleRecords: true},
		{name: "release on disk, no records", dir: func(string) string { return r.parent }, wantChecks: int64(n), wantComplete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			if tc.staleRecords {
				cp, err := openCompletion(dataDir)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					if err := cp.Set(metainfo.PieceKey{InfoHash: r.infoHash(), Index: i}, g.Some(true)); err != nil {
						t.Fatal(err)
					}
				}
				cp.Close()
			}
			c := newClient(t, Config{DataDir: dataDir, PersistCompletion: true})
			tt, err := c.Add(r.spec(tc.dir(dataDir)))
			if err != nil {
				t.Fatal(err)
			}
			e := c.storage.lookup(r.infoHash())
			if got := e.diskChecks.Load(); got != tc.wantChecks {
				t.Errorf("Add hashed %d pieces from disk, want %d", got, tc.wantChecks)
			}
			for i := range n {
				if got := pieceComplete(tt, i); got != tc.wantComplete {
					t.Errorf("piece %d complete = %v, want %v", i, got, tc.wantComplete)
				}
			}
			c.Close()
			for i := range n {
				if got := persistedComplete(t, dataDir, r.infoHash(), i); got != tc.wantComplete {
					t.Errorf("piece %d recorded complete = %v, want %v", i, got, tc.wantComplete)
				}
			}
		})
	}
}
