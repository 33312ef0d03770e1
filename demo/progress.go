package demo

import (
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/peerpatch/peerpatch/pkg/api"
)

func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// progress shows one bar per agent on a terminal, and a line every few seconds elsewhere.
type progress struct {
	out   io.Writer
	total int64
	p     *mpb.Progress
	bars  []*mpb.Bar
	slot  map[string]int // agent id → bar, in order of first report
	last  time.Time
}

func newProgress(out io.Writer, agents int, total int64) *progress {
	v := &progress{out: out, total: total, slot: make(map[string]int)}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
		for i := range agents {
			v.bars = append(v.bars, v.p.AddBar(total,
				mpb.PrependDecorators(decor.Name(fmt.Sprintf("agent%-3d", i+1))),
				mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name("  "), decor.Percentage()),
			))
		}
	}
	return v
}

func (v *progress) update(st *api.Status) {
	agents := append([]api.Report(nil), st.Agents...)
	sort.Slice(agents, func(i, j int) bool { return agents[i].ID < agents[j].ID })
	if v.p != nil {
		for _, a := range agents {
			i, ok := v.slot[a.ID]
			if !ok {
				i = len(v.slot)
				v.slot[a.ID] = i
			}
			if i >= len(v.bars) {
				continue
			}
			done := a.Completed
			if a.InstalledVersion == version {
				done = v.total
			}
			v.bars[i].SetCurrent(done)
		}
		return
	}
	if time.Since(v.last) < 2*time.Second {
		return
	}
	v.last = time.Now()
	var done int64
	installed := 0
	for _, a := range agents {
		if a.InstalledVersion == version {
			installed++
			done += v.total
		} else {
			done += a.Completed
		}
	}
	fmt.Fprintf(v.out, "  %s received by %d agents, %d installed\n", size(done), len(agents), installed)
}

func (v *progress) close() {
	if v.p == nil {
		return
	}
	for _, b := range v.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	v.p.Wait()
}
