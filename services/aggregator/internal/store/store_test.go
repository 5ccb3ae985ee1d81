package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/contract/keys"
	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

const (
	electronics = salesv1.Category_CATEGORY_ELECTRONICS
	clothing    = salesv1.Category_CATEGORY_CLOTHING
	home        = salesv1.Category_CATEGORY_HOME
	beauty      = salesv1.Category_CATEGORY_BEAUTY
)

// t0 is a whole minute, 2025-11-28T12:00:00Z, in Unix milliseconds; s0 is
// the same instant in seconds.
const (
	t0 = int64(1764331200000)
	s0 = t0 / 1000
)

const rateTTL = 25 * time.Hour

type fixture struct {
	client rueidis.Client
	store  *Store
	keys   keys.Keys
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	client, prefix := valkeytest.New(t)
	s := New(client, prefix, rateTTL)
	return &fixture{client: client, store: s, keys: s.Keys()}
}

type sale struct {
	offset   int64
	cat      salesv1.Category
	product  string
	price    int64
	qty      int64
	soldAt   int64 // Unix ms
	protocol string
	dead     bool // a dead letter instead of a sale
}

func delta(t testing.TB, partition int32, sales ...sale) *aggregate.Delta {
	t.Helper()
	d := aggregate.NewDelta("sales", partition)
	for _, s := range sales {
		if s.dead {
			if err := d.AddDeadLetter(s.offset); err != nil {
				t.Fatalf("AddDeadLetter(%d) = %v", s.offset, err)
			}
			continue
		}
		protocol := s.protocol
		if protocol == "" {
			protocol = "grpc"
		}
		err := d.Add(aggregate.Sale{
			Category: s.cat, ProductID: s.product, PriceCents: s.price, Quantity: s.qty,
			SaleID: fmt.Sprintf("id%d", s.offset), SoldAtMillis: s.soldAt, Protocol: protocol, Offset: s.offset,
		})
		if err != nil {
			t.Fatalf("Add(%+v) = %v", s, err)
		}
	}
	d.Finish()
	return d
}

// at is a position with no topic ID or epoch, as a broker without them
// gives.
func at(offset int64) Position { return Position{Offset: offset, Epoch: -1} }

func (f *fixture) apply(t *testing.T, d *aggregate.Delta, base int64) Outcome {
	t.Helper()
	got, err := f.store.Apply(t.Context(), d, at(base), at(d.Next))
	if err != nil {
		t.Fatalf("Apply(%s, base %d) = %v", keys.OffsetField(d.Topic, d.Partition), base, err)
	}
	return got
}

func (f *fixture) do(t *testing.T, cmd rueidis.Completed) {
	t.Helper()
	if err := f.client.Do(t.Context(), cmd).Error(); err != nil {
		t.Fatalf("%v = %v", cmd.Commands(), err)
	}
}

func (f *fixture) hash(t *testing.T, key string) map[string]string {
	t.Helper()
	m, err := f.client.Do(t.Context(), f.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatalf("HGETALL %s = %v", key, err)
	}
	return m
}

// zset renders a sorted set as "member=score" in rank order, with scores
// as exact integers.
func (f *fixture) zset(t *testing.T, key string) []string {
	t.Helper()
	zs, err := f.client.Do(t.Context(), f.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		t.Fatalf("ZRANGE %s = %v", key, err)
	}
	out := []string{}
	for _, z := range zs {
		out = append(out, z.Member+"="+strconv.FormatFloat(z.Score, 'f', -1, 64))
	}
	return out
}

func (f *fixture) stream(t *testing.T, key string) []map[string]string {
	t.Helper()
	entries, err := f.client.Do(t.Context(), f.client.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", key, err)
	}
	out := []map[string]string{}
	for _, e := range entries {
		out = append(out, e.FieldValues)
	}
	return out
}

func (f *fixture) snapshot(t *testing.T) map[string]string {
	t.Helper()
	snap, err := valkeytest.Snapshot(t.Context(), f.client, f.keys.Prefix())
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	return snap
}

func stats(sales, units, revenue, priceSum, minPrice, maxPrice int64) map[string]string {
	return map[string]string{
		"sales": strconv.FormatInt(sales, 10), "units": strconv.FormatInt(units, 10),
		"revenue_cents": strconv.FormatInt(revenue, 10), "price_sum_cents": strconv.FormatInt(priceSum, 10),
		"min_price_cents": strconv.FormatInt(minPrice, 10), "max_price_cents": strconv.FormatInt(maxPrice, 10),
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	m = maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// batchA and batchB are consecutive batches of partition 0.
func batchA(t testing.TB) *aggregate.Delta {
	return delta(t, 0,
		sale{offset: 0, cat: electronics, product: "E1", price: 1000, qty: 2, soldAt: t0 + 500},
		sale{offset: 1, cat: electronics, product: "E1", price: 1200, qty: 1, soldAt: t0 + 1500, protocol: "connect+json"},
		sale{offset: 2, cat: clothing, product: "C1", price: 5000, qty: 3, soldAt: t0 + 1500},
		sale{offset: 3, dead: true},
		sale{offset: 4, cat: home, product: "H1", price: 250, qty: 4, soldAt: t0 + 61000, protocol: "legacy-rest"},
	)
}

func batchB(t testing.TB) *aggregate.Delta {
	return delta(t, 0,
		sale{offset: 5, cat: electronics, product: "E1", price: 900, qty: 1, soldAt: t0 + 2500},
		sale{offset: 6, cat: home, product: "H1", price: 300, qty: 1, soldAt: t0 + 61000},
	)
}

func TestApplyWritesEveryKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.keys

	if got, want := f.apply(t, batchA(t), -1), (Outcome{Applied: true, Stored: 5}); got != want {
		t.Fatalf("Apply(batch A, -1) = %+v, want %+v", got, want)
	}
	sec := func(s int64) string { return strconv.FormatInt(s, 10) + ":" }
	checks := []struct {
		key  string
		got  func() any
		want any
	}{
		{k.Offsets(), func() any { return f.hash(t, k.Offsets()) }, map[string]string{"sales:0": "5"}},
		{k.Totals(), func() any { return f.hash(t, k.Totals()) },
			with(stats(4, 10, 2000+1200+15000+1000, 1000+1200+5000+250, 250, 5000), "dead_letters", "1")},
		{k.Category(electronics), func() any { return f.hash(t, k.Category(electronics)) }, stats(2, 3, 3200, 2200, 1000, 1200)},
		{k.Category(clothing), func() any { return f.hash(t, k.Category(clothing)) }, stats(1, 3, 15000, 5000, 5000, 5000)},
		{k.Category(home), func() any { return f.hash(t, k.Category(home)) }, stats(1, 4, 1000, 250, 250, 250)},
		{k.Category(beauty), func() any { return f.hash(t, k.Category(beauty)) }, map[string]string{}},
		{k.Ingest(), func() any { return f.hash(t, k.Ingest()) },
			map[string]string{"grpc": "2", "connect+json": "1", "legacy-rest": "1"}},
		{k.RankUnits(), func() any { return f.zset(t, k.RankUnits()) }, []string{"C1=3", "E1=3", "H1=4"}},
		{k.RankUnitsCategory(electronics), func() any { return f.zset(t, k.RankUnitsCategory(electronics)) }, []string{"E1=3"}},
		{k.RankUnitsCategory(clothing), func() any { return f.zset(t, k.RankUnitsCategory(clothing)) }, []string{"C1=3"}},
		{k.RankUnitsCategory(home), func() any { return f.zset(t, k.RankUnitsCategory(home)) }, []string{"H1=4"}},
		{k.Price("E1"), func() any { return f.zset(t, k.Price("E1")) }, []string{
			fmt.Sprintf("%d:1000:id0=%d", t0+500, t0+500),
			fmt.Sprintf("%d:1200:id1=%d", t0+1500, t0+1500),
		}},
		{k.Price("C1"), func() any { return f.zset(t, k.Price("C1")) }, []string{}},
		{k.PriceIndex(), func() any { return f.zset(t, k.PriceIndex()) }, []string{fmt.Sprintf("E1=%d", t0+1500)}},
		{k.Rate(electronics, s0), func() any { return f.hash(t, k.Rate(electronics, s0)) }, map[string]string{
			"sales": "2", "units": "3", "revenue_cents": "3200",
			sec(s0) + "sales": "1", sec(s0) + "units": "2", sec(s0) + "revenue_cents": "2000",
			sec(s0+1) + "sales": "1", sec(s0+1) + "units": "1", sec(s0+1) + "revenue_cents": "1200",
		}},
		{k.Rate(clothing, s0), func() any { return f.hash(t, k.Rate(clothing, s0)) }, map[string]string{
			"sales": "1", "units": "3", "revenue_cents": "15000",
			sec(s0+1) + "sales": "1", sec(s0+1) + "units": "3", sec(s0+1) + "revenue_cents": "15000",
		}},
		{k.Rate(home, s0+60), func() any { return f.hash(t, k.Rate(home, s0+60)) }, map[string]string{
			"sales": "1", "units": "4", "revenue_cents": "1000",
			sec(s0+61) + "sales": "1", sec(s0+61) + "units": "4", sec(s0+61) + "revenue_cents": "1000",
		}},
		{k.RateLog(electronics), func() any { return f.stream(t, k.RateLog(electronics)) },
			[]map[string]string{{"sales": "2", "units": "3", "revenue_cents": "3200"}}},
		{k.RateLog(clothing), func() any { return f.stream(t, k.RateLog(clothing)) },
			[]map[string]string{{"sales": "1", "units": "3", "revenue_cents": "15000"}}},
		{k.RateLog(home), func() any { return f.stream(t, k.RateLog(home)) },
			[]map[string]string{{"sales": "1", "units": "4", "revenue_cents": "1000"}}},
	}
	for _, c := range checks {
		if got := c.got(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("after batch A, %s = %v, want %v", c.key, got, c.want)
		}
	}
	keys, err := valkeytest.Keys(t.Context(), f.client, k.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 18 {
		t.Errorf("after batch A, %d keys = %v, want 18", len(keys), keys)
	}
	for _, key := range []string{k.Rate(electronics, s0), k.Rate(clothing, s0), k.Rate(home, s0+60)} {
		ttl, err := f.client.Do(t.Context(), f.client.B().Ttl().Key(key).Build()).AsInt64()
		if err != nil || ttl <= int64(rateTTL/time.Second)-60 || ttl > int64(rateTTL/time.Second) {
			t.Errorf("TTL %s = %d, %v, want about %d", key, ttl, err, int64(rateTTL/time.Second))
		}
	}

	if got, want := f.apply(t, batchB(t), 5), (Outcome{Applied: true, Stored: 7}); got != want {
		t.Fatalf("Apply(batch B, 5) = %+v, want %+v", got, want)
	}
	checks = []struct {
		key  string
		got  func() any
		want any
	}{
		{k.Offsets(), func() any { return f.hash(t, k.Offsets()) }, map[string]string{"sales:0": "7"}},
		{k.Totals(), func() any { return f.hash(t, k.Totals()) },
			with(stats(6, 12, 20400, 8650, 250, 5000), "dead_letters", "1")},
		{k.Category(electronics), func() any { return f.hash(t, k.Category(electronics)) }, stats(3, 4, 4100, 3100, 900, 1200)},
		{k.Category(home), func() any { return f.hash(t, k.Category(home)) }, stats(2, 5, 1300, 550, 250, 300)},
		{k.Ingest(), func() any { return f.hash(t, k.Ingest()) },
			map[string]string{"grpc": "4", "connect+json": "1", "legacy-rest": "1"}},
		{k.RankUnits(), func() any { return f.zset(t, k.RankUnits()) }, []string{"C1=3", "E1=4", "H1=5"}},
		{k.Price("E1"), func() any { return f.zset(t, k.Price("E1")) }, []string{
			fmt.Sprintf("%d:1000:id0=%d", t0+500, t0+500),
			fmt.Sprintf("%d:1200:id1=%d", t0+1500, t0+1500),
			fmt.Sprintf("%d:900:id5=%d", t0+2500, t0+2500),
		}},
		{k.PriceIndex(), func() any { return f.zset(t, k.PriceIndex()) }, []string{fmt.Sprintf("E1=%d", t0+2500)}},
		{k.Rate(home, s0+60), func() any { return f.hash(t, k.Rate(home, s0+60)) }, map[string]string{
			"sales": "2", "units": "5", "revenue_cents": "1300",
			sec(s0+61) + "sales": "2", sec(s0+61) + "units": "5", sec(s0+61) + "revenue_cents": "1300",
		}},
		{k.RateLog(home), func() any { return f.stream(t, k.RateLog(home)) }, []map[string]string{
			{"sales": "1", "units": "4", "revenue_cents": "1000"},
			{"sales": "1", "units": "1", "revenue_cents": "300"},
		}},
		{k.RateLog(clothing), func() any { return f.stream(t, k.RateLog(clothing)) },
			[]map[string]string{{"sales": "1", "units": "3", "revenue_cents": "15000"}}},
	}
	for _, c := range checks {
		if got := c.got(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("after batch B, %s = %v, want %v", c.key, got, c.want)
		}
	}
}

func TestApplyPriceHistoryKeepsTwenty(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	points := func(first, n int64) []sale {
		var out []sale
		for i := first; i < first+n; i++ {
			out = append(out, sale{offset: i, cat: electronics, product: "E2", price: 100 + i, qty: 1, soldAt: t0 + i*1000})
		}
		return out
	}
	f.apply(t, delta(t, 1, points(0, 15)...), -1)
	// The second batch holds an old sale (sold before everything stored),
	// which must be the one trimmed, not a newer one.
	second := append(points(15, 15), sale{offset: 30, cat: electronics, product: "E2", price: 1, qty: 1, soldAt: t0 - 5000})
	f.apply(t, delta(t, 1, second...), 15)
	var want []string
	for i := int64(10); i < 30; i++ {
		want = append(want, fmt.Sprintf("%d:%d:id%d=%d", t0+i*1000, 100+i, i, t0+i*1000))
	}
	if got := f.zset(t, f.keys.Price("E2")); !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", f.keys.Price("E2"), got, want)
	}
}

func TestApplyReplayIsNoop(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.apply(t, batchA(t), -1)
	before := f.snapshot(t)
	tests := []struct {
		name string
		d    *aggregate.Delta
		base int64
	}{
		{name: "same batch, same base", d: batchA(t), base: -1},
		{name: "later batch, stale base", d: batchB(t), base: 0},
	}
	for _, tt := range tests {
		got := f.apply(t, tt.d, tt.base)
		if want := (Outcome{Applied: false, Stored: 5}); got != want {
			t.Errorf("%s: Apply() = %+v, want %+v", tt.name, got, want)
		}
		if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
			t.Errorf("%s: Apply() wrote %v, want nothing changed from %v", tt.name, after, before)
		}
	}
}

func TestApplyConflictWritesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stored string // "" for none
		base   int64
		want   Outcome
	}{
		{name: "valkey lost the offset", stored: "", base: 3, want: Outcome{Stored: -1}},
		{name: "another consumer moved ahead", stored: "10", base: 2, want: Outcome{Stored: 10}},
		{name: "first batch but an offset exists", stored: "10", base: -1, want: Outcome{Stored: 10}},
		{name: "valkey restored from an older snapshot", stored: "1", base: 3, want: Outcome{Stored: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if tt.stored != "" {
				f.do(t, f.client.B().Hset().Key(f.keys.Offsets()).FieldValue().FieldValue("sales:0", tt.stored).Build())
			}
			before := f.snapshot(t)
			d := delta(t, 0,
				sale{offset: 20, cat: home, product: "H1", price: 250, qty: 4, soldAt: t0},
				sale{offset: 21, dead: true},
			)
			if got := f.apply(t, d, tt.base); got != tt.want {
				t.Errorf("Apply(base %d) with stored %q = %+v, want %+v", tt.base, tt.stored, got, tt.want)
			}
			if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
				t.Errorf("Apply(base %d) with stored %q wrote %v, want %v", tt.base, tt.stored, after, before)
			}
		})
	}
}

func TestApplyGuardWritesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		prep func(b rueidis.Builder, k keys.Keys) rueidis.Completed
		// wantGuard is false for the control case that must apply.
		wantGuard bool
	}{
		{
			name: "counter reaches exactly MaxInt64",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Category(home)).FieldValue().FieldValue("revenue_cents", "9223372036854774807").Build()
			},
		},
		{
			name: "counter would pass MaxInt64",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Category(home)).FieldValue().FieldValue("revenue_cents", "9223372036854774808").Build()
			},
			wantGuard: true,
		},
		{
			name: "sales count at MaxInt64",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Totals()).FieldValue().FieldValue("sales", "9223372036854775807").Build()
			},
			wantGuard: true,
		},
		{
			name: "dead letters at MaxInt64",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Totals()).FieldValue().FieldValue("dead_letters", "9223372036854775807").Build()
			},
			wantGuard: true,
		},
		{
			name: "rate counter not an integer",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Rate(home, s0)).FieldValue().FieldValue(strconv.FormatInt(s0, 10)+":units", "1.5").Build()
			},
			wantGuard: true,
		},
		{
			name: "min price not an integer",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.Totals()).FieldValue().FieldValue("min_price_cents", "cheap").Build()
			},
			wantGuard: true,
		},
		{
			name: "ranking score would pass 2^53",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Zadd().Key(k.RankUnits()).ScoreMember().ScoreMember(9007199254740990, "H1").Build()
			},
			wantGuard: true,
		},
		{
			// The sum, 2^53 + 1, rounds to 2^53 as a double.
			name: "ranking score at 2^53, one more unit",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Zadd().Key(k.RankUnits()).ScoreMember().ScoreMember(9007199254740992, "B1").Build()
			},
			wantGuard: true,
		},
		{
			name: "ranking score reaches exactly 2^53",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Zadd().Key(k.RankUnits()).ScoreMember().ScoreMember(9007199254740991, "B1").Build()
			},
		},
		{
			name: "offsets is not a hash",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Set().Key(k.Offsets()).Value("x").Build()
			},
			wantGuard: true,
		},
		{
			name: "ingest is not a hash",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Set().Key(k.Ingest()).Value("x").Build()
			},
			wantGuard: true,
		},
		{
			name: "category ranking is not a sorted set",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Set().Key(k.RankUnitsCategory(home)).Value("x").Build()
			},
			wantGuard: true,
		},
		{
			name: "price history is not a sorted set",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Set().Key(k.Price("E1")).Value("x").Build()
			},
			wantGuard: true,
		},
		{
			name: "price index is not a sorted set",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Hset().Key(k.PriceIndex()).FieldValue().FieldValue("E1", "1").Build()
			},
			wantGuard: true,
		},
		{
			name: "ratelog is not a stream",
			prep: func(b rueidis.Builder, k keys.Keys) rueidis.Completed {
				return b.Set().Key(k.RateLog(beauty)).Value("x").Build()
			},
			wantGuard: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.do(t, tt.prep(f.client.B(), f.keys))
			before := f.snapshot(t)
			d := delta(t, 0,
				sale{offset: 0, cat: electronics, product: "E1", price: 1000, qty: 2, soldAt: t0},
				sale{offset: 1, cat: home, product: "H1", price: 250, qty: 4, soldAt: t0},
				sale{offset: 2, cat: beauty, product: "B1", price: 99, qty: 1, soldAt: t0},
				sale{offset: 3, dead: true},
			)
			got, err := f.store.Apply(t.Context(), d, at(-1), at(d.Next))
			if !tt.wantGuard {
				if err != nil || !got.Applied {
					t.Fatalf("Apply() = %+v, %v, want applied", got, err)
				}
				return
			}
			if !errors.Is(err, ErrGuard) {
				t.Errorf("Apply() = %+v, %v, want ErrGuard", got, err)
			}
			if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
				t.Errorf("Apply() refused but wrote %v, want %v", after, before)
			}
		})
	}
}

func TestApplyManyProducts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// More distinct products than apply.lua sends in one command, so the
	// chunked reads and writes are exercised.
	const products = 2500
	batch := func(first int64) *aggregate.Delta {
		var sales []sale
		for i := range int64(products) {
			sales = append(sales, sale{
				offset: first + i, cat: salesv1.Category(1 + i%4), product: fmt.Sprintf("P%04d", i),
				price: 100, qty: 1 + i%3, soldAt: t0 + i,
			})
		}
		return delta(t, 4, sales...)
	}
	f.apply(t, batch(0), -1)
	f.apply(t, batch(products), products)
	ranking := f.zset(t, f.keys.RankUnits())
	if len(ranking) != products {
		t.Fatalf("ZCARD %s = %d, want %d", f.keys.RankUnits(), len(ranking), products)
	}
	for _, i := range []int{0, 1, 2, 1234, products - 1} {
		id := fmt.Sprintf("P%04d", i)
		want := id + "=" + strconv.Itoa(2*(1+i%3))
		if !slices.Contains(ranking, want) {
			t.Errorf("%s has no %s", f.keys.RankUnits(), want)
		}
	}
	wantUnits := int64(0)
	for i := range int64(products) {
		wantUnits += 2 * (1 + i%3)
	}
	if got := f.hash(t, f.keys.Totals())["units"]; got != strconv.FormatInt(wantUnits, 10) {
		t.Errorf("%s units = %s, want %d", f.keys.Totals(), got, wantUnits)
	}
	if got := len(f.zset(t, f.keys.PriceIndex())); got != products/4 {
		t.Errorf("ZCARD %s = %d, want %d", f.keys.PriceIndex(), got, products/4)
	}
}

func TestLoadOffsets(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.do(t, f.client.B().Hset().Key(f.keys.Offsets()).FieldValue().
		FieldValue("sales:0", "5").FieldValue("sales:2", "0").FieldValue("other:1", "9").Build())
	tests := []struct {
		partitions []int32
		want       map[int32]int64
	}{
		{partitions: []int32{0, 1, 2}, want: map[int32]int64{0: 5, 1: -1, 2: 0}},
		{partitions: []int32{1}, want: map[int32]int64{1: -1}},
		{partitions: nil, want: map[int32]int64{}},
	}
	for _, tt := range tests {
		got, err := f.store.LoadOffsets(t.Context(), "sales", tt.partitions)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("LoadOffsets(sales, %v) = %v, %v, want %v", tt.partitions, got, err, tt.want)
		}
	}
	f.do(t, f.client.B().Hset().Key(f.keys.Offsets()).FieldValue().FieldValue("sales:3", "x").Build())
	if got, err := f.store.LoadOffsets(t.Context(), "sales", []int32{3}); err == nil {
		t.Errorf("LoadOffsets(sales, [3]) with a garbage offset = %v, nil, want an error", got)
	}
}

func TestApplyRejectsEmptyOrBackwardsBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.store.Apply(ctx, aggregate.NewDelta("sales", 0), at(-1), at(-1)); err == nil {
		t.Errorf("Apply(empty delta) = nil, want an error")
	}
	if _, err := f.store.Apply(ctx, batchA(t), at(5), at(5)); err == nil {
		t.Errorf("Apply(batch ending at 5, base 5) = nil, want an error")
	}
}

func TestApplyRemembersSaleIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	key := f.keys.Seen("sales", 0)
	seenDelta := func(first int64, trimBefore int64, ids ...string) *aggregate.Delta {
		d := aggregate.NewDelta("sales", 0)
		d.Seen = map[aggregate.SaleKey]int64{}
		for i, id := range ids {
			off := first + int64(i)
			if err := d.Add(aggregate.Sale{Category: home, ProductID: "H1", PriceCents: 100, Quantity: 1,
				SaleID: id, SoldAtMillis: t0, Protocol: "grpc", Offset: off}); err != nil {
				t.Fatal(err)
			}
			d.Seen[aggregate.KeyOf(id)] = t0 + off*1000
		}
		if err := d.AddDuplicate(first + int64(len(ids))); err != nil {
			t.Fatal(err)
		}
		d.SeenTrimBefore = trimBefore
		d.Finish()
		return d
	}
	f.apply(t, seenDelta(0, 0, "a", "b", "c"), -1)
	// The second batch forgets the members whose newest sale is before
	// t0+500ms: none, since a shares its member with b and c.
	f.apply(t, seenDelta(4, t0+500, "d"), 4)

	want := map[aggregate.SaleKey]int64{
		aggregate.KeyOf("a"): t0, aggregate.KeyOf("b"): t0 + 1000, aggregate.KeyOf("c"): t0 + 2000, aggregate.KeyOf("d"): t0 + 4000,
	}
	offset, got, err := f.store.LoadSeen(ctx, "sales", 0)
	if err != nil || offset != 6 || !maps.Equal(got.Seen(), want) {
		t.Fatalf("LoadSeen(partition 0) = %d, %v, %v, want 6, %v", offset, got.Seen(), err, want)
	}
	if offset, got, err := f.store.LoadSeen(ctx, "sales", 1); err != nil || offset != -1 || got.Len() != 0 {
		t.Errorf("LoadSeen(partition 1) = %d, %v, %v, want -1 and nothing: dedup is per partition", offset, got, err)
	}
	if got := f.hash(t, f.keys.Totals())["duplicates"]; got != "2" {
		t.Errorf("HGET %s duplicates = %q, want 2", f.keys.Totals(), got)
	}
	// One member per batch, scored by its newest record timestamp: the
	// first batch's (a, b, c) stays until all three are too old.
	members, err := f.client.Do(ctx, f.client.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil || len(members) != 2 || members[0].Score != float64(t0+2000) || len(members[0].Member) != 8+3*24 ||
		members[1].Score != float64(t0+4000) || len(members[1].Member) != 16+8 {
		t.Errorf("ZRANGE %s WITHSCORES = %d members, %v, want 2: 3 sales scored %d, then 1 (key and offset) scored %d", key, len(members), err, t0+2000, t0+4000)
	}
	// A third batch forgets the first member, whose newest sale is older
	// than its bound.
	f.apply(t, seenDelta(6, t0+2001, "e"), 6)
	delete(want, aggregate.KeyOf("a"))
	delete(want, aggregate.KeyOf("b"))
	delete(want, aggregate.KeyOf("c"))
	want[aggregate.KeyOf("e")] = t0 + 6000
	if offset, got, err := f.store.LoadSeen(ctx, "sales", 0); err != nil || offset != 8 || !maps.Equal(got.Seen(), want) {
		t.Errorf("LoadSeen() = %d, %v, %v, want 8, %v", offset, got.Seen(), err, want)
	}

	// Members written by the former format (a bare 16-byte key scored by
	// its record timestamp) are read and age out the same way.
	legacy := aggregate.KeyOf("legacy")
	f.do(t, f.client.B().Zadd().Key(key).ScoreMember().ScoreMember(float64(t0+5000), string(legacy[:])).Build())
	want[legacy] = t0 + 5000
	if _, got, err := f.store.LoadSeen(ctx, "sales", 0); err != nil || !maps.Equal(got.Seen(), want) {
		t.Errorf("LoadSeen() with a former member = %v, %v, want %v", got.Seen(), err, want)
	}

	// A conflicting batch remembers nothing either.
	before := f.snapshot(t)
	if out := f.apply(t, seenDelta(20, t0+99000, "x"), 3); out.Applied {
		t.Fatalf("Apply(stale base) = %+v, want a conflict", out)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
		t.Errorf("a conflicting Apply() wrote %v, want %v", after, before)
	}

	// A dedup set of the wrong type is refused before anything is written.
	f.do(t, f.client.B().Del().Key(key).Build())
	f.do(t, f.client.B().Set().Key(key).Value("x").Build())
	if _, _, err := f.store.LoadSeen(ctx, "sales", 0); !errors.Is(err, ErrGuard) {
		t.Errorf("LoadSeen() on a string key = %v, want ErrGuard", err)
	}
	before = f.snapshot(t)
	if _, err := f.store.Apply(ctx, seenDelta(8, 0, "y"), at(8), at(10)); !errors.Is(err, ErrGuard) {
		t.Errorf("Apply() with a string dedup key = %v, want ErrGuard", err)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
		t.Errorf("a refused Apply() wrote %v, want %v", after, before)
	}
}
