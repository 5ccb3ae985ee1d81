package compare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/tooling/loadgen/histogram"
	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/internal/truth"
	"blackfriday.local/tooling/loadgen/protocol"
)

// probeBase is the first probe's price: above any generated price, so the
// summary's max_price_cents shows exactly which probe is visible.
const probeBase = 90_000_000

// freshness loads the api at half its gRPC saturation, open loop, with the
// aggregator running, and follows probe sales one at a time from their
// acknowledgement until GetSummary shows them. Each probe has a higher
// price than any sale before it, so a summary whose max_price_cents reached
// the probe's price counts it; one probe at a time means no later probe can
// raise the maximum first.
func (s *session) freshness(ctx context.Context) error {
	var sat []float64
	for _, run := range s.res.Runs {
		if run.Phase == "closed" && run.Sink == sinkKafka && run.Result.Protocol == string(protocol.GRPC) {
			sat = append(sat, run.Result.CallsPerS)
		}
	}
	saturation := report.StatOf(sat).Median
	if len(sat) == 0 || saturation <= 0 {
		return fmt.Errorf("freshness: no closed-loop gRPC run to take the saturation from")
	}
	// The saturation was measured with the api alone on its CPU; the
	// aggregator pinned beside it would take that CPU's spare half and
	// leave the api overloaded at "half" its saturation. The pipeline's
	// freshness is not the api's cost, so the aggregator may run anywhere.
	if err := s.spread("aggregator", s.pids["aggregator"], "for the freshness probe"); err != nil {
		return err
	}
	rate := roundDown2(saturation / 2)
	f := &report.Freshness{Protocol: string(protocol.GRPC), LoadRate: rate, SaturationRate: saturation, PollMS: float64(s.cfg.PollInterval) / float64(time.Millisecond)}

	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	loadDone := make(chan error, 1)
	warmup := time.Second
	go func() {
		res, err := s.load(loadCtx, 0, "freshness", sinkKafka, protocol.GRPC, rate, s.cfg.Freshness)
		if err == nil {
			s.record(0, "freshness", sinkKafka, res)
		}
		loadDone <- err
	}()

	path := filepath.Join(s.cfg.WorkDir, "truth", "probes.csv")
	tw, err := truth.Create(path)
	if err != nil {
		return err
	}
	s.addTruth(path)
	defer tw.Close()

	hc := httpClient()
	target := s.targets[sinkKafka]
	salesCl := salesv1connect.NewSalesServiceClient(hc, target, connect.WithGRPC(), connect.WithAcceptCompression("gzip", nil, nil))
	analytics := salesv1connect.NewAnalyticsServiceClient(hc, target, connect.WithGRPC(), connect.WithAcceptCompression("gzip", nil, nil))
	hist := histogram.New()
	end := time.Now().Add(warmup + s.cfg.Freshness)
	time.Sleep(warmup)
	for n := int64(1); time.Now().Before(end) && ctx.Err() == nil; n++ {
		sale := &salesv1.Sale{
			Category:   salesv1.Category_CATEGORY_ELECTRONICS,
			ProductId:  "PROBE-FRESHNESS",
			PriceCents: probeBase + n,
			Quantity:   1,
		}
		callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := salesCl.RecordSale(callCtx, &salesv1.RecordSaleRequest{Sale: sale})
		callCancel()
		acked := time.Now()
		if err != nil {
			// A probe the api turned away (or lost) is counted and
			// skipped; the next one has a higher price still.
			code := connect.CodeOf(err).String()
			tw.Add([]*salesv1.Sale{sale}, func(int) bool { return false }, func(int) bool { return !protocol.NotWritten(code) })
			f.Failed++
			s.logf("compare: freshness probe %d failed: %v", n, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		tw.Add([]*salesv1.Sale{sale}, nil, nil)
		seen := false
		for time.Since(acked) < 5*time.Second && ctx.Err() == nil {
			resp, err := analytics.GetSummary(ctx, &salesv1.GetSummaryRequest{})
			if err == nil && resp.GetMaxPriceCents() >= sale.GetPriceCents() {
				hist.RecordDuration(time.Since(acked))
				seen = true
				break
			}
			time.Sleep(s.cfg.PollInterval)
		}
		if !seen {
			f.Timeouts++
		}
		// A random pause, so probes do not lock step with the
		// aggregator's polls.
		time.Sleep(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
	}
	if err := <-loadDone; err != nil {
		return err
	}
	ms := func(v int64) float64 { return float64(v) / float64(time.Millisecond) }
	f.Samples = hist.Count()
	f.P50MS, f.P90MS, f.P99MS, f.MaxMS = ms(hist.Quantile(0.5)), ms(hist.Quantile(0.9)), ms(hist.Quantile(0.99)), ms(hist.Max())
	s.res.Freshness = f
	s.logf("compare: freshness at %.0f calls/s of gRPC (saturation %.0f): %d probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d not seen in 5 s, %d failed",
		rate, saturation, f.Samples, f.P50MS, f.P99MS, f.MaxMS, f.Timeouts, f.Failed)
	return nil
}

// httpClient speaks HTTP/1.1 and prior-knowledge h2c (for gRPC).
func httpClient() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}
