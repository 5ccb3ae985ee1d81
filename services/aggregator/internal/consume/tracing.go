package consume

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxApplyLinks bounds the links of one apply span. A batch holds up to
// POLL_MAX_RECORDS (50,000) sales; a span linking to each would weigh
// megabytes in the exporter's queue and be unreadable in any trace viewer,
// while a few dozen links already lead from an apply to sales of it. The
// links are to the batch's first records, in offset order; the span's
// blackfriday.apply.links_dropped says how many were left out. (The SDK's
// own OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default, would drop the rest
// anyway, with no word of which.)
const maxApplyLinks = 64

// The apply span's attributes beyond OpenTelemetry's messaging ones.
const (
	attrRecords      = attribute.Key("blackfriday.apply.records")
	attrSales        = attribute.Key("blackfriday.apply.sales")
	attrDuplicates   = attribute.Key("blackfriday.apply.duplicates")
	attrDeadLetters  = attribute.Key("blackfriday.apply.dead_letters")
	attrLinksDropped = attribute.Key("blackfriday.apply.links_dropped")
	attrFrom         = attribute.Key("blackfriday.apply.from_offset")
	attrNext         = attribute.Key("blackfriday.apply.next_offset")
	attrOutcome      = attribute.Key("blackfriday.apply.outcome")
)

// startApply starts the span of one apply: one atomic Valkey step for a
// partition's batch of sales. Each record carries the span its Kafka
// receive started (kotel's, a child of the producer's span, whose context
// the record's headers carry). A batch of one traced record makes the apply
// a child of that record's span, in the sale's trace; a batch of more
// serves many traces, so its apply starts a trace of its own, linked to the
// span of each of its first maxApplyLinks traced records.
func startApply(ctx context.Context, tracer trace.Tracer, b *batch) (context.Context, trace.Span) {
	var links []trace.Link
	traced := 0
	for _, r := range b.records {
		sc := recordSpan(r)
		if !sc.IsValid() {
			continue
		}
		traced++
		if len(links) < maxApplyLinks {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.destination.name", b.tp.topic),
			attribute.Int("messaging.destination.partition.id", int(b.tp.partition)),
			attribute.Int("messaging.batch.message_count", len(b.records)),
			attrRecords.Int(len(b.records)),
			attrSales.Int64(b.delta.Totals.Sales),
			attrDuplicates.Int64(b.delta.Duplicates),
			attrDeadLetters.Int64(b.delta.DeadLetters),
			attrFrom.Int64(b.base.offset),
			attrNext.Int64(b.delta.Next),
		),
	}
	switch {
	case traced == 1:
		ctx = trace.ContextWithSpanContext(ctx, links[0].SpanContext)
	default:
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(links...),
			trace.WithAttributes(attrLinksDropped.Int(traced-len(links))))
	}
	return tracer.Start(ctx, "apply", opts...)
}

// endApply ends an apply span with what became of the batch.
func endApply(span trace.Span, outcome string, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attrOutcome.String(outcome))
	}
	span.End()
}

// recordSpan returns the span context a record's context carries, if any.
func recordSpan(r *kgo.Record) trace.SpanContext {
	if r.Context == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(r.Context)
}

// deadLetterContext returns the context a dead letter is produced with when
// tracing is on: ctx, with the span of the record it copies, so that the
// dead letter's publish span, and the trace context its headers carry
// (which replaces the copied one), continue the sale's trace.
func deadLetterContext(ctx context.Context, original *kgo.Record) context.Context {
	sc := recordSpan(original)
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, sc)
}
