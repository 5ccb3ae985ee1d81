package main

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"blackfriday.local/services/api/internal/metrics"
)

// TestServeMetricsPprof: Go's profiles are served on the metrics listener
// only when PPROF asks for them, never by default.
func TestServeMetricsPprof(t *testing.T) {
	for _, withPprof := range []bool{false, true} {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		stop, err := serveMetrics(addr, withPprof, metrics.New(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("PPROF=%v: GET /metrics = %d, want 200 with the Go collector", withPprof, code)
		}
		code, body := get("/debug/pprof/goroutine?debug=1")
		switch {
		case withPprof && (code != http.StatusOK || !strings.Contains(body, "goroutine profile")):
			t.Errorf("PPROF=true: GET /debug/pprof/goroutine = %d, want 200 with a goroutine profile", code)
		case !withPprof && code != http.StatusNotFound:
			t.Errorf("PPROF=false: GET /debug/pprof/goroutine = %d, want 404", code)
		}
		stop()
	}
}
