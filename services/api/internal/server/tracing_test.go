package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// tracedHarness is a harness whose calls and records are traced into spans,
// as the api runs with tracing on.
func tracedHarness(t testing.TB, spans sdktrace.SpanProcessor) *harness {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return newHarness(t, options{
		produce: ingest.Config{Traced: true, Hooks: []kgo.Hook{kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))}},
		tracing: Tracing{Provider: tp, Propagator: prop},
	})
}

// TestTracingEveryProtocol: each write, whatever its protocol, is one server
// span with its record's publish span under it; health checks are not
// traced.
func TestTracingEveryProtocol(t *testing.T) {
	t.Parallel()
	for _, p := range benchProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewSpanRecorder()
			h := tracedHarness(t, spans)
			if err := p.call(t, h)(context.Background()); err != nil {
				t.Fatalf("call = %v", err)
			}
			health := grpchealth.NewClient(httpClient(t, false, true), h.url, connect.WithGRPC())
			if _, err := health.Check(context.Background(), &grpchealth.CheckRequest{}); err != nil {
				t.Fatalf("health check = %v", err)
			}
			var server, publish []sdktrace.ReadOnlySpan
			for _, s := range spans.Ended() {
				switch s.SpanKind() {
				case trace.SpanKindServer:
					server = append(server, s)
				case trace.SpanKindProducer:
					publish = append(publish, s)
				default:
					t.Errorf("unexpected span %q (%v)", s.Name(), s.SpanKind())
				}
			}
			if len(server) != 1 || len(publish) != 1 {
				t.Fatalf("%d server spans and %d publish spans, want 1 and 1 (the health check untraced)", len(server), len(publish))
			}
			if publish[0].Parent().SpanID() != server[0].SpanContext().SpanID() {
				t.Errorf("publish span %q is not under server span %q", publish[0].Name(), server[0].Name())
			}
			if server[0].Parent().IsValid() {
				t.Errorf("server span %q has a parent", server[0].Name())
			}
			t.Logf("%s: server span %q, publish span %q", p.name, server[0].Name(), publish[0].Name())
		})
	}
}

// TestTracingDistrustsTheCaller: a caller's traceparent does not make the
// call part of the caller's trace (the api faces the public); the call's
// span is linked to it instead.
func TestTracingDistrustsTheCaller(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	h := tracedHarness(t, spans)
	const theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sendTheirs := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("traceparent", theirs)
			return next(ctx, req)
		}
	})
	client := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC(), connect.WithInterceptors(sendTheirs))
	if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
		t.Fatal(err)
	}
	rest, err := http.NewRequest(http.MethodPost, h.url+pathVenta, strings.NewReader(`{"categoria":"Hogar","producto_id":"P1","precio":19.99,"cantidad_vendida":2}`))
	if err != nil {
		t.Fatal(err)
	}
	rest.Header.Set("Content-Type", "application/json")
	rest.Header.Set("traceparent", theirs)
	resp, err := httpClient(t, true, false).Do(rest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := 0
	for _, s := range spans.Ended() {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		n++
		if s.Parent().IsValid() || s.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("server span %q continues the caller's trace", s.Name())
		}
		if len(s.Links()) != 1 || s.Links()[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("server span %q links to %v, want the caller's span", s.Name(), s.Links())
		}
	}
	if n != 2 {
		t.Errorf("%d server spans, want 2", n)
	}
}
