package truth

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// topLimit is the longest ranking the api returns.
const topLimit = 100

// Verify polls GetSummary until it equals the truth exactly, or until
// timeout, then checks every ranking (GetTopProducts, overall and per
// category). Sales of unknown fate (their calls failed after they may have
// been written) make two exact hypotheses: none of them was written, or
// every one was; Verify accepts either, and reports which through
// withUnknowns. It returns an error naming the last difference seen when
// neither ever matches.
func Verify(ctx context.Context, cl salesv1connect.AnalyticsServiceClient, t *Truth, timeout time.Duration) (withUnknowns bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all := t.WithUnknowns()
	var diff string
	for {
		resp, err := cl.GetSummary(ctx, &salesv1.GetSummaryRequest{})
		switch {
		case err != nil && ctx.Err() == nil:
			diff = fmt.Sprintf("GetSummary: %v", err)
		case err == nil:
			if diff = t.Diff(resp); diff == "" {
				return false, t.verifyTop(ctx, cl)
			}
			if all != nil && all.Diff(resp) == "" {
				return true, all.verifyTop(ctx, cl)
			}
		}
		select {
		case <-ctx.Done():
			note := ""
			if t.Unknown > 0 {
				note = fmt.Sprintf(" (nor with all %d sales of unknown fate counted: some of them were written, some not)", t.Unknown)
			}
			return false, fmt.Errorf("the aggregates never matched the ground truth of %d sales within %v: %s%s", t.Total.Sales, timeout, diff, note)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *Truth) verifyTop(ctx context.Context, cl salesv1connect.AnalyticsServiceClient) error {
	for cat := range salesv1.Category(5) {
		resp, err := cl.GetTopProducts(ctx, &salesv1.GetTopProductsRequest{Category: cat, Limit: topLimit})
		if err != nil {
			return fmt.Errorf("GetTopProducts(%v): %w", cat, err)
		}
		if d := t.DiffTop(cat, topLimit, resp.GetProducts()); d != "" {
			return fmt.Errorf("GetTopProducts: %s", d)
		}
	}
	return nil
}

// Client returns an AnalyticsService client for target over HTTP/1.1
// Connect JSON, the plainest way to ask.
func Client(hc connect.HTTPClient, target string) salesv1connect.AnalyticsServiceClient {
	return salesv1connect.NewAnalyticsServiceClient(hc, target, connect.WithProtoJSON())
}
