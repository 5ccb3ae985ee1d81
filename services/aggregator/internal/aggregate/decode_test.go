package aggregate

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

var soldAt = time.Date(2025, 11, 28, 12, 0, 0, 0, time.UTC)

func validSale() *salesv1.Sale {
	return &salesv1.Sale{
		Category:   salesv1.Category_CATEGORY_ELECTRONICS,
		ProductId:  "P1",
		PriceCents: 19999,
		Quantity:   2,
		SaleId:     "0197c0de-0000-7000-8000-000000000001",
		SoldAt:     timestamppb.New(soldAt),
	}
}

// saleRecord builds a record the way the api writes one, after edit changes
// the sale, with the given headers replacing the standard ones when set.
func saleRecord(t *testing.T, edit func(*salesv1.Sale), headers ...kgo.RecordHeader) *kgo.Record {
	t.Helper()
	s := validSale()
	if edit != nil {
		edit(s)
	}
	value, err := proto.Marshal(s)
	if err != nil {
		t.Fatalf("proto.Marshal(%v) = %v", s, err)
	}
	if headers == nil {
		headers = []kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())},
			{Key: record.HeaderIngestProtocol, Value: []byte("connect+json")},
		}
	}
	return &kgo.Record{
		Key:       []byte(s.GetProductId()),
		Value:     value,
		Headers:   headers,
		Timestamp: soldAt.Add(time.Second),
		Topic:     "sales",
		Partition: 2,
		Offset:    41,
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	dec := NewDecoder()
	std := func(protocol string) []kgo.RecordHeader {
		return []kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())},
			{Key: record.HeaderIngestProtocol, Value: []byte(protocol)},
		}
	}
	tests := []struct {
		name         string
		rec          func(t *testing.T) *kgo.Record
		wantReason   Reason // empty for a valid sale
		wantProtocol string
	}{
		{
			name:         "valid",
			rec:          func(t *testing.T) *kgo.Record { return saleRecord(t, nil) },
			wantProtocol: "connect+json",
		},
		{
			name: "legacy protocol",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, nil, std("legacy-rest")...)
			},
			wantProtocol: "legacy-rest",
		},
		{
			name: "unknown protocol",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, nil, std("carrier-pigeon")...)
			},
			wantProtocol: string(record.ProtocolUnknown),
		},
		{
			// With tracing on, the api's records carry W3C trace context
			// too, first or last (kotel appends; a copy may reorder).
			name: "trace context headers",
			rec: func(t *testing.T) *kgo.Record {
				trace := []kgo.RecordHeader{
					{Key: record.HeaderTraceParent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
					{Key: record.HeaderTraceState, Value: []byte("vendor=x")},
					{Key: "baggage", Value: []byte("k=v")},
				}
				return saleRecord(t, nil, append(append(trace[:1:1], std("grpc")...), trace[1:]...)...)
			},
			wantProtocol: "grpc",
		},
		{
			name: "no protocol header",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, nil, std("")[:2]...)
			},
			wantProtocol: string(record.ProtocolUnknown),
		},
		{
			name: "sold_at later than the aggregator's clock but valid when produced",
			rec: func(t *testing.T) *kgo.Record {
				at := time.Now().Add(3 * time.Hour)
				r := saleRecord(t, func(s *salesv1.Sale) { s.SoldAt = timestamppb.New(at) })
				r.Timestamp = at.Add(-30 * time.Minute)
				return r
			},
			wantProtocol: "connect+json",
		},
		{
			name: "sold_at more than an hour after the record",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.SoldAt = timestamppb.New(soldAt.Add(2 * time.Hour)) })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "no content-type",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, nil, std("grpc")[1:]...)
			},
			wantReason: ReasonContentType,
		},
		{
			name: "json content-type",
			rec: func(t *testing.T) *kgo.Record {
				h := std("grpc")
				h[0].Value = []byte("application/json")
				return saleRecord(t, nil, h...)
			},
			wantReason: ReasonContentType,
		},
		{
			name: "other schema",
			rec: func(t *testing.T) *kgo.Record {
				h := std("grpc")
				h[1].Value = []byte("blackfriday.ProductSaleRequest")
				return saleRecord(t, nil, h...)
			},
			wantReason: ReasonSchema,
		},
		{
			name: "no schema",
			rec: func(t *testing.T) *kgo.Record {
				h := std("grpc")
				return saleRecord(t, nil, h[0], h[2])
			},
			wantReason: ReasonSchema,
		},
		{
			name: "garbage value",
			rec: func(t *testing.T) *kgo.Record {
				r := saleRecord(t, nil)
				r.Value = []byte{0xff, 0xff, 0xff, 0xff}
				return r
			},
			wantReason: ReasonUndecodable,
		},
		{
			name: "zero price",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.PriceCents = 0 })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "unspecified category",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.Category = salesv1.Category_CATEGORY_UNSPECIFIED })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "undefined category",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.Category = 9 })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "quantity over the cap",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.Quantity = 10001 })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "bad product id",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.ProductId = "-P1 " })
			},
			wantReason: ReasonInvalid,
		},
		{
			name: "no sale_id",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.SaleId = "" })
			},
			wantReason: ReasonMissingSaleID,
		},
		{
			name: "no sold_at",
			rec: func(t *testing.T) *kgo.Record {
				return saleRecord(t, func(s *salesv1.Sale) { s.SoldAt = nil })
			},
			wantReason: ReasonMissingSoldAt,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.rec(t)
			got, err := dec.Decode(r)
			if tt.wantReason != "" {
				var dl *DeadLetterError
				if !errors.As(err, &dl) || dl.Reason != tt.wantReason {
					t.Fatalf("Decode(%s) = %+v, %v, want reason %s", tt.name, got, err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s) = %v, want nil", tt.name, err)
			}
			if got.Protocol != tt.wantProtocol {
				t.Errorf("Decode(%s).Protocol = %q, want %q", tt.name, got.Protocol, tt.wantProtocol)
			}
			if got.Offset != r.Offset || got.ProductID != "P1" || got.PriceCents != 19999 || got.Quantity != 2 ||
				got.Category != salesv1.Category_CATEGORY_ELECTRONICS || got.SaleID == "" {
				t.Errorf("Decode(%s) = %+v, want the sale of offset %d", tt.name, got, r.Offset)
			}
		})
	}
}

func TestFold(t *testing.T) {
	t.Parallel()
	dec := NewDecoder()
	var records []*kgo.Record
	for i, edit := range []func(*salesv1.Sale){
		nil,
		func(s *salesv1.Sale) { s.PriceCents = -1 },
		func(s *salesv1.Sale) { s.ProductId = "P2"; s.Quantity = 5 },
		func(s *salesv1.Sale) { s.SaleId = "" },
	} {
		r := saleRecord(t, edit)
		r.Offset = int64(100 + i)
		records = append(records, r)
	}
	d, dead, err := dec.Fold("sales", 2, records)
	if err != nil {
		t.Fatalf("Fold() = %v, want nil", err)
	}
	if d.Next != 104 || d.DeadLetters != 2 || d.Totals.Sales != 2 || d.Totals.Units != 7 {
		t.Errorf("Fold() delta Next=%d DeadLetters=%d Sales=%d Units=%d, want 104 2 2 7",
			d.Next, d.DeadLetters, d.Totals.Sales, d.Totals.Units)
	}
	if len(dead) != 2 || dead[0].Record.Offset != 101 || dead[0].Err.Reason != ReasonInvalid ||
		dead[1].Record.Offset != 103 || dead[1].Err.Reason != ReasonMissingSaleID {
		t.Errorf("Fold() dead letters = %+v, want offsets 101 (invalid) and 103 (missing-sale-id)", dead)
	}
}
