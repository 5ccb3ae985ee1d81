package consume

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisotel"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"blackfriday.local/contract/record"
	"blackfriday.local/contract/telemetry"
	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

// TestTracing runs a traced consumer, as the aggregator does with tracing on,
// on records a traced producer wrote: each receive span continues its
// record's trace, an apply of one record is a child of that record's span,
// an apply of many is linked to each, its Valkey commands are under it, a
// dead letter's trace context continues its sale's trace, and the trace
// headers change nothing that is counted.
func TestTracing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}
	hook := kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))
	producer, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	traced, err := rueidisotel.NewClient(rueidis.ClientOption{InitAddress: []string{valkeytest.Addr(t)}, DisableCache: true},
		rueidisotel.WithTracerProvider(telemetry.Nested(tp)), rueidisotel.WithMeterProvider(noopmetric.NewMeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(traced.Close)

	// produce writes sales of one product, so to one partition, each in a
	// trace of its own as the api's calls are, and returns their traces.
	sale := tp.Tracer("test")
	produce := func(n int, poison bool) []trace.TraceID {
		t.Helper()
		var ids []trace.TraceID
		var recs []*kgo.Record
		for i := range n {
			s := e.newSale("P7")
			r := saleRecord(t, s, "grpc")
			e.mu.Lock()
			if poison && i == n-1 {
				r.Value = []byte("not protobuf")
				e.truth.deadLetters++
			} else {
				e.truth.add(s, "grpc")
			}
			e.mu.Unlock()
			ctx, span := sale.Start(context.Background(), "RecordSale")
			span.End()
			r.Context = ctx
			recs = append(recs, r)
			ids = append(ids, span.SpanContext().TraceID())
		}
		if err := producer.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return ids
	}

	// Five sales and a dead letter before the consumer starts: one poll,
	// one batch, one apply for six traces.
	many := produce(6, true)
	cfg := e.config(1000, []kgo.Opt{kgo.WithHooks(kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop)))})
	cfg.Tracer = tp.Tracer("consume")
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	run(t, New(cfg, store.New(traced, e.keys.Prefix(), 25*time.Hour), aggregate.NewDecoder(), log))
	e.waitCaughtUp()
	one := produce(1, false)
	e.waitCaughtUp()
	e.check()

	ended := func() []sdktrace.ReadOnlySpan { return spans.Ended() }
	find := func(name string, in trace.TraceID) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range ended() {
			if s.Name() == name && (!in.IsValid() || s.SpanContext().TraceID() == in) {
				out = append(out, s)
			}
		}
		return out
	}
	// The receive spans continue the producers' traces.
	for _, id := range append(slices.Clone(many), one...) {
		if got := find(topic+" receive", id); len(got) != 1 {
			t.Errorf("trace %s has %d receive spans, want 1", id, len(got))
		}
	}

	// The apply of many: a root of its own, linked to each record's
	// receive span.
	var batch sdktrace.ReadOnlySpan
	for _, s := range find("apply", trace.TraceID{}) {
		if len(s.Links()) > 0 {
			batch = s
		}
	}
	if batch == nil {
		t.Fatalf("no apply span with links among %v", names(ended()))
	}
	if batch.Parent().IsValid() {
		t.Errorf("apply of many has parent %v, want none", batch.Parent())
	}
	var linked []trace.TraceID
	for _, l := range batch.Links() {
		linked = append(linked, l.SpanContext.TraceID())
	}
	if !sameTraces(linked, many) {
		t.Errorf("apply of many links to traces %v, want %v", linked, many)
	}

	// The apply of one: a child of its record's receive span, with its
	// Valkey command under it.
	applies := find("apply", one[0])
	receive := find(topic+" receive", one[0])
	if len(applies) != 1 || len(receive) != 1 || applies[0].Parent().SpanID() != receive[0].SpanContext().SpanID() {
		t.Fatalf("trace of one sale: %d applies, %d receives; want the apply under the receive", len(applies), len(receive))
	}
	var valkey []string
	for _, s := range ended() {
		if s.Parent().SpanID() == applies[0].SpanContext().SpanID() {
			valkey = append(valkey, s.Name())
		}
	}
	if !slices.Contains(valkey, "EVALSHA") {
		t.Errorf("spans under the apply = %q, want an EVALSHA", valkey)
	}
	// Valkey commands outside an apply (offsets loaded on assignment) start
	// no trace of their own.
	for _, s := range ended() {
		if s.InstrumentationScope().Name != "consume" && s.InstrumentationScope().Name != "test" &&
			!slices.Contains([]string{topic + " receive", topic + " publish", dlqTopic + " publish"}, s.Name()) && !s.Parent().IsValid() {
			t.Errorf("span %q (%s) is a root", s.Name(), s.InstrumentationScope().Name)
		}
	}

	// The dead letter's trace context is its sale's.
	dead := e.readTopic(dlqTopic)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	ctx := prop.Extract(context.Background(), kotel.NewRecordCarrier(dead[0]))
	if got := trace.SpanContextFromContext(ctx).TraceID(); got != many[len(many)-1] {
		t.Errorf("dead letter's %s is in trace %s, want its sale's %s", record.HeaderTraceParent, got, many[len(many)-1])
	}
	if n := countHeaders(dead[0], record.HeaderTraceParent); n != 1 {
		t.Errorf("dead letter has %d %s headers, want 1", n, record.HeaderTraceParent)
	}
}

func sameTraces(a, b []trace.TraceID) bool {
	key := func(ids []trace.TraceID) []string {
		var out []string
		for _, id := range ids {
			out = append(out, id.String())
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func countHeaders(r *kgo.Record, key string) int {
	n := 0
	for _, h := range r.Headers {
		if h.Key == key {
			n++
		}
	}
	return n
}
