package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
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
	if got := s.totalsField(ctx, keys.FieldDeadLetters); got != 0 {
		t.Errorf("dead_letters = %d after %d acknowledged sales, want 0", got, n)
	}
}

// TestVentaRetryCountsOnce: a course REST client that sends its own sale_id
// (our documented extension of the course's body) can retry a sale, through
// /venta or /procesar, and it is counted once; the answer echoes its id.
func TestVentaRetryCountsOnce(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	tr := newTruth()
	post := func(path, body string) {
		t.Helper()
		resp, err := http1.Post(s.url()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Estado string `json:"estado"`
			SaleID string `json:"sale_id"`
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Estado != "OK" || got.SaleID != "caja-3:000117" {
			t.Fatalf("POST %s = %d %s, want 200 with estado OK and sale_id caja-3:000117", path, resp.StatusCode, b)
		}
	}
	const venta = `{"categoria":"Hogar","producto_id":"H-9","precio":12.345,"cantidad_vendida":3,"sale_id":"caja-3:000117"}`
	post("/venta", venta)
	post("/venta", venta)
	post("/procesar", venta)
	tr.acked(&salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "H-9", PriceCents: 1234, Quantity: 3}, "legacy-rest")
	waitForTruth(ctx, t, s, tr)
	// The copies were written, and dropped as duplicates, not counted.
	deadline := time.Now().Add(30 * time.Second)
	for s.totalsField(ctx, keys.FieldDuplicates) != 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := s.totalsField(ctx, keys.FieldDuplicates); got != 2 {
		t.Errorf("duplicates = %d, want 2: the two retries of the sale", got)
	}
	if got := waitSettled(ctx, t, s, 1); got != 1 {
		t.Errorf("GetSummary sales = %d after one sale posted three times, want 1", got)
	}
}
