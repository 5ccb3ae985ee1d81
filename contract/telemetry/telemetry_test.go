package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"blackfriday.local/contract/telemetry"
	"blackfriday.local/contract/telemetry/telemetrytest"
)

// otelVariables are the variables these tests set or clear: the process
// environment is the SDK's input, so each test starts from none of them.
var otelVariables = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_BSP_SCHEDULE_DELAY",
}

// setenv clears every OTEL variable, then sets env (NAME=value).
func setenv(t *testing.T, env ...string) {
	t.Helper()
	for _, name := range otelVariables {
		t.Setenv(name, "")
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestOn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{env: nil, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "always_on"}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, want: false},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, want: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, want: false},
	} {
		lookup := func(name string) (string, bool) { v, ok := tc.env[name]; return v, ok }
		if got := telemetry.On(lookup); got != tc.want {
			t.Errorf("On(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestStartOff: without an endpoint, Start installs nothing and returns nil,
// whatever else is set, and a nil Tracing is safe to use as off.
func TestStartOff(t *testing.T) {
	setenv(t, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_TRACES_SAMPLER=always_on", "OTEL_SERVICE_NAME=x")
	before := fmt.Sprintf("%T %T", otel.GetTracerProvider(), otel.GetTextMapPropagator())
	tr, err := telemetry.Start(context.Background(), telemetry.ServiceAPI, discard)
	if err != nil || tr != nil {
		t.Fatalf("Start() = %v, %v, want nil, nil", tr, err)
	}
	if after := fmt.Sprintf("%T %T", otel.GetTracerProvider(), otel.GetTextMapPropagator()); after != before {
		t.Errorf("Start() changed the global provider or propagator: %s, was %s", after, before)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("nil Tracing: Shutdown() = %v", err)
	}
	if got := tr.LogValue().String(); !strings.HasPrefix(got, "off") {
		t.Errorf("nil Tracing: LogValue() = %q, want off", got)
	}
}

// TestStartExports sends spans to a real OTLP/HTTP receiver as the
// environment says, with the service's name unless the environment names
// another.
func TestStartExports(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         []string
		wantService string
		wantSpans   int
	}{
		{name: "defaults", wantService: "blackfriday-api", wantSpans: 2},
		{name: "OTEL_RESOURCE_ATTRIBUTES", env: []string{"OTEL_RESOURCE_ATTRIBUTES=service.name=from-attributes,deployment.environment=test"},
			wantService: "from-attributes", wantSpans: 2},
		{name: "OTEL_SERVICE_NAME wins", env: []string{"OTEL_SERVICE_NAME=from-name", "OTEL_RESOURCE_ATTRIBUTES=service.name=from-attributes"},
			wantService: "from-name", wantSpans: 2},
		{name: "sampler always_off", env: []string{"OTEL_TRACES_SAMPLER=always_off"}, wantSpans: 0},
		{name: "traces endpoint", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<receiver>/v1/traces"},
			wantService: "blackfriday-api", wantSpans: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := telemetrytest.Start(t)
			env := []string{"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=10"}
			if !strings.Contains(strings.Join(tc.env, " "), "TRACES_ENDPOINT") {
				env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint())
			}
			for _, kv := range tc.env {
				env = append(env, strings.ReplaceAll(kv, "<receiver>", rcv.Endpoint()))
			}
			setenv(t, env...)
			ctx := context.Background()
			tr, err := telemetry.Start(ctx, telemetry.ServiceAPI, discard)
			if err != nil || tr == nil {
				t.Fatalf("Start() = %v, %v, want tracing on", tr, err)
			}
			tracer := tr.Provider().Tracer("test")
			ctx, parent := tracer.Start(ctx, "parent")
			_, child := tracer.Start(ctx, "child")
			child.End()
			parent.End()
			if tc.wantSpans > 0 {
				// OTEL_BSP_SCHEDULE_DELAY=10 (ms): exported without waiting
				// for Shutdown.
				rcv.Wait(t, 10*time.Second, func(s []telemetrytest.Span) bool { return len(s) >= tc.wantSpans })
			}
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown() = %v", err)
			}
			spans := rcv.Spans()
			if len(spans) != tc.wantSpans {
				t.Fatalf("received %d spans, want %d:\n%s", len(spans), tc.wantSpans, telemetrytest.Waterfall(spans))
			}
			for _, s := range spans {
				if s.Service != tc.wantService {
					t.Errorf("span %q: service.name = %q, want %q", s.Name, s.Service, tc.wantService)
				}
			}
			if tc.wantSpans == 2 && (spans[0].Name != "child" || spans[0].ParentID != spans[1].SpanID || spans[0].TraceID != spans[1].TraceID) {
				t.Errorf("child is not under parent:\n%s", telemetrytest.Waterfall(spans))
			}
		})
	}
}

func TestStartRejectsAnUnknownProtocol(t *testing.T) {
	setenv(t, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json")
	if tr, err := telemetry.Start(context.Background(), telemetry.ServiceAggregator, discard); err == nil {
		_ = tr.Shutdown(context.Background())
		t.Fatal("Start() with OTEL_EXPORTER_OTLP_PROTOCOL=http/json = nil error, want one")
	}
}

// TestNested: the nested provider records a span only under another.
func TestNested(t *testing.T) {
	rcv := telemetrytest.Start(t)
	setenv(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint())
	ctx := context.Background()
	tr, err := telemetry.Start(ctx, telemetry.ServiceAggregator, discard)
	if err != nil || tr == nil {
		t.Fatalf("Start() = %v, %v", tr, err)
	}
	nested := tr.Nested().Tracer("valkey")
	_, orphan := nested.Start(ctx, "orphan")
	if orphan.IsRecording() || orphan.SpanContext().IsValid() {
		t.Errorf("a nested span without a parent records")
	}
	orphan.End()
	pctx, parent := tr.Provider().Tracer("test").Start(ctx, "parent")
	_, child := nested.Start(pctx, "child")
	if !child.IsRecording() || child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("a nested span under a parent does not record in its trace")
	}
	child.End()
	parent.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rcv.Spans() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "child,parent" {
		t.Errorf("received %q, want child,parent", names)
	}
}

// TestShutdownFlushes: spans still buffered when the service stops are
// exported by Shutdown, however long the batch schedule.
func TestShutdownFlushes(t *testing.T) {
	rcv := telemetrytest.Start(t)
	setenv(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint(), "OTEL_BSP_SCHEDULE_DELAY=600000")
	ctx := context.Background()
	tr, err := telemetry.Start(ctx, telemetry.ServiceAggregator, discard)
	if err != nil || tr == nil {
		t.Fatalf("Start() = %v, %v", tr, err)
	}
	_, span := tr.Provider().Tracer("test").Start(ctx, "buffered")
	span.End()
	time.Sleep(100 * time.Millisecond)
	if n := rcv.Requests(); n != 0 {
		t.Fatalf("%d exports before Shutdown, want none with a ten-minute schedule", n)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if spans := rcv.Spans(); len(spans) != 1 || spans[0].Service != "blackfriday-aggregator" {
		t.Errorf("after Shutdown the receiver holds %v, want the buffered span", spans)
	}
}
