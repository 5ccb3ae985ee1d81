package ingest

import (
	"errors"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

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

	// ErrUnconfirmed means the produce timeout passed while the record was
	// in flight: the broker may or may not have written it.
	ErrUnconfirmed = errors.New("sale was not acknowledged in time")

	// ErrSalesLogDown means the circuit breaker is open after repeated
	// delivery failures, so the sale was rejected without trying Kafka.
	ErrSalesLogDown = errors.New("sales log is unavailable")

	// ErrClosed means the producer is shutting down.
	ErrClosed = errors.New("producer is closed")
)

// SaleError ties a failure to the sale it concerns, so that the edge can tell
// the client which sale_id to retry with, and whether the sale was written.
type SaleError struct {
	// SaleID is the sale's id, as assigned before the attempt.
	SaleID string
	// Unwritten is true only when the sale was certainly not written: it
	// never reached franz-go, or franz-go failed it unsent or on the
	// broker's answer. Otherwise (the call gave up waiting, the caller
	// left, the client closed with it in flight) it may have been, and a
	// retry must keep the sale_id.
	Unwritten bool
	// Err is the failure.
	Err error
}

// unwritten is the failure of a sale that was certainly not written.
func unwritten(sale *salesv1.Sale, err error) *SaleError {
	return &SaleError{SaleID: sale.GetSaleId(), Unwritten: true, Err: err}
}

// maybeWritten is the failure of a sale that may have been written.
func maybeWritten(sale *salesv1.Sale, err error) *SaleError {
	return &SaleError{SaleID: sale.GetSaleId(), Err: err}
}

// Error implements error.
func (e *SaleError) Error() string { return "sale " + e.SaleID + ": " + e.Err.Error() }

// Unwrap returns the failure.
func (e *SaleError) Unwrap() error { return e.Err }
