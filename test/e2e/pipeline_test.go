package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestEveryProtocol sends sales through every protocol the api serves, legacy
// included, and checks that the aggregates equal exactly what was
// acknowledged: with native gRPC served by each of its servers
// (GRPC_SERVER), by grpc-go's client and connect-go's.
func TestEveryProtocol(t *testing.T) {
	for _, server := range grpcServers {
		t.Run("GRPC_SERVER="+server, func(t *testing.T) { testEveryProtocol(t, server) })
	}
}

func testEveryProtocol(t *testing.T, server string) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI("GRPC_SERVER=" + server)
	ctx := context.Background()
	gen, tr := newSaleGen(1), newTruth()

	for _, p := range everyProtocol {
		t.Run(p.label, func(t *testing.T) {
			for range 25 {
				sale := gen.next()
				if err := p.record(ctx, s, cloneSale(sale)); err != nil {
					t.Fatalf("%s: record %v: %v", p.label, sale, err)
				}
				tr.acked(sale, p.name)
			}
		})
	}
	// An invalid sale is rejected with the field named and never counted,
	// by either gRPC client.
	bad := &salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "P1", PriceCents: -5, Quantity: 1}
	_, err := salesClient(s, h2c, connect.WithGRPC()).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: bad})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "sale.price_cents") {
		t.Fatalf("RecordSale(price -5) error = %v, want invalid_argument naming sale.price_cents", err)
	}
	err = grpcGoRecord(ctx, s, bad)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "sale.price_cents") {
		t.Fatalf("grpc-go RecordSale(price -5) error = %v, want InvalidArgument naming sale.price_cents", err)
	}
	waitForTruth(ctx, t, s, tr)

	// The api counts every call by procedure, protocol and code.
	metrics := scrape(t, "http://127.0.0.1:"+strconv.Itoa(s.metricsPort)+"/metrics")
	const sales = "/blackfriday.sales.v1.SalesService/"
	for _, want := range []string{
		`bf_api_requests_total{code="ok",procedure="` + sales + `RecordSale",protocol="connect+json"} 50`,
		`bf_api_requests_total{code="ok",procedure="` + sales + `RecordSale",protocol="connect+proto"} 25`,
		`bf_api_requests_total{code="ok",procedure="` + sales + `RecordSale",protocol="grpc"} 50`,
		`bf_api_requests_total{code="invalid_argument",procedure="` + sales + `RecordSale",protocol="grpc"} 2`,
		`bf_api_requests_total{code="ok",procedure="` + sales + `RecordSale",protocol="grpc-web"} 25`,
		`bf_api_requests_total{code="ok",procedure="` + sales + `RecordSales",protocol="grpc"} 25`,
		`bf_api_requests_total{code="ok",procedure="/venta",protocol="legacy-rest"} 25`,
		`bf_api_requests_total{code="ok",procedure="/procesar",protocol="legacy-rest"} 25`,
		`bf_api_requests_total{code="ok",procedure="/blackfriday.ProductSaleService/ProcesarVenta",protocol="legacy-grpc"} 25`,
		// MAX_BUFFERED_RECORDS (10000) for single sales and as many for
		// batches, which have a client of their own under the default
		// 1 ms linger.
		`bf_api_producer_buffer_limit 20000`,
		// The batch client's own kprom metrics.
		`bf_api_batch_produce_bytes_total{node_id="1",topic="`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("api /metrics lacks %s", want)
		}
	}
	// One aggregator counted everything, and has nothing left to count.
	aggMetrics := scrape(t, "http://"+s.aggAddrs["aggregator"]+"/metrics")
	if want := fmt.Sprintf("bf_aggregator_sales_applied_total %d", tr.count()); !strings.Contains(aggMetrics, want) {
		t.Errorf("aggregator /metrics lacks %s", want)
	}
	for _, line := range strings.Split(aggMetrics, "\n") {
		if strings.HasPrefix(line, "bf_aggregator_lag_records{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("aggregator /metrics reports lag after convergence: %s", line)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestAggregatorSIGKILL kills the aggregator with SIGKILL at random points of
// a continuous stream of sales and restarts it: the aggregates must equal
// exactly what was acknowledged, with nothing lost or counted twice.
func TestAggregatorSIGKILL(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	gen, tr := newSaleGen(2), newTruth()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var failures atomic.Int64
	client := salesClient(s, h2c, connect.WithGRPC())
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				sale := gen.next()
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := client.RecordSale(callCtx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)})
				cancel()
				if err != nil {
					failures.Add(1)
					t.Errorf("RecordSale: %v", err)
					return
				}
				tr.acked(sale, "grpc")
			}
		})
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 4 {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		before := tr.count()
		s.killAggregator("aggregator")
		t.Logf("kill %d: SIGKILL after %d acknowledged sales", i+1, before)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		s.startAggregator("aggregator")
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d calls failed while Kafka was up", failures.Load())
	}
	t.Logf("%d sales acknowledged across 4 SIGKILLs", tr.count())
	waitForTruth(ctx, t, s, tr)
}

// TestKafkaOutage stops the real broker while the api runs: RecordSale must
// fail with unavailable (or resource_exhausted) within its deadline, recover
// by itself when the broker returns, and only written sales count. A failure
// answered Sale-Recorded: no must never be counted; one answered unknown may
// have been written after all (Kafka got it but could not confirm in time),
// so the test finds out which from Valkey and counts those exactly once.
func TestKafkaOutage(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI("PRODUCE_TIMEOUT=2s")
	ctx := context.Background()
	gen, tr := newSaleGen(3), newTruth()
	client := salesClient(s, h2c, connect.WithGRPC())
	record := func(sale *salesv1.Sale, deadline time.Duration) error {
		callCtx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		_, err := client.RecordSale(callCtx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)})
		if err == nil {
			tr.acked(sale, "grpc")
		}
		return err
	}
	for range 20 {
		if err := record(gen.next(), 10*time.Second); err != nil {
			t.Fatalf("RecordSale before the outage: %v", err)
		}
	}

	kafkaCtl(ctx, t, "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			kafkaCtl(context.Background(), t, "start")
		}
	})
	var slowest time.Duration
	uncertain := map[string]*salesv1.Sale{}
	var refused []string
	for i := range 10 {
		// Each call sells its own product, so Valkey can tell afterwards
		// whether it was counted.
		sale := gen.next()
		sale.ProductId = fmt.Sprintf("OUTAGE-%d", i)
		start := time.Now()
		err := record(sale, 5*time.Second)
		took := time.Since(start)
		slowest = max(slowest, took)
		code := connect.CodeOf(err)
		if err == nil || (code != connect.CodeUnavailable && code != connect.CodeResourceExhausted) {
			t.Fatalf("RecordSale %d during the outage = %v (code %v), want unavailable or resource_exhausted", i, err, code)
		}
		if took > 5*time.Second {
			t.Fatalf("RecordSale %d during the outage took %v, longer than its 5s deadline", i, took)
		}
		var ce *connect.Error
		if !errors.As(err, &ce) {
			t.Fatalf("RecordSale %d error %v is not a Connect error", i, err)
		}
		switch rec := ce.Meta().Get("Sale-Recorded"); rec {
		case "no":
			refused = append(refused, sale.GetProductId())
		case "unknown":
			uncertain[sale.GetProductId()] = sale
		default:
			t.Fatalf("RecordSale %d Sale-Recorded = %q, want no or unknown", i, rec)
		}
		t.Logf("during the outage: %v in %v, Sale-Recorded %s: %s", ce.Code(), took.Round(time.Millisecond), ce.Meta().Get("Sale-Recorded"), ce.Message())
	}
	t.Logf("10 calls during the outage all failed (%d certainly not recorded, %d uncertain); the slowest took %v",
		len(refused), len(uncertain), slowest.Round(time.Millisecond))

	kafkaCtl(ctx, t, "start")
	restarted = true
	recoverBy, recoverStart := time.Now().Add(90*time.Second), time.Now()
	for {
		if err := record(gen.next(), 5*time.Second); err == nil {
			break
		} else if time.Now().After(recoverBy) {
			t.Fatalf("RecordSale did not recover within 90s of the broker's return: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("RecordSale recovered %v after the broker was started again", time.Since(recoverStart).Round(time.Millisecond))
	for range 20 {
		if err := record(gen.next(), 10*time.Second); err != nil {
			t.Fatalf("RecordSale after the outage: %v", err)
		}
	}

	// Settle: every acknowledged sale is counted and nothing moves for a
	// while, so an uncertain sale that Kafka kept has been counted too.
	counted := waitSettled(ctx, t, s, tr.count())
	units := productUnits(ctx, t, s)
	for _, p := range refused {
		if u, ok := units[p]; ok {
			t.Errorf("sale %s was answered Sale-Recorded: no, but Valkey counts %d units of it", p, u)
		}
	}
	written := 0
	for p, sale := range uncertain {
		if _, ok := units[p]; ok {
			tr.acked(sale, "grpc")
			written++
		}
	}
	t.Logf("%d sales counted: %d acknowledged, %d of %d uncertain ones turned out written, 0 of %d refused ones",
		counted, tr.count()-int64(written), written, len(uncertain), len(refused))
	waitForTruth(ctx, t, s, tr)
}
