// Package metrics exposes the aggregator's Prometheus metrics: batch sizes,
// apply latency, lag per partition, dead letters, duplicates and sales
// counted.
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
	}
	m.registry.MustRegister(m.batch, m.apply, m.lag, m.deadLetters, m.duplicates, m.sales, m.conflicts,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
