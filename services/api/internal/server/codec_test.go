package server

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

func TestFits32(t *testing.T) {
	t.Parallel()
	neg := func(v int64) uint64 { return uint64(v) }
	tests := []struct {
		kind protoreflect.Kind
		v    uint64
		want bool
	}{
		{protoreflect.Int32Kind, 0, true},
		{protoreflect.Int32Kind, math.MaxInt32, true},
		{protoreflect.Int32Kind, math.MaxInt32 + 1, false},
		{protoreflect.Int32Kind, neg(-1), true}, // sign-extended, as every encoder writes it
		{protoreflect.Int32Kind, neg(math.MinInt32), true},
		{protoreflect.Int32Kind, neg(math.MinInt32 - 1), false},
		{protoreflect.Int32Kind, math.MaxUint32, false}, // -1 written as 32 bits only
		{protoreflect.EnumKind, 1<<32 + 1, false},
		{protoreflect.Uint32Kind, math.MaxUint32, true},
		{protoreflect.Uint32Kind, math.MaxUint32 + 1, false},
		{protoreflect.Sint32Kind, protowire.EncodeZigZag(math.MinInt32), true},
		{protoreflect.Sint32Kind, protowire.EncodeZigZag(math.MaxInt32 + 1), false},
	}
	for _, tt := range tests {
		if got := fits32(tt.kind, tt.v); got != tt.want {
			t.Errorf("fits32(%v, %d) = %v, want %v", tt.kind, tt.v, got, tt.want)
		}
	}
}

func TestProtoCodec(t *testing.T) {
	t.Parallel()
	valid := marshal(t, &salesv1.RecordSaleRequest{Sale: &salesv1.Sale{
		Category: 1, ProductId: "P1", PriceCents: 1, Quantity: -1, SaleId: "s", SoldAt: timestamppb.Now(),
	}})
	packed := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return bytesField(1, b) // SourceCodeInfo.Location.path: repeated int32, packed
	}
	deep := []byte(nil)
	for range maxWireDepth + 5 {
		deep = bytesField(3, deep) // DescriptorProto.nested_type
	}
	tests := []struct {
		name          string
		msg           proto.Message
		data          []byte
		rejectUnknown bool
		wantErr       string // "" for success
	}{
		{"valid, negative int32 sign-extended", &salesv1.RecordSaleRequest{}, valid, true, ""},
		{"empty", &salesv1.RecordSaleRequest{}, nil, true, ""},
		{"unknown field kept by the lenient codec", &salesv1.RecordSaleRequest{}, append(valid, varintField(7, 1)...), false, ""},
		{"unknown field", &salesv1.RecordSaleRequest{}, append(valid, varintField(7, 1)...), true, "unknown field 7 in RecordSaleRequest"},
		{"unknown group", &salesv1.RecordSaleRequest{}, append(valid, protowire.AppendTag(protowire.AppendTag(nil, 8, protowire.StartGroupType), 8, protowire.EndGroupType)...), true, "unknown field 8"},
		{"truncated", &salesv1.RecordSaleRequest{}, valid[:len(valid)-1], true, "invalid protobuf"},
		{"packed int32 in range", &descriptorpb.SourceCodeInfo_Location{}, packed(1, 2, uint64(math.MaxInt32)), true, ""},
		{"packed int32 beyond", &descriptorpb.SourceCodeInfo_Location{}, packed(1, 1<<32+5), true, "path[0]: value does not fit in 32 bits"},
		{"unpacked int32 beyond", &descriptorpb.SourceCodeInfo_Location{}, append(varintField(1, 3), varintField(1, 1<<40)...), true, "path[1]: value does not fit"},
		{"nested too deep", &descriptorpb.DescriptorProto{}, deep, false, "nests too deeply"},
		// Found by FuzzRecordSaleProto: a known field in the wrong wire
		// type is kept by proto.Unmarshal as an unknown field, which would
		// then have been written to Kafka.
		{"quantity as bytes", &salesv1.RecordSaleRequest{}, bytesField(1, bytesField(4, []byte("000"))), true, "sale.quantity: wire type 2, want 0"},
		{"quantity as bytes, lenient codec", &salesv1.RecordSaleRequest{}, bytesField(1, bytesField(4, []byte("000"))), false, "sale.quantity: wire type 2, want 0"},
		{"product id as a varint", &salesv1.RecordSaleRequest{}, bytesField(1, varintField(2, 7)), true, "sale.product_id: wire type 0, want 2"},
		{"sale as a varint", &salesv1.RecordSaleRequest{}, varintField(1, 1), true, "sale: wire type 0, want 2"},
		{"price as fixed64", &salesv1.RecordSaleRequest{}, bytesField(1, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), 5)), true, "sale.price_cents: wire type 1, want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &protoCodec{rejectUnknown: tt.rejectUnknown}
			err := c.Unmarshal(tt.data, tt.msg)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Unmarshal(%s) = %v, want error %q", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestJSONCodec(t *testing.T) {
	t.Parallel()
	c := &jsonCodec{name: "json"}
	tests := []struct {
		body    string
		wantErr string
	}{
		{`{"sale":{"category":"CATEGORY_HOME","productId":"P1","priceCents":"1999","quantity":2}}`, ""},
		{`{"sale":{"category":1,"product_id":"P1","price_cents":1999,"quantity":2,"sale_id":"s1","soldAt":"2025-11-28T10:00:00Z"}}`, ""},
		{`{"sale":{"categry":1}}`, `unknown field "categry"`},
		{`{"sale":{"category":1},"sale2":{}}`, `unknown field "sale2"`},
		{`{"sale":{"soldAt":{"seconds":1}}}`, "invalid JSON"},
		{`{"sale":{"category":1,"category":2}}`, "invalid JSON"}, // duplicate field
		{`{"sale":`, "invalid JSON"},
		{``, "zero-length payload"},
	}
	for _, tt := range tests {
		var got salesv1.RecordSaleRequest
		err := c.Unmarshal([]byte(tt.body), &got)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Unmarshal(%s) = %v, want error %q", tt.body, err, tt.wantErr)
		}
	}
	// Answers are written as connect-go writes them.
	resp := &salesv1.RecordSaleResponse{SaleId: "0193"}
	got, err := c.Marshal(resp)
	want, _ := protojson.Marshal(resp)
	if err != nil || string(got) != string(want) {
		t.Errorf("Marshal(%v) = %s, %v, want %s", resp, got, err, want)
	}
}
