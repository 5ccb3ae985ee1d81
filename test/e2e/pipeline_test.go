package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestEveryProtocol sends sales through every protocol the api serves, legacy
// included, and checks that the aggregates equal exactly what was
// acknowledged.
func TestEveryProtocol(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
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
	// An invalid sale is rejected with the field named and never counted.
	_, err := salesClient(s, h2c, connect.WithGRPC()).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: &salesv1.Sale{
		Category: salesv1.Category_CATEGORY_HOME, ProductId: "P1", PriceCents: -5, Quantity: 1,
	}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("RecordSale(price -5) error = %v, want invalid_argument", err)
	}
	waitForTruth(ctx, t, s, tr)
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
// by itself when the broker returns, and only acknowledged sales count.
func TestKafkaOutage(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI("PRODUCE_TIMEOUT=2s")
	ctx := context.Background()
	gen, tr := newSaleGen(3), newTruth()
	client := salesClient(s, h2c, connect.WithGRPC())
	record := func(deadline time.Duration) error {
		sale := gen.next()
		callCtx, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		_, err := client.RecordSale(callCtx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)})
		if err == nil {
			tr.acked(sale, "grpc")
		}
		return err
	}
	for range 20 {
		if err := record(10 * time.Second); err != nil {
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
	for i := range 10 {
		start := time.Now()
		err := record(5 * time.Second)
		took := time.Since(start)
		slowest = max(slowest, took)
		code := connect.CodeOf(err)
		if err == nil || (code != connect.CodeUnavailable && code != connect.CodeResourceExhausted) {
			t.Fatalf("RecordSale %d during the outage = %v (code %v), want unavailable or resource_exhausted", i, err, code)
		}
		if took > 5*time.Second {
			t.Fatalf("RecordSale %d during the outage took %v, longer than its 5s deadline", i, took)
		}
		if i == 0 {
			var ce *connect.Error
			if errors.As(err, &ce) {
				t.Logf("during the outage: %v: %s (in %v)", ce.Code(), ce.Message(), took.Round(time.Millisecond))
			}
		}
	}
	t.Logf("10 calls during the outage all failed; the slowest took %v", slowest.Round(time.Millisecond))

	kafkaCtl(ctx, t, "start")
	restarted = true
	recoverBy := time.Now().Add(90 * time.Second)
	for {
		err := record(5 * time.Second)
		if err == nil {
			break
		}
		if time.Now().After(recoverBy) {
			t.Fatalf("RecordSale did not recover within 90s of the broker's return: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for range 20 {
		if err := record(10 * time.Second); err != nil {
			t.Fatalf("RecordSale after the outage: %v", err)
		}
	}
	waitForTruth(ctx, t, s, tr)
}
