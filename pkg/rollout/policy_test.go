package rollout

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Policy
		wantErr string
	}{
		{name: "percent only", in: `{"percent":25}`, want: Policy{Percent: 25}},
		{name: "everything", in: `{"percent":0,"rings":["canary","it-dept"],"paused":true,"urgent":true}`,
			want: Policy{Percent: 0, Rings: []string{"canary", "it-dept"}, Paused: true, Urgent: true}},
		{name: "yanked with rollback", in: `{"percent":100,"yanked":true,"rollback":true}`, want: Policy{Percent: 100, Yanked: true, Rollback: true}},
		{name: "null rings", in: `{"percent":5,"rings":null}`, want: Policy{Percent: 5}},
		{name: "trailing space", in: "{\"percent\":5}\n", want: Policy{Percent: 5}},
		{name: "no percent", in: `{"paused":true}`, wantErr: "no percent"},
		{name: "percent over 100", in: `{"percent":101}`, wantErr: "percent 101 out of range"},
		{name: "negative percent", in: `{"percent":-1}`, wantErr: "out of range"},
		{name: "fractional percent", in: `{"percent":2.5}`, wantErr: "invalid rollout policy"},
		{name: "unknown field", in: `{"percent":5,"yank":true}`, wantErr: "unknown field"},
		{name: "bad ring", in: `{"percent":5,"rings":["Canary"]}`, wantErr: "ring \"Canary\""},
		{name: "duplicate ring", in: `{"percent":5,"rings":["a","a"]}`, wantErr: "listed twice"},
		{name: "rollback without yank", in: `{"percent":5,"rollback":true}`, wantErr: "only meaningful"},
		{name: "two documents", in: `{"percent":5}{"percent":6}`, wantErr: "data after"},
		{name: "not an object", in: `[5]`, wantErr: "invalid rollout policy"},
		{name: "empty", in: ``, wantErr: "invalid rollout policy"},
		{name: "too large", in: `{"percent":5,"rings":["` + strings.Repeat("a", MaxPolicySize) + `"]}`, wantErr: "bytes, at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidPolicy) {
					t.Fatalf("Parse = %+v, %v; want an ErrInvalidPolicy containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tt.want)
			}
			b, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(b)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %s = %+v, %v", b, again, err)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	if !Default().IsDefault() || Default().Validate() != nil {
		t.Fatal("Default is not default")
	}
	for _, p := range []Policy{{Percent: 99}, {Percent: 100, Urgent: true}, {Percent: 100, Rings: []string{"a"}}} {
		if p.IsDefault() {
			t.Errorf("%+v IsDefault", p)
		}
	}
}

// TestBucket checks that buckets are spread evenly, differ between releases, and that raising
// the percent only adds agents.
func TestBucket(t *testing.T) {
	const n = 20000
	var counts [100]int
	moved := 0
	for i := range n {
		id := fmt.Sprintf("%016x", i*7919)
		b := Bucket(id, "stable", "1.0.0")
		if b < 0 || b >= 100 {
			t.Fatalf("Bucket = %d", b)
		}
		if b != Bucket(id, "stable", "1.0.0") {
			t.Fatal("Bucket is not stable")
		}
		counts[b]++
		if Bucket(id, "stable", "1.0.1") != b {
			moved++
		}
	}
	for b, c := range counts {
		if c < n/100/2 || c > n/100*2 {
			t.Errorf("bucket %d holds %d of %d agents", b, c, n)
		}
	}
	if moved < n*9/10 {
		t.Errorf("only %d of %d agents changed bucket between releases", moved, n)
	}
	for i := range 200 {
		id := fmt.Sprint(i)
		for pct := 0; pct < 100; pct++ {
			lo, hi := Policy{Percent: pct}, Policy{Percent: pct + 1}
			if lo.Targets(id, "c", "1.0.0", nil) && !hi.Targets(id, "c", "1.0.0", nil) {
				t.Fatalf("agent %s targeted at %d%% but not at %d%%", id, pct, pct+1)
			}
		}
		if (Policy{Percent: 0}).Targets(id, "c", "1.0.0", nil) || !(Policy{Percent: 100}).Targets(id, "c", "1.0.0", nil) {
			t.Fatalf("agent %s: 0%% or 100%% wrong", id)
		}
	}
}

func TestTargetsRings(t *testing.T) {
	p := Policy{Percent: 0, Rings: []string{"canary"}}
	if !p.Targets("x", "c", "1.0.0", []string{"lab", "canary"}) {
		t.Error("ring canary not targeted")
	}
	if p.Targets("x", "c", "1.0.0", []string{"lab"}) || p.Targets("x", "c", "1.0.0", nil) {
		t.Error("an agent outside the rings is targeted at 0%")
	}
}

// findAgent returns an agent id whose bucket for channel c, version v is inside [lo, hi).
func findAgent(t *testing.T, v string, lo, hi int) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("agent-%d", i)
		if b := Bucket(id, "c", v); b >= lo && b < hi {
			return id
		}
	}
	t.Fatalf("no agent in bucket [%d, %d) of %s", lo, hi, v)
	return ""
}

func TestChoose(t *testing.T) {
	// An agent whose bucket is 90-99 for 2.0.0: in at 100%, out at 50%.
	late := findAgent(t, "2.0.0", 90, 100)
	all := Policy{Percent: 100}
	half := Policy{Percent: 50}
	tests := []struct {
		name      string
		rings     []string
		installed string
		cands     []Candidate
		want      Decision
	}{
		{name: "nothing published", want: Decision{}},
		{name: "newest at 100%", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: all}},
			want: Decision{Version: "2.0.0"}},
		{name: "not targeted by the newest: the one before", installed: "", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: half}},
			want: Decision{Version: "1.0.0"}},
		{name: "not targeted: stay", installed: "1.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: half}},
			want: Decision{Version: "1.0.0"}},
		{name: "ring targets", rings: []string{"canary"}, installed: "1.0.0",
			cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 0, Rings: []string{"canary"}}}},
			want:  Decision{Version: "2.0.0"}},
		{name: "urgent", installed: "1.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Urgent: true}}},
			want: Decision{Version: "2.0.0", Urgent: true}},
		{name: "paused: not installed", installed: "1.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Paused: true}}},
			want: Decision{Version: "1.0.0"}},
		{name: "paused: kept where installed", installed: "2.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Paused: true}}},
			want: Decision{Version: "2.0.0"}},
		{name: "yanked: never installed", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Yanked: true}}},
			want: Decision{Version: "1.0.0"}},
		{name: "yanked without rollback: kept", installed: "2.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Yanked: true}}},
			want: Decision{Version: "2.0.0"}},
		{name: "yanked with rollback: newest eligible below", installed: "3.0.0", cands: []Candidate{
			{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: all}, {Version: "3.0.0", Policy: Policy{Percent: 100, Yanked: true, Rollback: true}}},
			want: Decision{Version: "2.0.0", Rollback: true, Urgent: true}},
		{name: "yanked with rollback: skips a failed one", installed: "3.0.0", cands: []Candidate{
			{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: all, Failed: true}, {Version: "3.0.0", Policy: Policy{Percent: 100, Yanked: true, Rollback: true}}},
			want: Decision{Version: "1.0.0", Rollback: true, Urgent: true}},
		{name: "yanked with rollback, a newer one eligible: up", installed: "2.0.0", cands: []Candidate{
			{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 100, Yanked: true, Rollback: true}}, {Version: "3.0.0", Policy: all}},
			want: Decision{Version: "3.0.0"}},
		{name: "yanked with rollback, nothing below: stay", installed: "1.0.0", cands: []Candidate{
			{Version: "1.0.0", Policy: Policy{Percent: 100, Yanked: true, Rollback: true}}},
			want: Decision{Version: "1.0.0"}},
		{name: "lower percent never moves down", installed: "2.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: Policy{Percent: 0}}},
			want: Decision{Version: "2.0.0"}},
		{name: "failed: not retried", installed: "1.0.0", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Policy: all, Failed: true}},
			want: Decision{Version: "1.0.0"}},
		{name: "invalid policy: fail closed", cands: []Candidate{{Version: "1.0.0", Policy: all}, {Version: "2.0.0", Invalid: true}},
			want: Decision{Version: "1.0.0"}},
		{name: "nothing for this agent", cands: []Candidate{{Version: "2.0.0", Policy: half}}, want: Decision{}},
		{name: "installed release no longer listed: stay", installed: "0.9.0", cands: []Candidate{{Version: "0.8.0", Policy: all}},
			want: Decision{Version: "0.9.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Choose(Agent{ID: late, Channel: "c", Rings: tt.rings, Installed: tt.installed}, tt.cands)
			if got != tt.want {
				t.Fatalf("Choose = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzParse feeds Parse arbitrary bytes: it must not panic, and whatever it accepts must be
// valid and survive a round trip through Marshal unchanged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"percent":25}`,
		`{"percent":0,"rings":["canary"],"paused":true}`,
		`{"percent":100,"yanked":true,"rollback":true,"urgent":true}`,
		`{"percent":1e2}`,
		`{"percent":5,"rings":null}`,
		`{"percent":5,"percent":6}`,
		`{"percent":5} `,
		`{}`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error %v is not ErrInvalidPolicy", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid policy: %v", err)
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip %s → %+v, %v; want %+v", out, again, err, p)
		}
		_ = p.Targets("id", "c", "1.0.0", []string{"canary"})
	})
}
