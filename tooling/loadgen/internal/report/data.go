package report

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"blackfriday.local/tooling/loadgen/histogram"
	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/protocol"
)

// Data files written by Write, in dir, next to the Markdown and the charts.
const (
	// CSVFile holds every figure in long format: one row per run and metric.
	CSVFile = "results.csv"
	// SeriesFile holds every run second by second.
	SeriesFile = "timeseries.csv"
)

// CSVHeader is the header of CSVFile.
var CSVHeader = []string{"protocol", "ingest_protocol", "server", "sink", "phase", "mode", "callers", "rate_calls_per_s", "repetition", "metric", "value", "unit"}

// SeriesHeader is the header of SeriesFile.
var SeriesHeader = []string{"protocol", "sink", "phase", "callers", "repetition", "second", "calls", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms"}

type metric struct {
	name, unit string
	value      func(*load.Result) (float64, bool)
}

func always(f func(*load.Result) float64) func(*load.Result) (float64, bool) {
	return func(r *load.Result) (float64, bool) { return f(r), true }
}

var metrics = []metric{
	{"calls", "calls", always(func(r *load.Result) float64 { return float64(r.Calls) })},
	{"ok_calls", "calls", always(func(r *load.Result) float64 { return float64(r.OKCalls) })},
	{"errors", "calls", always(func(r *load.Result) float64 { return float64(r.Calls - r.OKCalls) })},
	{"throughput", "calls/s", always(func(r *load.Result) float64 { return r.CallsPerS })},
	{"sales_throughput", "sales/s", always(func(r *load.Result) float64 { return r.SalesPerS })},
	{"latency_p50", "ms", always(func(r *load.Result) float64 { return r.Latency.P50 })},
	{"latency_p90", "ms", always(func(r *load.Result) float64 { return r.Latency.P90 })},
	{"latency_p99", "ms", always(func(r *load.Result) float64 { return r.Latency.P99 })},
	{"latency_p99_9", "ms", always(func(r *load.Result) float64 { return r.Latency.P999 })},
	{"latency_max", "ms", always(func(r *load.Result) float64 { return r.Latency.Max })},
	{"latency_mean", "ms", always(func(r *load.Result) float64 { return r.Latency.Mean })},
	{"request_bytes_per_call", "B", always(func(r *load.Result) float64 { return r.Wire.RequestBytesPerCall })},
	{"response_bytes_per_call", "B", always(func(r *load.Result) float64 { return r.Wire.ResponseBytesPerCall })},
	{"cpu_client_per_call", "us", always(func(r *load.Result) float64 { return r.CPU.ClientUSPerCall })},
	{"cpu_api_per_call", "us", func(r *load.Result) (float64, bool) { return r.CPU.ServerUSPerCall, r.CPU.ServerPID > 0 }},
	{"cpu_broker_per_call", "us", func(r *load.Result) (float64, bool) { v, ok := r.CPU.Extra["kafka"]; return v, ok }},
	{"other_load", "cores", always(func(r *load.Result) float64 { return r.CPU.OtherCores })},
}

// callers is a run's concurrency: its closed-loop callers, or in open
// loop the most calls it allowed in flight.
func callers(r *load.Result) string { return strconv.Itoa(r.Concurrency) }

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// CSV renders every run's figures in long format, one row per run and
// metric, with CSVHeader's columns.
func CSV(r *Results) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(CSVHeader)
	for _, run := range r.Runs {
		x := run.Result
		if x == nil {
			continue
		}
		for _, m := range metrics {
			v, ok := m.value(x)
			if !ok {
				continue
			}
			_ = w.Write([]string{x.Protocol, string(protocol.Name(x.Protocol).Ingest()), protocol.Name(x.Protocol).Server(), run.Sink, run.Phase, x.Mode, callers(x), num(x.Rate),
				strconv.Itoa(run.Rep), m.name, num(v), m.unit})
		}
		codes := make([]string, 0, len(x.Errors))
		for c := range x.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		for _, c := range codes {
			_ = w.Write([]string{x.Protocol, string(protocol.Name(x.Protocol).Ingest()), protocol.Name(x.Protocol).Server(), run.Sink, run.Phase, x.Mode, callers(x), num(x.Rate),
				strconv.Itoa(run.Rep), "errors_" + c, strconv.FormatInt(x.Errors[c], 10), "calls"})
		}
	}
	w.Flush()
	return b.Bytes()
}

// Series renders every run second by second, with SeriesHeader's columns.
func Series(r *Results) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(SeriesHeader)
	for _, run := range r.Runs {
		x := run.Result
		if x == nil {
			continue
		}
		for _, s := range x.Seconds {
			_ = w.Write([]string{x.Protocol, run.Sink, run.Phase, callers(x), strconv.Itoa(run.Rep), strconv.Itoa(s.Second),
				strconv.FormatInt(s.Calls, 10), strconv.FormatInt(s.Errors, 10), num(s.P50), num(s.P90), num(s.P99), num(s.Max)})
		}
	}
	w.Flush()
	return b.Bytes()
}

// distKey names one latency distribution: a protocol on a sink in a phase
// (and, in the sweep, at a number of callers), its repetitions merged.
type distKey struct {
	phase, protocol, sink string
	callers               int
}

func (k distKey) file() string {
	name := fmt.Sprintf("latency-%s-%s-%s", k.phase, k.protocol, k.sink)
	if k.phase == "sweep" {
		name += fmt.Sprintf("-%dc", k.callers)
	}
	return name + ".hgrm"
}

// distributions merges the runs' latency histograms by distKey.
func distributions(r *Results) map[distKey]*histogram.Histogram {
	out := map[distKey]*histogram.Histogram{}
	for _, run := range r.Runs {
		x := run.Result
		if x == nil || x.Histogram == nil {
			continue
		}
		k := distKey{phase: run.Phase, protocol: x.Protocol, sink: run.Sink}
		if run.Phase == "sweep" {
			k.callers = x.Concurrency
		}
		h, ok := out[k]
		if !ok {
			h = histogram.New()
			out[k] = h
		}
		h.Merge(x.Histogram)
	}
	return out
}

// writeData writes the CSV files and one .hgrm per distribution into dir,
// and returns the names of the .hgrm files.
func writeData(r *Results, dir string) ([]string, error) {
	if err := os.WriteFile(filepath.Join(dir, CSVFile), CSV(r), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, SeriesFile), Series(r), 0o644); err != nil {
		return nil, err
	}
	var names []string
	for k, h := range distributions(r) {
		var b bytes.Buffer
		if err := h.WritePercentiles(&b, 1e6); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, k.file()), b.Bytes(), 0o644); err != nil {
			return nil, err
		}
		names = append(names, k.file())
	}
	sort.Strings(names)
	return names, nil
}
