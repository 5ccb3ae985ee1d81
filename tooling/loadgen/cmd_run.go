package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/internal/progress"
	"blackfriday.local/tooling/loadgen/internal/sales"
	"blackfriday.local/tooling/loadgen/internal/truth"
	"blackfriday.local/tooling/loadgen/protocol"
)

// runFlags are the flags of one load run.
type runFlags struct {
	target      string
	protocol    string
	batch       int
	rate        float64
	concurrency int
	conns       int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	seed        uint64
	products    int
	out         string
	truth       string
	serverPID   int
	label       string
	progress    string
	gzip        bool
	lean        bool
	tokenFile   string
}

func parseRunFlags(args []string, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("loadgen run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	fs.StringVar(&f.target, "target", "http://127.0.0.1:8080", "the api's base URL")
	fs.StringVar(&f.protocol, "protocol", "grpc", "protocol: "+protocolList())
	fs.IntVar(&f.batch, "batch", 0, "sales per call: more than 1 calls RecordSales (0: 1, or 500 for -protocol batch)")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: calls per second at a constant arrival rate; 0 runs closed loop")
	fs.IntVar(&f.concurrency, "concurrency", 0, "closed loop: concurrent callers (default 32); open loop: most calls in flight (default 512)")
	fs.IntVar(&f.conns, "conns", protocol.DefaultH2Conns, "HTTP/2 protocols: connections the calls are spread over, so that behind a Service they reach several api replicas (HTTP/1.1 takes one per call in flight)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "the measured window")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "load before the measured window, not measured")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "deadline of each call")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the sales: the same seed sends the same sales")
	fs.IntVar(&f.products, "products", 200, "products per category")
	fs.StringVar(&f.out, "out", "", "write the JSON result to this file (- for stdout)")
	fs.StringVar(&f.truth, "truth", "", "write the ground truth (every acknowledged sale) to this file")
	fs.IntVar(&f.serverPID, "server-pid", 0, "the api's process id, for its CPU time and peak RSS from /proc")
	fs.StringVar(&f.label, "label", "", "a label copied into the result")
	fs.StringVar(&f.progress, "progress", "auto", "progress bar: auto (on a terminal), on or off")
	fs.BoolVar(&f.gzip, "gzip", false, "accept gzipped responses, as connect-go clients do by default")
	fs.BoolVar(&f.lean, "lean", false, "grpc and connect-json with hand-written clients that cost this process a fraction of connect-go's CPU (for overload on one machine)")
	fs.StringVar(&f.tokenFile, "token-file", "", "a file holding the bearer token for an api that authenticates writes (or set $LOADGEN_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if f.conns < 1 {
		return f, fmt.Errorf("-conns %d: want at least 1", f.conns)
	}
	if f.concurrency == 0 {
		f.concurrency = 32
		if f.rate > 0 {
			f.concurrency = 512
		}
	}
	switch f.progress {
	case "auto", "on", "off":
	default:
		return f, fmt.Errorf("-progress %q: want auto, on or off", f.progress)
	}
	return f, nil
}

func protocolList() string {
	var names []string
	for _, n := range protocol.Names() {
		names = append(names, string(n))
	}
	return strings.Join(names, ", ")
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	name, err := protocol.Parse(f.protocol)
	if err != nil {
		return err
	}
	if name == protocol.GRPCConnectGo {
		return fmt.Errorf("-protocol %s is compare's anchor, which starts an api with GRPC_SERVER=connect; against a running api use %s", name, protocol.GRPC)
	}
	token := os.Getenv("LOADGEN_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	client, err := protocol.New(protocol.Config{
		Target: f.target, Protocol: name, Batch: f.batch, Conns: name.Conns(f.concurrency, f.conns),
		DialTimeout: 5 * time.Second, AcceptGzip: f.gzip, Token: token, Lean: f.lean,
	})
	if err != nil {
		return err
	}
	defer client.Close()

	var tw *truth.Writer
	if f.truth != "" {
		if tw, err = truth.Create(f.truth); err != nil {
			return err
		}
	}
	var bar *progress.Bar
	switch f.progress {
	case "on":
		bar = progress.New(stderr)
	case "auto":
		if file, ok := stderr.(*os.File); ok {
			bar = progress.ForTerminal(file)
		}
	}
	res, err := load.Run(ctx, load.Options{
		Client: client, Sales: sales.New(f.seed, f.products),
		Rate: f.rate, Concurrency: f.concurrency,
		Warmup: f.warmup, Duration: f.duration, Timeout: f.timeout,
		Truth: tw, ServerPID: f.serverPID, Label: f.label, Target: f.target,
		Progress: bar,
	})
	if tw != nil {
		if cerr := tw.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("ground truth: %w", cerr)
		}
	}
	if err != nil {
		return err
	}
	if f.out != "" {
		if err := writeJSON(f.out, stdout, res); err != nil {
			return err
		}
	}
	if f.out != "-" {
		printResult(stdout, res)
	}
	return nil
}

// writeJSON writes v, indented, to path ("-" is w).
func writeJSON(path string, w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = w.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// printResult prints a run's result for people.
func printResult(w io.Writer, r *load.Result) {
	mode := fmt.Sprintf("closed loop, %d callers", r.Concurrency)
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop, %.0f calls/s", r.Rate)
	}
	fmt.Fprintf(w, "%s (%s), batch %d, %s, %.1fs measured\n", r.Protocol, r.Describe, r.Batch, mode, r.DurationS)
	fmt.Fprintf(w, "  throughput  %.0f calls/s, %.0f sales/s (%d calls, %d ok)\n", r.CallsPerS, r.SalesPerS, r.Calls, r.OKCalls)
	fmt.Fprintf(w, "  latency     p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	fmt.Fprintf(w, "  errors      %s\n", codes(r.Errors))
	if len(r.SaleErrors) > 0 {
		fmt.Fprintf(w, "  sale errors %s\n", codes(r.SaleErrors))
	}
	fmt.Fprintf(w, "  wire        %.0f B request, %.0f B response per call (%d connections dialed)\n",
		r.Wire.RequestBytesPerCall, r.Wire.ResponseBytesPerCall, r.Wire.Conns)
	fmt.Fprintf(w, "  cpu         client %.1f µs/call", r.CPU.ClientUSPerCall)
	if r.CPU.ServerPID > 0 {
		fmt.Fprintf(w, ", server %.1f µs/call, server peak RSS %.1f MiB", r.CPU.ServerUSPerCall, float64(r.ServerPeakRSS)/(1<<20))
	}
	fmt.Fprintln(w)
	if r.Open != nil {
		fmt.Fprintf(w, "  schedule    %d calls due, %d started over 1 ms late, worst start lag %.1f ms\n", r.Open.Due, r.Open.LateCalls, r.Open.MaxStartLagMS)
	}
	if r.TruthAcked+r.TruthUnknown > 0 {
		fmt.Fprintf(w, "  truth       %d acknowledged sales, %d of unknown fate\n", r.TruthAcked, r.TruthUnknown)
	}
}

func codes(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	target := fs.String("target", "http://127.0.0.1:8080", "the api's base URL")
	files := fs.String("truth", "", "comma-separated ground-truth files")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the aggregates to catch up")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *files == "" {
		return errors.New("verify: -truth is required")
	}
	t, err := truth.Load(strings.Split(*files, ",")...)
	if err != nil {
		return err
	}
	withUnknowns, err := truth.Verify(ctx, truth.Client(http.DefaultClient, *target), t, *timeout)
	if err != nil {
		return err
	}
	if withUnknowns {
		fmt.Fprintf(stdout, "verify: the %d sales of unknown fate were all written after all; counting them, ", t.Unknown)
		t = t.WithUnknowns()
	} else if t.Unknown > 0 {
		fmt.Fprintf(stdout, "verify: none of the %d sales of unknown fate was written; ", t.Unknown)
	}
	fmt.Fprintf(stdout, "verify: the aggregates match the ground truth exactly: %d sales, %d units, %d cents, %d products\n",
		t.Total.Sales, t.Total.Units, t.Total.Revenue, len(t.Products))
	return nil
}
