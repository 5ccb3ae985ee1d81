package aggregate

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Reason classifies why a record was dead-lettered. Its string is the stable
// first word of the dlq-reason header.
type Reason string

// The reasons a record goes to the dead-letter topic.
const (
	ReasonContentType   Reason = "bad-content-type"
	ReasonSchema        Reason = "bad-schema"
	ReasonUndecodable   Reason = "undecodable"
	ReasonInvalid       Reason = "invalid"
	ReasonMissingSaleID Reason = "missing-sale-id"
	ReasonMissingSoldAt Reason = "missing-sold-at"
)

// DeadLetterError says why a record cannot be counted. Records that fail
// with it are sent to the dead-letter topic and counted in dead_letters.
type DeadLetterError struct {
	Reason Reason
	Err    error
}

// Error returns the reason followed by the detail, the value of the
// dlq-reason header.
func (e *DeadLetterError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the underlying cause.
func (e *DeadLetterError) Unwrap() error { return e.Err }

func deadLetter(r Reason, err error) error {
	return &DeadLetterError{Reason: r, Err: err}
}

// Sale is one decoded, validated sale and where it came from.
type Sale struct {
	Category     salesv1.Category
	ProductID    string
	PriceCents   int64
	Quantity     int64
	SaleID       string
	SoldAtMillis int64
	Protocol     string
	Offset       int64
	// RecordMillis is the record's timestamp (Unix ms), stamped by the
	// producer when it wrote the sale; dedup windows are measured on it.
	RecordMillis int64
}

// Decoder turns records into sales. It is safe for concurrent use.
type Decoder struct {
	schema string // record.Schema(), the one schema header counted
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	return &Decoder{schema: record.Schema()}
}

// Decode checks a record's headers, decodes and validates its sale. A record
// that cannot be counted yields a *DeadLetterError.
//
// The api judged sold_at's "not more than an hour in the future" against its
// own clock, to the nanosecond, and acknowledged the sale; nothing it
// acknowledged may be dead-lettered here. So the one rule that depends on
// "now" is only a backstop here, judged against the record's timestamp plus
// ClockSkewBudget. The timestamp makes the outcome a function of the record
// alone (a replay months later, or an aggregator whose clock is behind the
// api's, reaches the same verdict), and the budget makes the api's check
// strictly tighter than this one: the producer stamps the record after the
// api validated the sale, on the same clock, but truncated to the
// millisecond.
//
// The decoding and the rules are hand-written (wire.go, validate.go) for
// speed; the tests hold them to proto.Unmarshal and protovalidate.
func (d *Decoder) Decode(r *kgo.Record) (Sale, error) {
	var s Sale
	err := d.decode(r, &s, nil)
	return s, err
}

// decode is Decode into out. With products set, product ids are interned
// through it.
func (d *Decoder) decode(r *kgo.Record, out *Sale, products map[string]string) error {
	// A header that is absent reads as nil, which matches no expected
	// value. The last of repeated headers wins.
	var contentType, schema []byte
	protocol := record.ProtocolUnknown
	for _, h := range r.Headers {
		switch h.Key {
		case record.HeaderContentType:
			contentType = h.Value
		case record.HeaderSchema:
			schema = h.Value
		case record.HeaderIngestProtocol:
			protocol = record.ParseProtocol(h.Value)
		}
	}
	if string(contentType) != record.ContentTypeProtobuf {
		return deadLetter(ReasonContentType, fmt.Errorf("%s %q, want %q", record.HeaderContentType, contentType, record.ContentTypeProtobuf))
	}
	if string(schema) != d.schema {
		return deadLetter(ReasonSchema, fmt.Errorf("%s %q, want %q", record.HeaderSchema, schema, d.schema))
	}

	var msg wireSale
	if err := parseSale(r.Value, &msg); err != nil {
		return deadLetter(ReasonUndecodable, err)
	}
	// The api fills these in, so their absence is checked first and named
	// precisely; protovalidate would report an empty sale_id as a pattern
	// mismatch.
	if len(msg.saleID) == 0 {
		return deadLetter(ReasonMissingSaleID, nil)
	}
	if !msg.hasSoldAt {
		return deadLetter(ReasonMissingSoldAt, nil)
	}
	if err := validateSale(&msg, validationNow(r)); err != nil {
		return deadLetter(ReasonInvalid, err)
	}
	productID, ok := products[string(msg.productID)]
	if !ok {
		productID = string(msg.productID)
		if products != nil {
			products[productID] = productID
		}
	}
	*out = Sale{
		Category:     salesv1.Category(msg.category),
		ProductID:    productID,
		PriceCents:   msg.priceCents,
		Quantity:     int64(msg.quantity),
		SaleID:       string(msg.saleID),
		SoldAtMillis: time.Unix(msg.seconds, int64(msg.nanos)).UnixMilli(),
		Protocol:     string(protocol),
		Offset:       r.Offset,
		RecordMillis: r.Timestamp.UnixMilli(),
	}
	return nil
}

// ClockSkewBudget is how far the api's clock, when it validated a sale, may
// be ahead of the record's timestamp. It covers the millisecond truncation
// of record timestamps (under 1 ms), a step back of the api host's clock
// between validation and produce, and, should the topic be switched to
// LogAppendTime, the broker's clock running behind the api's. A sale whose
// sold_at is more than an hour and this budget past its record's timestamp
// cannot have been acknowledged by the api, and is dead-lettered.
const ClockSkewBudget = 5 * time.Minute

// validationNow is the "now" a record's sale is validated against: its
// timestamp plus ClockSkewBudget. Only a hand-made record lacks a
// timestamp; it falls back to the wall clock rather than reject a sale the
// api could have accepted.
func validationNow(r *kgo.Record) time.Time {
	now := r.Timestamp
	if now.UnixMilli() <= 0 {
		now = time.Now()
	}
	return now.Add(ClockSkewBudget)
}
