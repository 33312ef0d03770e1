package lab

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/peerpatch/peerpatch/pkg/release"
)

// Scenario is one lab experiment, read from a small YAML file (unknown keys are refused).
type Scenario struct {
	// Name identifies the scenario in reports and file names.
	Name string `yaml:"name" json:"name"`
	// Description says in one or two sentences what the scenario shows.
	Description string `yaml:"description" json:"description"`
	// Agents is N, the number of agents (not counting bad peers).
	Agents int `yaml:"agents" json:"agents"`
	// Bundle is F, the release size in bytes.
	Bundle Size `yaml:"bundle" json:"bundle_bytes"`
	// PieceSize is the torrent's piece size (publish --piece-size); 0 is Peerpatch's default.
	PieceSize Size `yaml:"piece_size" json:"piece_size,omitempty"`
	// Links are the caps applied with tc to every node class.
	Links Links `yaml:"links" json:"links"`
	// Mirror adds a web-seed mirror node serving a copy of the seeder's releases/ tree.
	Mirror bool `yaml:"mirror" json:"mirror"`
	// Seed picks the agents that faults strike and the release bytes.
	Seed uint64 `yaml:"seed" json:"seed"`
	// SkipHTTP leaves out this scenario's plain-HTTP run, where it would take many minutes
	// (a slow origin, a big fleet); the report still gives the HTTP expectation.
	SkipHTTP bool `yaml:"skip_http" json:"skip_http,omitempty"`
	// Timeout bounds each phase (default: three times the plain-HTTP expectation plus 2m).
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// AgentArgs are extra flags for every `peerpatch agent`.
	AgentArgs []string `yaml:"agent_args" json:"agent_args,omitempty"`
	// SeederArgs are extra flags for `peerpatch seeder`.
	SeederArgs []string `yaml:"seeder_args" json:"seeder_args,omitempty"`
	// Faults strike during the Peerpatch phase (the plain-HTTP baseline runs without them).
	Faults []Fault `yaml:"faults" json:"faults,omitempty"`
}

// Links are the link caps per node class.
type Links struct {
	Seeder Link `yaml:"seeder" json:"seeder"`
	Mirror Link `yaml:"mirror" json:"mirror"`
	Agent  Link `yaml:"agent" json:"agent"`
}

// Link is a node's upload and download cap in bytes per second.
type Link struct {
	Up   Size `yaml:"up" json:"up"`
	Down Size `yaml:"down" json:"down"`
}

// Fault kinds.
const (
	// FaultKillSeeder: SIGKILL the seeder once the fleet holds At of N·F.
	FaultKillSeeder = "kill-seeder"
	// FaultKillAgents: SIGKILL Share (or Agents) of the agents still downloading once the fleet
	// holds At of N·F; Restart of them start again RestartAfter later.
	FaultKillAgents = "kill-agents"
	// FaultKillDownloading: SIGKILL Agents agents once each holds At of F; restart after
	// RestartAfter.
	FaultKillDownloading = "kill-downloading"
	// FaultKillInstalling: SIGKILL Agents agents after their download, while they install (once
	// At of F is in the staging directory, which agents fill while downloading); restart after
	// RestartAfter.
	FaultKillInstalling = "kill-installing"
	// FaultCorruptPeer: Agents extra agents install the release first, then one byte in every
	// Every of their swarm copies is flipped; the N agents start after that.
	FaultCorruptPeer = "corrupt-peer"
	// FaultDiskFull: Agents agents keep their --data on a tmpfs of Size bytes; GrowAfter after
	// an agent first reports the full disk, its tmpfs grows to hold the release.
	FaultDiskFull = "disk-full"
)

// Fault is one thing that goes wrong, and when.
type Fault struct {
	Kind string `yaml:"kind" json:"kind"`
	// At: when the fault strikes, as a share of the transfer (see the kinds).
	At Percent `yaml:"at" json:"at,omitempty"`
	// Agents: how many agents the fault strikes (default 1).
	Agents int `yaml:"agents" json:"agents,omitempty"`
	// Share: the share of N the fault strikes, instead of Agents.
	Share Percent `yaml:"share" json:"share,omitempty"`
	// Restart: the share of the killed agents that start again (kill-agents, rounded down;
	// default all); the other kinds restart every node they kill when RestartAfter is set.
	Restart *Percent `yaml:"restart" json:"restart,omitempty"`
	// RestartAfter: how long a killed node stays down (0: it stays down).
	RestartAfter Duration `yaml:"restart_after" json:"restart_after,omitempty"`
	// Size: the tmpfs size of a disk-full agent, in bytes or as a share of F (default 50%).
	Size Amount `yaml:"size" json:"size,omitzero"`
	// GrowAfter: disk-full only; 0 leaves the disk full.
	GrowAfter Duration `yaml:"grow_after" json:"grow_after,omitempty"`
	// Every: corrupt-peer only; one byte in every Every bytes is flipped (default 64KiB).
	Every Size `yaml:"every" json:"every,omitempty"`
}

// Overrides replace a scenario's size figures (zero values leave them alone).
type Overrides struct {
	Agents int
	Bundle Size
	// Rate sets every link, up and down, of every node class.
	Rate Size
}

//go:embed scenarios/*.yaml
var builtin embed.FS

// Builtin returns the scenarios shipped in test/lab/scenarios, sorted by name.
func Builtin() ([]Scenario, error) {
	names, err := fs.Glob(builtin, "scenarios/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for _, n := range names {
		b, err := builtin.ReadFile(n)
		if err != nil {
			return nil, err
		}
		s, err := ParseScenario(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(n), err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lookup returns the builtin scenario called name, or the scenario in the file name if name
// ends in .yaml or .yml.
func Lookup(name string) (Scenario, error) {
	if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		b, err := os.ReadFile(name)
		if err != nil {
			return Scenario{}, fmt.Errorf("read scenario: %w", err)
		}
		s, err := ParseScenario(b)
		if err != nil {
			return Scenario{}, fmt.Errorf("%s: %w", name, err)
		}
		return s, nil
	}
	all, err := Builtin()
	if err != nil {
		return Scenario{}, err
	}
	var names []string
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("no scenario %q (builtin: %s)", name, strings.Join(names, ", "))
}

// ParseScenario decodes and validates a scenario; unknown keys are errors.
func ParseScenario(b []byte) (Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField())
	if err := dec.Decode(&s); err != nil {
		return Scenario{}, fmt.Errorf("parse scenario: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Scenario{}, err
	}
	return s, nil
}

// Apply returns the scenario with the overrides applied, validated.
func (s Scenario) Apply(o Overrides) (Scenario, error) {
	if o.Agents > 0 {
		s.Agents = o.Agents
	}
	if o.Bundle > 0 {
		s.Bundle = o.Bundle
	}
	if o.Rate > 0 {
		l := Link{Up: o.Rate, Down: o.Rate}
		s.Links = Links{Seeder: l, Mirror: l, Agent: l}
	}
	s.Faults = append([]Fault(nil), s.Faults...)
	return s, s.Validate()
}

// Validate checks the scenario and names the bad key.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Name == "" || strings.ContainsAny(s.Name, "/ \t") {
		bad("name: %q is not a file-name-safe name", s.Name)
	}
	if s.Agents < 1 || s.Agents > 250 {
		bad("agents: %d, want 1..250", s.Agents)
	}
	if s.Bundle < 1<<10 {
		bad("bundle: %d bytes, want at least 1KiB", s.Bundle)
	}
	for _, l := range []struct {
		key  string
		link Link
		need bool
	}{{"links.seeder", s.Links.Seeder, true}, {"links.agent", s.Links.Agent, true}, {"links.mirror", s.Links.Mirror, s.Mirror}} {
		if l.need && (l.link.Up < 64<<10 || l.link.Down < 64<<10) {
			bad("%s: up %d and down %d bytes/s, want both at least 64KiB", l.key, l.link.Up, l.link.Down)
		}
	}
	if s.PieceSize != 0 {
		if err := release.ValidPieceLength(int64(s.PieceSize)); err != nil {
			bad("piece_size: %v", err)
		}
	}
	if s.Timeout < 0 {
		bad("timeout: negative")
	}
	targeted := 0
	for i := range s.Faults {
		f := &s.Faults[i]
		key := fmt.Sprintf("faults[%d]", i)
		if f.At < 0 || f.At > 1 || f.Share < 0 || f.Share > 1 {
			bad("%s: at and share are shares between 0%% and 100%%", key)
		}
		if f.Agents < 0 || (f.Restart != nil && (*f.Restart < 0 || *f.Restart > 1)) || f.RestartAfter < 0 || f.GrowAfter < 0 || f.Size.Bytes < 0 || f.Size.Share < 0 || f.Every < 0 {
			bad("%s: negative value", key)
		}
		switch f.Kind {
		case FaultKillSeeder:
			if !s.Mirror && f.RestartAfter == 0 {
				bad("%s: kill-seeder needs mirror: true or restart_after, or no agent can finish", key)
			}
		case FaultKillAgents:
			if f.Share == 0 && f.Agents == 0 {
				bad("%s: kill-agents needs share or agents", key)
			}
		case FaultKillDownloading, FaultKillInstalling, FaultDiskFull:
		case FaultCorruptPeer:
			continue // extra agents, not among the N
		default:
			bad("%s: kind %q, want one of %s", key, f.Kind, strings.Join(FaultKinds(), ", "))
			continue
		}
		if f.Kind != FaultKillSeeder {
			targeted += f.count(s.Agents)
		}
	}
	if targeted > s.Agents {
		bad("faults strike %d agents, more than the %d agents", targeted, s.Agents)
	}
	return errors.Join(errs...)
}

// FaultKinds lists the fault kinds.
func FaultKinds() []string {
	return []string{FaultKillSeeder, FaultKillAgents, FaultKillDownloading, FaultKillInstalling, FaultCorruptPeer, FaultDiskFull}
}

// restarts is how many of killed agents start again.
func (f *Fault) restarts(killed int) int {
	if f.RestartAfter == 0 {
		return 0
	}
	if f.Restart == nil {
		return killed
	}
	return int(float64(*f.Restart) * float64(killed))
}

// count is how many of n agents the fault strikes (at least one).
func (f *Fault) count(n int) int {
	switch {
	case f.Share > 0:
		return max(1, int(float64(f.Share)*float64(n)+0.5))
	case f.Agents > 0:
		return f.Agents
	}
	return 1
}

// timeout is the bound on each phase.
func (s *Scenario) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout.D()
	}
	return 3*time.Duration(httpExpected(s)*float64(time.Second)) + 2*time.Minute
}

// badPeers is how many corrupt peers the scenario adds.
func (s *Scenario) badPeers() int {
	n := 0
	for i := range s.Faults {
		if s.Faults[i].Kind == FaultCorruptPeer {
			n += s.Faults[i].count(s.Agents)
		}
	}
	return n
}
