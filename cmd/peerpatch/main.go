// Command peerpatch publishes software releases and delivers them to a fleet over a private
// BitTorrent swarm. See `peerpatch --help`.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

func main() {
	stop := profile(os.Getenv("PEERPATCH_CPUPROFILE"))
	code := run(os.Args)
	stop()
	os.Exit(code)
}

// profile writes a CPU profile of the whole run to file, if named: a tool for measuring where
// a daemon's time goes (the fleet lab sets it). It returns the function that ends it.
func profile(file string) (stop func()) {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpatch: PEERPATCH_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
