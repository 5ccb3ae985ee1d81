package aggregate

import (
	"errors"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// FuzzDecode feeds the record decoder arbitrary values, headers and
// timestamps, as a hostile or broken producer could write them to the sales
// topic. Whatever the record, Decode must not panic and must either return a
// sale that obeys every rule the api enforces, or a dead-letter error; and a
// batch of it must fold without error into exactly one sale or one dead
// letter. It must also reach the verdict proto.Unmarshal and protovalidate
// reach (the decoder's former implementation, referenceDecoder). The seed
// corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	dec := NewDecoder()
	ref := newReferenceDecoder(f)
	valid, err := proto.Marshal(&salesv1.Sale{
		Category: salesv1.Category_CATEGORY_ELECTRONICS, ProductId: "P1", PriceCents: 19999, Quantity: 2,
		SaleId: "0197c0de-0000-7000-8000-000000000001", SoldAt: timestamppb.New(soldAt),
	})
	if err != nil {
		f.Fatal(err)
	}
	recordMillis := soldAt.Add(time.Second).UnixMilli()
	f.Add(valid, record.ContentTypeProtobuf, record.Schema(), "grpc", recordMillis)
	f.Add(valid, record.ContentTypeProtobuf, "blackfriday.v0.Sale", "grpc", recordMillis)
	f.Add([]byte{0xff, 0xff, 0xff}, record.ContentTypeProtobuf, record.Schema(), "legacy-rest", recordMillis)
	f.Add([]byte(`{"category":"CATEGORY_HOME"}`), "application/json", record.Schema(), "connect+json", int64(0))

	f.Fuzz(func(t *testing.T, value []byte, contentType, schema, protocol string, timestampMillis int64) {
		r := &kgo.Record{
			Topic: "sales", Partition: 1, Offset: 7, Key: []byte("P1"), Value: value,
			Timestamp: time.UnixMilli(timestampMillis),
			Headers: []kgo.RecordHeader{
				{Key: record.HeaderContentType, Value: []byte(contentType)},
				{Key: record.HeaderSchema, Value: []byte(schema)},
				{Key: record.HeaderIngestProtocol, Value: []byte(protocol)},
			},
		}
		sameVerdict(t, dec, ref, r)
		s, decodeErr := dec.Decode(r)
		var dl *DeadLetterError
		switch {
		case decodeErr == nil:
			checkSale(t, s, r)
		case errors.As(decodeErr, &dl):
			if dl.Reason == "" || dl.Error() == "" {
				t.Errorf("Decode() = %#v, want a reason", dl)
			}
		default:
			t.Fatalf("Decode() = %v, want nil or a *DeadLetterError", decodeErr)
		}

		d, dead, err := dec.Fold("sales", 1, []*kgo.Record{r})
		if err != nil {
			t.Fatalf("Fold(one record) = %v, want nil", err)
		}
		if d.Next != 8 || d.Totals.Sales+d.DeadLetters != 1 || int64(len(dead)) != d.DeadLetters {
			t.Errorf("Fold(one record) = next %d, %d sales, %d dead letters (%d records), want next 8 and one of them",
				d.Next, d.Totals.Sales, d.DeadLetters, len(dead))
		}
		if (decodeErr == nil) != (d.Totals.Sales == 1) {
			t.Errorf("Fold() counted %d sales, but Decode() = %v", d.Totals.Sales, decodeErr)
		}
	})
}

// checkSale asserts the rules every counted sale obeys (see the Sale
// message in proto/).
func checkSale(t *testing.T, s Sale, r *kgo.Record) {
	t.Helper()
	if s.Category < salesv1.Category_CATEGORY_ELECTRONICS || s.Category > salesv1.Category_CATEGORY_BEAUTY {
		t.Errorf("Decode() category = %v, want one of the four", s.Category)
	}
	if s.PriceCents <= 0 || s.PriceCents > 100000000 || s.Quantity < 1 || s.Quantity > 10000 {
		t.Errorf("Decode() price %d, quantity %d, want 1..100000000 and 1..10000", s.PriceCents, s.Quantity)
	}
	if _, err := mulNonNegative(s.PriceCents, s.Quantity); err != nil {
		t.Errorf("Decode() revenue overflows: %v", err)
	}
	for name, v := range map[string]string{"product_id": s.ProductID, "sale_id": s.SaleID} {
		if v == "" || len(v) > 64 || !utf8.ValidString(v) {
			t.Errorf("Decode() %s = %q, want 1 to 64 valid characters", name, v)
		}
	}
	if !slices.Contains(record.Protocols(), record.Protocol(s.Protocol)) && s.Protocol != string(record.ProtocolUnknown) {
		t.Errorf("Decode() protocol = %q, want a known one or %q", s.Protocol, record.ProtocolUnknown)
	}
	if s.Offset != r.Offset || s.RecordMillis != r.Timestamp.UnixMilli() {
		t.Errorf("Decode() offset %d, record ms %d, want %d, %d", s.Offset, s.RecordMillis, r.Offset, r.Timestamp.UnixMilli())
	}
}
