package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// outcomeRecorder answers each sale of a batch with the outcome its product
// id names: "ok", "no" (certainly not written: Kafka failed it) or
// "unknown" (in flight when the produce timeout passed).
type outcomeRecorder struct{}

func (outcomeRecorder) Record(ctx context.Context, sale *salesv1.Sale) error {
	return outcomeRecorder{}.RecordAll(ctx, []*salesv1.Sale{sale})[0]
}

func (outcomeRecorder) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	errs := make([]error, len(sales))
	for i, s := range sales {
		switch s.GetProductId() {
		case "no":
			errs[i] = &ingest.SaleError{SaleID: s.GetSaleId(), Unwritten: true, Err: ingest.ErrNotWritten}
		case "unknown":
			errs[i] = &ingest.SaleError{SaleID: s.GetSaleId(), Err: ingest.ErrUnconfirmed}
		}
	}
	return errs
}

// TestRecordSalesNeverHidesAnOutcome: whatever mix of outcomes a batch has,
// the client learns each sale's id and whether it was recorded, over every
// protocol: in the response when any sale was acknowledged, and in the
// error's detail when none was. The error's Sale-Recorded is the least
// certain of the sales'.
func TestRecordSalesNeverHidesAnOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{recorder: outcomeRecorder{}})
	http1, h2c := httpClient(t, true, false), httpClient(t, false, true)
	clients := map[string]salesv1connect.SalesServiceClient{
		"connect+json":  salesv1connect.NewSalesServiceClient(http1, h.url, connect.WithProtoJSON()),
		"connect+proto": salesv1connect.NewSalesServiceClient(http1, h.url),
		"grpc":          salesv1connect.NewSalesServiceClient(h2c, h.url, connect.WithGRPC()),
		"grpc-web":      salesv1connect.NewSalesServiceClient(http1, h.url, connect.WithGRPCWeb()),
	}
	want := map[string]salesv1.Recorded{
		"ok": salesv1.Recorded_RECORDED_YES, "no": salesv1.Recorded_RECORDED_NO, "unknown": salesv1.Recorded_RECORDED_UNKNOWN,
	}
	tests := []struct {
		outcomes []string
		// failed is whether the whole call fails, and recorded its
		// Sale-Recorded then.
		failed   bool
		recorded string
	}{
		{outcomes: []string{"ok", "no", "unknown"}},
		{outcomes: []string{"no", "unknown", "no"}, failed: true, recorded: "unknown"},
		{outcomes: []string{"unknown", "no"}, failed: true, recorded: "unknown"},
		{outcomes: []string{"no", "no"}, failed: true, recorded: "no"},
		{outcomes: []string{"unknown"}, failed: true, recorded: "unknown"},
	}
	for name, client := range clients {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%v", name, tt.outcomes), func(t *testing.T) {
				t.Parallel()
				req := &salesv1.RecordSalesRequest{}
				for _, o := range tt.outcomes {
					s := validSale()
					s.ProductId = o
					req.Sales = append(req.Sales, s)
				}
				resp, err := client.RecordSales(context.Background(), req)
				var got *salesv1.RecordSalesResponse
				if tt.failed {
					var ce *connect.Error
					if !errors.As(err, &ce) {
						t.Fatalf("RecordSales(%v) = %v, %v, want the call to fail", tt.outcomes, resp, err)
					}
					if r := ce.Meta().Get(SaleRecordedKey); r != tt.recorded {
						t.Errorf("RecordSales(%v) Sale-Recorded = %q, want %q", tt.outcomes, r, tt.recorded)
					}
					if id := ce.Meta().Get(SaleIDKey); len(tt.outcomes) > 1 && id != "" {
						t.Errorf("RecordSales(%v) Sale-Id = %q, want none: it would name one sale of several", tt.outcomes, id)
					}
					details := ce.Details()
					if len(details) != 1 {
						t.Fatalf("RecordSales(%v) error has %d details, want the per-sale results", tt.outcomes, len(details))
					}
					v, derr := details[0].Value()
					if got, _ = v.(*salesv1.RecordSalesResponse); derr != nil || got == nil {
						t.Fatalf("RecordSales(%v) error detail = %v, %v, want a RecordSalesResponse", tt.outcomes, v, derr)
					}
				} else {
					if err != nil {
						t.Fatalf("RecordSales(%v) = %v, want the per-sale results", tt.outcomes, err)
					}
					got = resp
				}
				if len(got.GetResults()) != len(req.GetSales()) {
					t.Fatalf("RecordSales(%v) results = %v, want one per sale", tt.outcomes, got)
				}
				ids := map[string]bool{}
				for i, r := range got.GetResults() {
					o := tt.outcomes[i]
					if r.GetRecorded() != want[o] || (r.GetErrorCode() == "") != (o == "ok") || r.GetSaleId() == "" || ids[r.GetSaleId()] {
						t.Errorf("RecordSales(%v) result %d = %v, want recorded %v, an error code unless ok, and its own sale_id", tt.outcomes, i, r, want[o])
					}
					ids[r.GetSaleId()] = true
				}
				wantCounts := &salesv1.RecordSalesResponse{Results: got.GetResults()}
				for _, o := range tt.outcomes {
					if o == "ok" {
						wantCounts.Accepted++
					} else {
						wantCounts.Failed++
					}
				}
				if !proto.Equal(got, wantCounts) {
					t.Errorf("RecordSales(%v) counts = %d accepted, %d failed, want %d, %d", tt.outcomes, got.GetAccepted(), got.GetFailed(), wantCounts.Accepted, wantCounts.Failed)
				}
			})
		}
	}
}
