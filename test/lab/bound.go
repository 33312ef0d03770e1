package lab

// Wire overhead of a bulk TCP transfer on the lab's links (MTU 1500): every segment carries
// 1448 payload bytes (MSS 1460 less the 12-byte timestamp option) in a 1514-byte Ethernet frame
// (14 Ethernet + 20 IPv4 + 32 TCP header bytes). tbf counts frame bytes against its rate.
const (
	segmentPayload = 1448
	segmentFrame   = 1514
	// WireFactor is frame bytes per payload byte.
	WireFactor = float64(segmentFrame) / float64(segmentPayload)
)

// Caps are the link caps the harness applied, read back from the kernel, in bytes per second.
type Caps struct {
	// OriginUp is what the origin can send: the seeder plus the web-seed mirror if any.
	OriginUp float64 `json:"origin_up"`
	// SeederUp is the seeder's upload alone (the only origin of the plain-HTTP baseline).
	SeederUp float64 `json:"seeder_up"`
	// AgentUp and AgentDown are the caps of each of the N agents.
	AgentUp   []float64 `json:"agent_up"`
	AgentDown []float64 `json:"agent_down"`
}

// Bound is the fluid lower bound of Kumar & Ross (2006) on the time to give F bytes to N
// agents: T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)).
type Bound struct {
	TMin float64 `json:"t_min_s"`
	// The three terms: origin upload, slowest download, the fleet's total upload.
	Origin   float64 `json:"origin_term_s"`
	Download float64 `json:"download_term_s"`
	Fleet    float64 `json:"fleet_term_s"`
}

// KumarRoss computes the bound for f bytes with the given caps (u_s = c.OriginUp).
func KumarRoss(f float64, c Caps) Bound {
	n := float64(len(c.AgentDown))
	if n == 0 || c.OriginUp <= 0 {
		return Bound{}
	}
	dmin := c.AgentDown[0]
	for _, d := range c.AgentDown {
		dmin = min(dmin, d)
	}
	sum := c.OriginUp
	for _, u := range c.AgentUp {
		sum += u
	}
	b := Bound{Origin: f / c.OriginUp, Download: f / dmin, Fleet: n * f / sum}
	b.TMin = max(b.Origin, b.Download, b.Fleet)
	return b
}

// HTTPExpected is the arithmetic of the plain-HTTP baseline: N agents fetching f bytes each
// from one origin that sends seederUp bytes per second, each receiving at most its download
// cap, all with TCP/IP/Ethernet headers: max(N·F/u_s, F/d_min) × WireFactor.
func HTTPExpected(f float64, c Caps) float64 {
	n := float64(len(c.AgentDown))
	if n == 0 || c.SeederUp <= 0 {
		return 0
	}
	t := n * f / c.SeederUp
	for _, d := range c.AgentDown {
		t = max(t, f/d)
	}
	return t * WireFactor
}

// nominalCaps are the caps a scenario asks for.
func nominalCaps(s *Scenario) Caps {
	c := Caps{SeederUp: float64(s.Links.Seeder.Up), OriginUp: float64(s.Links.Seeder.Up)}
	if s.Mirror {
		c.OriginUp += float64(s.Links.Mirror.Up)
	}
	for range s.Agents {
		c.AgentUp = append(c.AgentUp, float64(s.Links.Agent.Up))
		c.AgentDown = append(c.AgentDown, float64(s.Links.Agent.Down))
	}
	return c
}

// httpExpected is HTTPExpected on the scenario's nominal caps, in seconds.
func httpExpected(s *Scenario) float64 {
	return HTTPExpected(float64(s.Bundle), nominalCaps(s))
}
