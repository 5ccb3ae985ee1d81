package analytics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/testenv"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// valkeyAddr is the real Valkey or Redis server the tests read from. Without
// one they skip, except under CI, where they fail.
func valkeyAddr(t *testing.T) string {
	t.Helper()
	return testenv.Valkey(t)
}

// fixture is a Service over a fresh key prefix, and a client to seed it.
type fixture struct {
	svc    *Service
	client rueidis.Client
	prefix string
}

// now is the fixed time of every fixture: 37 seconds into a minute.
var now = time.Unix(1_700_000_017, 0) // 1_700_000_017 % 60 == 37

func newFixture(t *testing.T) *fixture {
	t.Helper()
	addr := valkeyAddr(t)
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	prefix := "bftest:" + hex.EncodeToString(b) + ":"
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("valkey at %s: %v", addr, err)
	}
	svc := New(Config{Addr: addr, KeyPrefix: prefix})
	svc.now = func() time.Time { return now }
	f := &fixture{svc: svc, client: c, prefix: prefix}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := c.Do(ctx, c.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		if err == nil && len(keys) > 0 {
			_ = c.Do(ctx, c.B().Del().Key(keys...).Build()).Error()
		}
		svc.Close()
		c.Close()
	})
	return f
}

func (f *fixture) hset(t *testing.T, key string, kv ...any) {
	t.Helper()
	cmd := f.client.B().Hset().Key(f.prefix + key).FieldValue()
	for i := 0; i < len(kv); i += 2 {
		cmd = cmd.FieldValue(kv[i].(string), fmt.Sprint(kv[i+1]))
	}
	if err := f.client.Do(context.Background(), cmd.Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) zadd(t *testing.T, key string, scored ...any) {
	t.Helper()
	cmd := f.client.B().Zadd().Key(f.prefix + key).ScoreMember()
	for i := 0; i < len(scored); i += 2 {
		cmd = cmd.ScoreMember(toFloat(scored[i+1]), scored[i].(string))
	}
	if err := f.client.Do(context.Background(), cmd.Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case int64:
		return float64(v)
	default:
		return v.(float64)
	}
}

func units(id string, n int64) *salesv1.ProductUnits {
	return &salesv1.ProductUnits{ProductId: id, Units: n}
}

func TestGetSummaryWithoutSales(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	got, err := f.svc.GetSummary(context.Background(), &salesv1.GetSummaryRequest{})
	if err != nil {
		t.Fatalf("GetSummary() = %v", err)
	}
	want := &salesv1.GetSummaryResponse{Categories: []*salesv1.CategorySummary{
		{Category: salesv1.Category_CATEGORY_ELECTRONICS},
		{Category: salesv1.Category_CATEGORY_CLOTHING},
		{Category: salesv1.Category_CATEGORY_HOME},
		{Category: salesv1.Category_CATEGORY_BEAUTY},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("GetSummary() = %v, want %v", got, want)
	}
}

func TestGetSummary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.hset(t, "totals", "sales", 10, "units", 27, "revenue_cents", 123456, "price_sum_cents", 60011,
		"min_price_cents", 99, "max_price_cents", 20000, "dead_letters", 2)
	f.hset(t, "cat:electronics", "sales", 4, "units", 10, "revenue_cents", 100000, "price_sum_cents", 30001,
		"min_price_cents", 500, "max_price_cents", 20000)
	f.hset(t, "cat:clothing", "sales", 3, "units", 7, "revenue_cents", 20000, "price_sum_cents", 10,
		"min_price_cents", 1, "max_price_cents", 7)
	f.hset(t, "cat:beauty", "sales", 3, "units", 10, "revenue_cents", 3456, "price_sum_cents", 30000,
		"min_price_cents", 99, "max_price_cents", 19999)
	// Ties are broken by the lower product id at both ends.
	f.zadd(t, "rank:units", "B", 9, "A", 9, "C", 3, "Z", 1, "Y", 1)
	// More products tie for best than the slack read holds.
	var elec []any
	for i := range 2 * rankSlack {
		elec = append(elec, fmt.Sprintf("E%02d", i), 7)
	}
	f.zadd(t, "rank:units:electronics", elec...)
	f.zadd(t, "rank:units:clothing", "R1", 7)
	f.zadd(t, "rank:units:beauty", "B2", 6, "B1", 4)

	got, err := f.svc.GetSummary(context.Background(), &salesv1.GetSummaryRequest{})
	if err != nil {
		t.Fatalf("GetSummary() = %v", err)
	}
	want := &salesv1.GetSummaryResponse{
		Categories: []*salesv1.CategorySummary{
			{
				Category: salesv1.Category_CATEGORY_ELECTRONICS, Sales: 4, Units: 10, RevenueCents: 100000,
				AvgPriceCents: 7500.25, AvgQuantity: 2.5, MinPriceCents: 500, MaxPriceCents: 20000,
				BestSeller: units("E00", 7), WorstSeller: units("E00", 7), PriceSumCents: 30001,
			},
			{
				Category: salesv1.Category_CATEGORY_CLOTHING, Sales: 3, Units: 7, RevenueCents: 20000,
				AvgPriceCents: 10.0 / 3, AvgQuantity: 7.0 / 3, MinPriceCents: 1, MaxPriceCents: 7,
				BestSeller: units("R1", 7), WorstSeller: units("R1", 7), PriceSumCents: 10,
			},
			{Category: salesv1.Category_CATEGORY_HOME},
			{
				Category: salesv1.Category_CATEGORY_BEAUTY, Sales: 3, Units: 10, RevenueCents: 3456,
				AvgPriceCents: 10000, AvgQuantity: 10.0 / 3, MinPriceCents: 99, MaxPriceCents: 19999,
				BestSeller: units("B2", 6), WorstSeller: units("B1", 4), PriceSumCents: 30000,
			},
		},
		MinPriceCents: 99,
		MaxPriceCents: 20000,
		BestSeller:    units("A", 9),
		WorstSeller:   units("Y", 1),
		Sales:         10,
		Units:         27,
		RevenueCents:  123456,
		DeadLetters:   2,
	}
	if !proto.Equal(got, want) {
		t.Errorf("GetSummary() = %v, want %v", got, want)
	}
}

func TestGetTopProducts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// All products: five clear leaders, then a tie of 30 wider than the
	// slack, then a tail.
	all := []any{"L1", 100, "L2", 90, "L3", 90, "L4", 80, "L5", 70}
	for i := range 30 {
		all = append(all, fmt.Sprintf("T%02d", i), 20)
	}
	all = append(all, "W2", 1, "W1", 1, "W3", 2)
	f.zadd(t, "rank:units", all...)
	f.zadd(t, "rank:units:home", "H3", 5, "H1", 5, "H2", 6)

	best := salesv1.RankOrder_RANK_ORDER_BEST
	worst := salesv1.RankOrder_RANK_ORDER_WORST
	tests := []struct {
		name string
		req  *salesv1.GetTopProductsRequest
		want []*salesv1.ProductUnits
	}{
		{"best three, tie by id", &salesv1.GetTopProductsRequest{Limit: 3}, []*salesv1.ProductUnits{
			units("L1", 100), units("L2", 90), units("L3", 90),
		}},
		{"default limit crosses a wide tie", &salesv1.GetTopProductsRequest{Order: best}, []*salesv1.ProductUnits{
			units("L1", 100), units("L2", 90), units("L3", 90), units("L4", 80), units("L5", 70),
			units("T00", 20), units("T01", 20), units("T02", 20), units("T03", 20), units("T04", 20),
		}},
		{"worst four", &salesv1.GetTopProductsRequest{Limit: 4, Order: worst}, []*salesv1.ProductUnits{
			units("W1", 1), units("W2", 1), units("W3", 2), units("T00", 20),
		}},
		{"one category", &salesv1.GetTopProductsRequest{Category: salesv1.Category_CATEGORY_HOME, Limit: 100}, []*salesv1.ProductUnits{
			units("H2", 6), units("H1", 5), units("H3", 5),
		}},
		{"one category, worst", &salesv1.GetTopProductsRequest{Category: salesv1.Category_CATEGORY_HOME, Order: worst}, []*salesv1.ProductUnits{
			units("H1", 5), units("H3", 5), units("H2", 6),
		}},
		{"empty category", &salesv1.GetTopProductsRequest{Category: salesv1.Category_CATEGORY_BEAUTY}, []*salesv1.ProductUnits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.svc.GetTopProducts(context.Background(), tt.req)
			want := &salesv1.GetTopProductsResponse{Products: tt.want}
			if err != nil || !proto.Equal(got, want) {
				t.Errorf("GetTopProducts(%v) = %v, %v, want %v", tt.req, got, err, want)
			}
		})
	}
}

func TestGetPriceHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	point := func(ms, cents int64, id string) (string, int64) {
		return fmt.Sprintf("%d:%d:%s", ms, cents, id), ms
	}
	seed := func(product string, points ...[3]any) []*salesv1.PricePoint {
		var z []any
		var want []*salesv1.PricePoint
		for _, p := range points {
			m, s := point(p[0].(int64), p[1].(int64), p[2].(string))
			z = append(z, m, s)
			want = append(want, &salesv1.PricePoint{
				SoldAt: timestamppb.New(time.UnixMilli(p[0].(int64))), PriceCents: p[1].(int64), SaleId: p[2].(string),
			})
		}
		f.zadd(t, "price:"+product, z...)
		slices.SortFunc(want, func(a, b *salesv1.PricePoint) int { return a.GetSoldAt().AsTime().Compare(b.GetSoldAt().AsTime()) })
		return want
	}
	// Points are seeded out of order; they come back oldest first. Sale ids
	// may hold colons.
	e1 := seed("E1", [3]any{int64(1_700_000_002_000), int64(1999), "b"}, [3]any{int64(1_700_000_001_500), int64(2099), "client:7:x"})
	e2 := seed("E2", [3]any{int64(1_700_000_000_001), int64(5), "01a2263b-d613-75e5-9766-799dc7b546bb"})
	e3 := seed("E3", [3]any{int64(1_700_000_000_000), int64(7), "c"})
	f.zadd(t, "rank:units:electronics", "E2", 50, "E1", 10, "E3", 10, "E4", 1)
	f.zadd(t, "price:products", "E1", 1_700_000_002_000, "E2", 1_700_000_000_001, "E3", 1_700_000_000_000)

	tests := []struct {
		name string
		ids  []string
		want []*salesv1.ProductPriceHistory
	}{
		{"request order, without the products lacking history", []string{"E3", "NOPE", "E1"}, []*salesv1.ProductPriceHistory{
			{ProductId: "E3", Points: e3}, {ProductId: "E1", Points: e1},
		}},
		{"best sellers by default", nil, []*salesv1.ProductPriceHistory{
			{ProductId: "E2", Points: e2}, {ProductId: "E1", Points: e1}, {ProductId: "E3", Points: e3},
		}},
		{"unknown product", []string{"X"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.svc.GetPriceHistory(context.Background(), &salesv1.GetPriceHistoryRequest{ProductIds: tt.ids})
			want := &salesv1.GetPriceHistoryResponse{Products: tt.want}
			if err != nil || !proto.Equal(got, want) {
				t.Errorf("GetPriceHistory(%v) = %v, %v, want %v", tt.ids, got, err, want)
			}
		})
	}

	f.zadd(t, "price:BAD", "not-a-point", 1)
	if _, err := f.svc.GetPriceHistory(context.Background(), &salesv1.GetPriceHistoryRequest{ProductIds: []string{"BAD"}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetPriceHistory(BAD) = %v, want ErrCorrupt", err)
	}
}

func TestGetSalesRate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	nowSec := now.Unix()
	minute := nowSec / 60 * 60 // now is 37s into it
	prev := minute - 60
	// Electronics names seconds by their Unix second; clothing by their
	// offset in the minute. Both are read.
	f.hset(t, "rate:electronics:"+strconv.FormatInt(minute, 10),
		"sales", 3, "units", 5, "revenue_cents", 700,
		strconv.FormatInt(minute+2, 10)+":sales", 1, strconv.FormatInt(minute+2, 10)+":units", 2, strconv.FormatInt(minute+2, 10)+":revenue_cents", 200,
		strconv.FormatInt(nowSec, 10)+":sales", 2, strconv.FormatInt(nowSec, 10)+":units", 3, strconv.FormatInt(nowSec, 10)+":revenue_cents", 500)
	f.hset(t, "rate:electronics:"+strconv.FormatInt(prev, 10),
		"sales", 1, "units", 1, "revenue_cents", 100,
		strconv.FormatInt(prev+59, 10)+":sales", 1, strconv.FormatInt(prev+59, 10)+":units", 1, strconv.FormatInt(prev+59, 10)+":revenue_cents", 100)
	f.hset(t, "rate:clothing:"+strconv.FormatInt(minute, 10),
		"sales", 4, "units", 4, "revenue_cents", 40,
		"0:sales", 4, "0:units", 4, "0:revenue_cents", 40)
	f.hset(t, "rate:home:"+strconv.FormatInt(minute-3600, 10),
		"sales", 9, "units", 9, "revenue_cents", 9)

	// series builds the expected points: from first, n buckets of step
	// seconds, zero but for the given ones.
	series := func(cat salesv1.Category, first, step int64, n int, set map[int64][3]int64) *salesv1.RateSeries {
		s := &salesv1.RateSeries{Category: cat}
		for i := range int64(n) {
			start := first + i*step
			v := set[start]
			s.Points = append(s.Points, &salesv1.RatePoint{
				Start: timestamppb.New(time.Unix(start, 0)), Sales: v[0], Units: v[1], RevenueCents: v[2],
			})
		}
		return s
	}
	sec, min := int64(1), int64(60)
	elec, cloth := salesv1.Category_CATEGORY_ELECTRONICS, salesv1.Category_CATEGORY_CLOTHING
	home, beauty := salesv1.Category_CATEGORY_HOME, salesv1.Category_CATEGORY_BEAUTY
	elecSeconds := map[int64][3]int64{minute + 2: {1, 2, 200}, nowSec: {2, 3, 500}, prev + 59: {1, 1, 100}}
	clothSeconds := map[int64][3]int64{minute: {4, 4, 40}}

	tests := []struct {
		name string
		req  *salesv1.GetSalesRateRequest
		want *salesv1.GetSalesRateResponse
	}{
		{"two minutes by the second, one category", &salesv1.GetSalesRateRequest{Category: elec, Window: durationpb.New(2 * time.Minute)},
			&salesv1.GetSalesRateResponse{Bucket: durationpb.New(time.Second), Series: []*salesv1.RateSeries{
				series(elec, nowSec-119, sec, 120, elecSeconds),
			}}},
		{"default window: five minutes by the second, every category", &salesv1.GetSalesRateRequest{},
			&salesv1.GetSalesRateResponse{Bucket: durationpb.New(time.Second), Series: []*salesv1.RateSeries{
				series(elec, nowSec-299, sec, 300, elecSeconds),
				series(cloth, nowSec-299, sec, 300, clothSeconds),
				series(home, nowSec-299, sec, 300, nil),
				series(beauty, nowSec-299, sec, 300, nil),
			}}},
		{"fifteen minutes is still by the second", &salesv1.GetSalesRateRequest{Category: cloth, Window: durationpb.New(15 * time.Minute)},
			&salesv1.GetSalesRateResponse{Bucket: durationpb.New(time.Second), Series: []*salesv1.RateSeries{
				series(cloth, nowSec-899, sec, 900, clothSeconds),
			}}},
		{"two hours by the minute", &salesv1.GetSalesRateRequest{Window: durationpb.New(2 * time.Hour)},
			&salesv1.GetSalesRateResponse{Bucket: durationpb.New(time.Minute), Series: []*salesv1.RateSeries{
				series(elec, minute-119*60, min, 120, map[int64][3]int64{minute: {3, 5, 700}, prev: {1, 1, 100}}),
				series(cloth, minute-119*60, min, 120, map[int64][3]int64{minute: {4, 4, 40}}),
				series(home, minute-119*60, min, 120, map[int64][3]int64{minute - 3600: {9, 9, 9}}),
				series(beauty, minute-119*60, min, 120, nil),
			}}},
		{"a partial minute rounds up", &salesv1.GetSalesRateRequest{Category: home, Window: durationpb.New(60*time.Minute + 30*time.Second)},
			&salesv1.GetSalesRateResponse{Bucket: durationpb.New(time.Minute), Series: []*salesv1.RateSeries{
				series(home, minute-60*60, min, 61, map[int64][3]int64{minute - 3600: {9, 9, 9}}),
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.svc.GetSalesRate(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("GetSalesRate(%v) = %v", tt.req, err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("GetSalesRate(%v) = %s", tt.req, rateDiff(got, tt.want))
			}
		})
	}
}

func TestGetSalesRateCorrupt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	minute := now.Unix() / 60 * 60
	f.hset(t, "rate:beauty:"+strconv.FormatInt(minute, 10), strconv.FormatInt(now.Unix(), 10)+":sales", "many")
	req := &salesv1.GetSalesRateRequest{Category: salesv1.Category_CATEGORY_BEAUTY}
	if _, err := f.svc.GetSalesRate(context.Background(), req); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetSalesRate() over a corrupt hash = %v, want ErrCorrupt", err)
	}
}

func TestValkeyDown(t *testing.T) {
	t.Parallel()
	svc := New(Config{Addr: "127.0.0.1:1", KeyPrefix: "bf:", Timeout: 500 * time.Millisecond})
	defer svc.Close()
	ctx := context.Background()
	calls := map[string]func() error{
		"GetSummary": func() error { _, err := svc.GetSummary(ctx, &salesv1.GetSummaryRequest{}); return err },
		"GetTopProducts": func() error {
			_, err := svc.GetTopProducts(ctx, &salesv1.GetTopProductsRequest{})
			return err
		},
		"GetPriceHistory": func() error {
			_, err := svc.GetPriceHistory(ctx, &salesv1.GetPriceHistoryRequest{})
			return err
		},
		"GetSalesRate": func() error { _, err := svc.GetSalesRate(ctx, &salesv1.GetSalesRateRequest{}); return err },
		"Ping":         func() error { return svc.Ping(ctx) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		// A stalled machine can slow the answer; only a hang passes the
		// bound.
		if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > 10*time.Second {
			t.Errorf("%s() with Valkey down = %v after %v, want ErrUnavailable, not a wait", name, err, took)
		}
	}
}

// rateDiff describes the first difference between two rate responses; the
// responses themselves are too long to print.
func rateDiff(got, want *salesv1.GetSalesRateResponse) string {
	if !proto.Equal(got.GetBucket(), want.GetBucket()) {
		return fmt.Sprintf("bucket %v, want %v", got.GetBucket().AsDuration(), want.GetBucket().AsDuration())
	}
	if len(got.GetSeries()) != len(want.GetSeries()) {
		return fmt.Sprintf("%d series, want %d", len(got.GetSeries()), len(want.GetSeries()))
	}
	for i, s := range got.GetSeries() {
		w := want.GetSeries()[i]
		if s.GetCategory() != w.GetCategory() || len(s.GetPoints()) != len(w.GetPoints()) {
			return fmt.Sprintf("series %d is %v with %d points, want %v with %d", i, s.GetCategory(), len(s.GetPoints()), w.GetCategory(), len(w.GetPoints()))
		}
		for j, p := range s.GetPoints() {
			if !proto.Equal(p, w.GetPoints()[j]) {
				return fmt.Sprintf("series %d point %d = %v, want %v", i, j, p, w.GetPoints()[j])
			}
		}
	}
	return "equal"
}
