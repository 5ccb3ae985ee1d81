// Package metrics exposes the aggregator's Prometheus metrics: batch sizes,
// apply latency, lag per partition, dead letters, duplicates, sales
// counted, logs gone back under the stored offsets, partitions Valkey
// refuses, and the process's readiness and reach of Valkey.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics implements consume.Observer with Prometheus collectors in a
// registry of its own.
type Metrics struct {
	registry    *prometheus.Registry
	batch       prometheus.Histogram
	apply       prometheus.Histogram
	lag         *prometheus.GaugeVec
	deadLetters prometheus.Counter
	duplicates  prometheus.Counter
	sales       prometheus.Counter
	conflicts   prometheus.Counter
	resets      *prometheus.CounterVec
	rewound     *prometheus.CounterVec
	refused     prometheus.Counter
	refusedNow  prometheus.Gauge
}

// New returns Metrics with the Go runtime and process collectors registered.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bf_aggregator_batch_records",
			Help:    "Records per partition batch applied to Valkey.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 to 65536
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bf_aggregator_apply_duration_seconds",
			Help:    "Time of one batch's atomic Valkey apply (one script call).",
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bf_aggregator_lag_records",
			Help: "Records of a partition on Kafka not yet counted in Valkey, at the last poll.",
		}, []string{"partition"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bf_aggregator_dead_letters_total",
			Help: "Records sent to the dead-letter topic and counted as such.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bf_aggregator_duplicates_total",
			Help: "Sales dropped because a sale with the same sale_id was counted on the partition within DEDUP_WINDOW.",
		}),
		sales: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bf_aggregator_sales_applied_total",
			Help: "Sales counted in Valkey by this process.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bf_aggregator_apply_conflicts_total",
			Help: "Batches discarded because Valkey's stored offset was not the expected one (replays, zombies, lost data).",
		}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bf_aggregator_log_resets_total",
			Help: "Partitions whose log went back under the offset stored in Valkey, by reason: recreated (a new topic ID) or truncated (records counted and then lost by Kafka). Sales written before and not yet counted are lost.",
		}, []string{"reason"}),
		rewound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bf_aggregator_log_reset_offsets_total",
			Help: "Offsets the stored offsets moved back by on log resets: for truncated, records counted that the log no longer holds; for recreated, the old topic's counted offsets.",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bf_aggregator_refused_batches_total",
			Help: "Batches (or stored offsets) Valkey refused because a stored value is not what the aggregator writes or a counter would overflow; each retry counts.",
		}),
		refusedNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bf_aggregator_refused_partitions",
			Help: "Partitions this process holds paused because Valkey refuses their batches.",
		}),
	}
	for _, reason := range []string{"recreated", "truncated"} {
		// Present from the start, so that increase() sees the first one.
		m.resets.WithLabelValues(reason)
		m.rewound.WithLabelValues(reason)
	}
	m.registry.MustRegister(m.batch, m.apply, m.lag, m.deadLetters, m.duplicates, m.sales, m.conflicts,
		m.resets, m.rewound, m.refused, m.refusedNow,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Health registers the gauges the alerts read for what has no counter:
// bf_aggregator_ready, 1 while ready says the consumer is ready (as /readyz
// answers), and bf_aggregator_valkey_up, 1 while valkeyUp says Valkey
// answers. Both are called at every scrape.
func (m *Metrics) Health(ready, valkeyUp func() bool) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bf_aggregator_ready",
			Help: "1 while this process is ready (/readyz answers 200), else 0.",
		}, func() float64 { return one(ready()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bf_aggregator_valkey_up",
			Help: "1 while Valkey answers this process's PING at scrape time, else 0.",
		}, func() float64 { return one(valkeyUp()) }))
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Registry is where other collectors, such as franz-go's kprom, register.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Applied records a batch counted in Valkey.
func (m *Metrics) Applied(_ int32, records int, sales, deadLetters, duplicates int64, took time.Duration) {
	m.batch.Observe(float64(records))
	m.apply.Observe(took.Seconds())
	m.sales.Add(float64(sales))
	m.deadLetters.Add(float64(deadLetters))
	m.duplicates.Add(float64(duplicates))
}

// Conflict records a discarded batch.
func (m *Metrics) Conflict(int32) { m.conflicts.Inc() }

// Lag records a partition's lag.
func (m *Metrics) Lag(partition int32, records int64) {
	m.lag.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(records))
}

// Released forgets the lag of partitions this member gave up, so that only
// their new owner reports it.
func (m *Metrics) Released(partitions []int32) {
	for _, p := range partitions {
		m.lag.DeleteLabelValues(strconv.Itoa(int(p)))
	}
}

// LogReset records a partition whose log went back under its stored offset.
func (m *Metrics) LogReset(_ int32, reason string, rewound int64) {
	m.resets.WithLabelValues(reason).Inc()
	m.rewound.WithLabelValues(reason).Add(float64(rewound))
}

// Refused records a batch Valkey refused.
func (m *Metrics) Refused(int32) { m.refused.Inc() }

// RefusedPartitions records how many partitions are paused for refusals.
func (m *Metrics) RefusedPartitions(n int) { m.refusedNow.Set(float64(n)) }
