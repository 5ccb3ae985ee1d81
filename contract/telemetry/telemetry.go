// Package telemetry sets up the services' OpenTelemetry tracing from the
// standard OTEL_* environment, the same way in the api and the aggregator:
// their service names, when tracing is on, and how a trace crosses Kafka
// (W3C trace context in each record's headers, record.HeaderTraceParent).
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Off, Start returns nil and
// installs nothing: the services then add no interceptor or hook at all, so
// tracing that is off costs nothing. On, the SDK reads the rest of the
// OTEL_* variables itself (autoexport: OTEL_TRACES_EXPORTER and
// OTEL_EXPORTER_OTLP_PROTOCOL; the OTLP exporters: endpoint, headers,
// timeout, TLS; the SDK: OTEL_TRACES_SAMPLER and _ARG, OTEL_BSP_*, span
// limits, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES).
//
// It lives in contract, which otherwise imports little, because it is what
// both services share and must agree on; the OpenTelemetry modules it needs
// are linked only into binaries that import it.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// The services' names, the resource's service.name unless OTEL_SERVICE_NAME
// or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const (
	ServiceAPI        = "blackfriday-api"
	ServiceAggregator = "blackfriday-aggregator"
)

// Tracing is a running tracer provider and the propagator that goes with it.
// A nil *Tracing is tracing off.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	// shown is what the start-up log says of the configuration: the
	// variables as set, never OTEL_EXPORTER_OTLP_HEADERS, which may hold
	// credentials.
	shown []slog.Attr
}

// shownVariables are the variables the start-up log shows when tracing is on.
var shownVariables = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
}

// On reports whether the environment turns tracing on: an OTLP endpoint
// for traces is set, and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none turns it off.
func On(lookup func(string) (string, bool)) bool {
	set := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(set("OTEL_SDK_DISABLED"), "true") || set("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return set("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Start starts tracing for service (ServiceAPI or ServiceAggregator) when
// the process environment turns it on (see On), and returns nil otherwise.
// It reads the process environment, not a service's settings lookup,
// because the SDK reads it too. Nothing global is set but the OpenTelemetry
// error handler, which then logs export failures to log.
func Start(ctx context.Context, service string, log *slog.Logger) (*Tracing, error) {
	if !On(os.LookupEnv) {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// resource.New applies its options in order: the environment's
	// service name and attributes override the default name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
	// The sampler (OTEL_TRACES_SAMPLER) and the batch processor's
	// schedule (OTEL_BSP_*) come from the environment, read by the SDK.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{
		provider: tp,
		// W3C trace context, as record.HeaderTraceParent says, and baggage.
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		shown:      shown(res),
	}, nil
}

// Provider returns the tracer provider.
func (t *Tracing) Provider() trace.TracerProvider { return t.provider }

// Propagator returns the propagator that carries a trace across a call or
// a Kafka record: W3C trace context and baggage.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// Nested returns Nested(t.Provider()).
func (t *Tracing) Nested() trace.TracerProvider { return Nested(t.provider) }

// Nested returns a tracer provider whose spans start only under a span
// already in the context, and that otherwise is tp. It is for a client that
// background loops use as well as traced calls (Valkey's: the dashboard's
// poller, the aggregator's reconciles): each of their calls would otherwise
// start a trace of its own.
func Nested(tp trace.TracerProvider) trace.TracerProvider { return nested{tp: tp} }

// Shutdown exports the spans still buffered and stops the provider. A nil
// Tracing has nothing to shut down.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// stopTimeout bounds exporting the last spans at shutdown.
const stopTimeout = 5 * time.Second

// Stop exports the spans still buffered, for at most stopTimeout, and
// stops the provider, logging what it could not export. A service calls
// it last, once its calls or its consumer have finished.
func (t *Tracing) Stop(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("tracing: spans left unexported", "err", err)
	}
}

// LogValue says, in the start-up log, whether tracing is on and how it
// exports.
func (t *Tracing) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("off (no OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	return slog.GroupValue(t.shown...)
}

// shown returns the start-up log's view of the configuration.
func shown(res *resource.Resource) []slog.Attr {
	attrs := []slog.Attr{slog.String("state", "on")}
	if v, ok := res.Set().Value(semconv.ServiceNameKey); ok {
		attrs = append(attrs, slog.String("service_name", v.AsString()))
	}
	for _, name := range shownVariables {
		if v := os.Getenv(name); v != "" {
			attrs = append(attrs, slog.String(name, v))
		}
	}
	return attrs
}

// nested is Nested's provider.
type nested struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (n nested) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return nestedTracer{t: n.tp.Tracer(name, opts...)}
}

type nestedTracer struct {
	embedded.Tracer
	t trace.Tracer
}

// Start starts a span under ctx's span, or returns ctx's non-recording span
// when there is none.
func (n nestedTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return n.t.Start(ctx, name, opts...)
}
