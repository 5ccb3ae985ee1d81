package main

import (
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisotel"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	noopmetric "go.opentelemetry.io/otel/metric/noop"

	"blackfriday.local/contract/telemetry"
	"blackfriday.local/services/api/internal/server"
)

// tracing is what traces the api when tracing is on (telemetry.Start): a
// server span per call, a span per record produced, whose context travels
// in the record's headers to the aggregator, and a span per Valkey command
// of a traced call. Off, every field is zero and nothing is added anywhere.
type tracing struct {
	server server.Tracing
	// kafka is the producer's hook (kotel), nil when off.
	kafka kgo.Hook
	// valkey makes the analytics' Valkey client, nil when off.
	valkey func(rueidis.ClientOption) (rueidis.Client, error)
}

func newTracing(tel *telemetry.Tracing) tracing {
	if tel == nil {
		return tracing{}
	}
	return tracing{
		server: server.Tracing{Provider: tel.Provider(), Propagator: tel.Propagator()},
		kafka:  kotel.NewTracer(kotel.TracerProvider(tel.Provider()), kotel.TracerPropagator(tel.Propagator())),
		valkey: func(o rueidis.ClientOption) (rueidis.Client, error) {
			// Nested: the dashboard's poller reads outside any call.
			return rueidisotel.NewClient(o, rueidisotel.WithTracerProvider(tel.Nested()),
				rueidisotel.WithMeterProvider(noopmetric.NewMeterProvider()))
		},
	}
}

// hooks returns hooks with the producer's tracing hook added, when on.
func (t tracing) hooks(hooks ...kgo.Hook) []kgo.Hook {
	if t.kafka == nil {
		return hooks
	}
	return append(hooks, t.kafka)
}
