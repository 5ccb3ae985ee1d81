package main

import (
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisotel"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"blackfriday.local/contract/telemetry"
)

// tracing is what traces the aggregator when tracing is on
// (telemetry.Start): a receive span per record, continuing the trace its
// headers carry, an apply span per batch (consume.Config.Tracer), and a span
// per Valkey command of an apply. Off, every field is nil and nothing is
// added anywhere.
type tracing struct {
	// kafka is the consumer's hook (kotel), nil when off.
	kafka kgo.Hook
	// apply traces the applies, nil when off.
	apply trace.Tracer
	// valkey makes the Valkey client, nil when off.
	valkey func(rueidis.ClientOption) (rueidis.Client, error)
}

func newTracing(tel *telemetry.Tracing, group string) tracing {
	if tel == nil {
		return tracing{}
	}
	return tracing{
		kafka: kotel.NewTracer(kotel.TracerProvider(tel.Provider()), kotel.TracerPropagator(tel.Propagator()),
			kotel.ConsumerGroup(group)),
		apply: tel.Provider().Tracer("blackfriday.local/services/aggregator/internal/consume"),
		valkey: func(o rueidis.ClientOption) (rueidis.Client, error) {
			// Nested: offsets are loaded and reconciled outside any
			// apply, and would each start a trace of their own.
			return rueidisotel.NewClient(o, rueidisotel.WithTracerProvider(tel.Nested()),
				rueidisotel.WithMeterProvider(noopmetric.NewMeterProvider()))
		},
	}
}

// hooks returns hooks with the consumer's tracing hook added, when on.
func (t tracing) hooks(hooks ...kgo.Hook) []kgo.Hook {
	if t.kafka == nil {
		return hooks
	}
	return append(hooks, t.kafka)
}
