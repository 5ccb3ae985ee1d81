package aggregate

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

const (
	electronics = salesv1.Category_CATEGORY_ELECTRONICS
	clothing    = salesv1.Category_CATEGORY_CLOTHING
	home        = salesv1.Category_CATEGORY_HOME
	beauty      = salesv1.Category_CATEGORY_BEAUTY
)

// t0 is a whole minute, 2025-11-28T12:00:00Z, in Unix milliseconds.
const t0 = int64(1764331200000)

func sale(offset int64, cat salesv1.Category, product string, price, qty int64, soldAtMillis int64) Sale {
	return Sale{
		Category:     cat,
		ProductID:    product,
		PriceCents:   price,
		Quantity:     qty,
		SaleID:       fmt.Sprintf("s%d", offset),
		SoldAtMillis: soldAtMillis,
		Protocol:     "grpc",
		Offset:       offset,
	}
}

func fold(t *testing.T, sales ...Sale) *Delta {
	t.Helper()
	d := NewDelta("sales", 3)
	for _, s := range sales {
		if err := d.Add(s); err != nil {
			t.Fatalf("Add(%+v) = %v, want nil", s, err)
		}
	}
	d.Finish()
	return d
}

func TestDeltaSums(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sales     []Sale
		wantTotal Stats
		wantCats  map[salesv1.Category]Stats
		wantUnits map[string]int64
		wantByCat map[salesv1.Category]map[string]int64
		wantNext  int64
	}{
		{
			name:      "one sale",
			sales:     []Sale{sale(7, home, "H1", 1999, 3, t0)},
			wantTotal: Stats{Sales: 1, Units: 3, RevenueCents: 5997, PriceSumCents: 1999, MinPriceCents: 1999, MaxPriceCents: 1999},
			wantCats: map[salesv1.Category]Stats{
				home: {Sales: 1, Units: 3, RevenueCents: 5997, PriceSumCents: 1999, MinPriceCents: 1999, MaxPriceCents: 1999},
			},
			wantUnits: map[string]int64{"H1": 3},
			wantByCat: map[salesv1.Category]map[string]int64{home: {"H1": 3}},
			wantNext:  8,
		},
		{
			name: "categories and products",
			sales: []Sale{
				sale(0, electronics, "E1", 100000, 1, t0),
				sale(1, electronics, "E2", 250, 4, t0+10),
				sale(2, clothing, "C1", 4999, 2, t0+20),
				sale(3, electronics, "E1", 99999, 2, t0+30),
				sale(4, beauty, "B1", 1, 10000, t0+40),
				// The same product id in two categories stays apart in the
				// per-category rankings but adds up overall.
				sale(5, clothing, "E2", 300, 1, t0+50),
			},
			wantTotal: Stats{Sales: 6, Units: 10010, RevenueCents: 100000 + 1000 + 9998 + 199998 + 10000 + 300,
				PriceSumCents: 100000 + 250 + 4999 + 99999 + 1 + 300, MinPriceCents: 1, MaxPriceCents: 100000},
			wantCats: map[salesv1.Category]Stats{
				electronics: {Sales: 3, Units: 7, RevenueCents: 100000 + 1000 + 199998, PriceSumCents: 100000 + 250 + 99999, MinPriceCents: 250, MaxPriceCents: 100000},
				clothing:    {Sales: 2, Units: 3, RevenueCents: 9998 + 300, PriceSumCents: 4999 + 300, MinPriceCents: 300, MaxPriceCents: 4999},
				beauty:      {Sales: 1, Units: 10000, RevenueCents: 10000, PriceSumCents: 1, MinPriceCents: 1, MaxPriceCents: 1},
			},
			wantUnits: map[string]int64{"E1": 3, "E2": 5, "C1": 2, "B1": 10000},
			wantByCat: map[salesv1.Category]map[string]int64{
				electronics: {"E1": 3, "E2": 4},
				clothing:    {"C1": 2, "E2": 1},
				beauty:      {"B1": 10000},
			},
			wantNext: 6,
		},
		{
			name: "largest valid sales",
			sales: []Sale{
				sale(10, home, "H1", 100000000, 10000, t0),
				sale(11, home, "H1", 100000000, 10000, t0),
			},
			wantTotal: Stats{Sales: 2, Units: 20000, RevenueCents: 2000000000000, PriceSumCents: 200000000, MinPriceCents: 100000000, MaxPriceCents: 100000000},
			wantCats: map[salesv1.Category]Stats{
				home: {Sales: 2, Units: 20000, RevenueCents: 2000000000000, PriceSumCents: 200000000, MinPriceCents: 100000000, MaxPriceCents: 100000000},
			},
			wantUnits: map[string]int64{"H1": 20000},
			wantByCat: map[salesv1.Category]map[string]int64{home: {"H1": 20000}},
			wantNext:  12,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := fold(t, tt.sales...)
			if d.Totals != tt.wantTotal {
				t.Errorf("Totals = %+v, want %+v", d.Totals, tt.wantTotal)
			}
			gotCats := make(map[salesv1.Category]Stats)
			gotByCat := make(map[salesv1.Category]map[string]int64)
			for c, cd := range d.Categories {
				gotCats[c] = cd.Stats
				gotByCat[c] = cd.Units
			}
			if !reflect.DeepEqual(gotCats, tt.wantCats) {
				t.Errorf("Categories = %+v, want %+v", gotCats, tt.wantCats)
			}
			if !reflect.DeepEqual(d.Units, tt.wantUnits) {
				t.Errorf("Units = %v, want %v", d.Units, tt.wantUnits)
			}
			if !reflect.DeepEqual(gotByCat, tt.wantByCat) {
				t.Errorf("category Units = %v, want %v", gotByCat, tt.wantByCat)
			}
			if d.Next != tt.wantNext {
				t.Errorf("Next = %d, want %d", d.Next, tt.wantNext)
			}
			if want := map[string]int64{"grpc": int64(len(tt.sales))}; !reflect.DeepEqual(d.Ingest, want) {
				t.Errorf("Ingest = %v, want %v", d.Ingest, want)
			}
		})
	}
}

func TestDeltaPriceHistory(t *testing.T) {
	t.Parallel()
	// points builds n electronics sales of one product, offsets from first,
	// each a second later than the previous unless soldAt says otherwise.
	points := func(product string, first, n int64) []Sale {
		var out []Sale
		for i := range n {
			out = append(out, sale(first+i, electronics, product, 1000+i, 1, t0+i*1000))
		}
		return out
	}
	tests := []struct {
		name  string
		sales []Sale
		// want maps product to the offsets kept, oldest first.
		want map[string][]int64
	}{
		{
			name:  "fewer than 20",
			sales: points("E1", 0, 3),
			want:  map[string][]int64{"E1": {0, 1, 2}},
		},
		{
			name:  "keeps the last 20 of 25",
			sales: points("E1", 100, 25),
			want:  map[string][]int64{"E1": seq(105, 125)},
		},
		{
			name:  "trims along the way and keeps the last 20 of 500",
			sales: points("E1", 0, 500),
			want:  map[string][]int64{"E1": seq(480, 500)},
		},
		{
			name: "orders by sold_at, then offset",
			sales: func() []Sale {
				s := points("E1", 0, 22)
				// Offset 0 was sold last; offsets 1 and 2 tie on sold_at
				// with 21, which has the greater offset.
				s[0].SoldAtMillis = t0 + 100000
				s[1].SoldAtMillis = s[21].SoldAtMillis
				s[2].SoldAtMillis = s[21].SoldAtMillis
				return s
			}(),
			want: map[string][]int64{"E1": append(seq(5, 21), 1, 2, 21, 0)},
		},
		{
			name: "only electronics",
			sales: []Sale{
				sale(0, clothing, "C1", 500, 1, t0),
				sale(1, electronics, "E9", 700, 1, t0),
				sale(2, home, "H1", 500, 1, t0),
			},
			want: map[string][]int64{"E9": {1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := fold(t, tt.sales...)
			got := make(map[string][]int64)
			for id, pts := range d.Prices {
				for _, p := range pts {
					got[id] = append(got[id], p.Offset)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Prices offsets = %v, want %v", got, tt.want)
			}
		})
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestDeltaRates(t *testing.T) {
	t.Parallel()
	d := fold(t,
		sale(0, home, "H1", 100, 2, t0+59999),   // 12:00:59.999
		sale(1, home, "H2", 300, 1, t0+59000),   // 12:00:59
		sale(2, home, "H1", 100, 5, t0+60000),   // 12:01:00
		sale(3, beauty, "B1", 250, 4, t0+60500), // 12:01:00.5
		sale(4, home, "H1", 100, 1, t0-1),       // 11:59:59.999
	)
	s0 := t0 / 1000
	want := map[RateKey]RateMinute{
		{Category: home, Minute: s0 - 60}: {
			Counts:  Counts{Sales: 1, Units: 1, RevenueCents: 100},
			Seconds: map[int64]*Counts{s0 - 1: {Sales: 1, Units: 1, RevenueCents: 100}},
		},
		{Category: home, Minute: s0}: {
			Counts:  Counts{Sales: 2, Units: 3, RevenueCents: 500},
			Seconds: map[int64]*Counts{s0 + 59: {Sales: 2, Units: 3, RevenueCents: 500}},
		},
		{Category: home, Minute: s0 + 60}: {
			Counts:  Counts{Sales: 1, Units: 5, RevenueCents: 500},
			Seconds: map[int64]*Counts{s0 + 60: {Sales: 1, Units: 5, RevenueCents: 500}},
		},
		{Category: beauty, Minute: s0 + 60}: {
			Counts:  Counts{Sales: 1, Units: 4, RevenueCents: 1000},
			Seconds: map[int64]*Counts{s0 + 60: {Sales: 1, Units: 4, RevenueCents: 1000}},
		},
	}
	got := make(map[RateKey]RateMinute)
	for k, v := range d.Rates {
		got[k] = *v
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Rates = %s, want %s", dumpRates(got), dumpRates(want))
	}
}

func dumpRates(m map[RateKey]RateMinute) string {
	s := ""
	for k, v := range m {
		s += fmt.Sprintf("{%v %d: %+v", k.Category, k.Minute, v.Counts)
		for sec, c := range v.Seconds {
			s += fmt.Sprintf(" %d=%+v", sec, *c)
		}
		s += "} "
	}
	return s
}

func TestDeltaOverflow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		prep  func(*Delta)
		sales []Sale
	}{
		{
			name:  "price times quantity",
			sales: []Sale{sale(0, home, "H1", math.MaxInt64/2+1, 2, t0)},
		},
		{
			name: "revenue sum",
			sales: []Sale{
				sale(0, home, "H1", math.MaxInt64/4, 3, t0),
				sale(1, home, "H1", math.MaxInt64/4, 3, t0),
			},
		},
		{
			name: "price sum",
			sales: []Sale{
				sale(0, home, "H1", math.MaxInt64-1, 1, t0),
				sale(1, home, "H2", math.MaxInt64-1, 1, t0),
			},
		},
		{
			name: "units",
			sales: []Sale{
				sale(0, home, "H1", 1, math.MaxInt64, t0),
				sale(1, beauty, "H1", 1, 1, t0+1),
			},
		},
		{
			name:  "sales count",
			prep:  func(d *Delta) { d.Totals.Sales = math.MaxInt64 },
			sales: []Sale{sale(0, home, "H1", 1, 1, t0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDelta("sales", 0)
			if tt.prep != nil {
				tt.prep(d)
			}
			var err error
			for _, s := range tt.sales {
				if err = d.Add(s); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrOverflow) {
				t.Errorf("Add(...) = %v, want ErrOverflow", err)
			}
		})
	}

	t.Run("dead letters", func(t *testing.T) {
		t.Parallel()
		d := NewDelta("sales", 0)
		d.DeadLetters = math.MaxInt64
		if err := d.AddDeadLetter(0); !errors.Is(err, ErrOverflow) {
			t.Errorf("AddDeadLetter(0) = %v, want ErrOverflow", err)
		}
	})
}
