// Package lab is Peerpatch's fleet lab: it runs a real fleet on one machine and measures it
// against the physical bound and against plain HTTP.
//
// Each node — the seeder, an optional web-seed mirror, N agents, corrupt peers — is a network
// namespace (pplab-<run>-<node>) with one veth on a bridge of its own, an address in
// 10.99.0.0/16, its upload and download capped with tc tbf (upload on the veth's inner end,
// download on its host end), and TCP congestion control CongestionControl. Every node is a
// separate process started with `ip netns exec`: peerpatch itself, or the lab binary re-executed
// as a plain file server or HTTP client (see HelperArg). A scenario (a small YAML file, see
// Scenario) says N, the release size, the caps and the faults; each runs twice on the same
// namespaces: with Peerpatch, and as the plain-HTTP baseline. The figures — makespan against the
// Kumar–Ross bound, bytes the origin sent (veth counters), per-agent completion, bytes from peers
// and from the origin, CPU and peak RSS from rusage — and the check that every agent holds
// exactly the published bytes and nothing half-installed go into a Report: JSON, Markdown and PNG
// charts.
//
// The lab needs root. It removes everything it made when it ends or is interrupted, and the
// leftovers of a crashed run (found by the pplab prefix) when it starts. cmd/pplab is its
// command; TestLabSmall runs a small scenario under `go test`.
package lab
