package server

import (
	"context"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// Tracing traces the server's calls: a server span for each RPC
// (otelconnect) and each course REST call (otelhttp), in whose context the
// producer's and Valkey's spans start. The zero Tracing traces nothing and
// adds nothing to a call's path.
//
// A caller's own trace context is not trusted: the api faces the public,
// so a call that brings a traceparent starts a trace of its own, linked to
// the caller's (otelconnect's default, and otelhttp's public endpoint).
// Health checks and reflection are not traced.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

func (t Tracing) on() bool { return t.Provider != nil }

// interceptor returns the RPCs' tracing interceptor, or nil when off.
func (t Tracing) interceptor() (connect.Interceptor, error) {
	if !t.on() {
		return nil, nil
	}
	return otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(t.Provider),
		otelconnect.WithPropagator(t.Propagator),
		// Call counts and latencies are Prometheus's (package metrics).
		otelconnect.WithoutMetrics(),
		otelconnect.WithFilter(func(_ context.Context, spec connect.Spec) bool {
			return !strings.HasPrefix(spec.Procedure, "/"+grpchealth.HealthV1ServiceName+"/") &&
				!strings.HasPrefix(spec.Procedure, "/grpc.reflection.")
		}),
	)
}

// http wraps a plain HTTP route in a server span named after method and
// route, or returns next when off.
func (t Tracing) http(method, route string, next http.Handler) http.Handler {
	if !t.on() {
		return next
	}
	name := method + " " + route
	return otelhttp.NewHandler(next, name,
		otelhttp.WithTracerProvider(t.Provider),
		otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithMeterProvider(noopmetric.NewMeterProvider()),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return name }),
	)
}

// grpcHandler returns the grpc-go server's tracing stats handler, spanning
// the calls as the interceptor does on the connect-go server; nil when off.
func (t Tracing) grpcHandler() stats.Handler {
	if !t.on() {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.Provider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
		// A caller's trace is linked, not continued, as otelconnect does.
		otelgrpc.WithPublicEndpoint(),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return !strings.HasPrefix(info.FullMethodName, "/"+grpchealth.HealthV1ServiceName+"/") &&
				!strings.HasPrefix(info.FullMethodName, "/grpc.reflection.")
		}),
	)
}
