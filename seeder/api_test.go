package seeder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/seeder"
)

func TestAuth(t *testing.T) {
	h, ac := newSeeder(t)
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	if _, err := ac.Publish(context.Background(), h.Keys, "stable", "1.0.0", path); err != nil {
		t.Fatal(err)
	}
	h.Unsettled() // every kind of caller asks for piece 0 in turn
	announce := api.PathAnnounce + "?" + url.Values{
		"info_hash": {strings.Repeat("\x01", 20)}, "peer_id": {"-PP0001-abcdefghijkl"}, "port": {"6881"}, "left": {"0"},
	}.Encode()
	report := `{"id":"agent-1","hostname":"h1","channel":"stable","state":"idle"}`

	const (
		none = iota
		bogus
		noScheme // the agent credential without "Bearer "
		fleet    // the enrolment token: only for enrolling
		agent
		admin
	)
	kinds := []string{"no token", "bogus token", "token without Bearer", "fleet token", "agent credential", "admin token"}
	routes := []struct {
		name, method, path, body string
		agent, admin             int // status with the agent and the admin token
		open                     bool
	}{
		{name: "healthz", method: "GET", path: api.PathHealth, agent: 200, admin: 200, open: true},
		{name: "tuf", method: "GET", path: api.PathTUF + "targets.json", agent: 200, admin: 200},
		{name: "webseed", method: "GET", path: api.PathWebSeed + "stable/1.0.0/app/a.txt", agent: 200, admin: 200},
		{name: "announce", method: "GET", path: announce, agent: 200, admin: 200},
		{name: "torrent", method: "GET", path: api.PathTorrent + "stable/1.0.0", agent: 200, admin: 200},
		// The announce above came from 127.0.0.1; nobody announced from 127.0.0.2.
		{name: "share", method: "POST", path: api.PathShare + "stable/1.0.0", body: `{"want":[0]}`, agent: 200, admin: 200},
		{name: "known peer", method: "GET", path: api.PathPeers + "127.0.0.1", agent: 204, admin: 204},
		{name: "unknown peer", method: "GET", path: api.PathPeers + "127.0.0.2", agent: 404, admin: 404},
		{name: "bad peer address", method: "GET", path: api.PathPeers + "not-an-ip", agent: 400, admin: 400},
		{name: "report", method: "POST", path: api.PathReport, body: report, agent: 204, admin: 204},
		// An empty publish: the admin is let in and refused for the missing channel.
		{name: "publish", method: "POST", path: api.PathPublish, agent: 401, admin: 400},
		{name: "status", method: "GET", path: api.PathStatus, agent: 401, admin: 200},
	}
	for _, rt := range routes {
		for kind, kname := range kinds {
			t.Run(rt.name+"/"+kname, func(t *testing.T) {
				want := http.StatusUnauthorized
				switch {
				case rt.open:
					want = http.StatusOK
				case kind == agent:
					want = rt.agent
				case kind == admin:
					want = rt.admin
				}
				req, err := http.NewRequest(rt.method, h.URL+rt.path, strings.NewReader(rt.body))
				if err != nil {
					t.Fatal(err)
				}
				switch kind {
				case bogus:
					req.Header.Set("Authorization", "Bearer 0123456789abcdef0123456789abcdef")
				case noScheme:
					req.Header.Set("Authorization", h.Agent)
				case fleet:
					req.Header.Set("Authorization", "Bearer "+h.Fleet)
				case agent:
					req.Header.Set("Authorization", "Bearer "+h.Agent)
				case admin:
					req.Header.Set("Authorization", "Bearer "+h.Admin)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var buf bytes.Buffer
				buf.ReadFrom(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("%s %s: HTTP %d %q, want %d", rt.method, rt.name, resp.StatusCode, buf.Bytes(), want)
				}
				if want == http.StatusUnauthorized {
					if msg := seeder.ErrorBody(t, resp.Header, buf.Bytes()); !strings.Contains(msg, "token") {
						t.Errorf("401 error %q does not mention the token", msg)
					}
				}
			})
		}
	}
}

// TestPeerPorts: a known peer's answer names the ports it announced, so the agent that asked
// can call it back.
func TestPeerPorts(t *testing.T) {
	h, _ := newSeeder(t)
	for _, port := range []string{"7001", "6881"} {
		announce := api.PathAnnounce + "?" + url.Values{
			"info_hash": {strings.Repeat("\x01", 20)}, "peer_id": {"-PPA001-abcdefgh" + port}, "port": {port}, "left": {"1"},
		}.Encode()
		if code, _, b := h.Do(t, http.MethodGet, announce, h.Agent, nil, nil); code != http.StatusOK {
			t.Fatalf("announce: HTTP %d %s", code, b)
		}
	}
	code, hdr, b := h.Do(t, http.MethodGet, api.PathPeers+"127.0.0.1", h.Agent, nil, nil)
	if got := hdr.Get(api.HeaderPeerPorts); code != http.StatusNoContent || got != "6881,7001" {
		t.Fatalf("known peer: HTTP %d %s, %s %q; want 204 and \"6881,7001\"", code, b, api.HeaderPeerPorts, got)
	}
}

func TestReport(t *testing.T) {
	h, _ := newSeeder(t)
	post := func(t *testing.T, body []byte) (int, http.Header, []byte) {
		return h.Do(t, http.MethodPost, api.PathReport, h.Agent, bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	}
	good := api.Report{ID: "agent-1", Hostname: "host-1", Channel: "stable", InstalledVersion: "1.0.0",
		State: api.StateDownloading, TargetVersion: "1.1.0", Completed: 10, Total: 100, BytesFromPeers: 7, BytesFromOrigin: 3}
	b, _ := json.Marshal(good)
	if code, _, body := post(t, b); code != http.StatusNoContent {
		t.Fatalf("valid report: HTTP %d %s, want 204", code, body)
	}
	st := h.Status(t)
	if len(st.Agents) != 1 {
		t.Fatalf("Status agents %+v, want the one report", st.Agents)
	}
	got := st.Agents[0]
	if got.Time.IsZero() {
		t.Errorf("report time not set by the seeder")
	}
	got.Time = good.Time
	if !reflect.DeepEqual(got, good) {
		t.Errorf("Status shows %+v, want %+v", got, good)
	}

	withID := func(id string) []byte {
		r := good
		r.ID, r.Hostname = id, "bad"
		b, _ := json.Marshal(r)
		return b
	}
	huge := good
	huge.ID, huge.Error = "agent-2", strings.Repeat("x", 65<<10)
	hugeJSON, _ := json.Marshal(huge)
	tests := []struct {
		name string
		body []byte
	}{
		{name: "oversized body", body: hugeJSON},
		{name: "bad JSON", body: []byte(`{"id": "agent-3", `)},
		{name: "not an object", body: []byte(`["agent-3"]`)},
		{name: "empty body", body: nil},
		{name: "empty id", body: withID("")},
		{name: "id with a slash", body: withID("a/b")},
		{name: "id with a space", body: withID("a b")},
		{name: "id of 65 characters", body: withID(strings.Repeat("a", 65))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := post(t, tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("HTTP %d %s, want 400", code, body)
			}
			seeder.ErrorBody(t, hdr, body)
			st := h.Status(t)
			if len(st.Agents) != 1 || st.Agents[0].ID != good.ID || st.Agents[0].Hostname != good.Hostname {
				t.Errorf("refused report changed the agents: %+v", st.Agents)
			}
		})
	}
	t.Run("id of 64 characters", func(t *testing.T) {
		id := strings.Repeat("a", 64)
		cred := h.Enroll(t, id)
		code, _, body := h.Do(t, http.MethodPost, api.PathReport, cred, bytes.NewReader(withID(id)), http.Header{"Content-Type": {"application/json"}})
		if code != http.StatusNoContent {
			t.Errorf("HTTP %d %s, want 204", code, body)
		}
	})
	t.Run("report for another agent", func(t *testing.T) {
		if code, _, body := post(t, withID("agent-9")); code != http.StatusForbidden {
			t.Errorf("HTTP %d %s, want 403", code, body)
		}
	})
}
