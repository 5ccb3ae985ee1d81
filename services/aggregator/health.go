package main

import (
	"context"
	"net/http"
	"time"

	"github.com/redis/rueidis"
)

// healthHandler serves the probes: /healthz answers while the process can
// serve at all, /readyz only while the consumer runs, its writes succeed,
// Valkey refuses none of its partitions and no partition's log lately went
// back under its stored offset (see consume.Consumer.Ready). It also serves
// /metrics, whose bf_aggregator_ready reads the same ready (metrics.Health).
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

// valkeyPingTimeout bounds the PING behind bf_aggregator_valkey_up: far
// above a healthy reply (well under a millisecond, even queued behind a
// batch's script), far below a scrape's timeout (10 s by default).
const valkeyPingTimeout = 2 * time.Second

// valkeyUp returns a check of whether Valkey answers client's PING within
// timeout, for bf_aggregator_valkey_up. It runs at every scrape rather than
// on the consumer's writes, so that it also tells an idle aggregator, which
// writes nothing, from one that could not write if it had to. A LOADING
// reply (the append-only file replaying) is an error: not up.
func valkeyUp(client rueidis.Client, timeout time.Duration) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return client.Do(ctx, client.B().Ping().Build()).Error() == nil
	}
}
