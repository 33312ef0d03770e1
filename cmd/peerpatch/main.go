// Command peerpatch publishes software releases and delivers them to a fleet over a private
// BitTorrent swarm. See `peerpatch --help`.
package main

import "os"

func main() {
	os.Exit(run(os.Args))
}
