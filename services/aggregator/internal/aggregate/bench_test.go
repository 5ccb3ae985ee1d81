package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// benchRecords returns n records like the api writes them under load: four
// categories, 200 products each with skewed popularity, UUIDv7-like sale
// ids, one millisecond apart, over the ingest protocols.
func benchRecords(tb testing.TB, n int) []*kgo.Record {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.07, 1, 199)
	prefixes := []string{"", "ELE", "CLO", "HOM", "BEA"}
	protocols := []string{"connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc"}
	start := time.Now().Add(-time.Hour)
	out := make([]*kgo.Record, n)
	for i := range out {
		cat := salesv1.Category(1 + rng.IntN(4))
		at := start.Add(time.Duration(i) * time.Millisecond)
		s := &salesv1.Sale{
			Category:   cat,
			ProductId:  fmt.Sprintf("%s-%04d", prefixes[cat], 1+zipf.Uint64()),
			PriceCents: 299 + rng.Int64N(250000),
			Quantity:   int32(1 + rng.IntN(4)),
			SaleId:     fmt.Sprintf("019ac0de-%04x-7%03x-8%03x-%012x", i>>16, i&0xfff, rng.IntN(0xfff), rng.Int64N(1<<48)),
			SoldAt:     timestamppb.New(at),
		}
		value, err := proto.Marshal(s)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = &kgo.Record{
			Topic: "sales", Partition: 3, Offset: int64(i), Key: []byte(s.ProductId), Value: value,
			Timestamp: at.Add(time.Millisecond),
			Headers: []kgo.RecordHeader{
				{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
				{Key: record.HeaderSchema, Value: []byte(record.Schema())},
				{Key: record.HeaderIngestProtocol, Value: []byte(protocols[i%len(protocols)])},
			},
		}
	}
	return out
}

// BenchmarkDecodeFold decodes, validates and folds one partition's batch of
// 2,000 records in memory, as the consumer does per poll, with the former
// implementation (proto.Unmarshal and protovalidate) and the current one.
// ns/record and allocs/record are per record.
func BenchmarkDecodeFold(b *testing.B) {
	const batch = 2000
	records := benchRecords(b, batch)
	dec := NewDecoder()
	ref := newReferenceDecoder(b)
	for _, bm := range []struct {
		name string
		fold func() (*Delta, error)
	}{
		{"impl=protovalidate", func() (*Delta, error) { return ref.Fold("sales", 3, records) }},
		{"impl=handwritten", func() (*Delta, error) {
			d, _, err := dec.Fold("sales", 3, records)
			return d, err
		}},
		{"impl=handwritten-dedup", func() (*Delta, error) {
			bt, err := dec.DecodeBatch("sales", 3, records)
			if err != nil {
				return nil, err
			}
			return bt.Fold(Dedup{Window: 10 * time.Minute})
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := bm.fold()
				if err != nil || d.Totals.Sales != batch {
					b.Fatalf("fold = %v, %v sales, want %d", err, d.Totals.Sales, batch)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/record")
		})
	}
}
