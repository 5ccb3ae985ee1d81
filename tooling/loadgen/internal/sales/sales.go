// Package sales makes reproducible, realistic sales: a category mix, a
// catalogue per category with skewed (Zipf) product popularity, a list price
// per product within the category's range, Black Friday discounts on some
// sales and small quantities. Sale i of a seed is always the same sale, so
// any number of goroutines can draw sales without sharing a generator's
// state, and a run can be reproduced from its seed.
package sales

import (
	"fmt"
	"math"
	"sort"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// category describes one department's catalogue.
type category struct {
	cat    salesv1.Category
	prefix string
	// weight is the category's share of sales.
	weight float64
	// minCents and maxCents bound list prices (log-uniform between them).
	minCents, maxCents int64
	// maxQty is the largest quantity of one sale.
	maxQty int
}

var categories = [...]category{
	{salesv1.Category_CATEGORY_ELECTRONICS, "ELE", 0.25, 1999, 249999, 3},
	{salesv1.Category_CATEGORY_CLOTHING, "CLO", 0.35, 499, 19999, 6},
	{salesv1.Category_CATEGORY_HOME, "HOM", 0.20, 999, 89999, 4},
	{salesv1.Category_CATEGORY_BEAUTY, "BEA", 0.20, 299, 14999, 8},
}

// zipfS is the popularity exponent: the top product of a category sells
// about twice as often as the second and ten times as often as the tenth.
const zipfS = 1.07

// Generator makes sales for one seed. It is immutable and safe for
// concurrent use.
type Generator struct {
	seed     uint64
	products int
	catCDF   []float64
	prodCDF  []float64
	ids      [len(categories)][]string
	list     [len(categories)][]int64
}

// New returns a generator of sales of productsPerCategory products in each of
// the four categories (at least 1).
func New(seed uint64, productsPerCategory int) *Generator {
	n := max(productsPerCategory, 1)
	g := &Generator{seed: seed, products: n}
	var acc float64
	for _, c := range categories {
		acc += c.weight
		g.catCDF = append(g.catCDF, acc)
	}
	acc = 0
	for k := range n {
		acc += 1 / math.Pow(float64(k+1), zipfS)
		g.prodCDF = append(g.prodCDF, acc)
	}
	for k := range g.prodCDF {
		g.prodCDF[k] /= acc
	}
	// List prices come from the seed too, so two runs with one seed sell
	// the same catalogue.
	r := rng{state: seed ^ 0x5bf03635f0b1e2a1}
	for ci, c := range categories {
		g.ids[ci] = make([]string, n)
		g.list[ci] = make([]int64, n)
		lo, hi := math.Log(float64(c.minCents)), math.Log(float64(c.maxCents))
		for k := range n {
			g.ids[ci][k] = fmt.Sprintf("%s-%04d", c.prefix, k+1)
			cents := int64(math.Exp(lo + (hi-lo)*r.float()))
			// Prices end in .99, as shops like them.
			g.list[ci][k] = max(cents/100*100+99, 99)
		}
	}
	return g
}

// Seed returns the generator's seed.
func (g *Generator) Seed() uint64 { return g.seed }

// Sale returns sale i: always the same sale for the same seed and i. The
// server assigns sale_id and sold_at.
func (g *Generator) Sale(i uint64) *salesv1.Sale {
	r := rng{state: g.seed*0x9e3779b97f4a7c15 ^ (i+1)*0xbf58476d1ce4e5b9}
	ci := sort.SearchFloat64s(g.catCDF, r.float())
	ci = min(ci, len(categories)-1)
	c := categories[ci]
	k := min(sort.SearchFloat64s(g.prodCDF, r.float()), g.products-1)
	price := g.list[ci][k]
	// One sale in five is discounted by 10 to 50 percent.
	if r.float() < 0.2 {
		off := 10 + int64(r.next()%41)
		price = max(price*(100-off)/100, 1)
	}
	// Mostly one unit; each further unit half as likely.
	qty := 1
	for qty < c.maxQty && r.float() < 0.4 {
		qty++
	}
	return &salesv1.Sale{
		Category:   c.cat,
		ProductId:  g.ids[ci][k],
		PriceCents: price,
		Quantity:   int32(qty),
	}
}

// Sales fills dst with sales first, first+1, …
func (g *Generator) Sales(dst []*salesv1.Sale, first uint64) {
	for j := range dst {
		dst[j] = g.Sale(first + uint64(j))
	}
}

// rng is SplitMix64: tiny, fast and good enough for load.
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a float64 in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }
