package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Guest memory. A lab host that is a virtual machine may hand the memory its kernel frees back
// to the hypervisor (virtio-balloon free page reporting); touching such a page again faults in
// the host. On the lab's machine 16 processes writing 256 MiB each into new files spent 9.6 s
// of system time against 0.9 s when the freed memory had stayed in the guest; in the baseline at
// N=16 a third of the agents' CPU was in writing received pieces, and they used 1.5-1.8 CPU s
// each with freed memory kept against 1.8-2.1 without. A workstation, with memory of its own,
// pays nothing like it. So while it runs, the lab keeps freed memory in the guest (the
// reporting module's parameters below, restored after), and before each phase it touches as
// much memory as the phase will fill with file pages, so that the phase finds it already backed.
//
// The parameters are those of the guest kernel this lab was measured on; where they are absent,
// holdGuestMemory does nothing. pplab -host-memory leaves them alone.

// reportingParams is where the page reporting module's parameters are.
var reportingParams = "/sys/module/page_reporting/parameters"

// heldReporting are the parameters while the lab runs: report a free page only after a
// minute (the module refuses ten), with up to 32 GiB waiting.
var heldReporting = map[string]string{"min_free_ms": "60000", "max_waiting_mib": "32768"}

// savedReporting keeps the parameters found before a run, for a run that dies to be undone by
// the next one (until then the guest keeps what it frees).
func savedReporting() string { return filepath.Join(lockDir(), "page_reporting.saved") }

// guestMemory is the state of a run's hold on freed memory.
type guestMemory struct {
	held bool     // the parameters are the lab's
	self []string // the command that runs a lab helper
}

// String is the report's line on it.
func (g *guestMemory) String() string {
	if g == nil || !g.held {
		return "freed memory as the host has it"
	}
	return "freed memory kept in the guest during the run, and backed before each phase (see test/lab/hostmem.go)"
}

// holdGuestMemory sets heldReporting, saving what it replaces. Without the module it returns
// a guestMemory that holds nothing.
func holdGuestMemory(self []string, log *slog.Logger) (*guestMemory, error) {
	old := make(map[string]string, len(heldReporting))
	for name := range heldReporting {
		b, err := os.ReadFile(filepath.Join(reportingParams, name))
		if errors.Is(err, fs.ErrNotExist) {
			return &guestMemory{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read page reporting parameter: %w", err)
		}
		old[name] = strings.TrimSpace(string(b))
	}
	// A saved record is a run's that died, or one still running: either way it holds the
	// parameters from before any lab run, which are the ones to put back.
	if _, err := os.Stat(savedReporting()); errors.Is(err, fs.ErrNotExist) {
		var saved strings.Builder
		for name, v := range old {
			fmt.Fprintf(&saved, "%s=%s\n", name, v)
		}
		if err := os.MkdirAll(lockDir(), 0o755); err != nil {
			return nil, fmt.Errorf("save page reporting parameters: %w", err)
		}
		if err := os.WriteFile(savedReporting(), []byte(saved.String()), 0o644); err != nil {
			return nil, fmt.Errorf("save page reporting parameters: %w", err)
		}
	}
	if err := setReporting(heldReporting); err != nil {
		return nil, errors.Join(err, restoreReporting())
	}
	log.Info("holding freed memory in the guest during the run", "was", old)
	return &guestMemory{held: true, self: self}, nil
}

// release puts back the parameters holdGuestMemory replaced.
func (g *guestMemory) release() error {
	if g == nil || !g.held {
		return nil
	}
	g.held = false
	return restoreReporting()
}

// restoreReporting writes back the saved parameters, if any, and forgets them.
func restoreReporting() error {
	b, err := os.ReadFile(savedReporting())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore page reporting parameters: %w", err)
	}
	params := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if name, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			params[name] = v
		}
	}
	if err := setReporting(params); err != nil {
		return err
	}
	return os.Remove(savedReporting())
}

func setReporting(params map[string]string) error {
	for name, v := range params {
		if _, ok := heldReporting[name]; !ok {
			continue // only what the lab sets
		}
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("page reporting parameter %s: bad value %q", name, v)
		}
		if err := os.WriteFile(filepath.Join(reportingParams, name), []byte(v), 0o644); err != nil {
			return fmt.Errorf("set page reporting parameter %s: %w", name, err)
		}
	}
	return nil
}

// touch has a helper process back n bytes of fresh memory (at most what is free but 2 GiB) and
// free them, so that the guest holds them backed, and free, for the phase that follows. A
// helper, not the lab itself: a process the lab starts shares the lab's memory until it execs,
// and its peak RSS (the agents' figure) would count the lab's.
func (g *guestMemory) touch(ctx context.Context, n int64, log *slog.Logger) {
	if g == nil || !g.held {
		return
	}
	n = min(n, memAvailable()-2<<30)
	if n <= 0 {
		return
	}
	began := time.Now()
	argv := append(slices.Clone(g.self), "touch", "--bytes", strconv.FormatInt(n, 10))
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		log.Warn("could not touch memory before the phase", "bytes", n, "err", err, "output", string(out))
		return
	}
	log.Info("memory touched", "size", Size(n).String(), "took", time.Since(began).Round(10*time.Millisecond))
}

// touchMain is the touch helper: it has the kernel back --bytes of fresh memory, then frees it.
func touchMain(args []string) error {
	fs := flag.NewFlagSet("touch", flag.ContinueOnError)
	n := fs.Int64("bytes", 0, "how much memory to touch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	page := int64(os.Getpagesize())
	size := *n - *n%page
	if size <= 0 {
		return fmt.Errorf("touch: --bytes %d: want at least a page", *n)
	}
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("touch: map %d bytes: %w", size, err)
	}
	return syscall.Munmap(b) // MAP_POPULATE backed every page
}

// memAvailable is MemAvailable of /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	v := procField("/proc/meminfo", "MemAvailable")
	if v == "" {
		return 0
	}
	kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
	return kb << 10
}
