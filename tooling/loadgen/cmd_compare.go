package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/loadgen/internal/compare"
	"blackfriday.local/tooling/loadgen/internal/progress"
	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/protocol"
	launcher "blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/valkey"
)

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("loadgen compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	var cfg compare.Config
	var protocols, out, benchFile, progressMode string
	fs.StringVar(&cfg.APIBin, "api-bin", "bin/api", "the api binary")
	fs.StringVar(&cfg.AggregatorBin, "aggregator-bin", "bin/aggregator", "the aggregator binary")
	fs.StringVar(&cfg.Kafka, "kafka", os.Getenv(testenv.KafkaBrokers), "the real Kafka broker (default $"+testenv.KafkaBrokers+"; with -valkey empty too, one started in -stack-dir)")
	fs.StringVar(&cfg.Valkey, "valkey", os.Getenv(testenv.ValkeyAddr), "the Valkey/Redis server (default $"+testenv.ValkeyAddr+"; with -kafka empty too, one started in -stack-dir)")
	stackDir := fs.String("stack-dir", ".run/compare-env", "where the stack launcher keeps the Kafka broker and Valkey server it starts when -kafka and -valkey name none")
	fs.IntVar(&cfg.KafkaPID, "kafka-pid", 0, "the broker's process id, for its CPU per call")
	fs.IntVar(&cfg.ValkeyPID, "valkey-pid", 0, "the Valkey server's process id, for its CPU while draining")
	fs.StringVar(&protocols, "protocols", "", "comma-separated protocols (default all: "+protocolList()+")")
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions")
	fs.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "warm-up of each run")
	fs.DurationVar(&cfg.Duration, "duration", 1500*time.Millisecond, "measured window of each run")
	fs.DurationVar(&cfg.BrokerWarmup, "broker-warmup", 8*time.Second, "load on the real api before measuring, to warm the broker's JVM")
	fs.IntVar(&cfg.Concurrency, "concurrency", 128, "closed-loop callers, the same for every protocol")
	fs.IntVar(&cfg.H2Conns, "conns", protocol.DefaultH2Conns, "connections of each HTTP/2 protocol's calls (HTTP/1.1 takes one per call in flight)")
	var sweep string
	fs.StringVar(&sweep, "sweep", "1,8,32,512", "comma-separated extra concurrencies at which gRPC runs once on each api (empty: none)")
	fs.IntVar(&cfg.OpenMaxInFlight, "max-inflight", 512, "open loop: most calls in flight")
	fs.Float64Var(&cfg.EfficiencyLoad, "efficiency-load", 0.8, "the efficiency phase's rate: this share of each protocol's closed-loop rate on the Kafka api, for both apis (what durability costs the api's CPU); negative skips it")
	fs.IntVar(&cfg.Batch, "batch", protocol.DefaultBatch, "sales per RecordSales call of the batch protocol")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open-loop calls/s for every protocol; 0 takes half the slowest unary protocol's saturation")
	fs.Float64Var(&cfg.MaxOtherLoad, "max-other-load", 0.25, "measure a run again when other processes took more than this many cores during it (0: never)")
	fs.IntVar(&cfg.Retries, "retries", 2, "how many times to measure a disturbed run again")
	fs.DurationVar(&cfg.Freshness, "freshness", 10*time.Second, "how long to probe freshness (0 skips it)")
	fs.DurationVar(&cfg.PollInterval, "poll", 5*time.Millisecond, "how often the freshness probe reads GetSummary")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the sales")
	fs.StringVar(&cfg.WorkDir, "work", ".run/compare", "where the ground-truth files and the services' logs go")
	fs.StringVar(&out, "out", "", "where results.json, results.md, the charts, the CSV files, the .hgrm distributions and the plots go (default .run/compare/<UTC time>; docs/results to publish)")
	fs.StringVar(&cfg.Meta.Command, "command", "", "the command that reproduces the run, for the report")
	fs.StringVar(&cfg.Meta.Kafka, "kafka-version", "", "the broker's version, for the report")
	fs.StringVar(&cfg.Meta.Valkey, "valkey-version", "", "the Valkey/Redis version, for the report")
	fs.StringVar(&cfg.Meta.Revision, "revision", "", "the source revision, for the report")
	fs.StringVar(&benchFile, "bench", "", "`FILE` of go test -bench output to include (the allocation target)")
	fs.StringVar(&progressMode, "progress", "auto", "progress bar: auto, on or off")
	fs.BoolVar(&cfg.Pin, "pin", false, "pin the broker, Valkey and loadgen to CPU 0 and the apis and the aggregator to CPU 1 (taskset; needs 2 CPUs), so the api's CPU per call is its own")
	fs.DurationVar(&cfg.CostDuration, "cost-duration", 3*time.Second, "window of each protocol's run in the cost phase (CPU per sale of the api, broker, aggregator and Valkey, for loadgen size); 0 skips it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.Pin && runtime.NumCPU() < 2 {
		return fmt.Errorf("compare -pin: this process may run on %d CPU; pinning needs 2 (one for the broker, Valkey and loadgen, one for the api)", runtime.NumCPU())
	}
	switch {
	case cfg.Kafka == "" && cfg.Valkey == "":
		down, err := startServices(ctx, *stackDir, &cfg, stderr)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, down()) }()
	case cfg.Kafka == "" || cfg.Valkey == "":
		return errors.New("compare: -kafka and -valkey name a real broker and server, both or neither (then they are started here)")
	}
	for _, c := range strings.Split(sweep, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return fmt.Errorf("-sweep %q: want positive integers", sweep)
		}
		cfg.Sweep = append(cfg.Sweep, n)
	}
	if protocols != "" {
		for _, p := range strings.Split(protocols, ",") {
			name, err := protocol.Parse(strings.TrimSpace(p))
			if err != nil {
				return err
			}
			cfg.Protocols = append(cfg.Protocols, name)
		}
	}
	if cfg.Meta.Command == "" {
		cfg.Meta.Command = "loadgen compare " + strings.Join(args, " ")
	}
	if benchFile != "" {
		b, err := os.ReadFile(benchFile)
		if err != nil {
			return err
		}
		cfg.Bench = report.ParseBench(string(b))
	}
	cfg.Log = stderr
	switch progressMode {
	case "on":
		cfg.Progress = progress.New(stderr)
	case "auto":
		if f, ok := stderr.(*os.File); ok {
			cfg.Progress = progress.ForTerminal(f)
		}
	}
	for _, p := range []*string{&cfg.APIBin, &cfg.AggregatorBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if out == "" {
		out = filepath.Join(".run", "compare", time.Now().UTC().Format("20060102T150405Z"))
	}
	res, err := compare.Run(ctx, cfg)
	if res != nil && len(res.Runs) > 0 {
		if werr := report.Write(res, out); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(stdout, "compare: wrote %s and the data and plots next to it\n", filepath.Join(out, report.MarkdownFile))
			printTargets(stdout, report.Summarize(res))
		}
	}
	return err
}

// startServices starts a real single-node Kafka broker and a Valkey
// server with the stack launcher in dir, points cfg at them (with their
// pids and versions, for the report) and returns what stops them and
// deletes their state.
func startServices(ctx context.Context, dir string, cfg *compare.Config, log io.Writer) (down func() error, err error) {
	st, err := launcher.New(launcher.Config{Dir: dir, Log: log})
	if err != nil {
		return nil, err
	}
	if err := st.Up(ctx, launcher.Kafka, launcher.Valkey); err != nil {
		return nil, errors.Join(err, st.Down())
	}
	c, err := st.Cluster()
	if err != nil {
		return nil, errors.Join(err, st.Down())
	}
	v, err := st.Server()
	if err != nil {
		return nil, errors.Join(err, st.Down())
	}
	cfg.Kafka, cfg.KafkaPID, cfg.Meta.Kafka = c.Bootstrap(), c.Pid(c.Nodes()[0].ID), c.Version()
	cfg.Valkey, cfg.ValkeyPID, cfg.Meta.Valkey = v.Addr(), v.Pid(), valkey.InstalledVersion()
	return st.Down, nil
}

func printTargets(w io.Writer, s *report.Summary) {
	for _, t := range s.Targets {
		verdict := "not measured"
		if t.Pass != nil {
			verdict = "MISSED"
			if *t.Pass {
				verdict = "met"
			}
		}
		val := "–"
		if t.Value.Valid() {
			val = fmt.Sprintf("%.3g [%.3g–%.3g] %s", t.Value.Median, t.Value.Min, t.Value.Max, t.Unit)
		}
		fmt.Fprintf(w, "  %-50s %-9s %-34s %s\n", t.Name, t.Goal, val, verdict)
	}
}

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	in := fs.String("in", "docs/results/"+report.JSONFile, "the results of a comparison")
	out := fs.String("out", "docs/results", "where to write results.md and the charts")
	benchFile := fs.String("bench", "", "`FILE` of go test -bench output to include instead of the one in the results")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	res, err := report.Load(*in)
	if err != nil {
		return err
	}
	if *benchFile != "" {
		b, err := os.ReadFile(*benchFile)
		if err != nil {
			return err
		}
		res.Bench = report.ParseBench(string(b))
	}
	if err := report.Write(res, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report: wrote %s\n", filepath.Join(*out, report.MarkdownFile))
	printTargets(stdout, report.Summarize(res))
	return nil
}

func runBenchRatio(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen benchratio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	in := fs.String("in", "-", "`FILE` of go test -bench output (- for stdin)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var b []byte
	var err error
	if *in == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(*in)
	}
	if err != nil {
		return err
	}
	lines := report.ParseBench(string(b))
	allocs := report.BenchAllocs(lines)
	traced := printTracingRatios(stdout, lines)
	if len(allocs) == 0 {
		if traced {
			return nil
		}
		return errors.New("benchratio: no BenchmarkRecordSale/<protocol>/{kafka,noop} or BenchmarkRecordSaleTracing lines in the input")
	}
	fmt.Fprintf(stdout, "\nBenchmarkRecordSale, real producer (%s) vs no-op recorder, medians over -count runs:\n", allocs[0].Backend)
	fmt.Fprintf(stdout, "  %-40s %12s %12s %14s %10s %12s %12s %10s\n", "protocol", "allocs real", "allocs noop", "allocs diff", "target", "µs/op real", "µs/op noop", "noop÷real")
	for _, a := range allocs {
		verdict := "met"
		if a.Diff.Median > 40 {
			verdict = "MISSED"
		}
		fmt.Fprintf(stdout, "  %-40s %12.0f %12.0f %14.0f %10s %12.1f %12.1f %10.2f\n", a.Protocol, a.Real.Median, a.Noop.Median, a.Diff.Median,
			"≤40 "+verdict, a.RealNs.Median/1000, a.NoopNs.Median/1000, a.NoopNs.Median/a.RealNs.Median)
	}
	// Batch against unary gRPC, in sales per second.
	backend := allocs[0].Backend
	var unary, batch []float64
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l.Name, "BenchmarkRecordSale/grpc/"+backend) && l.NsPerOp > 0:
			unary = append(unary, 1e9/l.NsPerOp)
		case strings.HasPrefix(l.Name, "BenchmarkRecordSales/grpc/"+backend) && l.Metrics["sales/op"] > 0:
			batch = append(batch, l.Metrics["sales/op"]*1e9/l.NsPerOp)
		}
	}
	if len(unary) > 0 && len(batch) > 0 {
		u, bt := report.StatOf(unary), report.StatOf(batch)
		fmt.Fprintf(stdout, "\nRecordSales (batch) vs RecordSale over gRPC, one caller, in process: %.0f vs %.0f sales/s = %.1f× (target ≥ 20× is measured end to end by make compare)\n",
			bt.Median, u.Median, bt.Median/u.Median)
	}
	var par = map[string][]float64{}
	for _, l := range lines {
		if strings.HasPrefix(l.Name, "BenchmarkRecordSaleParallel/grpc/") && l.NsPerOp > 0 {
			sink := strings.Split(strings.TrimPrefix(l.Name, "BenchmarkRecordSaleParallel/grpc/"), "-")[0]
			par[sink] = append(par[sink], 1e9/l.NsPerOp)
		}
	}
	if len(par[backend]) > 0 && len(par["noop"]) > 0 {
		k, n := report.StatOf(par[backend]), report.StatOf(par["noop"])
		fmt.Fprintf(stdout, "RecordSale over gRPC, 16×GOMAXPROCS callers, in process: %s %.0f vs no-op %.0f calls/s = %.2f (in-process durable ingest efficiency)\n",
			backend, k.Median, n.Median, k.Median/n.Median)
	}
	return nil
}

// tracingBench names BenchmarkRecordSaleTracing's rows: a protocol, then
// baseline (no tracing code at all), off (tracing set up as the api does
// with no endpoint), on (every call sampled, spans discarded) or on-1pct
// (one call in a hundred sampled).
var tracingBench = regexp.MustCompile(`^BenchmarkRecordSaleTracing/([^/]+)/(baseline|off|on|on-1pct)(-\d+)?$`)

// printTracingRatios prints the medians of BenchmarkRecordSaleTracing's rows,
// off and on against the baseline, and reports whether there were any.
func printTracingRatios(stdout io.Writer, lines []report.BenchLine) bool {
	type series struct{ ns, allocs, bytes []float64 }
	rows := map[string]map[string]*series{}
	var order []string
	for _, l := range lines {
		m := tracingBench.FindStringSubmatch(l.Name)
		if m == nil {
			continue
		}
		if rows[m[1]] == nil {
			rows[m[1]] = map[string]*series{}
			order = append(order, m[1])
		}
		r := rows[m[1]][m[2]]
		if r == nil {
			r = &series{}
			rows[m[1]][m[2]] = r
		}
		r.ns, r.allocs, r.bytes = append(r.ns, l.NsPerOp), append(r.allocs, l.AllocsPerOp), append(r.bytes, l.BytesPerOp)
	}
	if len(order) == 0 {
		return false
	}
	fmt.Fprintf(stdout, "\nBenchmarkRecordSaleTracing, medians over -count runs (min-max), ratios against the baseline:\n")
	fmt.Fprintf(stdout, "  %-14s %-9s %22s %8s %14s %8s %12s\n", "protocol", "tracing", "µs/op", "×", "allocs/op", "×", "B/op")
	for _, proto := range order {
		base := rows[proto]["baseline"]
		for _, mode := range []string{"baseline", "off", "on", "on-1pct"} {
			r := rows[proto][mode]
			if r == nil {
				continue
			}
			ns, al, by := report.StatOf(r.ns), report.StatOf(r.allocs), report.StatOf(r.bytes)
			nsRatio, alRatio := math.NaN(), math.NaN()
			if base != nil {
				nsRatio = ns.Median / report.StatOf(base.ns).Median
				alRatio = al.Median / report.StatOf(base.allocs).Median
			}
			fmt.Fprintf(stdout, "  %-14s %-9s %7.1f (%5.1f-%5.1f) %8.2f %14.0f %8.2f %12.0f\n", proto, mode,
				ns.Median/1000, ns.Min/1000, ns.Max/1000, nsRatio, al.Median, alRatio, by.Median)
		}
	}
	return true
}
