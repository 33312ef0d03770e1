// Command pplab runs the Peerpatch fleet lab: each scenario on a real fleet in network
// namespaces with tc-shaped links, beside the plain-HTTP baseline on the same links, and
// writes report.json, report.md and PNG charts. It needs root.
//
//	pplab -scenarios all -agents 16 -size 256MiB -rate 20MiB -out docs/lab
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peerpatch/peerpatch/test/lab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == lab.HelperArg {
		os.Exit(lab.HelperMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	fl := flag.NewFlagSet("pplab", flag.ContinueOnError)
	scenarios := fl.String("scenarios", "all", "comma-separated builtin scenario names or YAML files; a name may repeat (runs again); all = every builtin")
	agents := fl.Int("agents", 0, "override N, the number of agents")
	size := fl.String("size", "", "override F, the release size (e.g. 256MiB)")
	rate := fl.String("rate", "", "override every link cap, up and down, per second (e.g. 20MiB)")
	out := fl.String("out", "", "directory for report.json, report.md and charts")
	logs := fl.String("logs", "", "directory that keeps every node's log")
	bin := fl.String("bin", "", "use this peerpatch binary instead of building one")
	src := fl.String("src", "", "repository to build peerpatch from (default: this source tree)")
	rev := fl.String("revision", "", "name of the peerpatch revision in the report (default: the commit of the source tree)")
	noHTTP := fl.Bool("no-http", false, "leave out the plain-HTTP baseline")
	hostMemory := fl.Bool("host-memory", false, "leave freed memory to the hypervisor as the host does (by default a run keeps it in the guest; see test/lab/hostmem.go)")
	list := fl.Bool("list", false, "list the builtin scenarios and exit")
	render := fl.String("render", "", "render this report.json again into -out (Markdown and charts) and exit")
	verbose := fl.Bool("v", false, "debug logging")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: pplab [flags]\n\nRuns the fleet lab (needs root). Flags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(os.Args[1:]); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *list {
		all, err := lab.Builtin()
		if err != nil {
			fmt.Fprintln(os.Stderr, "pplab:", err)
			return 1
		}
		for _, s := range all {
			fmt.Printf("%-14s %s\n", s.Name, strings.Join(strings.Fields(s.Description), " "))
		}
		return 0
	}
	if *render != "" {
		rep, err := lab.ReadReport(*render)
		if err == nil {
			err = rep.Write(*out)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pplab:", err)
			return 1
		}
		return 0
	}
	var o lab.Overrides
	o.Agents = *agents
	var err error
	if *size != "" {
		if o.Bundle, err = lab.ParseSize(*size); err != nil {
			fmt.Fprintln(os.Stderr, "pplab: -size:", err)
			return 2
		}
	}
	if *rate != "" {
		if o.Rate, err = lab.ParseSize(*rate); err != nil {
			fmt.Fprintln(os.Stderr, "pplab: -rate:", err)
			return 2
		}
	}
	scs, err := selectScenarios(*scenarios, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pplab:", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pplab:", err)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pplab:", lab.ErrNotRoot)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := lab.Run(ctx, lab.Config{
		Scenarios: scs, OutDir: *out, LogDir: *logs, Source: *src, Binary: *bin, Revision: *rev,
		Self: []string{self, lab.HelperArg}, SkipHTTP: *noHTTP, HostMemory: *hostMemory, Logger: log,
	})
	if rep != nil && len(rep.Scenarios) > 0 {
		fmt.Println(rep.Table())
	}
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "pplab: interrupted; everything the lab made is removed")
		return 130
	case err != nil:
		fmt.Fprintln(os.Stderr, "pplab:", err)
		return 1
	}
	for _, s := range rep.Scenarios {
		if !s.OK {
			fmt.Fprintf(os.Stderr, "pplab: scenario %s failed: %s\n", s.Scenario.Name, strings.Join(s.Problems, "; "))
			return 1
		}
	}
	return 0
}

// selectScenarios resolves the -scenarios list and applies the overrides.
func selectScenarios(spec string, o lab.Overrides) ([]lab.Scenario, error) {
	var out []lab.Scenario
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		var scs []lab.Scenario
		if name == "all" {
			all, err := lab.Builtin()
			if err != nil {
				return nil, err
			}
			scs = all
		} else {
			s, err := lab.Lookup(name)
			if err != nil {
				return nil, err
			}
			scs = []lab.Scenario{s}
		}
		for _, s := range scs {
			s, err := s.Apply(o)
			if err != nil {
				return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
			}
			out = append(out, s)
		}
	}
	return out, nil
}
