package load_test

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/loadgen/internal/fakeapi"
	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/internal/progress"
	"blackfriday.local/tooling/loadgen/internal/sales"
	"blackfriday.local/tooling/loadgen/internal/truth"
	"blackfriday.local/tooling/loadgen/protocol"
)

func client(t *testing.T, url string, name protocol.Name, batch, conns int) *protocol.Client {
	t.Helper()
	c, err := protocol.New(protocol.Config{Target: url, Protocol: name, Batch: batch, Conns: conns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestClosedLoop runs closed loop against a fake api, one sale in ten
// failing, and checks the counts, the codes and the ground truth.
func TestClosedLoop(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	// By call, not by sale: prices end mostly in 9, and a short window on
	// a loaded machine makes few calls, yet every ten calls see both codes.
	var calls atomic.Int64
	srv.Fail = func(*salesv1.Sale) connect.Code {
		switch calls.Add(1) % 10 {
		case 3:
			return connect.CodeResourceExhausted // certainly not written
		case 7:
			return connect.CodeUnavailable // fate unknown
		}
		return 0
	}
	path := filepath.Join(t.TempDir(), "truth.csv")
	tw, err := truth.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var bar bytes.Buffer
	res, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.GRPC, 1, 4), Sales: sales.New(1, 50),
		Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		Truth: tw, ServerPID: os.Getpid(), Progress: progress.New(&bar),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if res.Mode != "closed" || res.Calls < 50 || res.OKCalls >= res.Calls || res.CallsPerS <= 0 {
		t.Errorf("result %+v, want a closed-loop run with some calls failing", res)
	}
	if res.Errors["resource_exhausted"] == 0 || res.Errors["unavailable"] == 0 {
		t.Errorf("Errors = %v, want resource_exhausted and unavailable", res.Errors)
	}
	if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P999 {
		t.Errorf("Latency = %+v, want ordered percentiles", res.Latency)
	}
	if res.Wire.RequestBytesPerCall < 30 || res.Wire.ResponseBytesPerCall < 10 {
		t.Errorf("Wire = %+v, want bytes per call counted", res.Wire)
	}
	if res.CPU.ClientUSPerCall <= 0 || res.ServerPeakRSS <= 0 {
		t.Errorf("CPU = %+v, peak RSS %d, want both measured", res.CPU, res.ServerPeakRSS)
	}
	// The ground truth holds exactly what the server took, plus the sales
	// of unknown fate, over the whole run.
	tr, err := truth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(len(srv.Received())); tr.Total.Sales != got || res.TruthAcked != got {
		t.Errorf("truth has %d sales (result says %d), the server took %d", tr.Total.Sales, res.TruthAcked, got)
	}
	if tr.Unknown == 0 || tr.Unknown != res.TruthUnknown {
		t.Errorf("truth has %d unknown (result says %d), want some", tr.Unknown, res.TruthUnknown)
	}
	if bar.Len() == 0 {
		t.Error("the progress bar drew nothing")
	}
}

// TestOpenLoopRate checks the open loop sends at the rate asked.
func TestOpenLoopRate(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	const rate = 400.0
	res, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.ConnectJSON, 1, 64), Sales: sales.New(2, 50),
		Rate: rate, Concurrency: 64, Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := rate * 0.5
	if res.Mode != "open" || float64(res.Calls) < want*0.95 || float64(res.Calls) > want*1.05 {
		t.Errorf("open loop at %v/s for 0.5s made %d calls, want about %v", rate, res.Calls, want)
	}
	if res.Open == nil || res.Open.Due != res.Calls {
		t.Errorf("Open = %+v, want Due = %d", res.Open, res.Calls)
	}
}

// TestOpenLoopChargesQueueing: a server taking 20ms per call with one
// caller can serve 50 calls/s; offered 100/s, the calls queue, and the
// latencies measured from when each call was due grow far past the 20ms of
// service time. A closed-loop measurement would report 20ms throughout.
func TestOpenLoopChargesQueueing(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	srv.Delay = 20 * time.Millisecond
	res, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.GRPC, 1, 1), Sales: sales.New(3, 50),
		Rate: 100, Concurrency: 1, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Latency.P99 < 100 || res.Latency.P50 < 40 {
		t.Errorf("Latency = %+v ms, want the queueing charged (p50 over 40ms, p99 over 100ms)", res.Latency)
	}
	if res.Open.LateCalls == 0 || res.Open.MaxStartLagMS < 50 {
		t.Errorf("Open = %+v, want late calls", res.Open)
	}
	closed, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.GRPC, 1, 1), Sales: sales.New(3, 50),
		Concurrency: 1, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if closed.Latency.P99 > res.Latency.P99/2 {
		t.Errorf("closed loop p99 = %v ms, open loop p99 = %v ms: want the closed loop to miss the queueing", closed.Latency.P99, res.Latency.P99)
	}
}

func TestBatchCountsSales(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	res, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.Batch, 50, 2), Sales: sales.New(4, 50),
		Concurrency: 2, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Batch != 50 || res.Sales != 50*res.OKCalls || math.Abs(res.SalesPerS-50*res.CallsPerS) > 1e-6*res.SalesPerS {
		t.Errorf("batch %d: %d sales in %d ok calls (%v vs %v per s), want 50 per call", res.Batch, res.Sales, res.OKCalls, res.SalesPerS, res.CallsPerS)
	}
}

func TestRunRejects(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	c := client(t, srv.URL, protocol.GRPC, 1, 1)
	g := sales.New(1, 10)
	for _, o := range []load.Options{
		{Sales: g, Concurrency: 1, Duration: time.Second},
		{Client: c, Sales: g, Concurrency: 0, Duration: time.Second},
		{Client: c, Sales: g, Concurrency: 1},
		{Client: c, Sales: g, Concurrency: 1, Duration: time.Second, Rate: -1},
	} {
		if _, err := load.Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) = nil error, want one", o)
		}
	}
	// Nothing listening: no call completes successfully, and the run says
	// why.
	down := client(t, "http://127.0.0.1:1", protocol.GRPC, 1, 1)
	res, err := load.Run(context.Background(), load.Options{Client: down, Sales: g, Concurrency: 1, Duration: 100 * time.Millisecond})
	if err == nil && res.Errors["unavailable"] == 0 {
		t.Errorf("Run against a closed port = %+v, want unavailable errors", res)
	}
}

// TestSeconds checks the per-second series: one entry per second of the
// window, together every call of the window, with its failures.
func TestSeconds(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	var calls atomic.Int64
	srv.Fail = func(*salesv1.Sale) connect.Code {
		if calls.Add(1)%5 == 0 {
			return connect.CodeUnavailable
		}
		return 0
	}
	res, err := load.Run(context.Background(), load.Options{
		Client: client(t, srv.URL, protocol.ConnectJSON, 1, 1), Sales: sales.New(1, 50),
		Concurrency: 2, Warmup: 20 * time.Millisecond, Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Seconds) != 2 {
		t.Fatalf("%d seconds, want 2 for a 1.5 s window", len(res.Seconds))
	}
	var n, failed int64
	for i, s := range res.Seconds {
		if s.Second != i || s.Calls == 0 || s.P50 <= 0 || s.P99 < s.P50 || s.Max < s.P99 {
			t.Errorf("second %d = %+v, want calls with ordered percentiles", i, s)
		}
		n += s.Calls
		failed += s.Errors
	}
	if n != res.Calls || failed != res.Calls-res.OKCalls {
		t.Errorf("seconds hold %d calls, %d failed, want %d, %d", n, failed, res.Calls, res.Calls-res.OKCalls)
	}
	if res.Histogram == nil || res.Histogram.Count() != res.Calls {
		t.Errorf("Histogram holds %v, want the window's %d calls", res.Histogram, res.Calls)
	}
}
