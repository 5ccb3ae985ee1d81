package aggregate

import (
	"fmt"
	"time"

	"buf.build/go/protovalidate"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Record header names and values written by the api service. They are part
// of the Kafka record contract.
const (
	HeaderContentType    = "content-type"
	HeaderSchema         = "schema"
	HeaderIngestProtocol = "ingest-protocol"

	ContentTypeProtobuf = "application/x-protobuf"
	SchemaSale          = "blackfriday.sales.v1.Sale"

	// ProtocolUnknown counts sales whose record has no ingest-protocol
	// header, or one this aggregator does not know.
	ProtocolUnknown = "unknown"
)

// knownProtocol bounds the field names of the ingest hash: an unexpected
// header value is counted as ProtocolUnknown instead of growing the hash.
func knownProtocol(p string) bool {
	switch p {
	case "connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc":
		return true
	}
	return false
}

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
	validator protovalidate.Validator
}

// NewDecoder returns a Decoder with its own protovalidate validator.
func NewDecoder() (*Decoder, error) {
	v, err := protovalidate.New(protovalidate.WithMessages(&salesv1.Sale{}))
	if err != nil {
		return nil, fmt.Errorf("build validator: %w", err)
	}
	return &Decoder{validator: v}, nil
}

// Decode checks a record's headers, decodes and validates its sale. A record
// that cannot be counted yields a *DeadLetterError.
//
// Validation runs with "now" set to the record's timestamp, which the
// producer stamps just after the api validated the sale. That makes the
// outcome a function of the record alone: a replay months later, or an
// aggregator whose clock is behind the api's, reaches the same verdict, so
// the sold_at "not in the future" rule can never count a sale on one pass
// and dead-letter it on another.
func (d *Decoder) Decode(r *kgo.Record) (Sale, error) {
	var contentType, schema, protocol string
	var haveContentType, haveSchema bool
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderContentType:
			contentType, haveContentType = string(h.Value), true
		case HeaderSchema:
			schema, haveSchema = string(h.Value), true
		case HeaderIngestProtocol:
			protocol = string(h.Value)
		}
	}
	if !haveContentType || contentType != ContentTypeProtobuf {
		return Sale{}, deadLetter(ReasonContentType, fmt.Errorf("content-type %q, want %q", contentType, ContentTypeProtobuf))
	}
	if !haveSchema || schema != SchemaSale {
		return Sale{}, deadLetter(ReasonSchema, fmt.Errorf("schema %q, want %q", schema, SchemaSale))
	}

	var msg salesv1.Sale
	if err := proto.Unmarshal(r.Value, &msg); err != nil {
		return Sale{}, deadLetter(ReasonUndecodable, err)
	}
	// The api fills these in, so their absence is checked first and named
	// precisely; protovalidate would report an empty sale_id as a pattern
	// mismatch.
	if msg.GetSaleId() == "" {
		return Sale{}, deadLetter(ReasonMissingSaleID, nil)
	}
	if msg.GetSoldAt() == nil {
		return Sale{}, deadLetter(ReasonMissingSoldAt, nil)
	}
	now := r.Timestamp
	if now.UnixMilli() <= 0 {
		// Only a hand-made record lacks a timestamp; fall back to the wall
		// clock rather than reject a sale the api could have accepted.
		now = time.Now()
	}
	nowPB := timestamppb.New(now)
	err := d.validator.Validate(&msg, protovalidate.WithNowFunc(func() *timestamppb.Timestamp { return nowPB }))
	if err != nil {
		// A compilation or runtime error would be a bug in the rules rather
		// than in the record, but the record still cannot be counted and
		// must not stall the partition, so every failure dead-letters.
		return Sale{}, deadLetter(ReasonInvalid, err)
	}
	if !knownProtocol(protocol) {
		protocol = ProtocolUnknown
	}
	return Sale{
		Category:     msg.GetCategory(),
		ProductID:    msg.GetProductId(),
		PriceCents:   msg.GetPriceCents(),
		Quantity:     int64(msg.GetQuantity()),
		SaleID:       msg.GetSaleId(),
		SoldAtMillis: msg.GetSoldAt().AsTime().UnixMilli(),
		Protocol:     protocol,
		Offset:       r.Offset,
		RecordMillis: r.Timestamp.UnixMilli(),
	}, nil
}
