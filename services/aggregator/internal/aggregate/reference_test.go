package aggregate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// referenceDecoder is the aggregator's decoder as it was before the
// hand-written one: proto.Unmarshal and protovalidate with the rules in the
// proto. The tests hold Decoder to it, and BenchmarkDecodeFold measures
// both.
type referenceDecoder struct {
	validator protovalidate.Validator
}

func newReferenceDecoder(tb testing.TB) *referenceDecoder {
	tb.Helper()
	v, err := protovalidate.New(protovalidate.WithMessages(&salesv1.Sale{}))
	if err != nil {
		tb.Fatalf("protovalidate.New() = %v", err)
	}
	return &referenceDecoder{validator: v}
}

// Decode is the former Decoder.Decode.
func (d *referenceDecoder) Decode(r *kgo.Record) (Sale, error) {
	var contentType, schema, protocol string
	var haveContentType, haveSchema bool
	for _, h := range r.Headers {
		switch h.Key {
		case record.HeaderContentType:
			contentType, haveContentType = string(h.Value), true
		case record.HeaderSchema:
			schema, haveSchema = string(h.Value), true
		case record.HeaderIngestProtocol:
			protocol = string(h.Value)
		}
	}
	if !haveContentType || contentType != record.ContentTypeProtobuf {
		return Sale{}, deadLetter(ReasonContentType, fmt.Errorf("content-type %q, want %q", contentType, record.ContentTypeProtobuf))
	}
	if !haveSchema || schema != record.Schema() {
		return Sale{}, deadLetter(ReasonSchema, fmt.Errorf("schema %q, want %q", schema, record.Schema()))
	}
	var msg salesv1.Sale
	if err := proto.Unmarshal(r.Value, &msg); err != nil {
		return Sale{}, deadLetter(ReasonUndecodable, err)
	}
	if msg.GetSaleId() == "" {
		return Sale{}, deadLetter(ReasonMissingSaleID, nil)
	}
	if msg.GetSoldAt() == nil {
		return Sale{}, deadLetter(ReasonMissingSoldAt, nil)
	}
	nowPB := timestamppb.New(validationNow(r))
	err := d.validator.Validate(&msg, protovalidate.WithNowFunc(func() *timestamppb.Timestamp { return nowPB }))
	if err != nil {
		return Sale{}, deadLetter(ReasonInvalid, err)
	}
	if !slices.Contains(record.Protocols(), record.Protocol(protocol)) {
		protocol = string(record.ProtocolUnknown)
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

// referenceFold is the former Decoder.Fold, for the benchmark.
func (d *referenceDecoder) Fold(topic string, partition int32, records []*kgo.Record) (*Delta, error) {
	b := &Batch{Topic: topic, Partition: partition, Sales: make([]Sale, 0, len(records))}
	for _, r := range records {
		sale, err := d.Decode(r)
		if err != nil {
			var dl *DeadLetterError
			if !errors.As(err, &dl) {
				return nil, err
			}
			b.Dead = append(b.Dead, DeadLetter{Record: r, Err: dl})
			continue
		}
		b.Sales = append(b.Sales, sale)
	}
	return b.Fold(Dedup{})
}

// sameVerdict fails t unless dec and ref agree on r: the same sale, or the
// same dead-letter reason, and for invalid sales the same broken rules of
// the same fields, worded the same.
func sameVerdict(t *testing.T, dec *Decoder, ref *referenceDecoder, r *kgo.Record) {
	t.Helper()
	got, gotErr := dec.Decode(r)
	want, wantErr := ref.Decode(r)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("Decode(%x at %d ms) = %v, protovalidate = %v", r.Value, r.Timestamp.UnixMilli(), gotErr, wantErr)
	}
	if gotErr == nil {
		if got != want {
			t.Fatalf("Decode(%x) = %+v, reference %+v", r.Value, got, want)
		}
		return
	}
	var gdl, wdl *DeadLetterError
	if !errors.As(gotErr, &gdl) || !errors.As(wantErr, &wdl) {
		t.Fatalf("Decode(%x) = %v, reference %v, want dead letters", r.Value, gotErr, wantErr)
	}
	if gdl.Reason != wdl.Reason {
		t.Fatalf("Decode(%x) reason = %v, reference %v", r.Value, gotErr, wantErr)
	}
	if gdl.Reason != ReasonInvalid {
		return
	}
	var gve *validationError
	if !errors.As(gotErr, &gve) {
		t.Fatalf("Decode(%x) = %v, want a validation error", r.Value, gotErr)
	}
	var wve *protovalidate.ValidationError
	if !errors.As(wantErr, &wve) {
		// A runtime error (CEL's timestamp overflow): no violations to
		// compare, but the rule must be the one that cannot be evaluated.
		if !strings.Contains(gotErr.Error(), "cannot evaluate") {
			t.Fatalf("Decode(%x) = %v, reference %v", r.Value, gotErr, wantErr)
		}
		return
	}
	var gv, wv []string
	for _, v := range gve.violations {
		gv = append(gv, v.field+" "+v.rule+" "+v.message)
	}
	for _, v := range wve.Violations {
		wv = append(wv, protovalidate.FieldPathString(v.Proto.GetField())+" "+v.Proto.GetRuleId()+" "+v.Proto.GetMessage())
	}
	slices.Sort(gv)
	slices.Sort(wv)
	if !slices.Equal(gv, wv) {
		t.Fatalf("Decode(%x) violations\n%s\nreference\n%s", r.Value, strings.Join(gv, "\n"), strings.Join(wv, "\n"))
	}
	if gotErr.Error() != wantErr.Error() {
		t.Fatalf("Decode(%x) = %q, reference %q", r.Value, gotErr, wantErr)
	}
}
