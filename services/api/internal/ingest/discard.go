package ingest

import (
	"context"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Discard is a recorder that writes nothing and acknowledges at once. It is
// the no-op handler the load comparison measures the real one against: the
// same server, codecs, interceptors and validation, without Kafka. Never use
// it to take real sales (SALES_SINK=discard says so loudly at start).
type Discard struct{}

// Record acknowledges the sale without writing it.
func (Discard) Record(context.Context, *salesv1.Sale) error { return nil }

// RecordAll acknowledges every sale without writing any.
func (Discard) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	return make([]error, len(sales))
}

// Ping always succeeds: there is nothing to reach.
func (Discard) Ping(context.Context) error { return nil }
