package aggregate

import (
	"math/rand/v2"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestCountsEveryAcknowledgedSale holds every rule the api and the
// aggregator share to one promise: a sale the api accepts is never
// dead-lettered. The api validates with protovalidate against its own clock,
// to the nanosecond; its producer then stamps the record with the same clock
// a moment later, which Kafka keeps to the millisecond. The aggregator must
// count whatever passed, including sales at the very edge of the "sold_at
// not more than an hour in the future" rule, and with the api's clock
// stepping back by up to a second between validation and produce.
func TestCountsEveryAcknowledgedSale(t *testing.T) {
	t.Parallel()
	api, err := protovalidate.New(protovalidate.WithMessages(&salesv1.Sale{}))
	if err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder()
	// counted checks one acknowledged sale, validated at apiNow, in a
	// record stamped at stamped (kept to the millisecond, as Kafka does).
	counted := func(t *testing.T, sale *salesv1.Sale, apiNow, stamped time.Time, offset int64) {
		t.Helper()
		if err := api.Validate(sale, protovalidate.WithNowFunc(func() *timestamppb.Timestamp { return timestamppb.New(apiNow) })); err != nil {
			t.Fatalf("the api refuses %v at %s: %v", sale, apiNow.Format(time.RFC3339Nano), err)
		}
		value, err := proto.Marshal(sale)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{
			Topic: "sales", Partition: 1, Offset: offset, Key: []byte(sale.GetProductId()), Value: value,
			Timestamp: time.UnixMilli(stamped.UnixMilli()),
			Headers: []kgo.RecordHeader{
				{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
				{Key: record.HeaderSchema, Value: []byte(record.Schema())},
				{Key: record.HeaderIngestProtocol, Value: []byte("connect+json")},
			},
		}
		if _, err := dec.Decode(r); err != nil {
			t.Fatalf("Decode(sale the api accepted at %s, record stamped %s) = %v, want it counted: %v",
				apiNow.Format(time.RFC3339Nano), r.Timestamp.Format(time.RFC3339Nano), err, sale)
		}
	}
	// The edge itself: sold_at exactly an hour after the api's clock,
	// stamped the same instant, which Kafka truncates to the millisecond.
	for _, ahead := range []time.Duration{0, 300 * time.Microsecond, 999999 * time.Nanosecond} {
		apiNow := soldAt.Add(ahead)
		sale := validSale()
		sale.SoldAt = timestamppb.New(apiNow.Add(time.Hour))
		counted(t, sale, apiNow, apiNow, 0)
	}

	rng := rand.New(rand.NewPCG(3, 5))
	g := &saleGen{rng: rng}
	n := 50000
	if testing.Short() {
		n = 5000
	}
	accepted := 0
	for i := range n {
		// The api's clock when it validated, anywhere within a second.
		apiNow := soldAt.Add(time.Duration(rng.Int64N(int64(time.Second))))
		g.now = apiNow
		sale := g.sale()
		if i%4 == 0 {
			// Right at the edge: an hour ahead, less up to 2 ms.
			sale = validSale()
			sale.SoldAt = timestamppb.New(apiNow.Add(time.Hour - time.Duration(rng.Int64N(int64(2*time.Millisecond)))))
		}
		// What the api's stamping fills in before validation.
		if sale.GetSaleId() == "" {
			sale.SaleId = "0197c0de-0000-7000-8000-00000000000a"
		}
		if sale.GetSoldAt() == nil {
			sale.SoldAt = timestamppb.New(apiNow)
		}
		if err := api.Validate(sale, protovalidate.WithNowFunc(func() *timestamppb.Timestamp { return timestamppb.New(apiNow) })); err != nil {
			continue // the api refused it: nothing was acknowledged
		}
		accepted++
		// The producer stamps after validating (up to 50 ms later here),
		// or earlier by a clock step of up to a second.
		stamped := apiNow.Add(time.Duration(rng.Int64N(int64(50 * time.Millisecond))))
		if rng.IntN(4) == 0 {
			stamped = apiNow.Add(-time.Duration(rng.Int64N(int64(time.Second))))
		}
		counted(t, sale, apiNow, stamped, int64(i))
	}
	if accepted < n/4 {
		t.Errorf("the api accepted %d of %d generated sales, want at least a quarter to mean much", accepted, n)
	}
}
