package store

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"blackfriday.local/contract/keys"
	"blackfriday.local/services/aggregator/internal/aggregate"
)

// RateLogMaxLen caps each ratelog stream, approximately (MAXLEN ~).
const RateLogMaxLen = 100000

// call is one invocation of apply.lua: its KEYS and ARGV, laid out as the
// script's header describes.
type call struct {
	keys []string
	args []string
}

func (c *call) key(k string)    { c.keys = append(c.keys, k) }
func (c *call) arg(a ...string) { c.args = append(c.args, a...) }
func (c *call) int(n int64)     { c.args = append(c.args, strconv.FormatInt(n, 10)) }
func (c *call) count(n int)     { c.int(int64(n)) }
func (c *call) pair(f string, n int64) {
	c.args = append(c.args, f, strconv.FormatInt(n, 10))
}

// hashEntry is one counter hash of section H.
type hashEntry struct {
	key    string
	fields []string
	incrs  []int64
	prices *aggregate.Stats // min/max to merge, when there were sales
	ttl    int64
}

func statsEntry(key string, s aggregate.Stats, deadLetters, duplicates int64) hashEntry {
	e := hashEntry{key: key}
	if s.Sales > 0 {
		e.fields = append(e.fields, keys.FieldSales, keys.FieldUnits, keys.FieldRevenueCents, keys.FieldPriceSumCents)
		e.incrs = append(e.incrs, s.Sales, s.Units, s.RevenueCents, s.PriceSumCents)
		e.prices = &s
	}
	if deadLetters > 0 {
		e.fields = append(e.fields, keys.FieldDeadLetters)
		e.incrs = append(e.incrs, deadLetters)
	}
	if duplicates > 0 {
		e.fields = append(e.fields, keys.FieldDuplicates)
		e.incrs = append(e.incrs, duplicates)
	}
	return e
}

// encode lays out a Delta for apply.lua. The number of keys and arguments
// grows with the distinct categories, products and seconds of the batch, not
// with its sales.
func encode(k keys.Keys, d *aggregate.Delta, base, next Position, rateTTLSeconds int64) (*call, error) {
	if d.Next < 0 {
		return nil, fmt.Errorf("delta of %s/%d has no records", d.Topic, d.Partition)
	}
	if d.Next <= base.Offset {
		return nil, fmt.Errorf("delta of %s/%d ends at %d, not past base %d", d.Topic, d.Partition, d.Next, base.Offset)
	}
	c := &call{
		keys: make([]string, 0, 16+len(d.Prices)+len(d.Rates)/4),
		args: make([]string, 0, 64+4*len(d.Units)+6*len(d.Rates)+3*len(d.Prices)*aggregate.PriceHistoryLen),
	}
	c.key(k.Offsets())
	c.arg(positionArgs(d.Topic, d.Partition, base, next)...)
	c.count(aggregate.PriceHistoryLen)
	c.count(RateLogMaxLen)

	cats := slices.Sorted(maps.Keys(d.Categories))

	// Section H: counter hashes.
	var hashes []hashEntry
	if e := statsEntry(k.Totals(), d.Totals, d.DeadLetters, d.Duplicates); len(e.fields) > 0 {
		hashes = append(hashes, e)
	}
	for _, cat := range cats {
		hashes = append(hashes, statsEntry(k.Category(cat), d.Categories[cat].Stats, 0, 0))
	}
	if len(d.Ingest) > 0 {
		e := hashEntry{key: k.Ingest()}
		for _, p := range slices.Sorted(maps.Keys(d.Ingest)) {
			e.fields = append(e.fields, p)
			e.incrs = append(e.incrs, d.Ingest[p])
		}
		hashes = append(hashes, e)
	}
	hashes = append(hashes, rateEntries(k, d.Rates, rateTTLSeconds)...)
	c.count(len(hashes))
	for _, e := range hashes {
		c.key(e.key)
		c.count(len(e.fields))
		for i, f := range e.fields {
			c.pair(f, e.incrs[i])
		}
		if e.prices != nil {
			c.arg("1")
			c.int(e.prices.MinPriceCents)
			c.int(e.prices.MaxPriceCents)
		} else {
			c.arg("0")
		}
		c.int(e.ttl)
	}

	// Section Z: rankings by units.
	rankings := 0
	if len(d.Units) > 0 {
		rankings++
	}
	for _, cat := range cats {
		if len(d.Categories[cat].Units) > 0 {
			rankings++
		}
	}
	c.count(rankings)
	if len(d.Units) > 0 {
		addRanking(c, k.RankUnits(), d.Units)
	}
	for _, cat := range cats {
		if units := d.Categories[cat].Units; len(units) > 0 {
			addRanking(c, k.RankUnitsCategory(cat), units)
		}
	}

	// Section P: price histories. Section G: the index of their latest sale.
	products := slices.Sorted(maps.Keys(d.Prices))
	c.count(len(products))
	for _, id := range products {
		points := d.Prices[id]
		c.key(k.Price(id))
		c.count(len(points))
		for _, p := range points {
			c.arg(strconv.FormatInt(p.SoldAtMillis, 10), keys.PriceMember(p.SoldAtMillis, p.PriceCents, p.SaleID))
		}
	}
	if len(products) > 0 {
		c.count(1)
		c.key(k.PriceIndex())
		c.count(len(products))
		for _, id := range products {
			points := d.Prices[id]
			c.int(points[len(points)-1].SoldAtMillis)
			c.arg(id)
		}
	} else {
		c.count(0)
	}

	// Section X: one ratelog entry per category with sales.
	c.count(len(cats))
	for _, cat := range cats {
		s := d.Categories[cat].Stats
		c.key(k.RateLog(cat))
		c.count(3)
		c.pair(keys.FieldSales, s.Sales)
		c.pair(keys.FieldUnits, s.Units)
		c.pair(keys.FieldRevenueCents, s.RevenueCents)
	}

	// Section S: the sale ids counted, remembered for dedup as one member
	// per batch (see aggregate.Delta.SeenBlob), and the forgetting of
	// members too old to match a later copy.
	if d.Seen != nil {
		c.count(1)
		c.key(k.Seen(d.Topic, d.Partition))
		c.int(d.SeenTrimBefore)
		if member, newest := d.SeenBlob(); member != nil {
			c.count(1)
			c.int(newest)
			c.arg(string(member))
		} else {
			c.count(0)
		}
	} else {
		c.count(0)
	}
	return c, nil
}

func addRanking(c *call, key string, units map[string]int64) {
	c.key(key)
	c.count(len(units))
	for _, id := range slices.Sorted(maps.Keys(units)) {
		c.pair(id, units[id])
	}
}

// rateEntries lays out one hash per category and minute, with the minute's
// sums next to each second's figures.
func rateEntries(k keys.Keys, rates map[aggregate.RateKey]*aggregate.RateMinute, ttl int64) []hashEntry {
	order := slices.SortedFunc(maps.Keys(rates), func(a, b aggregate.RateKey) int {
		return cmp.Or(cmp.Compare(a.Category, b.Category), cmp.Compare(a.Minute, b.Minute))
	})
	out := make([]hashEntry, 0, len(order))
	for _, rk := range order {
		m := rates[rk]
		e := hashEntry{
			key:    k.Rate(rk.Category, rk.Minute),
			fields: make([]string, 0, 3+3*len(m.Seconds)),
			incrs:  make([]int64, 0, 3+3*len(m.Seconds)),
			ttl:    ttl,
		}
		e.fields = append(e.fields, keys.FieldSales, keys.FieldUnits, keys.FieldRevenueCents)
		e.incrs = append(e.incrs, m.Sales, m.Units, m.RevenueCents)
		for _, sec := range slices.Sorted(maps.Keys(m.Seconds)) {
			b := m.Seconds[sec]
			e.fields = append(e.fields,
				keys.RateSecondField(sec, keys.FieldSales),
				keys.RateSecondField(sec, keys.FieldUnits),
				keys.RateSecondField(sec, keys.FieldRevenueCents))
			e.incrs = append(e.incrs, b.Sales, b.Units, b.RevenueCents)
		}
		out = append(out, e)
	}
	return out
}
