package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/auth"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/legacy"
)

// errorMapper is the one place where errors become Connect errors: every RPC
// goes through it (see errorInterceptor), and so do the per-sale results of
// RecordSales and the legacy REST answers. Clients get a fixed message per
// kind of failure; the wrapped causes, which can name brokers or keys, only
// reach the log.
type errorMapper struct {
	log *slog.Logger

	bufferFull string
	notWritten string
	// noAck starts the answer of a sale in flight when the produce
	// timeout passed.
	noAck   string
	logDown string
	closed  string
}

// RetryAfterKey is the response metadata (an HTTP header) that tells a
// client refused for overload how many seconds to wait before retrying.
const RetryAfterKey = "Retry-After"

// AuthenticateKey is the response metadata (an HTTP header) that tells a
// client refused with unauthenticated how to authenticate (RFC 6750).
const AuthenticateKey = "WWW-Authenticate"

// The WWW-Authenticate challenges: for a call without a token, and for one
// with a token that is not accepted.
const (
	challenge        = `Bearer realm="blackfriday"`
	challengeInvalid = `Bearer realm="blackfriday", error="invalid_token"`
)

func newErrorMapper(produceTimeout time.Duration, log *slog.Logger) *errorMapper {
	within := produceTimeout.String()
	return &errorMapper{
		log:        log,
		bufferFull: "server ingest buffer is full; retry with backoff",
		notWritten: "sales log did not acknowledge within " + within + "; the sale was not recorded, retry",
		noAck:      "sales log did not acknowledge within " + within,
		logDown:    "sales log is unavailable; the sale was not recorded, retry with backoff",
		closed:     "server is shutting down",
	}
}

// The ends of the answers to a failed sale, by what is known of it.
const (
	// notRecorded: it was certainly not written.
	notRecorded = "; the sale was not recorded, retry"
	// maybeRecorded: it may have been, and the client can name it again.
	maybeRecorded = "; the sale may have been recorded, retry with the same sale_id"
	// maybeRecordedNoID: it may have been, and the client has no sale_id
	// to name it by (the course's gRPC API): it must not be told to.
	maybeRecordedNoID = "; the sale may have been recorded, and a retry may count it twice"
)

// SaleIDKey is the response metadata (header or trailer) naming the sale a
// failed RecordSale concerns, so that a client can retry with the same
// sale_id even when the server assigned it.
const SaleIDKey = "Sale-Id"

// SaleRecordedKey is the response metadata telling a client whether this
// attempt at a failed sale was written: "no" means certainly not (an earlier
// attempt with the same sale_id that was answered "unknown" may still have
// been, which is why retries keep the sale_id); "unknown" means Kafka may
// still have it (retry with the same sale_id, or count it as uncertain).
const SaleRecordedKey = "Sale-Recorded"

// toConnect maps err to the Connect error the client sees.
func (m *errorMapper) toConnect(err error) *connect.Error { return m.mapError(err, maybeRecorded) }

// toCourseConnect maps err for the course's gRPC API, whose clients cannot
// send a sale_id, and so are never told to retry with one.
func (m *errorMapper) toCourseConnect(err error) *connect.Error {
	return m.mapError(err, maybeRecordedNoID)
}

// mapError maps err, ending the answer to a sale that may have been written
// with maybe.
func (m *errorMapper) mapError(err error, maybe string) *connect.Error {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce // already decided, such as a validation failure
	}
	// outcome ends the answer to a failed sale with what became of it.
	outcome := notRecorded
	se := new(ingest.SaleError)
	isSale := errors.As(err, &se)
	if isSale && !se.Unwritten {
		outcome = maybe
	}
	var ce *connect.Error
	switch {
	case errors.Is(err, ingest.ErrBufferFull):
		ce = connect.NewError(connect.CodeResourceExhausted, errors.New(m.bufferFull))
	case errors.Is(err, ingest.ErrNotWritten):
		ce = connect.NewError(connect.CodeUnavailable, errors.New(m.notWritten))
	case errors.Is(err, ingest.ErrUnconfirmed):
		ce = connect.NewError(connect.CodeUnavailable, errors.New(m.noAck+outcome))
	case errors.Is(err, ingest.ErrSalesLogDown):
		ce = connect.NewError(connect.CodeUnavailable, errors.New(m.logDown))
	case errors.Is(err, ingest.ErrClosed):
		ce = connect.NewError(connect.CodeUnavailable, errors.New(m.closed+outcome))
	case errors.Is(err, errTooManyCalls):
		ce = connect.NewError(connect.CodeResourceExhausted, errors.New("server is at its limit of write calls in flight; retry with backoff"))
		ce.Meta().Set(RetryAfterKey, "1")
	case errors.Is(err, errTooManyBytes):
		ce = connect.NewError(connect.CodeResourceExhausted, errors.New("server is at its limit of request bytes in flight; retry with backoff"))
		ce.Meta().Set(RetryAfterKey, "1")
	case errors.Is(err, auth.ErrNoToken):
		ce = connect.NewError(connect.CodeUnauthenticated, errors.New("this call needs a bearer token: send the header Authorization: Bearer <token>"))
		ce.Meta().Set(AuthenticateKey, challenge)
	case errors.Is(err, auth.ErrBadToken):
		// The token is not quoted, here or in any log.
		ce = connect.NewError(connect.CodeUnauthenticated, errors.New("the bearer token is not accepted"))
		ce.Meta().Set(AuthenticateKey, challengeInvalid)
	case errors.Is(err, legacy.ErrInvalid):
		// The message is built from the request alone.
		ce = connect.NewError(connect.CodeInvalidArgument, errors.New(err.Error()))
	case errors.Is(err, analytics.ErrUnavailable):
		ce = connect.NewError(connect.CodeUnavailable, errors.New("analytics store is unavailable; retry later"))
	case errors.Is(err, analytics.ErrCorrupt):
		ce = connect.NewError(connect.CodeInternal, errors.New("analytics store holds an unexpected value"))
	case errors.Is(err, context.Canceled):
		ce = connect.NewError(connect.CodeCanceled, errors.New("the call was canceled"+leftBehind(outcome)))
	case errors.Is(err, context.DeadlineExceeded):
		ce = connect.NewError(connect.CodeDeadlineExceeded, errors.New("the call's deadline passed"+leftBehind(outcome)))
	default:
		m.log.Error("unexpected error", "err", err)
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
	if ce.Code() != connect.CodeInvalidArgument {
		m.log.Debug("call failed", "code", ce.Code().String(), "err", err)
	}
	if isSale {
		ce.Meta().Set(SaleIDKey, se.SaleID)
		ce.Meta().Set(SaleRecordedKey, recordedOf(se))
	}
	return ce
}

// The values of SaleRecordedKey.
const (
	recordedNo      = "no"
	recordedUnknown = "unknown"
)

// recordedOf is the Sale-Recorded value of a failed sale: "no" only when it
// was certainly not written.
func recordedOf(se *ingest.SaleError) string {
	if se.Unwritten {
		return recordedNo
	}
	return recordedUnknown
}

// batchFailure is the error of a RecordSales call none of whose sales was
// acknowledged: the first sale's error, carrying every sale's result as
// its one detail, so that no sale's outcome is hidden behind the first.
// Its Sale-Recorded is the least certain of them, and its Sale-Id names
// the sale only when there is one.
func (m *errorMapper) batchFailure(first error, results *salesv1.RecordSalesResponse) *connect.Error {
	ce := m.toConnect(first)
	if len(results.GetResults()) > 1 {
		ce.Meta().Del(SaleIDKey)
	}
	ce.Meta().Set(SaleRecordedKey, recordedNo)
	for _, r := range results.GetResults() {
		if r.GetRecorded() != salesv1.Recorded_RECORDED_NO {
			ce.Meta().Set(SaleRecordedKey, recordedUnknown)
			break
		}
	}
	if detail, err := connect.NewErrorDetail(results); err == nil {
		ce.AddDetail(detail)
	} else {
		m.log.Error("encode the results of a failed batch", "err", err)
	}
	return ce
}

// leftBehind is what a caller that went away is told of its sale: nothing
// unless the sale may still be written.
func leftBehind(outcome string) string {
	if outcome == notRecorded {
		return ""
	}
	return " before the sales log acknowledged" + outcome
}
