package main

import (
	"net/http"
)

// healthHandler serves the probes: /healthz answers while the process can
// serve at all, /readyz only while the consumer runs, its writes succeed,
// Valkey refuses none of its partitions and no partition's log lately went
// back under its stored offset (see consume.Consumer.Ready). It also serves
// /metrics.
func healthHandler(ready func() bool, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
