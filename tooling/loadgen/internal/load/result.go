package load

import (
	"time"

	"blackfriday.local/tooling/loadgen/histogram"
)

// Result is one run's measurements, as written to the JSON result file.
// Latencies are in milliseconds; per-call figures divide by the calls
// completed in the measured window.
type Result struct {
	Label       string  `json:"label,omitempty"`
	Protocol    string  `json:"protocol"`
	Describe    string  `json:"describe"`
	Batch       int     `json:"batch"`
	Mode        string  `json:"mode"` // "open" or "closed"
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate_calls_per_s,omitempty"`
	Target      string  `json:"target"`
	Seed        uint64  `json:"seed"`
	Started     string  `json:"started"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`

	// Calls completed in the window, and those that succeeded.
	Calls   int64 `json:"calls"`
	OKCalls int64 `json:"ok_calls"`
	// Sales acknowledged in the window.
	Sales int64 `json:"sales"`
	// CallsPerS and SalesPerS count successful calls and acknowledged
	// sales per second of the window.
	CallsPerS float64 `json:"calls_per_s"`
	SalesPerS float64 `json:"sales_per_s"`

	Latency Latency `json:"latency_ms"`
	// Histogram is the whole latency distribution of the window, in
	// nanoseconds (the .hgrm files and the CDF are drawn from it).
	Histogram *histogram.Histogram `json:"latency_histogram_ns,omitempty"`
	// Seconds is the window second by second.
	Seconds []Second `json:"seconds,omitempty"`
	// Errors counts failed calls by code; SaleErrors counts sales a
	// successful batch call reported as failed, by code.
	Errors     map[string]int64 `json:"errors"`
	SaleErrors map[string]int64 `json:"sale_errors,omitempty"`

	Wire Wire `json:"wire"`
	CPU  CPU  `json:"cpu"`
	// ServerPeakRSS is the server's peak resident memory in bytes during
	// the window (since its start when PeakRSSReset is false).
	ServerPeakRSS int64 `json:"server_peak_rss_bytes,omitempty"`
	PeakRSSReset  bool  `json:"server_peak_rss_reset,omitempty"`

	// Open is set for open-loop runs.
	Open *Open `json:"open_loop,omitempty"`

	// Truth counts the sales written to the ground-truth file over the
	// whole run (warm-up and drain included).
	TruthAcked   int64 `json:"truth_acked"`
	TruthUnknown int64 `json:"truth_unknown"`
}

// Latency summarises the latency distribution in milliseconds. In open loop
// each latency runs from the moment the call was due, not sent.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Wire counts bytes over TCP.
type Wire struct {
	RequestBytesPerCall  float64 `json:"request_bytes_per_call"`
	ResponseBytesPerCall float64 `json:"response_bytes_per_call"`
	// Conns is the number of connections dialed during the window.
	Conns int64 `json:"conns"`
}

// CPU is CPU time per call in microseconds, from /proc.
type CPU struct {
	ClientUSPerCall float64 `json:"client_us_per_call"`
	ServerUSPerCall float64 `json:"server_us_per_call,omitempty"`
	ServerPID       int     `json:"server_pid,omitempty"`
	// Extra holds the CPU per call of other processes watched (such as
	// the Kafka broker), by name.
	Extra map[string]float64 `json:"extra_us_per_call,omitempty"`
	// ClientCores and ServerCores are the cores busy on average.
	ClientCores float64 `json:"client_cores"`
	ServerCores float64 `json:"server_cores,omitempty"`
	// MachineCores is how busy the whole machine was (every process), and
	// OtherCores what was left after the client, the server and the
	// watched processes: other work on a shared machine, which skews
	// the figures.
	MachineCores float64 `json:"machine_cores"`
	OtherCores   float64 `json:"other_cores"`
}

// Open describes how well an open-loop run kept its schedule.
type Open struct {
	// Due counts calls due in the window; Sent those that started.
	Due int64 `json:"due"`
	// LateCalls counts calls that started more than 1 ms after they were
	// due, for want of a free caller.
	LateCalls int64 `json:"late_calls"`
	// MaxStartLagMS is the worst delay between due and sent.
	MaxStartLagMS float64 `json:"max_start_lag_ms"`
}

func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }
