package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// agg is the exact aggregate of a set of sales.
type agg struct {
	sales, units, revenue, priceSum, min, max int64
}

func (a *agg) add(s *salesv1.Sale) {
	p, q := s.GetPriceCents(), int64(s.GetQuantity())
	a.sales++
	a.units += q
	a.revenue += p * q
	a.priceSum += p
	if a.min == 0 || p < a.min {
		a.min = p
	}
	if p > a.max {
		a.max = p
	}
}

// truth is the ground truth: every sale the api acknowledged.
type truth struct {
	mu       sync.Mutex
	total    agg
	cats     map[salesv1.Category]*agg
	products map[string]int64
	catProds map[salesv1.Category]map[string]int64
	ingest   map[string]int64
}

func newTruth() *truth {
	return &truth{
		cats:     map[salesv1.Category]*agg{},
		products: map[string]int64{},
		catProds: map[salesv1.Category]map[string]int64{},
		ingest:   map[string]int64{},
	}
}

// acked records a sale the api acknowledged through the given protocol.
func (tr *truth) acked(s *salesv1.Sale, protocol string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.total.add(s)
	c := s.GetCategory()
	if tr.cats[c] == nil {
		tr.cats[c] = &agg{}
		tr.catProds[c] = map[string]int64{}
	}
	tr.cats[c].add(s)
	tr.products[s.GetProductId()] += int64(s.GetQuantity())
	tr.catProds[c][s.GetProductId()] += int64(s.GetQuantity())
	tr.ingest[protocol]++
}

func (tr *truth) count() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.total.sales
}

// saleGen makes reproducible, realistic sales: skewed product popularity and
// price ranges per category.
type saleGen struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newSaleGen(seed uint64) *saleGen {
	return &saleGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *saleGen) next() *salesv1.Sale {
	g.mu.Lock()
	defer g.mu.Unlock()
	cat := salesv1.Category(1 + g.rng.IntN(4))
	maxPrice := map[salesv1.Category]int{1: 250000, 2: 15000, 3: 60000, 4: 8000}[cat]
	// Zipf-like popularity: low product numbers sell far more often.
	n := int(float64(40) * g.rng.Float64() * g.rng.Float64())
	return &salesv1.Sale{
		Category:   cat,
		ProductId:  fmt.Sprintf("%s-%d", strings.ToUpper(keys.CategoryName(cat)[:3]), n),
		PriceCents: int64(99 + g.rng.IntN(maxPrice)),
		Quantity:   int32(1 + g.rng.IntN(5)),
	}
}

// waitForTruth polls GetSummary until it equals the ground truth exactly,
// then checks the same figures directly in Valkey.
func waitForTruth(ctx context.Context, t *testing.T, s *stack, tr *truth) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		got := getSummaryJSON(ctx, t, s)
		diff := summaryDiff(got, tr)
		if diff == "" {
			break
		}
		if diff != last {
			t.Logf("waiting for the aggregates: %s", diff)
			last = diff
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GetSummary never matched the %d acknowledged sales: %s", tr.count(), diff)
		case <-time.After(200 * time.Millisecond):
		}
	}
	checkValkey(ctx, t, s, tr)
}

// summaryDiff returns "" when the summary equals the ground truth, or the
// first difference.
func summaryDiff(got *salesv1.GetSummaryResponse, tr *truth) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	check := func(name string, got, want int64) string {
		if got != want {
			return fmt.Sprintf("%s = %d, want %d", name, got, want)
		}
		return ""
	}
	for _, c := range []string{
		check("sales", got.GetSales(), tr.total.sales),
		check("units", got.GetUnits(), tr.total.units),
		check("revenue_cents", got.GetRevenueCents(), tr.total.revenue),
		check("min_price_cents", got.GetMinPriceCents(), tr.total.min),
		check("max_price_cents", got.GetMaxPriceCents(), tr.total.max),
	} {
		if c != "" {
			return c
		}
	}
	if len(got.GetCategories()) != 4 {
		return fmt.Sprintf("len(categories) = %d, want 4", len(got.GetCategories()))
	}
	for i, c := range got.GetCategories() {
		wantCat := salesv1.Category(i + 1)
		if c.GetCategory() != wantCat {
			return fmt.Sprintf("categories[%d] = %v, want %v", i, c.GetCategory(), wantCat)
		}
		w := tr.cats[wantCat]
		if w == nil {
			w = &agg{}
		}
		name := keys.CategoryName(wantCat)
		for _, d := range []string{
			check(name+".sales", c.GetSales(), w.sales),
			check(name+".units", c.GetUnits(), w.units),
			check(name+".revenue_cents", c.GetRevenueCents(), w.revenue),
			check(name+".price_sum_cents", c.GetPriceSumCents(), w.priceSum),
			check(name+".min_price_cents", c.GetMinPriceCents(), w.min),
			check(name+".max_price_cents", c.GetMaxPriceCents(), w.max),
		} {
			if d != "" {
				return d
			}
		}
		if w.sales > 0 {
			if want := float64(w.priceSum) / float64(w.sales); c.GetAvgPriceCents() != want {
				return fmt.Sprintf("%s.avg_price_cents = %v, want %v", name, c.GetAvgPriceCents(), want)
			}
			if want := float64(w.units) / float64(w.sales); c.GetAvgQuantity() != want {
				return fmt.Sprintf("%s.avg_quantity = %v, want %v", name, c.GetAvgQuantity(), want)
			}
			if d := sellerDiff(name+".best_seller", c.GetBestSeller(), tr.catProds[wantCat], true); d != "" {
				return d
			}
			if d := sellerDiff(name+".worst_seller", c.GetWorstSeller(), tr.catProds[wantCat], false); d != "" {
				return d
			}
		}
	}
	if tr.total.sales > 0 {
		if d := sellerDiff("best_seller", got.GetBestSeller(), tr.products, true); d != "" {
			return d
		}
		if d := sellerDiff("worst_seller", got.GetWorstSeller(), tr.products, false); d != "" {
			return d
		}
	}
	return ""
}

// sellerDiff checks a best or worst seller: its units must be the extreme,
// and the product must be one of those with that many units (ties are broken
// by the server).
func sellerDiff(name string, got interface {
	GetProductId() string
	GetUnits() int64
}, units map[string]int64, best bool) string {
	var want int64 = -1
	for _, u := range units {
		if want < 0 || (best && u > want) || (!best && u < want) {
			want = u
		}
	}
	if got.GetUnits() != want || units[got.GetProductId()] != want {
		return fmt.Sprintf("%s = %s with %d units, want a product with %d units (truth has %s at %d)",
			name, got.GetProductId(), got.GetUnits(), want, got.GetProductId(), units[got.GetProductId()])
	}
	return ""
}

// checkValkey reads the aggregates straight from Valkey, by the key schema in
// docs/valkey-keys.md, and compares them with the ground truth.
func checkValkey(ctx context.Context, t *testing.T, s *stack, tr *truth) {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.valkey}, DisableCache: true,
		Username: s.valkeyUser, Password: s.valkeyPassword})
	if err != nil {
		t.Fatalf("valkey client: %v", err)
	}
	defer c.Close()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	k := keys.New(s.prefix)
	hash := func(key string) map[string]string {
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatalf("HGETALL %s: %v", key, err)
		}
		return m
	}
	want := func(key string, a agg) {
		got := hash(key)
		for field, w := range map[string]int64{
			keys.FieldSales: a.sales, keys.FieldUnits: a.units, keys.FieldRevenueCents: a.revenue,
			keys.FieldPriceSumCents: a.priceSum, keys.FieldMinPriceCents: a.min, keys.FieldMaxPriceCents: a.max,
		} {
			if got[field] != strconv.FormatInt(w, 10) {
				t.Errorf("HGET %s %s = %q, want %d", key, field, got[field], w)
			}
		}
	}
	want(k.Totals(), tr.total)
	for cat, a := range tr.cats {
		want(k.Category(cat), *a)
	}
	ranks, err := c.Do(ctx, c.B().Zrange().Key(k.RankUnits()).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		t.Fatalf("ZRANGE %s: %v", k.RankUnits(), err)
	}
	if len(ranks) != len(tr.products) {
		t.Errorf("ZCARD %s = %d, want %d products", k.RankUnits(), len(ranks), len(tr.products))
	}
	for _, r := range ranks {
		if int64(r.Score) != tr.products[r.Member] {
			t.Errorf("ZSCORE %s %s = %v, want %d", k.RankUnits(), r.Member, r.Score, tr.products[r.Member])
		}
	}
	ingest := hash(k.Ingest())
	for p, n := range tr.ingest {
		if ingest[p] != strconv.FormatInt(n, 10) {
			t.Errorf("HGET %s %s = %q, want %d", k.Ingest(), p, ingest[p], n)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("valkey matches the ground truth: %d sales, %d units, %d cents, %d products", tr.total.sales, tr.total.units, tr.total.revenue, len(tr.products))
}

func cloneSale(s *salesv1.Sale) *salesv1.Sale { return proto.Clone(s).(*salesv1.Sale) }

// waitSettled waits until GetSummary counts at least min sales and the count
// has not moved for two seconds, and returns it.
func waitSettled(ctx context.Context, t *testing.T, s *stack, min int64) int64 {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last, since := int64(-1), time.Now()
	for {
		n := getSummaryJSON(ctx, t, s).GetSales()
		if n != last {
			last, since = n, time.Now()
		}
		if n >= min && time.Since(since) >= 2*time.Second {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetSummary sales = %d, never settled at %d or more", n, min)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// productUnits reads the global ranking straight from Valkey.
func productUnits(ctx context.Context, t *testing.T, s *stack) map[string]int64 {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.valkey}, DisableCache: true,
		Username: s.valkeyUser, Password: s.valkeyPassword})
	if err != nil {
		t.Fatalf("valkey client: %v", err)
	}
	defer c.Close()
	rank := keys.New(s.prefix).RankUnits()
	ranks, err := c.Do(ctx, c.B().Zrange().Key(rank).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		t.Fatalf("ZRANGE %s: %v", rank, err)
	}
	out := make(map[string]int64, len(ranks))
	for _, r := range ranks {
		out[r.Member] = int64(r.Score)
	}
	return out
}
