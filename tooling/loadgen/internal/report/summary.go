package report

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"blackfriday.local/tooling/loadgen/internal/load"
)

// Stat is a figure measured once per repetition: its median and spread.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// StatOf summarises values; NaNs are left out.
func StatOf(xs []float64) Stat {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Stat{Median: med, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// Valid reports whether the stat has any value.
func (s Stat) Valid() bool { return s.N > 0 }

// Protocol summarises one protocol over the repetitions.
type Protocol struct {
	Name     string
	Describe string
	Batch    int
	// Closed loop, sales per second: the real api, the no-op one, and
	// their ratio per repetition.
	Real, Discard, Efficiency Stat
	// CPURatio is the real api's CPU per call ÷ the no-op api's, closed
	// loop, per repetition: each api at its own saturation, so at two
	// rates.
	CPURatio Stat
	// CPURatioEff is the same ratio with both apis open loop at one rate,
	// near the real api's saturation (the efficiency phase): what
	// durability costs the api itself where its CPU is decided. The api's
	// CPU per call falls as its rate rises (wake-ups and syscalls are
	// shared by more calls), so only at one rate does the ratio isolate
	// durability; and the rate an api is sized for is near its limit.
	CPURatioEff Stat
	// ServerCPUEff and ServerCPUEffDiscard are the api's CPU per call in
	// the efficiency phase, real and no-op, at EffRate calls/s.
	ServerCPUEff, ServerCPUEffDiscard, EffRate Stat
	// CPURatioOpen is the ratio at the common open-loop rate, a light
	// load, where a produce request is shared by fewer calls.
	CPURatioOpen Stat
	// Open loop at the common rate, milliseconds.
	P50, P90, P99, P999 Stat
	// Per call, from the closed-loop runs on the real api.
	ReqBytes, RespBytes            Stat
	ClientCPU, ServerCPU, KafkaCPU Stat
	// ServerCPUDiscard is the no-op api's CPU per call.
	ServerCPUDiscard Stat
	PeakRSS          int64
	Errors           map[string]int64
	Calls            int64
	// OtherCores is the CPU other processes used during the closed-loop
	// runs (both apis): load from elsewhere on a shared machine.
	OtherCores Stat
}

// Ratio compares two protocols, per repetition.
type Ratio struct {
	Name, A, B                     string
	Throughput, P50, P99           Stat
	ReqBytes, RespBytes, ServerCPU Stat
}

// Target is one of the targets and what was measured.
type Target struct {
	Name  string
	Goal  string
	Value Stat
	Unit  string
	// Pass is nil when there was nothing to measure.
	Pass *bool
	Note string
}

// Summary is what the tables and charts show.
type Summary struct {
	Protocols []Protocol
	Ratios    []Ratio
	Targets   []Target
}

// key finds a run.
type key struct {
	rep         int
	protocol    string
	phase, sink string
}

// Summarize computes the summary of results.
func Summarize(r *Results) *Summary {
	runs := map[key]*load.Result{}
	reps := map[int]bool{}
	for _, run := range r.Runs {
		runs[key{run.Rep, run.Result.Protocol, run.Phase, run.Sink}] = run.Result
		reps[run.Rep] = true
	}
	repList := make([]int, 0, len(reps))
	for rep := range reps {
		repList = append(repList, rep)
	}
	slices.Sort(repList)
	per := func(protocol, phase, sink string, f func(*load.Result) float64) Stat {
		var xs []float64
		for _, rep := range repList {
			if res := runs[key{rep, protocol, phase, sink}]; res != nil {
				xs = append(xs, f(res))
			}
		}
		return StatOf(xs)
	}
	ratio := func(a, b string, phaseA, phaseB, sink string, f func(*load.Result) float64) Stat {
		var xs []float64
		for _, rep := range repList {
			ra, rb := runs[key{rep, a, phaseA, sink}], runs[key{rep, b, phaseB, sink}]
			if ra != nil && rb != nil {
				xs = append(xs, f(ra)/f(rb))
			}
		}
		return StatOf(xs)
	}

	s := &Summary{}
	for _, name := range r.Settings.Protocols {
		p := Protocol{Name: name, Errors: map[string]int64{}}
		for _, run := range r.Runs {
			if run.Result.Protocol != name {
				continue
			}
			p.Describe, p.Batch = run.Result.Describe, run.Result.Batch
			for code, n := range run.Result.Errors {
				p.Errors[code] += n
			}
			for code, n := range run.Result.SaleErrors {
				p.Errors["sale:"+code] += n
			}
			p.Calls += run.Result.Calls
			if run.Sink == "kafka" {
				p.PeakRSS = max(p.PeakRSS, run.Result.ServerPeakRSS)
			}
		}
		sales := func(x *load.Result) float64 { return x.SalesPerS }
		p.Real = per(name, "closed", "kafka", sales)
		p.Discard = per(name, "closed", "discard", sales)
		var eff []float64
		for _, rep := range repList {
			real, discard := runs[key{rep, name, "closed", "kafka"}], runs[key{rep, name, "closed", "discard"}]
			if real != nil && discard != nil {
				eff = append(eff, real.SalesPerS/discard.SalesPerS)
			}
		}
		p.Efficiency = StatOf(eff)
		cpuRatio := func(phase string) Stat {
			var xs []float64
			for _, rep := range repList {
				real, discard := runs[key{rep, name, phase, "kafka"}], runs[key{rep, name, phase, "discard"}]
				if real != nil && discard != nil && discard.CPU.ServerUSPerCall > 0 {
					xs = append(xs, real.CPU.ServerUSPerCall/discard.CPU.ServerUSPerCall)
				}
			}
			return StatOf(xs)
		}
		p.CPURatio = cpuRatio("closed")
		p.CPURatioOpen = cpuRatio("open")
		p.CPURatioEff = cpuRatio("efficiency")
		p.ServerCPUEff = per(name, "efficiency", "kafka", func(x *load.Result) float64 { return x.CPU.ServerUSPerCall })
		p.ServerCPUEffDiscard = per(name, "efficiency", "discard", func(x *load.Result) float64 { return x.CPU.ServerUSPerCall })
		p.EffRate = per(name, "efficiency", "kafka", func(x *load.Result) float64 { return x.Rate })
		p.P50 = per(name, "open", "kafka", func(x *load.Result) float64 { return x.Latency.P50 })
		p.P90 = per(name, "open", "kafka", func(x *load.Result) float64 { return x.Latency.P90 })
		p.P99 = per(name, "open", "kafka", func(x *load.Result) float64 { return x.Latency.P99 })
		p.P999 = per(name, "open", "kafka", func(x *load.Result) float64 { return x.Latency.P999 })
		p.ReqBytes = per(name, "closed", "kafka", func(x *load.Result) float64 { return x.Wire.RequestBytesPerCall })
		p.RespBytes = per(name, "closed", "kafka", func(x *load.Result) float64 { return x.Wire.ResponseBytesPerCall })
		p.ClientCPU = per(name, "closed", "kafka", func(x *load.Result) float64 { return x.CPU.ClientUSPerCall })
		p.ServerCPU = per(name, "closed", "kafka", func(x *load.Result) float64 { return x.CPU.ServerUSPerCall })
		var other []float64
		for _, rep := range repList {
			for _, sink := range []string{"kafka", "discard"} {
				if res := runs[key{rep, name, "closed", sink}]; res != nil {
					other = append(other, res.CPU.OtherCores)
				}
			}
		}
		p.OtherCores = StatOf(other)
		p.ServerCPUDiscard = per(name, "closed", "discard", func(x *load.Result) float64 { return x.CPU.ServerUSPerCall })
		p.KafkaCPU = per(name, "closed", "kafka", func(x *load.Result) float64 {
			if v, ok := x.CPU.Extra["kafka"]; ok {
				return v
			}
			return math.NaN()
		})
		s.Protocols = append(s.Protocols, p)
	}

	pairs := []struct{ name, a, b string }{
		{"gRPC ÷ Connect JSON (HTTP/1.1)", "grpc", "connect-json"},
		{"gRPC ÷ Connect JSON (h2c)", "grpc", "connect-json-h2c"},
		{"gRPC served by connect-go ÷ Connect JSON (HTTP/1.1)", "grpc-connect-go", "connect-json"},
		{"gRPC, grpc-go server ÷ connect-go server", "grpc", "grpc-connect-go"},
		{"gRPC, grpc-go at both ends ÷ Connect JSON (HTTP/1.1)", "grpc-go", "connect-json"},
		{"gRPC, grpc-go client ÷ connect-go client (both to grpc-go)", "grpc-go", "grpc"},
		{"Connect proto ÷ Connect JSON (both HTTP/1.1)", "connect-proto", "connect-json"},
		{"Connect JSON h2c ÷ HTTP/1.1", "connect-json-h2c", "connect-json"},
		{"gRPC-Web ÷ gRPC", "grpc-web", "grpc"},
		{"legacy REST ÷ Connect JSON", "legacy-rest", "connect-json"},
		{"legacy gRPC ÷ gRPC", "legacy-grpc", "grpc"},
	}
	for _, pr := range pairs {
		if !slices.Contains(r.Settings.Protocols, pr.a) || !slices.Contains(r.Settings.Protocols, pr.b) {
			continue
		}
		s.Ratios = append(s.Ratios, Ratio{
			Name: pr.name, A: pr.a, B: pr.b,
			Throughput: ratio(pr.a, pr.b, "closed", "closed", "kafka", func(x *load.Result) float64 { return x.SalesPerS }),
			P50:        ratio(pr.a, pr.b, "open", "open", "kafka", func(x *load.Result) float64 { return x.Latency.P50 }),
			P99:        ratio(pr.a, pr.b, "open", "open", "kafka", func(x *load.Result) float64 { return x.Latency.P99 }),
			ReqBytes:   ratio(pr.a, pr.b, "closed", "closed", "kafka", func(x *load.Result) float64 { return x.Wire.RequestBytesPerCall }),
			RespBytes:  ratio(pr.a, pr.b, "closed", "closed", "kafka", func(x *load.Result) float64 { return x.Wire.ResponseBytesPerCall }),
			ServerCPU:  ratio(pr.a, pr.b, "closed", "closed", "kafka", func(x *load.Result) float64 { return x.CPU.ServerUSPerCall }),
		})
	}
	s.Targets = targets(r, s, ratio)
	return s
}

func boolp(b bool) *bool { return &b }

func targets(r *Results, s *Summary, ratio func(a, b, phaseA, phaseB, sink string, f func(*load.Result) float64) Stat) []Target {
	var ts []Target
	// The primary efficiency figure: what durability costs the api's own
	// CPU, which the broker and the load generator do not move when they
	// are pinned to other cores (COMPARE_PIN=1).
	pinned := "unpinned: the broker and the load generator shared the api's cores"
	if r.Settings.Pin {
		pinned = "pinned: the broker, Valkey and the load generator on other cores than the apis"
	}
	for _, p := range s.Protocols {
		t := Target{Name: "Durable api CPU per call ÷ no-op, " + p.Name, Goal: "≤ 1.25", Value: p.CPURatioEff, Unit: "×",
			Note: fmt.Sprintf("the api's CPU per call from /proc, Kafka (acks=all) ÷ SALES_SINK=discard, both open loop at one rate, %.0f%% of the Kafka api's closed-loop rate (%s calls/s), same repetition; %s",
				100*r.Settings.EfficiencyLoad, fmtNum(p.EffRate.Median), pinned)}
		if p.CPURatioEff.Valid() {
			t.Pass = boolp(p.CPURatioEff.Median <= 1.25)
		}
		ts = append(ts, t)
	}
	for _, p := range s.Protocols {
		t := Target{Name: "Durable ingest efficiency, " + p.Name, Goal: "≥ 0.75", Value: p.Efficiency, Unit: "×",
			Note: "closed-loop sales/s with Kafka (acks=all) ÷ SALES_SINK=discard, same concurrency, same repetition"}
		if p.Efficiency.Valid() {
			t.Pass = boolp(p.Efficiency.Median >= 0.75)
		}
		ts = append(ts, t)
	}
	batch := ratio("batch", "grpc", "closed", "closed", "kafka", func(x *load.Result) float64 { return x.SalesPerS })
	t := Target{Name: "Batch ingest, RecordSales ÷ unary gRPC", Goal: "≥ 20", Value: batch, Unit: "×",
		Note: fmt.Sprintf("sales/s, batches of %d, same concurrency, same repetition", r.Settings.Batch)}
	if batch.Valid() {
		t.Pass = boolp(batch.Median >= 20)
	}
	ts = append(ts, t)

	best, bestName := 0.0, ""
	for _, p := range s.Protocols {
		if p.Real.Valid() && p.Real.Median > best {
			best, bestName = p.Real.Median, p.Name
		}
	}
	t = Target{Name: "Aggregation keeps up, drain ÷ best ingest", Goal: "≥ 1.5", Unit: "×"}
	if d := r.Drain; d != nil && best > 0 {
		v := d.RatePerS / best
		t.Value = Stat{Median: v, Min: d.MinPerS / best, Max: d.MaxPerS / best, N: 1}
		t.Pass = boolp(v >= 1.5)
		t.Note = fmt.Sprintf("drain %.0f records/s over a backlog of %d ÷ %s %.0f sales/s (median); spread from the slowest and fastest second", d.RatePerS, d.Records, bestName, best)
	}
	ts = append(ts, t)

	t = Target{Name: "Freshness p99, ack → visible in GetSummary", Goal: "≤ 100 ms", Unit: "ms"}
	if f := r.Freshness; f != nil && f.Samples > 0 {
		t.Value = Stat{Median: f.P99MS, Min: f.P50MS, Max: f.MaxMS, N: int(f.Samples)}
		t.Pass = boolp(f.P99MS <= 100 && f.Timeouts == 0 && f.Failed == 0)
		t.Note = fmt.Sprintf("%s open loop at %.0f calls/s (50%% of its %.0f calls/s saturation); %d probes, GetSummary polled every %.0f ms; shown as p99 [p50–max]",
			f.Protocol, f.LoadRate, f.SaturationRate, f.Samples, f.PollMS)
	}
	ts = append(ts, t)

	allocs := BenchAllocs(r.Bench)
	worst := Stat{}
	var parts, parallel []string
	for _, a := range allocs {
		if a.Parallel {
			parallel = append(parallel, fmt.Sprintf("%s %s", a.Protocol, fmtNum(a.Diff.Median)))
			continue
		}
		if !worst.Valid() || a.Diff.Median > worst.Median {
			worst = a.Diff
		}
		parts = append(parts, fmt.Sprintf("%s %s", a.Protocol, fmtNum(a.Diff.Median)))
	}
	t = Target{Name: "Overhead, allocations per RecordSale − no-op", Goal: "≤ 40", Unit: "allocs", Value: worst}
	if worst.Valid() {
		t.Pass = boolp(worst.Median <= 40)
		t.Note = fmt.Sprintf("worst protocol of `make bench`, one caller (in process, %s backend): %s", allocs[0].Backend, strings.Join(parts, ", "))
		if len(parallel) > 0 {
			t.Note += "; with concurrent callers, whose records share produce requests: " + strings.Join(parallel, ", ")
		}
	} else {
		t.Note = "run `make bench` first to include it"
	}
	ts = append(ts, t)
	return ts
}

// BenchAlloc is the allocation overhead of the real recorder over the no-op
// one for one protocol.
type BenchAlloc struct {
	Protocol string
	// Parallel is set for BenchmarkRecordSaleParallel (16×GOMAXPROCS
	// concurrent callers), where records share produce requests.
	Parallel bool
	// Backend is "broker" (a real Kafka broker) when the benchmarks had
	// one, else "kafka" (kfake in process, whose own allocations count).
	Backend          string
	Real, Noop, Diff Stat
	RealNs, NoopNs   Stat
}

var benchName = regexp.MustCompile(`^BenchmarkRecordSale(Parallel)?/([^/]+)/(kafka|broker|noop)(-\d+)?$`)

// parallelSuffix names the concurrent benchmark's rows.
const parallelSuffix = ", 16×GOMAXPROCS callers"

// BenchAllocs pairs the real and no-op lines of BenchmarkRecordSale,
// preferring the real broker to kfake.
func BenchAllocs(lines []BenchLine) []BenchAlloc {
	type acc struct{ allocs, ns map[string][]float64 }
	byProto := map[string]*acc{}
	var order []string
	for _, l := range lines {
		m := benchName.FindStringSubmatch(l.Name)
		if m == nil {
			continue
		}
		name := m[2]
		if m[1] != "" {
			name += parallelSuffix
		}
		a := byProto[name]
		if a == nil {
			a = &acc{allocs: map[string][]float64{}, ns: map[string][]float64{}}
			byProto[name] = a
			order = append(order, name)
		}
		a.allocs[m[3]] = append(a.allocs[m[3]], l.AllocsPerOp)
		a.ns[m[3]] = append(a.ns[m[3]], l.NsPerOp)
	}
	var out []BenchAlloc
	for _, p := range order {
		a := byProto[p]
		backend := "broker"
		if len(a.allocs[backend]) == 0 {
			backend = "kafka"
		}
		if len(a.allocs[backend]) == 0 || len(a.allocs["noop"]) == 0 {
			continue
		}
		real, noop := StatOf(a.allocs[backend]), StatOf(a.allocs["noop"])
		out = append(out, BenchAlloc{
			Protocol: p, Parallel: strings.HasSuffix(p, parallelSuffix), Backend: backend, Real: real, Noop: noop,
			Diff:   Stat{Median: real.Median - noop.Median, Min: real.Min - noop.Max, Max: real.Max - noop.Min, N: min(real.N, noop.N)},
			RealNs: StatOf(a.ns[backend]), NoopNs: StatOf(a.ns["noop"]),
		})
	}
	return out
}

// ParseBench reads `go test -bench` output, keeping the benchmark lines.
func ParseBench(text string) []BenchLine {
	var out []BenchLine
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		l := BenchLine{Name: f[0], Iterations: n}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			switch unit := f[i+1]; unit {
			case "ns/op":
				l.NsPerOp = v
			case "B/op":
				l.BytesPerOp = v
			case "allocs/op":
				l.AllocsPerOp = v
			default:
				if l.Metrics == nil {
					l.Metrics = map[string]float64{}
				}
				l.Metrics[unit] = v
			}
		}
		out = append(out, l)
	}
	return out
}
