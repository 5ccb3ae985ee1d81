// Package metrics exposes the api's Prometheus metrics: calls per procedure
// and per ingest protocol, their codes and latencies, and the producer's
// buffer use.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the api's collectors in a registry of its own, so tests can
// build as many servers as they like.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns Metrics with the Go runtime and process collectors registered.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bf_api_requests_total",
			Help: "Calls handled, by procedure, ingest protocol and Connect code (ok for success).",
		}, []string{"procedure", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bf_api_request_duration_seconds",
			Help: "Time from a call's arrival to its answer, by procedure and ingest protocol.",
			// From 250µs (a rejected call) to 10s (past the produce timeout).
			Buckets: prometheus.ExponentialBucketsRange(0.00025, 10, 16),
		}, []string{"procedure", "protocol"}),
	}
	reg.MustRegister(m.requests, m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where other collectors, such as franz-go's kprom, register.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Observe records one call.
func (m *Metrics) Observe(procedure, protocol, code string, took time.Duration) {
	m.requests.WithLabelValues(procedure, protocol, code).Inc()
	m.duration.WithLabelValues(procedure, protocol).Observe(took.Seconds())
}

// Gauge registers a gauge whose value f reads at scrape time.
func (m *Metrics) Gauge(name, help string, f func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter registers a counter whose value f reads at scrape time.
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// WrapHTTP records the calls of a plain HTTP handler, such as the legacy
// REST API, under the given procedure and protocol, with its status mapped
// to the Connect code a client would get for it.
func (m *Metrics) WrapHTTP(procedure, protocol string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		m.Observe(procedure, protocol, CodeOfStatus(sw.status), time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// CodeOfStatus names an HTTP status the way Connect names codes (the
// Connect protocol's mapping, plus the statuses of the course's REST API).
func CodeOfStatus(status int) string {
	switch status {
	case http.StatusOK:
		return "ok"
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return "invalid_argument"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusConflict:
		return "aborted"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "resource_exhausted"
	case http.StatusMethodNotAllowed, http.StatusNotFound, http.StatusNotImplemented:
		return "unimplemented"
	case 499:
		return "canceled"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "deadline_exceeded"
	}
	if status >= 500 {
		return "internal"
	}
	return "http_" + strconv.Itoa(status)
}
