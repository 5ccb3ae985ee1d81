package ingest

import "errors"

// The errors below are what callers of the Producer branch on. The edge of
// the service maps each to a client-facing status and message; their text is
// for logs only, and any broker detail wrapped inside them stays in logs.
var (
	// ErrBufferFull means the producer already holds as many unacknowledged
	// records as it may, so the sale was not buffered. The caller should
	// back off and retry.
	ErrBufferFull = errors.New("ingest buffer is full")

	// ErrNotWritten means Kafka failed the record or did not acknowledge it
	// before its deadline, and the client gave up on it before it could
	// reach the broker: the sale was not recorded.
	ErrNotWritten = errors.New("sale was not written")

	// ErrUnconfirmed means the call's deadline passed while the record was
	// in flight: the broker may or may not have written it.
	ErrUnconfirmed = errors.New("sale was not acknowledged in time")

	// ErrSalesLogDown means the circuit breaker is open after repeated
	// delivery failures, so the sale was rejected without trying Kafka.
	ErrSalesLogDown = errors.New("sales log is unavailable")

	// ErrClosed means the producer is shutting down.
	ErrClosed = errors.New("producer is closed")
)

// SaleError ties a failure to the sale it concerns, so that the edge can tell
// the client which sale_id to retry with.
type SaleError struct {
	// SaleID is the sale's id, as assigned before the attempt.
	SaleID string
	// Err is the failure.
	Err error
}

// Error implements error.
func (e *SaleError) Error() string { return "sale " + e.SaleID + ": " + e.Err.Error() }

// Unwrap returns the failure.
func (e *SaleError) Unwrap() error { return e.Err }
