package report

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"

	"blackfriday.local/tooling/loadgen/protocol"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plots written by Write with gonum/plot, in dir.
const (
	CDFFile      = "latency-cdf.svg"
	CallersFile  = "throughput-callers.svg"
	CPUStackFile = "cpu-per-sale.svg"
)

// writePlots draws the latency CDFs, throughput against callers and the
// stacked CPU per sale into dir. A plot with nothing to draw is not
// written; it returns the names of the files written.
func writePlots(r *Results, dir string) ([]string, error) {
	var names []string
	for _, p := range []struct {
		name string
		draw func(*Results) (*plot.Plot, error)
	}{{CDFFile, cdfPlot}, {CallersFile, callersPlot}, {CPUStackFile, cpuPlot}} {
		pl, err := p.draw(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		if pl == nil {
			continue
		}
		if err := pl.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, p.name)); err != nil {
			return nil, err
		}
		names = append(names, p.name)
	}
	return names, nil
}

// cdfPhase is the phase whose distributions the CDF compares: the open
// loop at one common rate, where latencies are comparable, or else the
// closed loop.
func cdfPhase(d map[distKey]bool) string {
	for k := range d {
		if k.phase == "open" {
			return "open"
		}
	}
	return "closed"
}

// cdfPlot draws, per protocol and sink, the fraction of calls answered
// within a latency, from the merged histograms of cdfPhase.
func cdfPlot(r *Results) (*plot.Plot, error) {
	dists := distributions(r)
	present := map[distKey]bool{}
	for k := range dists {
		present[k] = true
	}
	phase := cdfPhase(present)
	var keys []distKey
	for k, h := range dists {
		// In open loop both apis ran at the common rate; the CDF is the
		// durable api's.
		if k.phase == phase && h.Count() > 0 && (phase != "open" || k.sink == "kafka") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].protocol != keys[j].protocol {
			return protocolOrder(keys[i].protocol) < protocolOrder(keys[j].protocol)
		}
		return keys[i].sink < keys[j].sink
	})
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency CDF per protocol (%s loop, repetitions merged)", phase)
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of calls at or below"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs = 0
	p.Add(plotter.NewGrid())
	for i, k := range keys {
		vals, fracs := dists[k].CDF()
		pts := make(plotter.XYs, 0, 2*len(vals))
		prev := 0.0
		for j, v := range vals {
			x := math.Max(float64(v)/1e6, 1e-3) // a log axis has no zero
			pts = append(pts, plotter.XY{X: x, Y: prev}, plotter.XY{X: x, Y: fracs[j]})
			prev = fracs[j]
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / 7)
		p.Add(l)
		label := k.protocol
		if len(sinks(keys)) > 1 {
			label += " (" + k.sink + ")"
		}
		p.Legend.Add(label, l)
	}
	return p, nil
}

func sinks(keys []distKey) []string {
	var s []string
	for _, k := range keys {
		if !slices.Contains(s, k.sink) {
			s = append(s, k.sink)
		}
	}
	return s
}

// callersPlot draws the closed-loop throughput of each protocol measured
// at more than one number of callers (gRPC, in the compare's sweep),
// median over repetitions, one line per sink.
func callersPlot(r *Results) (*plot.Plot, error) {
	type key struct{ protocol, sink string }
	rates := map[key]map[int][]float64{}
	for _, run := range r.Runs {
		x := run.Result
		if x == nil || (run.Phase != "closed" && run.Phase != "sweep") {
			continue
		}
		k := key{x.Protocol, run.Sink}
		if rates[k] == nil {
			rates[k] = map[int][]float64{}
		}
		rates[k][x.Concurrency] = append(rates[k][x.Concurrency], x.CallsPerS)
	}
	var keys []key
	for k, m := range rates {
		if len(m) > 1 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].protocol != keys[j].protocol {
			return protocolOrder(keys[i].protocol) < protocolOrder(keys[j].protocol)
		}
		return keys[i].sink < keys[j].sink
	})
	p := plot.New()
	p.Title.Text = "Throughput against callers (closed loop, median of repetitions)"
	p.X.Label.Text = "callers (log scale)"
	p.Y.Label.Text = "calls/s"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = false, false
	p.Add(plotter.NewGrid())
	for i, k := range keys {
		var cs []int
		for c := range rates[k] {
			cs = append(cs, c)
		}
		sort.Ints(cs)
		pts := make(plotter.XYs, len(cs))
		for j, c := range cs {
			pts[j] = plotter.XY{X: float64(c), Y: StatOf(rates[k][c]).Median}
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(k.protocol+" ("+k.sink+")", l, s)
	}
	return p, nil
}

// cpuPlot stacks the CPU per sale of the load generator, the api and the
// broker for each protocol in the closed loop against the Kafka api,
// medians over repetitions. Per sale, not per call, so that a batch of 500
// sales stands beside the unary calls.
func cpuPlot(r *Results) (*plot.Plot, error) {
	type parts struct{ client, api, broker []float64 }
	by := map[string]*parts{}
	for _, run := range r.Runs {
		x := run.Result
		if x == nil || run.Phase != "closed" || run.Sink != "kafka" || x.Calls == 0 {
			continue
		}
		if by[x.Protocol] == nil {
			by[x.Protocol] = &parts{}
		}
		b, per := by[x.Protocol], float64(max(x.Batch, 1))
		b.client = append(b.client, x.CPU.ClientUSPerCall/per)
		b.api = append(b.api, x.CPU.ServerUSPerCall/per)
		b.broker = append(b.broker, x.CPU.Extra["kafka"]/per)
	}
	if len(by) == 0 {
		return nil, nil
	}
	var names []string
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return protocolOrder(names[i]) < protocolOrder(names[j]) })
	stack := func(get func(*parts) []float64) plotter.Values {
		v := make(plotter.Values, len(names))
		for i, n := range names {
			v[i] = StatOf(get(by[n])).Median
		}
		return v
	}
	p := plot.New()
	p.Title.Text = "CPU per sale against the Kafka api (closed loop, medians)"
	p.Y.Label.Text = "µs per sale"
	p.Legend.Top = true
	w := vg.Points(22)
	var below *plotter.BarChart
	for i, part := range []struct {
		name string
		get  func(*parts) []float64
	}{{"api", func(b *parts) []float64 { return b.api }}, {"broker", func(b *parts) []float64 { return b.broker }}, {"client (loadgen)", func(b *parts) []float64 { return b.client }}} {
		bc, err := plotter.NewBarChart(stack(part.get), w)
		if err != nil {
			return nil, err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		if below != nil {
			bc.StackOn(below)
		}
		below = bc
		p.Add(bc)
		p.Legend.Add(part.name, bc)
	}
	// Room above the tallest stack for the legend.
	var top float64
	for i := range names {
		top = math.Max(top, below.BarHeight(i))
	}
	p.Y.Min, p.Y.Max = 0, 1.3*top
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -0.9, -0.4
	return p, nil
}

// protocolOrder ranks a protocol by its place in protocol.Names, unknown
// ones last.
func protocolOrder(name string) int {
	for i, n := range protocol.Names() {
		if string(n) == name {
			return i
		}
	}
	return len(protocol.Names())
}
