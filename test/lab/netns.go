package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prefix starts the name of every network namespace, link, directory and lock the lab makes,
// so that the leftovers of a crashed run can be found and removed.
const Prefix = "pplab"

// Addresses: every node sits on the run's bridge in 10.99.0.0/16. Only the namespaces carry
// addresses; the bridge and the host-side veth ends have none.
const (
	subnetBits = 16
	seederIP   = "10.99.0.1"
	mirrorIP   = "10.99.0.2"
)

// CongestionControl is the TCP congestion control of every node: the default of the workstations'
// systems (Windows, macOS, Linux). A new namespace takes the host's current one otherwise, which
// is a kernel build choice (BBR on the lab's machine) and changes with any sysctl run on the
// host: the committed report of 2026-11-27 was measured with CUBIC, which an experiment had set
// on the host a minute before (the host's sysctl file was last written then), the runs before it
// with BBR. At N=16 the two gave the same figures (six interleaved runs each, 1.16-1.22 and
// 1.16-1.19 × T_min), but a report must not depend on what the host was left with.
const CongestionControl = "cubic"

// congestionControlFile is where a namespace's congestion control is read and set.
const congestionControlFile = "/proc/sys/net/ipv4/tcp_congestion_control"

// Node is one machine of the lab: a network namespace with one interface, eth0, on the bridge.
type Node struct {
	// Name is the node's name in reports: "seeder", "mirror", "a01"…, "x01"… (bad peers).
	Name string
	// Netns is the namespace, pplab-<run>-<name>.
	Netns string
	// HostIf is the host-side end of the node's veth, pplab<run><short>: its rx counters are
	// what the node sent, its tx counters what it received.
	HostIf string
	// IP is the node's address.
	IP string
	// Up and Down are the caps the kernel reports, bytes per second.
	Up, Down float64
}

// Network is one run's bridge and namespaces.
type Network struct {
	id     string
	bridge string
	nodes  []*Node
	log    *slog.Logger
}

// agentIP is the address of agent i (1-based); bad peers use the next /24.
func agentIP(i int) string { return fmt.Sprintf("10.99.1.%d", i) }
func badIP(i int) string   { return fmt.Sprintf("10.99.2.%d", i) }

// agentName is the name of agent i (1-based): a01, a02, …
func agentName(i int) string { return fmt.Sprintf("a%02d", i) }
func badName(i int) string   { return fmt.Sprintf("x%02d", i) }

// shortName is the node's name in link names (15 bytes at most in all).
func shortName(name string) string {
	switch name {
	case "seeder":
		return "s"
	case "mirror":
		return "m"
	}
	return name
}

// newNetwork creates the run's bridge.
func newNetwork(ctx context.Context, id string, log *slog.Logger) (*Network, error) {
	n := &Network{id: id, bridge: Prefix + id + "br", log: log}
	if _, err := command(ctx, "ip", "link", "add", n.bridge, "type", "bridge"); err != nil {
		return nil, fmt.Errorf("create bridge: %w", err)
	}
	if _, err := command(ctx, "ip", "link", "set", n.bridge, "up"); err != nil {
		return n, fmt.Errorf("bring bridge up: %w", err)
	}
	return n, nil
}

// AddNode creates a namespace joined to the bridge, with address ip and the given caps.
func (n *Network) AddNode(ctx context.Context, name, ip string, link Link) (*Node, error) {
	nd := &Node{Name: name, Netns: Prefix + "-" + n.id + "-" + name, HostIf: Prefix + n.id + shortName(name), IP: ip}
	if len(nd.HostIf) > 15 {
		return nil, fmt.Errorf("add node %s: link name %q is too long", name, nd.HostIf)
	}
	n.nodes = append(n.nodes, nd)
	steps := [][]string{
		{"ip", "netns", "add", nd.Netns},
		{"ip", "-n", nd.Netns, "link", "set", "lo", "up"},
		{"ip", "link", "add", nd.HostIf, "type", "veth", "peer", "name", "eth0", "netns", nd.Netns},
		{"ip", "link", "set", nd.HostIf, "master", n.bridge},
		{"ip", "link", "set", nd.HostIf, "up"},
		{"ip", "-n", nd.Netns, "addr", "add", ip + "/" + strconv.Itoa(subnetBits), "dev", "eth0"},
		{"ip", "-n", nd.Netns, "link", "set", "eth0", "up"},
		// Written by a shell, not sysctl(8): a fresh CI machine may lack procps.
		{"ip", "netns", "exec", nd.Netns, "sh", "-c", "echo " + CongestionControl + " > " + congestionControlFile},
	}
	for _, s := range steps {
		if _, err := command(ctx, s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("add node %s: %w", name, err)
		}
	}
	var err error
	if nd.Up, err = shape(ctx, nd.Netns, "eth0", link.Up); err != nil {
		return nil, fmt.Errorf("add node %s: upload: %w", name, err)
	}
	if nd.Down, err = shape(ctx, "", nd.HostIf, link.Down); err != nil {
		return nil, fmt.Errorf("add node %s: download: %w", name, err)
	}
	n.log.Debug("node up", "node", name, "netns", nd.Netns, "ip", ip, "up", nd.Up, "down", nd.Down)
	return nd, nil
}

// Close deletes the namespaces (their veths go with them) and the bridge.
func (n *Network) Close(ctx context.Context) error {
	var errs []error
	for _, nd := range n.nodes {
		if _, err := command(ctx, "ip", "netns", "del", nd.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := command(ctx, "ip", "link", "del", n.bridge); err != nil {
		errs = append(errs, err)
	}
	n.nodes = nil
	return errors.Join(errs...)
}

// Counters are a node's interface byte counters, seen from the host side of its veth.
type Counters struct {
	Sent, Received int64
}

// counters reads a node's counters from /sys/class/net/<host end>/statistics.
func (nd *Node) counters() (Counters, error) {
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", nd.HostIf, "statistics", name))
		if err != nil {
			return 0, fmt.Errorf("read counters of %s: %w", nd.Name, err)
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	rx, err := read("rx_bytes")
	if err != nil {
		return Counters{}, err
	}
	tx, err := read("tx_bytes")
	return Counters{Sent: rx, Received: tx}, err
}

// snapshot reads the counters of every node, by name.
func snapshot(nodes []*Node) (map[string]Counters, error) {
	out := make(map[string]Counters, len(nodes))
	for _, nd := range nodes {
		c, err := nd.counters()
		if err != nil {
			return nil, err
		}
		out[nd.Name] = c
	}
	return out, nil
}
