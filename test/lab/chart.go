package lab

import (
	"fmt"
	"image/color"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Colours of the charts.
var (
	colPeerpatch = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colHTTP      = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colBound     = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	colSeeder    = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colMirror    = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	colPeers     = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colBad       = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
)

// writeScenarioChart draws two panels: agents finished over time (Peerpatch, plain HTTP, T_min)
// and wire bytes sent by source, in units of F.
func writeScenarioChart(path string, s *ScenarioResult) error {
	left, err := completionPlot(s)
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	right, err := bytesPlot(s)
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	img := vgimg.New(vg.Points(960), vg.Points(380))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(24), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6)}
	cs := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(cs[0][0])
	right.Draw(cs[0][1])
	return savePNG(path, img)
}

func savePNG(path string, img *vgimg.Canvas) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return f.Close()
}

// steps is the cumulative count of finish times as a step line.
func steps(times []float64) plotter.XYs {
	sort.Float64s(times)
	xys := plotter.XYs{{X: 0, Y: 0}}
	for i, t := range times {
		xys = append(xys, plotter.XY{X: t, Y: float64(i)}, plotter.XY{X: t, Y: float64(i + 1)})
	}
	return xys
}

func finishTimes(ph *PhaseResult) []float64 {
	var ts []float64
	for _, a := range ph.Nodes {
		if a.Finished > 0 {
			ts = append(ts, a.Finished)
		}
	}
	return ts
}

func completionPlot(s *ScenarioResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: agents finished (N=%d, F=%s)", s.key(), s.Scenario.Agents, s.Scenario.Bundle)
	p.X.Label.Text = "seconds after the start (Peerpatch: the publish; HTTP: the fetches)"
	p.Y.Label.Text = "agents finished"
	p.Y.Min, p.Y.Max = 0, float64(s.Scenario.Agents)
	p.X.Min = 0
	p.Legend.Top, p.Legend.Left = true, true
	add := func(name string, xys plotter.XYs, c color.Color, dashed bool) error {
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = c, vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			l.Width = vg.Points(1)
		}
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	if err := add("Peerpatch", steps(finishTimes(s.Peerpatch)), colPeerpatch, false); err != nil {
		return nil, err
	}
	if s.HTTP != nil {
		if err := add("plain HTTP", steps(finishTimes(s.HTTP)), colHTTP, false); err != nil {
			return nil, err
		}
	}
	n := float64(s.Scenario.Agents)
	if err := add(fmt.Sprintf("T_min %.1f s", s.Bound.TMin), plotter.XYs{{X: s.Bound.TMin, Y: 0}, {X: s.Bound.TMin, Y: n}}, colBound, true); err != nil {
		return nil, err
	}
	if s.HTTP != nil {
		if err := add(fmt.Sprintf("HTTP expected %.1f s", s.HTTPExpected), plotter.XYs{{X: s.HTTPExpected, Y: 0}, {X: s.HTTPExpected, Y: n}}, colHTTP, true); err != nil {
			return nil, err
		}
	}
	end := max(s.Bound.TMin, s.HTTPExpected, s.Peerpatch.Makespan)
	if s.HTTP != nil {
		end = max(end, s.HTTP.Makespan)
	}
	p.X.Max = 1.05 * end
	return p, nil
}

func bytesPlot(s *ScenarioResult) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "wire bytes sent, by source (× F)"
	p.Y.Label.Text = "× F"
	f := float64(s.Scenario.Bundle)
	pp := s.Peerpatch
	seeder := plotter.Values{float64(pp.SeederBytes) / f}
	mirror := plotter.Values{float64(pp.MirrorBytes) / f}
	peers := plotter.Values{float64(pp.AgentsSent) / f}
	bad := plotter.Values{float64(pp.BadSent) / f}
	names := []string{"Peerpatch"}
	if h := s.HTTP; h != nil {
		seeder = append(seeder, float64(h.SeederBytes)/f)
		mirror = append(mirror, 0)
		peers = append(peers, float64(h.AgentsSent)/f)
		bad = append(bad, 0)
		names = append(names, "plain HTTP")
	}
	type layer struct {
		name string
		vals plotter.Values
		c    color.Color
	}
	layers := []layer{{"seeder", seeder, colSeeder}}
	if pp.MirrorBytes > 0 {
		layers = append(layers, layer{"mirror", mirror, colMirror})
	}
	layers = append(layers, layer{"agents (peers)", peers, colPeers})
	if pp.BadSent > 0 {
		layers = append(layers, layer{"corrupt peer (garbage)", bad, colBad})
	}
	w := vg.Points(60)
	var below *plotter.BarChart
	top := 0.0
	for i := range seeder {
		top = max(top, seeder[i]+mirror[i]+peers[i]+bad[i])
	}
	for _, layer := range layers {
		b, err := plotter.NewBarChart(layer.vals, w)
		if err != nil {
			return nil, err
		}
		b.Color, b.LineStyle.Width = layer.c, 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(layer.name, b)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(60)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min, p.Y.Max = 0, 1.3*top
	return p, nil
}

// writeSummaryChart draws every scenario's makespan ratio, Peerpatch beside plain HTTP.
func writeSummaryChart(path string, r *Report) error {
	p := plot.New()
	p.Title.Text = "makespan ÷ T_min (1.0 is the physical limit)"
	p.Y.Label.Text = "makespan ÷ T_min"
	var pp, h plotter.Values
	var names []string
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Peerpatch == nil {
			continue
		}
		names = append(names, s.key())
		pp = append(pp, s.Peerpatch.Ratio)
		if s.HTTP != nil {
			h = append(h, s.HTTP.Ratio)
		} else {
			h = append(h, 0)
		}
	}
	if len(names) == 0 {
		return nil
	}
	w := vg.Points(18)
	for _, layer := range []struct {
		name   string
		vals   plotter.Values
		c      color.Color
		offset vg.Length
	}{{"Peerpatch", pp, colPeerpatch, -w / 2}, {"plain HTTP", h, colHTTP, w / 2}} {
		b, err := plotter.NewBarChart(layer.vals, w)
		if err != nil {
			return fmt.Errorf("chart %s: %w", path, err)
		}
		b.Color, b.LineStyle.Width, b.Offset = layer.c, 0, layer.offset
		p.Add(b)
		p.Legend.Add(layer.name, b)
	}
	top := 1.0
	for i := range pp {
		top = max(top, pp[i], h[i])
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(40)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min, p.Y.Max = 0, 1.25*top
	img := vgimg.New(vg.Points(float64(max(480, 90*len(names)))), vg.Points(320))
	p.Draw(draw.New(img))
	return savePNG(path, img)
}
