package lab

import (
	"context"
	"encoding/json"
	"fmt"
)

// Shaping: a node's upload is a tbf qdisc on the egress of its interface inside its namespace;
// its download is a tbf qdisc on the egress of the host-side end of its veth (what the bridge
// sends it). netem is not used (not available on every kernel).

// tbfLatency bounds the queue of each tbf: enough for TCP to keep a shaped link busy.
const tbfLatency = "100ms"

// tbfArgs are the `tc qdisc replace dev X` arguments after the device for a cap of rate bytes
// per second. The bucket holds 4 ms of traffic (at least 32 KiB, more than one GSO frame at
// 20 MiB/s), so timer granularity costs no throughput and bursts stay short.
func tbfArgs(rate Size) []string {
	burst := max(int64(32<<10), int64(rate)/250)
	return []string{"root", "tbf", "rate", fmt.Sprintf("%dbit", int64(rate)*8), "burst", fmt.Sprint(burst), "latency", tbfLatency}
}

// shape applies a cap of rate bytes per second to dev's egress (in namespace ns, "" = the
// host's) and returns the rate the kernel reports back.
func shape(ctx context.Context, ns, dev string, rate Size) (float64, error) {
	args := append([]string{"qdisc", "replace", "dev", dev}, tbfArgs(rate)...)
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	if _, err := command(ctx, "tc", args...); err != nil {
		return 0, fmt.Errorf("shape %s: %w", dev, err)
	}
	return appliedRate(ctx, ns, dev)
}

// appliedRate reads back the rate of dev's root tbf qdisc, in bytes per second.
func appliedRate(ctx context.Context, ns, dev string) (float64, error) {
	args := []string{"-j", "qdisc", "show", "dev", dev}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := command(ctx, "tc", args...)
	if err != nil {
		return 0, fmt.Errorf("read back cap of %s: %w", dev, err)
	}
	return parseTbfRate(out)
}

// parseTbfRate finds the root tbf qdisc's rate in `tc -j qdisc show` output.
func parseTbfRate(out string) (float64, error) {
	var qdiscs []struct {
		Kind    string `json:"kind"`
		Root    bool   `json:"root"`
		Options struct {
			Rate float64 `json:"rate"`
		} `json:"options"`
	}
	if err := json.Unmarshal([]byte(out), &qdiscs); err != nil {
		return 0, fmt.Errorf("parse tc output: %w", err)
	}
	for _, q := range qdiscs {
		if q.Kind == "tbf" && q.Root && q.Options.Rate > 0 {
			return q.Options.Rate, nil
		}
	}
	return 0, fmt.Errorf("no root tbf qdisc in tc output %q", out)
}
