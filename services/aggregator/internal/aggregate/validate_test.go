package aggregate

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// saleGen draws sales whose fields sit on and around every rule's
// boundaries, and records built from them, often mutated at the wire level.
type saleGen struct {
	rng *rand.Rand
	now time.Time
}

func (g *saleGen) pick(n int) int { return g.rng.IntN(n) }

func (g *saleGen) id() string {
	pool := []string{
		"", "P1", "p", "0", "ELE-0001", "a.b_c:d-e", "-P1", ".x", "_x", ":x", "P 1", "P1 ", "é", "Pé", "P\x00",
		"P\n", "P/1", "P+1", strings.Repeat("A", 63), strings.Repeat("A", 64), strings.Repeat("A", 65),
		strings.Repeat("é", 64), strings.Repeat("é", 65), "A" + strings.Repeat("-", 63), "A" + strings.Repeat("-", 64),
		"0197c0de-0000-7000-8000-000000000001", "Z", "z9", "P1$", "^P1", "P1\u2028", "\u0661",
	}
	if g.pick(4) == 0 {
		// Random printable-ish ids.
		chars := []rune("AZaz09._:-!@ /\\é")
		b := make([]rune, g.pick(70))
		for i := range b {
			b[i] = chars[g.pick(len(chars))]
		}
		return string(b)
	}
	return pool[g.pick(len(pool))]
}

func (g *saleGen) sale() *salesv1.Sale {
	ints64 := []int64{math.MinInt64, -1, 0, 1, 2, 19999, 99999999, 100000000, 100000001, math.MaxInt64, 1 << 32, -(1 << 32)}
	ints32 := []int32{math.MinInt32, -1, 0, 1, 2, 9999, 10000, 10001, math.MaxInt32}
	s := &salesv1.Sale{
		Category:   salesv1.Category(int32(g.pick(7)) - 1),
		ProductId:  g.id(),
		PriceCents: ints64[g.pick(len(ints64))],
		Quantity:   ints32[g.pick(len(ints32))],
		SaleId:     g.id(),
	}
	if g.pick(3) == 0 {
		s.Category = salesv1.Category(g.rng.Int32() - math.MaxInt32/2)
	}
	if g.pick(2) == 0 {
		s.PriceCents = 1 + g.rng.Int64N(maxPriceCents)
		s.Quantity = 1 + g.rng.Int32N(maxQuantity)
		s.Category = salesv1.Category(1 + g.pick(4))
	}
	if g.pick(2) == 0 {
		// A valid sale, with at most one field from the pools.
		v := &salesv1.Sale{
			Category: salesv1.Category(1 + g.pick(4)), ProductId: "ELE-0001", PriceCents: 1 + g.rng.Int64N(maxPriceCents),
			Quantity: 1 + g.rng.Int32N(maxQuantity), SaleId: "0197c0de-0000-7000-8000-000000000001",
			SoldAt: timestamppb.New(g.now.Add(time.Duration(g.rng.Int64N(int64(2*time.Hour))) - time.Hour)),
		}
		switch g.pick(8) {
		case 0:
			v.Category = s.Category
		case 1:
			v.ProductId = s.ProductId
		case 2:
			v.PriceCents = s.PriceCents
		case 3:
			v.Quantity = s.Quantity
		case 4:
			v.SaleId = s.SaleId
		}
		s = v
		if g.pick(2) == 0 {
			return s
		}
	}
	if g.pick(10) > 0 {
		secs := []int64{
			0, -1, minSoldAt - 1, minSoldAt, minSoldAt + 1, g.now.Unix(), g.now.Unix() + 3599, g.now.Unix() + 3600,
			g.now.Unix() + 3601, math.MaxInt64, math.MinInt64, 1 << 62, celMaxUnix, celMaxUnix + 1, celMinUnix - 1,
		}
		nanos := []int32{0, 1, -1, 999999999, 1000000000, -1000000000, math.MaxInt32, math.MinInt32}
		s.SoldAt = &timestamppb.Timestamp{Seconds: secs[g.pick(len(secs))], Nanos: nanos[g.pick(len(nanos))]}
		if g.pick(2) == 0 {
			s.SoldAt.Seconds = g.now.Add(time.Duration(g.rng.Int64N(int64(3*time.Hour))) - 2*time.Hour).Unix()
		}
	}
	return s
}

// mutate changes a marshalled sale at the wire level: repeated and merged
// fields, wrong wire types, unknown fields and groups, bad UTF-8, bit
// flips, truncation.
func (g *saleGen) mutate(b []byte) []byte {
	switch g.pick(12) {
	case 0:
		return b
	case 1: // a field repeated: the last one wins
		b = protowire.AppendTag(b, protowire.Number(1+g.pick(4)), protowire.VarintType)
		return protowire.AppendVarint(b, g.rng.Uint64()>>g.pick(64))
	case 2: // a second sold_at merges into the first
		var ts []byte
		if g.pick(2) == 0 {
			ts = protowire.AppendTag(ts, 1, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(g.now.Unix()+int64(g.pick(7200))-3600))
		}
		if g.pick(2) == 0 {
			ts = protowire.AppendTag(ts, 2, protowire.VarintType)
			ts = protowire.AppendVarint(ts, g.rng.Uint64()>>g.pick(64))
		}
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		return protowire.AppendBytes(b, ts)
	case 3: // a known field with the wrong wire type
		num := protowire.Number(1 + g.pick(6))
		switch g.pick(4) {
		case 0:
			b = protowire.AppendTag(b, num, protowire.Fixed32Type)
			return protowire.AppendFixed32(b, g.rng.Uint32())
		case 1:
			b = protowire.AppendTag(b, num, protowire.Fixed64Type)
			return protowire.AppendFixed64(b, g.rng.Uint64())
		case 2:
			b = protowire.AppendTag(b, num, protowire.StartGroupType)
			return protowire.AppendTag(b, num, protowire.EndGroupType)
		default:
			if num == 2 || num == 5 || num == 6 {
				b = protowire.AppendTag(b, num, protowire.VarintType)
				return protowire.AppendVarint(b, 7)
			}
			b = protowire.AppendTag(b, num, protowire.BytesType)
			return protowire.AppendBytes(b, []byte{8, 1})
		}
	case 4: // unknown fields, groups included
		b = protowire.AppendTag(b, protowire.Number(7+g.pick(1000)), protowire.Type(g.pick(6)))
		return append(b, byte(g.rng.Uint32()), byte(g.rng.Uint32()), byte(g.rng.Uint32()))
	case 5: // invalid UTF-8 in a string
		b = protowire.AppendTag(b, protowire.Number(2+3*g.pick(2)), protowire.BytesType)
		return protowire.AppendBytes(b, []byte{'P', 0xff, 0xfe})
	case 6: // truncated
		if len(b) > 0 {
			return b[:g.pick(len(b))]
		}
		return b
	case 7: // bit flips
		for range 1 + g.pick(3) {
			if len(b) > 0 {
				b[g.pick(len(b))] ^= 1 << g.pick(8)
			}
		}
		return b
	case 8: // random bytes inserted
		at := g.pick(len(b) + 1)
		ins := make([]byte, 1+g.pick(4))
		for i := range ins {
			ins[i] = byte(g.rng.Uint32())
		}
		return append(b[:at:at], append(ins, b[at:]...)...)
	case 9: // field numbers out of range, stray end groups
		switch g.pick(3) {
		case 0:
			return append(b, 0x00)
		case 1:
			return protowire.AppendVarint(b, uint64(protowire.MaxValidNumber+1)<<3)
		default:
			return protowire.AppendTag(b, 3, protowire.EndGroupType)
		}
	case 10: // unknown fields inside sold_at
		var ts []byte
		ts = protowire.AppendTag(ts, protowire.Number(3+g.pick(5)), protowire.VarintType)
		ts = protowire.AppendVarint(ts, 1)
		ts = protowire.AppendTag(ts, 1, protowire.Fixed64Type)
		ts = protowire.AppendFixed64(ts, 5)
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		return protowire.AppendBytes(b, ts)
	default: // an overlong varint
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, byte(g.pick(4)))
	}
}

func (g *saleGen) record(tb testing.TB) *kgo.Record {
	value, err := proto.Marshal(g.sale())
	if err != nil {
		tb.Fatal(err)
	}
	for range g.pick(3) {
		value = g.mutate(value)
	}
	ts := g.now
	switch g.pick(20) {
	case 0:
		ts = time.UnixMilli(0)
	case 1:
		ts = time.UnixMilli(math.MaxInt64)
	case 2:
		ts = time.UnixMilli(celMaxUnix*1000 - 3600*1000 + int64(g.pick(3000)) - 1500)
	}
	protocols := []string{"grpc", "connect+json", "legacy-rest", "carrier-pigeon", ""}
	return &kgo.Record{
		Topic: "sales", Partition: 1, Offset: int64(g.pick(1000)), Value: value, Timestamp: ts,
		Headers: []kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())},
			{Key: record.HeaderIngestProtocol, Value: []byte(protocols[g.pick(len(protocols))])},
		},
	}
}

// TestDecodeMatchesReference holds the hand-written decoding and rules to
// proto.Unmarshal and protovalidate over many generated sales, valid and
// not, most of them mutated at the wire level.
func TestDecodeMatchesReference(t *testing.T) {
	t.Parallel()
	dec := NewDecoder()
	ref := newReferenceDecoder(t)
	n := 30000
	if testing.Short() {
		n = 3000
	}
	g := &saleGen{rng: rand.New(rand.NewPCG(7, 11)), now: soldAt}
	valid := 0
	for range n {
		r := g.record(t)
		sameVerdict(t, dec, ref, r)
		if _, err := dec.Decode(r); err == nil {
			valid++
		}
	}
	// The generator must reach both verdicts often enough to mean much.
	if valid < n/20 || valid > n*19/20 {
		t.Errorf("%d of %d generated records valid, want between 5%% and 95%%", valid, n)
	}
}

// TestSaleRulesUnchanged fails when the protovalidate rules of Sale in the
// proto change, because validate.go repeats them by hand and must change
// with them.
func TestSaleRulesUnchanged(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"category":    `required:true enum:{defined_only:true}`,
		"product_id":  `required:true string:{max_len:64 pattern:"^[A-Za-z0-9][A-Za-z0-9._:-]*$"}`,
		"price_cents": `int64:{gt:0 lte:100000000}`,
		"quantity":    `int32:{gte:1 lte:10000}`,
		"sale_id":     `string:{max_len:64 pattern:"^[A-Za-z0-9][A-Za-z0-9._:-]*$"} ignore:IGNORE_IF_ZERO_VALUE`,
		"sold_at":     `cel:{id:"sold_at.not_future" message:"must not be more than one hour in the future" expression:"this <= now + duration('1h')"} timestamp:{gt:{seconds:946684800}}`,
	}
	fields := (&salesv1.Sale{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != len(want) {
		t.Fatalf("Sale has %d fields, want %d: update validate.go and wire.go", fields.Len(), len(want))
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		got := proto.GetExtension(f.Options(), validate.E_Field).(*validate.FieldRules)
		var wantRules validate.FieldRules
		if err := prototext.Unmarshal([]byte(want[string(f.Name())]), &wantRules); err != nil {
			t.Fatalf("rules of %s: %v", f.Name(), err)
		}
		if !proto.Equal(got, &wantRules) {
			t.Errorf("rules of %s = %v, want %s: update validate.go and this test", f.Name(), got, want[string(f.Name())])
		}
	}
	if msg := proto.GetExtension((&salesv1.Sale{}).ProtoReflect().Descriptor().Options(), validate.E_Message).(*validate.MessageRules); proto.Size(msg) > 0 {
		t.Errorf("Sale has message rules %v: update validate.go", msg)
	}
}
