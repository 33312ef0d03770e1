package seeder

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"

	"github.com/peerpatch/peerpatch/pkg/rollout"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// TestAllowRollout is the seeder's check of a rollout change: only rollout policies of
// published releases, added or modified, each valid.
func TestAllowRollout(t *testing.T) {
	s := &Seeder{live: map[string]*live{releaseKey("stable", "1.0.0"): {}}}
	policy := func(name, custom string) *trust.Target {
		return &trust.Target{Name: name, SHA256: sha256.Sum256(nil), Custom: json.RawMessage(custom)}
	}
	bundle := &trust.Target{Name: "releases/stable/1.0.0/bundle", Length: 10, SHA256: sha256.Sum256([]byte("0123456789"))}
	tests := []struct {
		name    string
		change  trust.Change
		wantErr error
	}{
		{name: "policy added", change: trust.Change{Name: "releases/stable/1.0.0/rollout", New: policy("releases/stable/1.0.0/rollout", `{"percent":25}`)}},
		{name: "policy modified", change: trust.Change{Name: "releases/stable/1.0.0/rollout",
			Old: policy("releases/stable/1.0.0/rollout", `{"percent":25}`), New: policy("releases/stable/1.0.0/rollout", `{"percent":100,"yanked":true,"rollback":true}`)}},
		{name: "policy removed", change: trust.Change{Name: "releases/stable/1.0.0/rollout", Old: policy("releases/stable/1.0.0/rollout", `{"percent":25}`)},
			wantErr: errNotPolicy},
		{name: "bundle modified", change: trust.Change{Name: bundle.Name, Old: bundle, New: &trust.Target{Name: bundle.Name, Length: 11, SHA256: bundle.SHA256}},
			wantErr: errNotPolicy},
		{name: "release added", change: trust.Change{Name: "releases/stable/2.0.0/bundle", New: bundle}, wantErr: errNotPolicy},
		{name: "pieces removed", change: trust.Change{Name: "releases/stable/1.0.0/pieces", Old: bundle}, wantErr: errNotPolicy},
		{name: "another target", change: trust.Change{Name: "docs/readme", New: bundle}, wantErr: errNotPolicy},
		{name: "policy of an unknown release", change: trust.Change{Name: "releases/stable/9.9.9/rollout", New: policy("releases/stable/9.9.9/rollout", `{"percent":5}`)},
			wantErr: errUnknownRelease},
		{name: "policy of another channel", change: trust.Change{Name: "releases/beta/1.0.0/rollout", New: policy("releases/beta/1.0.0/rollout", `{"percent":5}`)},
			wantErr: errUnknownRelease},
		{name: "invalid policy", change: trust.Change{Name: "releases/stable/1.0.0/rollout", New: policy("releases/stable/1.0.0/rollout", `{"percent":150}`)},
			wantErr: rollout.ErrInvalidPolicy},
		{name: "policy with bytes", change: trust.Change{Name: "releases/stable/1.0.0/rollout",
			New: &trust.Target{Name: "releases/stable/1.0.0/rollout", Length: 3, SHA256: sha256.Sum256([]byte("abc")), Custom: json.RawMessage(`{"percent":5}`)}},
			wantErr: rollout.ErrInvalidPolicy},
		{name: "bad version in the name", change: trust.Change{Name: "releases/stable/latest/rollout", New: policy("releases/stable/latest/rollout", `{"percent":5}`)},
			wantErr: errNotPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.allowRollout(tt.change)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("allowRollout = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
