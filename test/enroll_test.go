package test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/deploy"
)

// TestRevokedAgentGetsNothing: an agent enrols with the fleet token and shows in `agents list`;
// once revoked it gets no metadata, its address leaves the tracker, and it installs nothing
// more, while the rest of the fleet goes on.
func TestRevokedAgentGetsNothing(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", 1<<20, 1))
	a := StartAgent(t, d, "agentA", "stable", []string{s.URL})
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)

	agents := listAgents(t, s, d)
	if len(agents) != 1 || agents[0].Revoked || agents[0].ID == "" {
		t.Fatalf("agents list = %+v, want one enrolled agent", agents)
	}
	id := agents[0].ID
	awaitPeers(t, s, d, "1.0.0", 1) // agent A (the origin hands out shares; it is no peer)

	MustRun(t, "agents", "revoke", "--seeder", s.URL, "--keys", d.Dir, id)
	if agents := listAgents(t, s, d); !agents[0].Revoked {
		t.Fatalf("agents list after revoke = %+v, want revoked", agents)
	}
	awaitPeers(t, s, d, "1.0.0", 0) // A left the tracker and cannot come back

	v2 := WriteRelease(t, t.TempDir(), "app", 1<<20, 2)
	s.Publish(t, d, "stable", "2.0.0", v2)
	b := StartAgent(t, d, "agentB", "stable", []string{s.URL})
	AwaitInstalled(t, 30*time.Second, "2.0.0", b)
	SameTree(t, v2, filepath.Join(b.Install, "current"))
	time.Sleep(3 * time.Second) // A polls every second: give it time to try
	if a.Current() != "1.0.0" {
		t.Fatalf("revoked agent A moved to %q", a.Current())
	}
	if !strings.Contains(a.Output(), "was revoked") {
		t.Fatalf("revoked agent A does not say it was revoked:\n%s", a.Output())
	}
	a.Kill()
	data, install := a.Data, a.Install
	r := Run(t, append([]string{"--log-level", "error", "agent", "--once"}, AgentArgs(d, data, install, "stable", s.URL)...)...)
	if r.Err == nil || !strings.Contains(r.Stderr, "revoked") {
		t.Fatalf("revoked agent --once: err %v, stderr %q; want a refusal saying revoked", r.Err, r.Stderr)
	}
}

func listAgents(t *testing.T, s *Seeder, d *Deployment) []api.Agent {
	t.Helper()
	r := MustRun(t, "agents", "list", "--seeder", s.URL, "--keys", d.Dir, "--json")
	var res struct {
		Agents []api.Agent `json:"agents"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("agents list --json %q: %v", r.Stdout, err)
	}
	return res.Agents
}

// awaitPeers waits until the tracker lists n peers for version.
func awaitPeers(t *testing.T, s *Seeder, d *Deployment, version string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		for _, r := range s.Status(t, d).Releases {
			if r.Version == version {
				got = r.Peers
			}
		}
		if got == n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("tracker lists %d peers for %s, want %d", got, version, n)
}

// TestSeederRefusesUnknownPeers: the origin accepts BitTorrent connections only from addresses
// its tracker knows (enrolled agents announce before they connect). A stranger at 127.0.0.2
// gets no handshake; the same handshake from an announced address (127.0.0.1) gets one.
func TestSeederRefusesUnknownPeers(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"), "--max-peers", "2") // seeds over BitTorrent too
	pub := s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", 1<<20, 1))
	a := StartAgent(t, d, "agent", "stable", []string{s.URL})
	AwaitInstalled(t, 30*time.Second, "1.0.0", a) // 127.0.0.1 has announced
	ready := s.JSONLines("seeder ready")
	if len(ready) != 1 {
		t.Fatalf("seeder logged %d ready lines", len(ready))
	}
	port := int(ready[0]["peerPort"].(float64))
	ih, err := hex.DecodeString(pub.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	if peerHandshake(t, "127.0.0.2", port, ih) {
		t.Fatal("the seeder answered a peer whose address no enrolled agent announced")
	}
	if !peerHandshake(t, "127.0.0.1", port, ih) {
		t.Fatal("the seeder refused a peer from an announced address")
	}
}

// TestAgentAcceptsOnlyEnrolledPeers: a seeding agent refuses BitTorrent connections from an
// address no enrolled agent announced from (127.0.0.2), and lets an enrolled agent in (127.0.0.3)
// once it has announced: the agent asks the seeder about the caller instead of waiting for
// its own next announce (30 s away once it seeds).
func TestAgentAcceptsOnlyEnrolledPeers(t *testing.T) {
	d := Init(t)
	s := StartSeeder(t, d, filepath.Join(t.TempDir(), "seeder"))
	pub := s.Publish(t, d, "stable", "1.0.0", WriteRelease(t, t.TempDir(), "app", 1<<20, 1))
	a := StartAgent(t, d, "agent", "stable", []string{s.URL})
	AwaitInstalled(t, 30*time.Second, "1.0.0", a)
	started := a.JSONLines("agent started")
	if len(started) != 1 {
		t.Fatalf("agent logged %d start lines", len(started))
	}
	port := int(started[0]["peerPort"].(float64))
	ih, err := hex.DecodeString(pub.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	if handshakeWithin(t, 7*time.Second, "127.0.0.3", port, ih) {
		t.Fatal("the agent answered 127.0.0.3 before any enrolled agent announced from it")
	}

	cred := enrolFrom(t, s, d, "127.0.0.3", "newcomer")
	announceFrom(t, s, "127.0.0.3", cred, ih)
	if !handshakeWithin(t, 15*time.Second, "127.0.0.3", port, ih) {
		t.Fatal("the agent kept refusing an enrolled agent that announced from 127.0.0.3")
	}
	if handshakeWithin(t, 7*time.Second, "127.0.0.2", port, ih) {
		t.Fatal("the agent answered a stranger at 127.0.0.2")
	}
	if !strings.Contains(a.Output(), "refused a peer the tracker does not know") {
		t.Fatal("the agent does not log the peers it refused")
	}
}

// handshakeWithin calls for up to d (a refused caller redials, as BitTorrent clients do)
// and reports whether a handshake came back.
func handshakeWithin(t *testing.T, d time.Duration, from string, port int, ih []byte) bool {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if peerHandshake(t, from, port, ih) {
			return true
		}
	}
	return false
}

// clientFrom is an HTTP client whose connections leave from the local address from.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

// enrolFrom enrols agent id with the fleet token from address from and returns its credential.
func enrolFrom(t *testing.T, s *Seeder, d *Deployment, from, id string) string {
	t.Helper()
	tok, err := deploy.ReadToken(d.AgentToken())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(api.Enroll{ID: id, Hostname: id})
	req, _ := http.NewRequest(http.MethodPost, s.URL+api.PathEnroll, bytes.NewReader(body))
	req.Header.Set("Authorization", tok.Bearer())
	resp, err := clientFrom(from).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Enrolled
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("enrol %s: HTTP %d, %v", id, resp.StatusCode, err)
	}
	return e.Credential
}

// announceFrom announces a seeding peer at from:6881 for infohash ih with credential cred.
func announceFrom(t *testing.T, s *Seeder, from, cred string, ih []byte) {
	t.Helper()
	q := url.Values{"info_hash": {string(ih)}, "peer_id": {"-PPA001-newcomer0000"}, "port": {"6881"}, "left": {"0"}, "compact": {"1"}}
	req, _ := http.NewRequest(http.MethodGet, s.URL+api.PathAnnounce+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := clientFrom(from).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("announce from %s: HTTP %d", from, resp.StatusCode)
	}
}

// peerHandshake dials the BitTorrent port from the local address from, sends a handshake for
// infohash ih and reports whether a handshake came back.
func peerHandshake(t *testing.T, from string, port int, ih []byte) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer conn.Close()
	hs := append([]byte("\x13BitTorrent protocol"), make([]byte, 8)...)
	hs = append(append(hs, ih...), []byte("-PPA001-handshake000")...)
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write(hs); err != nil {
		return false
	}
	reply := make([]byte, 68)
	_, err = io.ReadFull(conn, reply)
	return err == nil && string(reply[1:20]) == "BitTorrent protocol"
}
