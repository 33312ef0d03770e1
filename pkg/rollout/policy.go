// Package rollout decides which agents take part in a release. A release may carry a rollout
// policy (percent of the fleet, rings, paused, yanked, rollback, urgent), signed with the
// release in TUF targets metadata, so that a seeder cannot forge or alter it. Bucket places an
// agent in a release's percentage with a stable hash; Choose picks the release an agent
// should run; Schedule holds the maintenance windows in which an agent may install.
package rollout

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"regexp"
	"slices"
	"strings"
)

// Sentinel errors.
var (
	// ErrInvalidPolicy reports a rollout policy that does not parse or validate. An agent
	// never installs a release whose policy is invalid (it fails closed).
	ErrInvalidPolicy = errors.New("invalid rollout policy")
	// ErrInvalidWindow reports a maintenance window that does not parse.
	ErrInvalidWindow = errors.New("invalid install window")
)

// Limits of a policy.
const (
	// MaxPolicySize bounds the JSON of a policy, in bytes.
	MaxPolicySize = 4 << 10
	// MaxRings bounds the rings a policy lists.
	MaxRings = 64
)

var ringName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Policy is a release's rollout policy. It is the custom field of the release's TUF target
// releases/<channel>/<version>/rollout (length 0, the SHA-256 of no bytes): the policy is
// signed with the targets metadata and verified by go-tuf like every target, and an agent
// reads it with the metadata, without a download. A release without one has Default.
type Policy struct {
	// Percent (0 to 100) is the share of the channel's agents that take part: those whose
	// Bucket for the release is below it. Raising it only adds agents.
	Percent int `json:"percent"`
	// Rings are agent rings (`peerpatch agent --ring NAME`) that take part whatever Percent.
	Rings []string `json:"rings,omitempty"`
	// Paused stops new installs; agents that have the release keep it.
	Paused bool `json:"paused,omitempty"`
	// Yanked withdraws the release: no agent installs it any more.
	Yanked bool `json:"yanked,omitempty"`
	// Rollback (only with Yanked) sends the agents that run the release back to the newest
	// release below it that they may run.
	Rollback bool `json:"rollback,omitempty"`
	// Urgent lets agents install outside their maintenance windows.
	Urgent bool `json:"urgent,omitempty"`
}

// Default is the policy of a release without a rollout target: everyone, now.
func Default() Policy { return Policy{Percent: 100} }

// IsDefault reports whether p behaves exactly as Default.
func (p Policy) IsDefault() bool {
	return p.Percent == 100 && len(p.Rings) == 0 && !p.Paused && !p.Yanked && !p.Rollback && !p.Urgent
}

// Validate checks Percent in [0, 100], ring names ([a-z0-9][a-z0-9._-]*, at most 64
// characters, at most MaxRings, no duplicates) and Rollback only with Yanked.
func (p Policy) Validate() error {
	if p.Percent < 0 || p.Percent > 100 {
		return fmt.Errorf("%w: percent %d out of range: want 0 to 100", ErrInvalidPolicy, p.Percent)
	}
	if len(p.Rings) > MaxRings {
		return fmt.Errorf("%w: %d rings, at most %d", ErrInvalidPolicy, len(p.Rings), MaxRings)
	}
	for i, r := range p.Rings {
		if err := ValidRing(r); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
		}
		if slices.Contains(p.Rings[:i], r) {
			return fmt.Errorf("%w: ring %q listed twice", ErrInvalidPolicy, r)
		}
	}
	if p.Rollback && !p.Yanked {
		return fmt.Errorf("%w: rollback is only meaningful for a yanked release", ErrInvalidPolicy)
	}
	return nil
}

// ValidRing checks a ring name: [a-z0-9][a-z0-9._-]*, at most 64 characters.
func ValidRing(name string) error {
	if !ringName.MatchString(name) {
		return fmt.Errorf("ring %q: want 1-64 characters of [a-z0-9._-], starting with a letter or digit", clip(name))
	}
	return nil
}

// Parse decodes a policy from the custom field of a rollout target (untrusted until go-tuf
// verified the metadata, and even then checked): one JSON object with "percent" present, no
// unknown field (an agent that does not understand a policy must not guess), at most
// MaxPolicySize bytes, valid as Validate says.
func Parse(b []byte) (Policy, error) {
	if len(b) > MaxPolicySize {
		return Policy{}, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidPolicy, len(b), MaxPolicySize)
	}
	var raw struct {
		Percent  *int     `json:"percent"`
		Rings    []string `json:"rings"`
		Paused   bool     `json:"paused"`
		Yanked   bool     `json:"yanked"`
		Rollback bool     `json:"rollback"`
		Urgent   bool     `json:"urgent"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Policy{}, fmt.Errorf("%w: data after the JSON object", ErrInvalidPolicy)
	}
	if raw.Percent == nil {
		return Policy{}, fmt.Errorf("%w: no percent", ErrInvalidPolicy)
	}
	p := Policy{Percent: *raw.Percent, Rings: raw.Rings, Paused: raw.Paused, Yanked: raw.Yanked, Rollback: raw.Rollback, Urgent: raw.Urgent}
	if len(p.Rings) == 0 {
		p.Rings = nil
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Marshal returns the canonical JSON of p, as signed into a rollout target.
func (p Policy) Marshal() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// Fingerprint identifies the decision p makes (the SHA-256 of its canonical JSON, in hex):
// an agent that gave up a release under one policy tries it again when the policy changes.
func (p Policy) Fingerprint() string {
	b, _ := json.Marshal(p)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Bucket places an agent in a release: a number in [0, 100) from the first 8 bytes of
// SHA-256(id NUL channel NUL version), read as a big-endian fraction of 2^64. It is the same
// on the agent and the seeder, uniform over agents, and independent from release to release.
func Bucket(id, channel, version string) int {
	h := sha256.Sum256([]byte(id + "\x00" + channel + "\x00" + version))
	hi, _ := bits.Mul64(binary.BigEndian.Uint64(h[:8]), 100)
	return int(hi)
}

// Targets reports whether an agent with id and rings takes part in release channel/version:
// its Bucket is below Percent, or one of its rings is listed. Paused and Yanked do not change
// who is targeted; Choose applies them.
func (p Policy) Targets(id, channel, version string, rings []string) bool {
	if Bucket(id, channel, version) < p.Percent {
		return true
	}
	for _, r := range rings {
		if slices.Contains(p.Rings, r) {
			return true
		}
	}
	return false
}

// String describes p in a few words, e.g. "25% +canary paused".
func (p Policy) String() string {
	s := []string{fmt.Sprintf("%d%%", p.Percent)}
	for _, r := range p.Rings {
		s = append(s, "+"+r)
	}
	for _, f := range []struct {
		on   bool
		word string
	}{{p.Paused, "paused"}, {p.Yanked, "yanked"}, {p.Rollback, "rollback"}, {p.Urgent, "urgent"}} {
		if f.on {
			s = append(s, f.word)
		}
	}
	return strings.Join(s, " ")
}

// clip shortens untrusted text for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
