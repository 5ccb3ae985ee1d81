package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/metrics"
)

// gate is a recorder whose calls wait until it opens (or their context
// ends), then acknowledge; entered counts the calls waiting.
type gate struct {
	open    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	entered int
	sales   int
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.entered
}

func (g *gate) Record(ctx context.Context, s *salesv1.Sale) error {
	return g.RecordAll(ctx, []*salesv1.Sale{s})[0]
}

func (g *gate) RecordAll(ctx context.Context, sales []*salesv1.Sale) []error {
	g.mu.Lock()
	g.entered++
	g.mu.Unlock()
	errs := make([]error, len(sales))
	select {
	case <-g.open:
		g.mu.Lock()
		g.sales += len(sales)
		g.mu.Unlock()
	case <-ctx.Done():
		for i := range errs {
			errs[i] = ctx.Err()
		}
	}
	g.mu.Lock()
	g.entered--
	g.mu.Unlock()
	return errs
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInflightWriteLimit fills the server's write slots with calls that
// wait for Kafka, then sends one more through every protocol: each is shed
// at once with resource_exhausted (429 for REST, with Retry-After), is
// counted in the metrics, and writes nothing; reads still answer. Once
// the slots free up, writes go through again.
func TestInflightWriteLimit(t *testing.T) {
	t.Parallel()
	const slots = 4
	g := newGate()
	m := metrics.New()
	h := newHarness(t, options{recorder: g, metrics: m, analytics: fakeAnalytics{}, server: Config{MaxInflightWrites: slots}})
	t.Cleanup(g.release)
	h2c := httpClient(t, false, true)
	held := salesv1connect.NewSalesServiceClient(h2c, h.url, connect.WithGRPC())
	var wg sync.WaitGroup
	for range slots {
		wg.Go(func() {
			if _, err := held.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
				t.Errorf("RecordSale() holding a slot = %v, want OK once released", err)
			}
		})
	}
	waitFor(t, "every slot taken", func() bool { return g.waiting() == slots })
	if got := gauge(t, m, "bf_api_inflight_writes_limit"); got != slots {
		t.Errorf("bf_api_inflight_writes_limit = %v, want %d (MAX_INFLIGHT_WRITES)", got, slots)
	}

	for _, path := range everyWritePath() {
		t.Run(path.name, func(t *testing.T) {
			start := time.Now()
			code, _, err := path.call(t, h, "")
			took := time.Since(start)
			if code != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "limit of write calls in flight") {
				t.Errorf("%s with every slot taken = %v, want resource_exhausted naming the limit", path.name, err)
			}
			// Every RPC protocol carries the metadata (REST: below).
			if ce := new(connect.Error); errors.As(err, &ce) {
				if got := ce.Meta().Values(RetryAfterKey); len(got) != 1 || got[0] != "1" {
					t.Errorf("%s with every slot taken: Retry-After %q, want one 1", path.name, got)
				}
				if got := ce.Meta().Values(SaleRecordedKey); len(got) != 1 || got[0] != "no" {
					t.Errorf("%s with every slot taken: Sale-Recorded %q, want one no", path.name, got)
				}
			}
			// The slots are held until the test ends: a call that queued
			// for one would not answer at all.
			if took > hangBound {
				t.Errorf("%s with every slot taken answered after %v, want without waiting for a slot", path.name, took)
			}
		})
	}
	t.Run("429 with Retry-After", func(t *testing.T) {
		for _, path := range []string{"/venta", salesv1connect.SalesServiceRecordSaleProcedure} {
			resp, err := http.Post(h.url+path, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
				t.Errorf("POST %s with every slot taken = %d, Retry-After %q, want 429 and 1", path, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			// A refused write was never read, let alone written.
			if got := resp.Header.Get(SaleRecordedKey); got != "no" {
				t.Errorf("POST %s with every slot taken: Sale-Recorded %q, want no", path, got)
			}
		}
	})
	t.Run("reads are not limited", func(t *testing.T) {
		_, err := salesv1connect.NewAnalyticsServiceClient(h2c, h.url, connect.WithGRPC()).GetSummary(context.Background(), &salesv1.GetSummaryRequest{})
		if err != nil {
			t.Errorf("GetSummary() with every write slot taken = %v, want OK", err)
		}
	})
	if g.waiting() != slots {
		t.Errorf("calls waiting for Kafka = %d, want %d: a shed call reached the recorder", g.waiting(), slots)
	}
	got := counts(t, m, "resource_exhausted")
	for _, p := range everyWritePath() {
		if p.protocol == "legacy-rest" {
			continue // counted by the REST wrapper, under the same code
		}
		if got[p.procedure+" "+p.protocol] < 1 {
			t.Errorf("bf_api_requests_total{%s %s, code=resource_exhausted} = %v, want the shed call counted", p.procedure, p.protocol, got[p.procedure+" "+p.protocol])
		}
	}

	g.release()
	wg.Wait()
	for _, path := range everyWritePath() {
		if code, _, err := path.call(t, h, ""); code != 0 {
			t.Errorf("%s once the slots are free = %v, want OK", path.name, err)
		}
	}
}

// TestInflightByteLimit holds calls whose bodies fill the byte budget: a
// further large body is cut off while it is read, and a compressed one is
// refused once it has arrived, when there is no room left for what it may
// decompress to, both with resource_exhausted; small calls still fit. (One
// client may hold the whole budget here: stall_test.go tests its share.)
func TestInflightByteLimit(t *testing.T) {
	t.Parallel()
	const (
		maxRequest = 64 << 10
		budget     = 2*maxRequest + 8<<10
	)
	g := newGate()
	h := newHarness(t, options{recorder: g, maxRequestBytes: maxRequest, server: Config{MaxInflightBytes: budget, MaxInflightBytesPerClient: budget}})
	t.Cleanup(g.release)
	// A batch of 400 sales is about 40 KiB in JSON: two hold 80 KiB of
	// the 136 KiB budget, and a third cannot fit.
	batch := &salesv1.RecordSalesRequest{}
	for i := range 400 {
		s := validSale()
		s.ProductId = fmt.Sprintf("PRODUCT-%06d", i)
		s.SaleId = fmt.Sprintf("sale-%020d", i)
		batch.Sales = append(batch.Sales, s)
	}
	client := salesv1connect.NewSalesServiceClient(httpClient(t, true, false), h.url, connect.WithProtoJSON())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := client.RecordSales(context.Background(), batch); err != nil {
				t.Errorf("RecordSales() holding bytes = %v, want OK once released", err)
			}
		})
	}
	waitFor(t, "two batches held", func() bool { return g.waiting() == 2 })

	_, err := client.RecordSales(context.Background(), batch)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "limit of request bytes in flight") {
		t.Errorf("RecordSales() beyond the byte budget = %v, want resource_exhausted naming the limit", err)
	}
	gz := salesv1connect.NewSalesServiceClient(httpClient(t, true, false), h.url, connect.WithProtoJSON(), connect.WithSendGzip())
	_, err = gz.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "limit of request bytes in flight") {
		t.Errorf("gzipped RecordSale() with less than MaxRequestBytes of budget left = %v, want resource_exhausted", err)
	}
	// A small call still fits; it waits on the gate like the others.
	small := make(chan error, 1)
	go func() {
		_, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
		small <- err
	}()
	waitFor(t, "the small call admitted", func() bool { return g.waiting() == 3 })
	g.release()
	wg.Wait()
	if err := <-small; err != nil {
		t.Errorf("small RecordSale() within the budget = %v, want OK", err)
	}
	if g.sales != 2*len(batch.Sales)+1 {
		t.Errorf("sales recorded = %d, want %d: only the admitted calls", g.sales, 2*len(batch.Sales)+1)
	}
}

// TestMaxConnections holds every connection slot with idle connections: a
// further connection is closed at once (its call fails fast with
// unavailable) and counted, and a slot freed is taken again.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	const slots = 3
	m := metrics.New()
	h := newHarness(t, options{metrics: m, server: Config{MaxConnections: slots}})
	addr := strings.TrimPrefix(h.url, "http://")
	var held []net.Conn
	for range slots {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	waitFor(t, "the slots taken", func() bool { return gauge(t, m, "bf_api_connections") == slots })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(hangBound))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read() on a connection beyond MaxConnections = %v after %v, want it closed by the server", err, time.Since(start))
	}
	c.Close()
	client := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
	start = time.Now()
	_, err = client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
	// The client finds the connection closed: connect-go reports EOF as
	// unavailable, and a write that races the close (EPIPE, ECONNRESET) as
	// canceled; grpc-go reports both as unavailable.
	if code := connect.CodeOf(err); (code != connect.CodeUnavailable && code != connect.CodeCanceled) || time.Since(start) > hangBound {
		t.Errorf("RecordSale() beyond MaxConnections = %v after %v, want unavailable (or canceled) at once", err, time.Since(start))
	}
	if n := gauge(t, m, "bf_api_connections_refused_total"); n < 2 {
		t.Errorf("bf_api_connections_refused_total = %v, want at least 2", n)
	}

	held[0].Close()
	held = held[1:]
	waitFor(t, "a slot freed", func() bool { return gauge(t, m, "bf_api_connections") == slots-1 })
	if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
		t.Errorf("RecordSale() with a slot free = %v, want OK", err)
	}
}

// gauge reads an unlabelled gauge or counter from the registry.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			metric := f.GetMetric()[0]
			return metric.GetGauge().GetValue() + metric.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestMetricsCountRefusedBodies checks that calls connect-go refuses before
// the interceptors run (a body that does not decode, or is too large) are
// still counted, once, under their code.
func TestMetricsCountRefusedBodies(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	h := newHarness(t, options{metrics: m, maxRequestBytes: 1024})
	record := salesv1connect.SalesServiceRecordSaleProcedure
	unknown := saleBytes(t, varintField(42, 1))
	postConnect(t, httpClient(t, true, false), h.url+record, "application/json", []byte(`{"sale":{"saleid":"x"}}`), nil)
	postGRPC(t, h, false, record, frame(0, unknown), nil)
	postGRPC(t, h, true, record, frame(0, unknown), nil)
	postGRPC(t, h, false, record, frame(0, bytes.Repeat([]byte{0}, 2048)), nil)
	_, err := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC()).
		RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]float64{
		"invalid_argument":   {record + " connect+json": 1, record + " grpc": 1, record + " grpc-web": 1},
		"resource_exhausted": {record + " grpc": 1},
		"ok":                 {record + " grpc": 1},
	}
	for code, byKey := range want {
		got := counts(t, m, code)
		for key, n := range byKey {
			if got[key] != n {
				t.Errorf("bf_api_requests_total{%s, code=%s} = %v, want %v", key, code, got[key], n)
			}
		}
	}
}
