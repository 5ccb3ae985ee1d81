package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"blackfriday.local/contract/record"
	"blackfriday.local/contract/telemetry/telemetrytest"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// The services' names in their spans (service.name), spelled out: they are
// what dashboards and trace queries select on.
const (
	serviceAPI        = "blackfriday-api"
	serviceAggregator = "blackfriday-aggregator"
)

// tracingEnv turns tracing on, exporting to rcv over OTLP/HTTP every 50 ms.
func tracingEnv(s *stack, rcv *telemetrytest.Receiver) {
	s.setEnv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint())
	s.setEnv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	s.setEnv("OTEL_BSP_SCHEDULE_DELAY", "50")
	s.setEnv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
}

// saleTrace is the spans of one sale, from the api's call to Valkey.
type saleTrace struct {
	server, publish, receive, apply, valkey telemetrytest.Span
}

// findSaleTrace finds the spans of the last RecordSale call among spans:
// the api's server span, the publish span under it, the aggregator's
// receive span under that (so the context crossed Kafka in the record's
// headers), the apply, a child of the receive or linked to it, and a Valkey
// command under the apply. ok is false until all are there.
func findSaleTrace(spans []telemetrytest.Span) (st saleTrace, ok bool) {
	one := func(match func(telemetrytest.Span) bool) (telemetrytest.Span, bool) {
		i := slices.IndexFunc(spans, match)
		if i < 0 {
			return telemetrytest.Span{}, false
		}
		return spans[i], true
	}
	// The last call's server span.
	var found bool
	for _, s := range spans {
		if s.Service == serviceAPI && s.Kind == tracepb.Span_SPAN_KIND_SERVER && strings.HasSuffix(s.Name, "/RecordSale") &&
			(!found || s.Start.After(st.server.Start)) {
			st.server, found = s, true
		}
	}
	if !found {
		return st, false
	}
	if st.publish, found = one(func(s telemetrytest.Span) bool {
		return s.Service == serviceAPI && s.Kind == tracepb.Span_SPAN_KIND_PRODUCER && s.ParentID == st.server.SpanID
	}); !found {
		return st, false
	}
	if st.receive, found = one(func(s telemetrytest.Span) bool {
		return s.Service == serviceAggregator && s.Kind == tracepb.Span_SPAN_KIND_CONSUMER && s.ParentID == st.publish.SpanID
	}); !found {
		return st, false
	}
	if st.apply, found = one(func(s telemetrytest.Span) bool {
		return s.Service == serviceAggregator && s.Name == "apply" &&
			(s.ParentID == st.receive.SpanID || slices.Contains(s.Links, telemetrytest.Link{TraceID: st.receive.TraceID, SpanID: st.receive.SpanID}))
	}); !found {
		return st, false
	}
	st.valkey, found = one(func(s telemetrytest.Span) bool {
		return s.Service == serviceAggregator && s.ParentID == st.apply.SpanID && strings.HasPrefix(s.Name, "EVAL")
	})
	return st, found
}

// inTraces returns the spans of the given traces.
func inTraces(spans []telemetrytest.Span, ids ...string) []telemetrytest.Span {
	var out []telemetrytest.Span
	for _, s := range spans {
		if slices.Contains(ids, s.TraceID) {
			out = append(out, s)
		}
	}
	return out
}

// TestTracing records sales with tracing on, exporting to a real OTLP
// receiver, and follows the last: the api's RPC span, its Kafka publish span, the
// aggregator's receive span (a child across Kafka, through the record's
// headers), its apply, and the apply's Valkey command, in one trace with
// the right parents. A query's Valkey reads are under its RPC span too.
// It logs the traces as waterfalls.
func TestTracing(t *testing.T) {
	rcv := telemetrytest.Start(t)
	s := newStack(t)
	tracingEnv(s, rcv)
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	gen, tr := newSaleGen(31), newTruth()
	client := salesClient(s, h2c, connect.WithGRPC())

	// The first sale also waits for the producer's metadata and id; the
	// second one is followed.
	var resp *salesv1.RecordSaleResponse
	for range 2 {
		sale := gen.next()
		var err error
		if resp, err = client.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)}); err != nil {
			t.Fatalf("RecordSale: %v", err)
		}
		tr.acked(sale, "grpc")
		waitForTruth(ctx, t, s, tr)
	}

	spans := rcv.Wait(t, 30*time.Second, func(spans []telemetrytest.Span) bool {
		_, ok := findSaleTrace(spans)
		return ok
	})
	st, _ := findSaleTrace(spans)
	for _, sp := range []telemetrytest.Span{st.publish, st.receive, st.valkey} {
		if sp.TraceID != st.server.TraceID {
			t.Errorf("span %q (%s) is in trace %s, want the call's %s", sp.Name, sp.Service, sp.TraceID, st.server.TraceID)
		}
	}
	if st.server.ParentID != "" {
		t.Errorf("the RPC span has a parent %s: the client sent no trace context", st.server.ParentID)
	}
	traces := []string{st.server.TraceID}
	if st.apply.TraceID != st.server.TraceID {
		// An apply of many sales is linked to each (findSaleTrace
		// checked the link).
		traces = append(traces, st.apply.TraceID)
	}
	// The publish span is the producer's, on the sales topic.
	if got := st.publish.Attributes["messaging.destination.name"]; got != s.topic {
		t.Errorf("publish span's topic = %q, want %q", got, s.topic)
	}
	t.Logf("sale %s, one trace across the api, Kafka, the aggregator and Valkey:\n%s",
		resp.GetSaleId(), telemetrytest.Waterfall(inTraces(rcv.Spans(), traces...)))

	// A query: the api's Valkey reads are under its RPC span.
	if _, err := analyticsClient(s).GetSummary(ctx, &salesv1.GetSummaryRequest{}); err != nil {
		t.Fatalf("GetSummary: %v", err)
	}
	var query telemetrytest.Span
	spans = rcv.Wait(t, 30*time.Second, func(spans []telemetrytest.Span) bool {
		i := slices.IndexFunc(spans, func(s telemetrytest.Span) bool { return strings.HasSuffix(s.Name, "/GetSummary") })
		if i < 0 {
			return false
		}
		query = spans[i]
		return slices.ContainsFunc(spans, func(s telemetrytest.Span) bool {
			return s.ParentID == query.SpanID && s.Service == serviceAPI
		})
	})
	t.Logf("a query and its Valkey reads:\n%s", telemetrytest.Waterfall(inTraces(spans, query.TraceID)))

	// Valkey commands outside any call or apply (dialing, loading offsets,
	// reconciling) start no trace of their own.
	for _, sp := range spans {
		if sp.ParentID == "" && sp.Name != "apply" && sp.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("a root span outside any call: %q (%s)", sp.Name, sp.Service)
		}
	}
}

// TestTracingOff runs the pipeline with OpenTelemetry variables set but no
// endpoint: tracing stays off, the services say so, and no record carries
// trace context, since no tracing hook is installed.
func TestTracingOff(t *testing.T) {
	s := newStack(t)
	s.setEnv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	s.setEnv("OTEL_TRACES_SAMPLER", "always_on")
	s.setEnv("OTEL_BSP_SCHEDULE_DELAY", "50")
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	gen, tr := newSaleGen(32), newTruth()
	for range 3 {
		sale := gen.next()
		if _, err := salesClient(s, h2c, connect.WithGRPC()).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)}); err != nil {
			t.Fatalf("RecordSale: %v", err)
		}
		tr.acked(sale, "grpc")
	}
	waitForTruth(ctx, t, s, tr)
	const off = `"tracing":"off`
	if log := s.api.Output(); !strings.Contains(log, off) {
		t.Errorf("the api's log does not say %s", off)
	}
	if log := s.aggregatorLog("aggregator"); !strings.Contains(log, off) {
		t.Errorf("the aggregator's log does not say %s", off)
	}
	recs := readTopic(ctx, t, s.kafka, s.topic)
	if len(recs) != 3 {
		t.Fatalf("%d records on %s, want 3", len(recs), s.topic)
	}
	for _, r := range recs {
		for _, h := range r.Headers {
			if h.Key == record.HeaderTraceParent || h.Key == record.HeaderTraceState {
				t.Errorf("record %d/%d carries %s with tracing off", r.Partition, r.Offset, h.Key)
			}
		}
	}
}

// TestTracingFlushedOnShutdown: with a batch schedule far longer than the
// test (OTEL_BSP_SCHEDULE_DELAY of ten minutes), no span is exported while
// the services run, and every span of a sale is once they are stopped with
// SIGTERM: each flushes its tracer provider on the way out.
func TestTracingFlushedOnShutdown(t *testing.T) {
	rcv := telemetrytest.Start(t)
	s := newStack(t)
	tracingEnv(s, rcv)
	s.setEnv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	gen, tr := newSaleGen(33), newTruth()
	sale := gen.next()
	if _, err := salesClient(s, h2c, connect.WithGRPC()).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: cloneSale(sale)}); err != nil {
		t.Fatalf("RecordSale: %v", err)
	}
	tr.acked(sale, "grpc")
	waitForTruth(ctx, t, s, tr)
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("%d spans exported before shutdown, want none with a ten-minute schedule", n)
	}
	s.stop()
	spans := rcv.Spans()
	if _, ok := findSaleTrace(spans); !ok {
		t.Fatalf("after SIGTERM the receiver holds %d spans, not the sale's:\n%s", len(spans), telemetrytest.Waterfall(spans))
	}
}
