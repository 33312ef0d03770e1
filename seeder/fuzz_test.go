package seeder

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/swarm"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// FuzzProposed feeds arbitrary bytes as the targets part of a publish: the parser of the
// proposed targets and of the release manifest in them must refuse, never panic.
func FuzzProposed(f *testing.F) {
	dir := f.TempDir() + "/d"
	if err := deploy.Init(dir, time.Now()); err != nil {
		f.Fatal(err)
	}
	signed, err := trust.AddTargets(dir, mustRead(f, dir+"/targets.json"), []trust.Target{
		{Name: "releases/stable/1.0.0/bundle", Length: 3, Custom: []byte(`{"channel":"stable","version":"1.0.0","name":"a","infohash":"` +
			"0123456789abcdef0123456789abcdef01234567" + `","piece_length":262144,"files":[{"path":"a","length":3,"sha256":"` +
			"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" + `"}]}`)},
		{Name: "releases/stable/1.0.0/pieces", Length: 32},
	}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(`{"signed":{"_type":"targets","targets":{}}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bundle, pieces, m, err := proposed(b, "stable", "1.0.0")
		if err == nil && (bundle == nil || pieces == nil || m == nil || m.Version != "1.0.0") {
			t.Fatalf("accepted without a complete release: %v %v %v", bundle, pieces, m)
		}
	})
}

func mustRead(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzAgentBodies feeds arbitrary bodies to the endpoints agents post to (reports and
// enrolment) on a real seeder state file: every answer is a clean refusal or success, never a
// panic, and a refused body stores nothing.
func FuzzAgentBodies(f *testing.F) {
	db, err := store.Open(filepath.Join(f.TempDir(), "state.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	fleet := deploy.Token("0123456789abcdef0123456789abcdef")
	s := &Seeder{db: db, log: slog.New(slog.DiscardHandler), agent: fleet, admin: "fedcba9876543210fedcba9876543210",
		tracker: swarm.NewTracker(), announcers: map[string]map[netip.AddrPort]bool{}}
	f.Add([]byte(`{"id":"agent-1","hostname":"h","channel":"stable","state":"idle"}`))
	f.Add([]byte(`{"id":"a/b"}`))
	f.Add([]byte(`{"id":"agent-1"}{"id":"agent-2"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{api.PathReport, api.PathEnroll} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Authorization", fleet.Bearer())
			req = req.WithContext(context.WithValue(req.Context(), callerKey{}, caller{agent: "agent-1"}))
			w := httptest.NewRecorder()
			if path == api.PathReport {
				s.handleReport(w, req)
			} else {
				s.handleEnroll(w, req)
			}
			if w.Code >= 500 {
				t.Fatalf("POST %s %q: HTTP %d %s", path, body, w.Code, w.Body)
			}
		}
	})
}

// FuzzAnnounce feeds arbitrary query strings to the tracker: refusals, never a panic.
func FuzzAnnounce(f *testing.F) {
	h := swarm.NewTracker().Handler()
	f.Add("info_hash=%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13%14&peer_id=-PPA001-abcdefghijkl&port=6881&left=0&event=started")
	f.Add("info_hash=short&port=99999")
	f.Add("event=bogus")
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "/announce", nil)
		req.URL.RawQuery = query
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("announce %q: HTTP %d %s", query, w.Code, w.Body)
		}
	})
}

// FuzzShareRequest feeds arbitrary share request bodies to the scheduler: a refusal or a
// piece index inside the release, never a panic.
func FuzzShareRequest(f *testing.F) {
	f.Add([]byte(`{"want":[3,1,2]}`), uint16(5))
	f.Add([]byte(``), uint16(1))
	f.Add([]byte(`{"want":[-1,99999999999]}`), uint16(0))
	f.Add([]byte(`{"want":"all"}`), uint16(3))
	f.Fuzz(func(t *testing.T, body []byte, pieces uint16) {
		var sh shares
		n := int(pieces)
		for range 3 {
			want, err := decodeShare(bytes.NewReader(body))
			if err != nil {
				return
			}
			if i, ok := sh.pick(context.Background(), "agent-1", n, want); ok && (i < 0 || i >= n) {
				t.Fatalf("picked piece %d of %d for %q", i, n, body)
			}
		}
	})
}

// FuzzWatch feeds arbitrary query strings to the long poll: a refusal or the metadata version,
// never a panic or a server error. The seeder is stopping, so no watch is held.
func FuzzWatch(f *testing.F) {
	dir := f.TempDir() + "/d"
	if err := deploy.Init(dir, time.Now()); err != nil {
		f.Fatal(err)
	}
	online, err := trust.LoadOnline(dir)
	if err != nil {
		f.Fatal(err)
	}
	repo, err := trust.OpenRepo(trust.NewMemStore(), online, dir, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	s := &Seeder{repo: repo, log: slog.New(slog.DiscardHandler), stopping: make(chan struct{})}
	close(s.stopping)
	f.Add("after=1&wait=2.5")
	f.Add("after=0")
	f.Add("after=-9223372036854775808&wait=NaN")
	f.Add("after=1&wait=1e308")
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, api.PathWatch, nil)
		req.URL.RawQuery = query
		w := httptest.NewRecorder()
		s.handleWatch(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("watch %q: HTTP %d %s", query, w.Code, w.Body)
		}
	})
}
