package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDemoSmall runs the demo with two agents and a small release: every agent installs a
// byte-identical copy and the summary says so.
func TestDemoSmall(t *testing.T) {
	var out bytes.Buffer
	sum, err := Run(context.Background(), Config{Agents: 2, Size: 4 << 20, Rate: 8 << 20, Out: &out})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !sum.OK() || sum.Installed != 2 || sum.Verified != 2 {
		t.Fatalf("summary %+v\n%s", sum, out.String())
	}
	if sum.OriginBytes < sum.Size {
		t.Fatalf("origin sent %d bytes, less than the %d-byte release it alone had", sum.OriginBytes, sum.Size)
	}
	if !strings.Contains(out.String(), "verification:  ok") {
		t.Fatalf("summary lacks the verification line:\n%s", out.String())
	}
}
