package rollout

import "github.com/peerpatch/peerpatch/pkg/release"

// Candidate is one release of an agent's channel, as listed in verified metadata.
type Candidate struct {
	Version string
	Policy  Policy // Default if the release has no rollout target
	// Invalid is set when the release's rollout target did not parse: such a release is
	// never eligible (an agent fails closed on a policy it does not understand).
	Invalid bool
	// Failed is set when the release's hooks or health check failed on this agent under
	// this very Policy (see Policy.Fingerprint): it is not tried again until the policy
	// changes.
	Failed bool
}

// Agent is what Choose knows of the agent that chooses.
type Agent struct {
	ID        string
	Channel   string
	Rings     []string
	Installed string // "" if none
}

// Decision is the release an agent should run.
type Decision struct {
	// Version is the release to run: Installed to stay, another to switch, "" if the agent
	// has nothing installed and no release is rolled out to it.
	Version string
	// Rollback is set when Version is below Installed: the installed release was yanked with
	// rollback and Version is the newest eligible release below it.
	Rollback bool
	// Urgent is the Version's policy's Urgent, or true for a Rollback: the switch need not
	// wait for a maintenance window.
	Urgent bool
}

// Eligible reports whether agent a may install c: c's policy is valid, c did not fail on a
// under that policy, c is not yanked, it targets a (percent or ring), and it is not paused
// unless a already runs it.
func (a Agent) Eligible(c Candidate) bool {
	return !c.Invalid && !c.Failed && !c.Policy.Yanked &&
		(!c.Policy.Paused || c.Version == a.Installed) &&
		c.Policy.Targets(a.ID, a.Channel, c.Version, a.Rings)
}

// Choose picks the release agent a should run among cands (any order): the newest eligible
// release; but never one below the installed release, unless the installed release is yanked
// with rollback, in which case the newest eligible release below it.
func Choose(a Agent, cands []Candidate) Decision {
	var best, installed *Candidate
	for i := range cands {
		c := &cands[i]
		if c.Version == a.Installed {
			installed = c
		}
		if a.Eligible(*c) && (best == nil || release.CompareVersions(c.Version, best.Version) > 0) {
			best = c
		}
	}
	switch {
	case best == nil && a.Installed == "":
		return Decision{}
	case a.Installed == "" || best != nil && release.CompareVersions(best.Version, a.Installed) > 0:
		return Decision{Version: best.Version, Urgent: best.Policy.Urgent}
	case best != nil && installed != nil && installed.Policy.Yanked && installed.Policy.Rollback &&
		release.CompareVersions(best.Version, a.Installed) < 0:
		return Decision{Version: best.Version, Rollback: true, Urgent: true}
	}
	return Decision{Version: a.Installed}
}
