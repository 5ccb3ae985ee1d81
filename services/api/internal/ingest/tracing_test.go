package ingest

import (
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestTracedRecordsCarryTheCallersTrace: with Traced and kotel's hook, as the
// api runs with tracing on, each record's publish span is a child of its
// caller's span and the record carries that trace in its headers, after the
// contract's, which stay as they were for every other record (they are
// shared: the race detector watches calls made side by side).
func TestTracedRecordsCarryTheCallersTrace(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	prop := propagation.TraceContext{}
	hook := kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))
	c := newCluster(t)
	p := newProducer(t, c, Config{Traced: true, Hooks: []kgo.Hook{hook}})
	caller := tp.Tracer("test")

	var mu sync.Mutex
	want := map[string]trace.SpanContext{} // sale id → its caller's span
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ctx, span := caller.Start(WithProtocol(context.Background(), record.ProtocolGRPC), "RecordSale")
			defer span.End()
			sales := []*salesv1.Sale{testSale(t)}
			if i%4 == 0 {
				sales = append(sales, testSale(t), testSale(t))
				for j, err := range p.RecordAll(ctx, sales) {
					if err != nil {
						t.Errorf("RecordAll()[%d] = %v", j, err)
					}
				}
			} else if err := p.Record(ctx, sales[0]); err != nil {
				t.Errorf("Record() = %v", err)
			}
			mu.Lock()
			for _, s := range sales {
				want[s.GetSaleId()] = span.SpanContext()
			}
			mu.Unlock()
		})
	}
	wg.Wait()

	publishes := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		if s.Name() == topic+" publish" {
			publishes[s.SpanContext().SpanID()] = s
		}
	}
	recs := consume(t, c)
	if len(recs) != len(want) {
		t.Fatalf("topic holds %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		s := &salesv1.Sale{}
		if err := proto.Unmarshal(r.Value, s); err != nil {
			t.Fatal(err)
		}
		parent := want[s.GetSaleId()]
		if len(r.Headers) != 4 || r.Headers[3].Key != record.HeaderTraceParent {
			t.Fatalf("record headers = %v, want the contract's three and %s", r.Headers, record.HeaderTraceParent)
		}
		checkRecord(t, &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers[:3]}, s, record.ProtocolGRPC)
		got := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.MapCarrier{
			record.HeaderTraceParent: string(r.Headers[3].Value),
		}))
		if got.TraceID() != parent.TraceID() {
			t.Errorf("sale %s: record's trace %s, want its caller's %s", s.GetSaleId(), got.TraceID(), parent.TraceID())
		}
		if pub, ok := publishes[got.SpanID()]; !ok || pub.Parent().SpanID() != parent.SpanID() {
			t.Errorf("sale %s: the record's span is not a publish span under its caller's", s.GetSaleId())
		}
	}
	for proto, h := range p.headers {
		if len(h) != 3 || cap(h) != 3 {
			t.Errorf("shared headers of %s = %v (cap %d), want the contract's three", proto, h, cap(h))
		}
	}
}
