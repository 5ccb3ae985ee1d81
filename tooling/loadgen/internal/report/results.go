// Package report holds the results of a comparison (the JSON file) and
// renders them: a Markdown table of every figure with its median and spread
// over the repetitions, the targets and the protocol ratios, and SVG charts
// of throughput, latency percentiles and bytes per call.
package report

import (
	"encoding/json"
	"os"
	"time"

	"blackfriday.local/tooling/loadgen/internal/load"
)

// Results is everything one comparison measured.
type Results struct {
	Version  int      `json:"version"`
	Meta     Meta     `json:"meta"`
	Settings Settings `json:"settings"`
	Runs     []Run    `json:"runs"`
	// Drain is the aggregator's rate on the backlog the ingest runs left.
	Drain *Drain `json:"drain,omitempty"`
	// Freshness is the time from acknowledgement to visibility.
	Freshness *Freshness `json:"freshness,omitempty"`
	// Verification is the exact check of the aggregates against the
	// ground truth of every acknowledged sale.
	Verification Verification `json:"verification"`
	// Bench holds the in-process benchmarks, when they were run.
	Bench []BenchLine `json:"bench,omitempty"`
	// Costs are the CPU costs per unit of work, for the capacity plan.
	Costs *Costs `json:"costs,omitempty"`
}

// Meta says where and how the results were made.
type Meta struct {
	Date      string   `json:"date"`
	Command   string   `json:"command"`
	Revision  string   `json:"revision,omitempty"`
	CPU       string   `json:"cpu"`
	Cores     int      `json:"cores"`
	MemoryGiB float64  `json:"memory_gib"`
	Kernel    string   `json:"kernel"`
	Go        string   `json:"go"`
	Kafka     string   `json:"kafka,omitempty"`
	Valkey    string   `json:"valkey,omitempty"`
	LoadStart string   `json:"load_average_start,omitempty"`
	LoadEnd   string   `json:"load_average_end,omitempty"`
	ElapsedS  float64  `json:"elapsed_s"`
	Notes     []string `json:"notes,omitempty"`
}

// Settings are the comparison's parameters.
type Settings struct {
	Reps               int      `json:"reps"`
	WarmupS            float64  `json:"warmup_s"`
	DurationS          float64  `json:"duration_s"`
	BrokerWarmupS      float64  `json:"broker_warmup_s"`
	Concurrency        int      `json:"concurrency"`
	OpenMaxInFlight    int      `json:"open_max_in_flight"`
	Batch              int      `json:"batch"`
	OpenRate           float64  `json:"open_rate_calls_per_s"`
	OpenRateRule       string   `json:"open_rate_rule"`
	Protocols          []string `json:"protocols"`
	Seed               uint64   `json:"seed"`
	MaxBufferedRecords int      `json:"max_buffered_records"`
	MaxInflightWrites  int      `json:"max_inflight_writes,omitempty"`
	Partitions         int      `json:"partitions"`
	// Sweep lists the extra gRPC concurrencies run once on each api.
	Sweep []int `json:"sweep,omitempty"`
	// MaxOtherLoad and Retries: a run during which other processes took
	// more than MaxOtherLoad cores was measured again, up to Retries
	// times, keeping the least disturbed attempt. Retried counts them.
	MaxOtherLoad float64 `json:"max_other_load_cores,omitempty"`
	Retries      int     `json:"retries,omitempty"`
	Retried      int     `json:"retried,omitempty"`
	// Pin says the measured processes were pinned to CPUs (see Costs).
	Pin bool `json:"pin,omitempty"`
	// EfficiencyLoad is the share of each protocol's closed-loop rate on
	// the real api at which the efficiency phase runs both apis.
	EfficiencyLoad float64 `json:"efficiency_load,omitempty"`
}

// Run is one load run of the comparison.
type Run struct {
	Rep int `json:"rep"`
	// Phase is "closed" (saturation), "open" (the common rate), "sweep"
	// (gRPC at other concurrencies) or "freshness" (the background load of
	// the freshness probe).
	Phase string `json:"phase"`
	// Sink is "kafka" (the real api) or "discard" (SALES_SINK=discard).
	Sink   string       `json:"sink"`
	Result *load.Result `json:"result"`
}

// Drain is the aggregator draining a backlog.
type Drain struct {
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	// RatePerS is the records applied per second, from the first batch
	// applied to the last.
	RatePerS float64 `json:"rate_per_s"`
	// MinPerS and MaxPerS are the slowest and fastest one-second rates.
	MinPerS float64 `json:"min_per_s"`
	MaxPerS float64 `json:"max_per_s"`
	// StartupS is from the aggregator's start to its first batch.
	StartupS float64 `json:"startup_s"`
	// Cores is the aggregator's average CPU use while draining.
	Cores float64 `json:"aggregator_cores"`
	// ValkeyCores is the Valkey server's, when watched.
	ValkeyCores float64 `json:"valkey_cores,omitempty"`
	// Batches counts the partition batches applied to Valkey from the
	// first sample to the last.
	Batches int64 `json:"batches,omitempty"`
}

// Freshness is the acknowledgement-to-visibility latency of probe sales.
type Freshness struct {
	Protocol       string  `json:"protocol"`
	LoadRate       float64 `json:"load_rate_calls_per_s"`
	SaturationRate float64 `json:"saturation_calls_per_s"`
	Samples        int64   `json:"samples"`
	PollMS         float64 `json:"poll_interval_ms"`
	P50MS          float64 `json:"p50_ms"`
	P90MS          float64 `json:"p90_ms"`
	P99MS          float64 `json:"p99_ms"`
	MaxMS          float64 `json:"max_ms"`
	Timeouts       int64   `json:"timeouts"`
	// Failed counts probes the api did not acknowledge.
	Failed int64 `json:"failed,omitempty"`
}

// Verification is the exact check against the ground truth.
type Verification struct {
	OK      bool  `json:"ok"`
	Sales   int64 `json:"sales"`
	Units   int64 `json:"units"`
	Revenue int64 `json:"revenue_cents"`
	Unknown int64 `json:"unknown"`
	// UnknownWritten says the sales of unknown fate were all written (and
	// are counted in Sales); otherwise none was.
	UnknownWritten bool   `json:"unknown_written,omitempty"`
	Error          string `json:"error,omitempty"`
}

// BenchLine is one line of `go test -bench` output.
type BenchLine struct {
	Name        string             `json:"name"`
	Iterations  int64              `json:"iterations"`
	NsPerOp     float64            `json:"ns_per_op"`
	BytesPerOp  float64            `json:"bytes_per_op"`
	AllocsPerOp float64            `json:"allocs_per_op"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`
}

// Load reads results from a JSON file.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Save writes results to a JSON file.
func (r *Results) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Now is the date format of Meta.Date.
func Now() string { return time.Now().UTC().Format("2006-01-02 15:04 UTC") }
