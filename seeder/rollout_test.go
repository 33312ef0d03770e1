package seeder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/trust"
	"github.com/peerpatch/peerpatch/seeder"
	"github.com/peerpatch/peerpatch/seeder/adminclient"
)

// TestRolloutChanges: a policy signed at publish, changed by the admin client, refused when the
// metadata changes anything but policies, and the fleet counts in status.
func TestRolloutChanges(t *testing.T) {
	h, ac := newSeeder(t)
	ctx := context.Background()
	path := seeder.WriteTree(t, t.TempDir(), "app", appFiles())
	canary := rollout.Policy{Percent: 25, Rings: []string{"canary"}}
	if _, err := ac.PublishRelease(ctx, h.Keys, "stable", "1.0.0", path, adminclient.PublishOptions{Rollout: canary}); err != nil {
		t.Fatal(err)
	}
	if r, err := ac.Rollout(ctx, h.Keys, "stable", "1.0.0"); err != nil || r.Role != "targets" || r.Policy.String() != "25% +canary" {
		t.Fatalf("Rollout = %+v, %v", r, err)
	}
	if _, err := ac.PublishRelease(ctx, h.Keys, "stable", "1.1.0", path, adminclient.PublishOptions{Rollout: rollout.Policy{Percent: 101}}); err == nil {
		t.Fatal("publish with percent 101 accepted")
	}

	before := h.Status(t).MetadataVersion
	res, err := ac.ChangeRollout(ctx, h.Keys, "", "stable", "1.0.0", func(p *rollout.Policy) { p.Percent = 50 })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || res.Changed[0].Rollout.String() != "50% +canary" || res.Role != "targets" || res.MetadataVersion <= before {
		t.Fatalf("ChangeRollout = %+v", res)
	}
	if res, err := ac.ChangeRollout(ctx, h.Keys, "", "stable", "1.0.0", func(p *rollout.Policy) { p.Percent = 50 }); err != nil || len(res.Changed) != 0 {
		t.Fatalf("a change to the same policy = %+v, %v; want no change", res, err)
	}
	if _, err := ac.ChangeRollout(ctx, h.Keys, "", "stable", "9.9.9", func(p *rollout.Policy) {}); !errors.Is(err, adminclient.ErrUnknownRelease) {
		t.Fatalf("unknown release: %v", err)
	}
	if _, err := ac.ChangeRollout(ctx, h.Keys, "ci", "stable", "1.0.0", func(p *rollout.Policy) {}); err == nil || !strings.Contains(err.Error(), "no role") {
		t.Fatalf("an undelegated role: %v", err)
	}

	// Hand-signed requests, as a client other than ours could send them.
	post := func(t *testing.T, token string, metadata []byte) (int, string) {
		t.Helper()
		body, _ := json.Marshal(api.RolloutRequest{Metadata: metadata})
		code, hdr, b := h.Do(t, http.MethodPost, api.PathRollout, token, bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}})
		if code == http.StatusOK {
			return code, ""
		}
		return code, seeder.ErrorBody(t, hdr, b)
	}
	sign := func(t *testing.T, set ...trust.Target) []byte {
		t.Helper()
		b, err := trust.SetTargets(h.Keys, "", h.TargetsJSON(t), nil, set, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	policy := func(version, custom string) trust.Target {
		return trust.Target{Name: "releases/stable/" + version + "/rollout", SHA256: sha256.Sum256(nil), Custom: json.RawMessage(custom)}
	}
	current := h.TargetsJSON(t)
	var cur struct {
		Signed struct {
			Targets map[string]struct {
				Length int64 `json:"length"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(current, &cur); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		token    string
		metadata func(t *testing.T) []byte
		wantCode int
		wantMsg  string
	}{
		{name: "without the admin token", token: h.Agent, metadata: func(t *testing.T) []byte { return sign(t, policy("1.0.0", `{"percent":1}`)) },
			wantCode: http.StatusUnauthorized, wantMsg: "admin token"},
		{name: "unknown release", metadata: func(t *testing.T) []byte { return sign(t, policy("9.9.9", `{"percent":1}`)) },
			wantCode: http.StatusNotFound, wantMsg: "no release stable 9.9.9 is published"},
		{name: "percent out of range", metadata: func(t *testing.T) []byte { return sign(t, policy("1.0.0", `{"percent":150}`)) },
			wantCode: http.StatusBadRequest, wantMsg: "percent 150 out of range"},
		{name: "a release target modified", metadata: func(t *testing.T) []byte {
			return sign(t, trust.Target{Name: "releases/stable/1.0.0/pieces", Length: cur.Signed.Targets["releases/stable/1.0.0/pieces"].Length, SHA256: sha256.Sum256([]byte("evil"))})
		}, wantCode: http.StatusForbidden, wantMsg: "modifies a target that is not a rollout policy"},
		{name: "a release added", metadata: func(t *testing.T) []byte {
			return sign(t, trust.Target{Name: "releases/stable/2.0.0/bundle", Length: 4, SHA256: sha256.Sum256([]byte("evil"))})
		}, wantCode: http.StatusForbidden, wantMsg: "adds a target that is not a rollout policy"},
		{name: "the current metadata replayed", metadata: func(t *testing.T) []byte { return current },
			wantCode: http.StatusConflict, wantMsg: "expected version"},
		{name: "nothing changed", metadata: func(t *testing.T) []byte { return sign(t) },
			wantCode: http.StatusBadRequest, wantMsg: "no target changed"},
		{name: "not metadata", metadata: func(t *testing.T) []byte { return []byte("{}") },
			wantCode: http.StatusBadRequest, wantMsg: "parse targets metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token
			if token == "" {
				token = h.Admin
			}
			before := h.TargetsJSON(t)
			code, msg := post(t, token, tt.metadata(t))
			if code != tt.wantCode || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("HTTP %d %q, want %d with %q", code, msg, tt.wantCode, tt.wantMsg)
			}
			if !bytes.Equal(h.TargetsJSON(t), before) {
				t.Fatal("a refused change changed targets.json")
			}
		})
	}

	// Status: reports of four agents, counted against the policy (50% +canary).
	var in, out []string
	for i := 0; len(in) < 2 || len(out) < 2; i++ {
		id := fmt.Sprintf("agent-%d", 10+i)
		if rollout.Bucket(id, "stable", "1.0.0") < 50 {
			in = append(in, id)
		} else {
			out = append(out, id)
		}
	}
	reports := []api.Report{
		{ID: in[0], Channel: "stable", InstalledVersion: "1.0.0", State: api.StateInstalled, BytesFromPeers: 300, BytesFromOrigin: 100},
		{ID: in[1], Channel: "stable", State: api.StateDownloading, TargetVersion: "1.0.0", BytesFromPeers: 100, BytesFromOrigin: 100},
		{ID: out[0], Channel: "stable", State: api.StateRolledBack, TargetVersion: "1.0.0", Rings: []string{"canary"}, Error: "health check failed"},
		{ID: out[1], Channel: "stable", State: api.StateIdle},
		{ID: out[2%len(out)] + "-beta", Channel: "beta", State: api.StateIdle},
	}
	for _, r := range reports {
		cred := h.Enroll(t, r.ID)
		body, _ := json.Marshal(r)
		if code, _, b := h.Do(t, http.MethodPost, api.PathReport, cred, bytes.NewReader(body), nil); code != http.StatusNoContent {
			t.Fatalf("report: HTTP %d %s", code, b)
		}
	}
	rel := seeder.FindRelease(h.Status(t), "stable", "1.0.0")
	if rel == nil {
		t.Fatal("status lists no stable 1.0.0")
	}
	got := fmt.Sprintf("%s agents %d targeted %d downloading %d installed %d rolled back %d peers %d origin %d share %.2f",
		rel.Rollout, rel.Agents, rel.Targeted, rel.Downloading, rel.Installed, rel.RolledBack, rel.BytesFromPeers, rel.BytesFromOrigin, rel.PeerShare)
	if want := "50% +canary agents 4 targeted 3 downloading 1 installed 1 rolled back 1 peers 400 origin 200 share 0.67"; got != want {
		t.Fatalf("status: %s\nwant:   %s", got, want)
	}
}
