package e2e

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestSoldAtEdgeIsCounted: sales whose sold_at is as far in the future as
// the api allows, an hour ahead less 300 µs (a client whose clock runs an
// hour ahead sends such sales all day), are acknowledged by the api over
// Connect JSON, and every one is counted: none is dead-lettered by the
// aggregator's second look at the same rule.
func TestSoldAtEdgeIsCounted(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	gen, tr := newSaleGen(11), newTruth()
	record := unary(http1, connect.WithProtoJSON())
	const n = 300
	for i := range n {
		sale := gen.next()
		sale.SoldAt = timestamppb.New(time.Now().Add(time.Hour - 300*time.Microsecond))
		if err := record(ctx, s, cloneSale(sale)); err != nil {
			t.Fatalf("RecordSale %d of %d (sold_at an hour ahead less 300 µs) = %v, want it acknowledged", i+1, n, err)
		}
		tr.acked(sale, "connect+json")
	}
	waitForTruth(ctx, t, s, tr)
	if got := s.totalsField(ctx, "dead_letters"); got != 0 {
		t.Errorf("dead_letters = %d after %d acknowledged sales, want 0", got, n)
	}
}
