package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// failure is what one ingest path answered when Kafka failed.
type failure struct {
	code    connect.Code
	message string
	saleID  string // as the error named it
	// recorded is the Sale-Recorded metadata: "no" or "unknown".
	recorded string
	took     time.Duration
}

// ingestPath sends one sale through one path and reports how it failed, or
// nil when it succeeded.
type ingestPath func(t *testing.T, h *harness, sale *salesv1.Sale) *failure

func rpcFailure(err error, took time.Duration) *failure {
	if err == nil {
		return nil
	}
	f := &failure{code: connect.CodeOf(err), took: took}
	if ce := new(connect.Error); errors.As(err, &ce) {
		f.message, f.saleID, f.recorded = ce.Message(), ce.Meta().Get(SaleIDKey), ce.Meta().Get(SaleRecordedKey)
	}
	return f
}

func grpcPath(t *testing.T, h *harness, sale *salesv1.Sale) *failure {
	c := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
	start := time.Now()
	_, err := c.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: sale})
	return rpcFailure(err, time.Since(start))
}

func connectBatchPath(t *testing.T, h *harness, sale *salesv1.Sale) *failure {
	c := salesv1connect.NewSalesServiceClient(httpClient(t, true, false), h.url, connect.WithProtoJSON())
	start := time.Now()
	resp, err := c.RecordSales(context.Background(), &salesv1.RecordSalesRequest{Sales: []*salesv1.Sale{sale}})
	if err == nil {
		if r := resp.GetResults()[0]; r.GetErrorCode() != "" {
			t.Errorf("RecordSales() = %v, want the whole call to fail when no sale was written", resp)
		}
	}
	return rpcFailure(err, time.Since(start))
}

func legacyGRPCPath(t *testing.T, h *harness, sale *salesv1.Sale) *failure {
	c := blackfridayconnect.NewProductSaleServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
	start := time.Now()
	resp, err := c.ProcesarVenta(context.Background(), &legacypb.ProductSaleRequest{
		Categoria: legacypb.CategoriaProducto(sale.GetCategory()), ProductoId: sale.GetProductId(),
		Precio: float64(sale.GetPriceCents()) / 100, CantidadVendida: sale.GetQuantity(),
	})
	if err == nil && resp.GetEstado() != "OK" {
		t.Errorf("ProcesarVenta() = %v, want estado OK or an error", resp)
	}
	f := rpcFailure(err, time.Since(start))
	if f != nil {
		f.saleID = "" // the course sale has no id of its own
	}
	return f
}

// restPath sends a sale to POST /venta, with its sale_id if it has one, and
// maps the REST answer back to a Connect code, to compare it with the other
// paths.
func restPath(t *testing.T, h *harness, sale *salesv1.Sale) *failure {
	body := `{"categoria":` + string('0'+rune(sale.GetCategory())) + `,"producto_id":"` + sale.GetProductId() + `","precio":1.5,"cantidad_vendida":1`
	if sale.GetSaleId() != "" {
		body += `,"sale_id":"` + sale.GetSaleId() + `"`
	}
	body += "}"
	start := time.Now()
	resp, err := http.Post(h.url+"/venta", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	b, _ := io.ReadAll(resp.Body)
	var got struct {
		Estado, Error, Message string
		SaleID                 string `json:"sale_id"`
		Recorded               string `json:"sale_recorded"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("POST /venta = %d %s, want JSON", resp.StatusCode, b)
	}
	if resp.StatusCode == http.StatusOK {
		if got.Estado != "OK" {
			t.Errorf("POST /venta = 200 %s, want estado OK", b)
		}
		return nil
	}
	wantStatus := map[string]int{"unavailable": 503, "resource_exhausted": 429}[got.Error]
	if resp.StatusCode != wantStatus || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("POST /venta = %d (Retry-After %q) %s, want %d with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"), b, wantStatus)
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(got.Error)); err != nil {
		t.Errorf("POST /venta error = %q, want a Connect code", got.Error)
	}
	if h := resp.Header.Get(SaleRecordedKey); h != got.Recorded || h != "no" && h != "unknown" {
		t.Errorf("POST /venta Sale-Recorded = %q, body sale_recorded %q, want the same no or unknown", h, got.Recorded)
	}
	// Without an id of its own the sale gets one: compare its presence.
	if sale.GetSaleId() == "" && got.SaleID != "" {
		got.SaleID = "assigned"
	}
	return &failure{code: code, message: got.Message, saleID: got.SaleID, recorded: got.Recorded, took: took}
}

// warmUp records sales until one succeeds: the first call also fetches
// metadata and a producer id, which a short produce timeout may not cover on
// a loaded machine.
func warmUp(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := grpcPath(t, h, validSale())
		if f == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RecordSale() never succeeded before the fault: %+v", f)
		}
	}
}

func failingPaths() map[string]ingestPath {
	return map[string]ingestPath{
		"gRPC RecordSale":           grpcPath,
		"Connect JSON RecordSales":  connectBatchPath,
		"legacy gRPC ProcesarVenta": legacyGRPCPath,
		"legacy REST POST /venta":   restPath,
	}
}

// TestKafkaBrokerErrors: when Kafka fails records, every path answers
// unavailable with the same message, within the produce timeout, and nothing
// is written.
func TestKafkaBrokerErrors(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	// A high breaker threshold keeps the answers about the broker.
	h := newHarness(t, options{produce: ingest.Config{ProduceTimeout: timeout, BreakerThreshold: 1000}})
	warmUp(t, h)
	before := h.written(t)
	produceErrors(h.cluster, kerr.CorruptMessage.Code)
	const want = "sales log did not acknowledge within 500ms; the sale was not recorded, retry"
	i := 0
	for name, path := range failingPaths() {
		i++
		sale := validSale()
		sale.SaleId = "kafka-down-" + string(rune('a'+i))
		f := path(t, h, sale)
		switch {
		case f == nil:
			t.Errorf("%s succeeded while Kafka failed every record", name)
		case f.code != connect.CodeUnavailable || f.message != want:
			t.Errorf("%s = %v %q, want unavailable %q", name, f.code, f.message, want)
		case f.took > timeout+hangBound:
			t.Errorf("%s took %v, want an answer at the %v produce timeout", name, f.took, timeout)
		}
		if f != nil && name != "legacy gRPC ProcesarVenta" && f.saleID != sale.GetSaleId() {
			t.Errorf("%s named sale %q, want %q", name, f.saleID, sale.GetSaleId())
		}
		if f != nil && f.recorded != "no" {
			t.Errorf("%s Sale-Recorded = %q, want no: the broker refused the record", name, f.recorded)
		}
	}
	if n := h.written(t); n != before {
		t.Errorf("topic holds %d records, want only the %d written before the fault", n, before)
	}
}

// TestKafkaBufferFull: while the buffer is full, every path answers
// resource_exhausted at once.
func TestKafkaBufferFull(t *testing.T) {
	t.Parallel()
	// A call that waited for room would wait for the held sale, up to the
	// produce timeout: far longer than the hang bound.
	h := newHarness(t, options{produce: ingest.Config{ProduceTimeout: 4 * hangBound, MaxBufferedRecords: 1}})
	warmUp(t, h)
	before := h.written(t)
	release := make(chan struct{})
	held := sleepProduce(h.cluster, release)
	var wg sync.WaitGroup
	var heldCall *failure
	wg.Go(func() { heldCall = grpcPath(t, h, validSale()) })
	// Once Kafka holds that sale, it fills the buffer.
	select {
	case <-held:
	case <-time.After(2 * time.Second):
		t.Fatal("the sale never reached Kafka")
	}
	const want = "server ingest buffer is full; retry with backoff"
	for name, path := range failingPaths() {
		f := path(t, h, validSale())
		switch {
		case f == nil:
			t.Errorf("%s succeeded with a full buffer", name)
		case f.code != connect.CodeResourceExhausted || f.message != want:
			t.Errorf("%s = %v %q, want resource_exhausted %q", name, f.code, f.message, want)
		case f.took > hangBound:
			t.Errorf("%s took %v with a full buffer, want an answer without waiting for room", name, f.took)
		}
	}
	close(release)
	wg.Wait()
	if heldCall != nil {
		t.Errorf("the held RecordSale() failed: %+v, want success once Kafka answered", heldCall)
	}
	if n := h.written(t); n != before+1 {
		t.Errorf("topic holds %d records, want %d", n, before+1)
	}
}

// TestKafkaStopped stops the cluster: calls fail unavailable within the
// timeout, the breaker then fails them at once, and the service recovers by
// itself when Kafka returns. Every sale answered OK is on the topic.
func TestKafkaStopped(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	clusterOpts := []kfake.Opt{kfake.Ports(port), kfake.DataDir(t.TempDir())}
	h := newHarness(t, options{
		produce: ingest.Config{ProduceTimeout: timeout, BreakerThreshold: 3, BreakerCoolDown: 300 * time.Millisecond},
		cluster: clusterOpts,
	})

	var acked []string
	record := func() *failure {
		sale := validSale()
		sale.SaleId = "stopped-" + string(rune('A'+len(acked)%26)) + time.Now().Format("150405.000000000")
		f := grpcPath(t, h, sale)
		if f == nil {
			acked = append(acked, sale.GetSaleId())
		}
		return f
	}
	warmUp(t, h)

	h.cluster.Close()
	fast := 0
	for i := 0; fast < 5; i++ {
		if i == 50 {
			t.Fatalf("the breaker never opened after %d calls", i)
		}
		f := record()
		switch {
		case f == nil:
			t.Fatalf("RecordSale() succeeded with Kafka stopped")
		case f.code != connect.CodeUnavailable:
			t.Fatalf("RecordSale() with Kafka stopped = %v %q, want unavailable", f.code, f.message)
		case f.took > timeout+hangBound:
			t.Fatalf("RecordSale() with Kafka stopped took %v, want an answer at the %v produce timeout", f.took, timeout)
		case f.message == "sales log is unavailable; the sale was not recorded, retry with backoff":
			// The open breaker answers before producing anything.
			fast++
		}
	}

	restarted, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(6, topic)}, clusterOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Close)
	start := time.Now()
	for streak := 0; streak < 10; {
		f := record()
		if f == nil {
			streak++
			continue
		}
		streak = 0
		if f.code != connect.CodeUnavailable || f.took > timeout+hangBound {
			t.Fatalf("RecordSale() while Kafka returns = %+v, want unavailable within %v", f, timeout)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("RecordSale() did not recover within 30s of Kafka's return: %+v", f)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("recovered %v after Kafka's return", time.Since(start).Round(time.Millisecond))

	onTopic := h.saleIDs(t)
	for _, id := range acked {
		if !onTopic[id] {
			t.Errorf("sale %s was answered OK but is not on the topic", id)
		}
	}
}

// TestShutdownDrains: Shutdown reports NOT_SERVING at once, and waits for a
// call in flight, which still answers OK once Kafka acknowledges it.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	warmUp(t, h)
	before := h.written(t)
	release := make(chan struct{})
	held := sleepProduce(h.cluster, release)
	var wg sync.WaitGroup
	var inFlight *failure
	wg.Go(func() { inFlight = grpcPath(t, h, validSale()) })
	<-held

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdown <- h.srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	for _, service := range []string{"", salesv1connect.SalesServiceName} {
		resp, err := h.srv.health.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil || resp.Status != grpchealth.StatusNotServing {
			t.Errorf("health Check(%q) during shutdown = %v, %v, want NOT_SERVING", service, resp, err)
		}
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown() = %v before the call in flight finished", err)
	default:
	}
	close(release)
	wg.Wait()
	if inFlight != nil {
		t.Errorf("the call in flight during shutdown failed: %+v, want OK", inFlight)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if n := h.written(t); n != before+1 {
		t.Errorf("topic holds %d records, want %d", n, before+1)
	}
}
