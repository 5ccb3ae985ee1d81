// Package aggregate turns sales records into the figures the dashboards show.
// It decodes and validates records and folds a partition's batch into one
// Delta in memory, with exact int64 sums; it does no I/O, so that Valkey sees
// one write per batch rather than one per sale.
package aggregate

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// PriceHistoryLen is how many recent price points are kept per electronics
// product, both within one batch and in Valkey.
const PriceHistoryLen = 20

// Stats are the additive figures of a set of sales, plus the price range.
type Stats struct {
	Sales         int64
	Units         int64
	RevenueCents  int64
	PriceSumCents int64
	// MinPriceCents and MaxPriceCents are meaningful only when Sales > 0.
	MinPriceCents int64
	MaxPriceCents int64
}

// add folds one sale into s. It changes s only when every sum fits.
func (s *Stats) add(price, quantity, revenue int64) error {
	next := *s
	var err error
	if next.Sales, err = addInt64(s.Sales, 1); err != nil {
		return fmt.Errorf("sales: %w", err)
	}
	if next.Units, err = addInt64(s.Units, quantity); err != nil {
		return fmt.Errorf("units: %w", err)
	}
	if next.RevenueCents, err = addInt64(s.RevenueCents, revenue); err != nil {
		return fmt.Errorf("revenue_cents: %w", err)
	}
	if next.PriceSumCents, err = addInt64(s.PriceSumCents, price); err != nil {
		return fmt.Errorf("price_sum_cents: %w", err)
	}
	if s.Sales == 0 || price < s.MinPriceCents {
		next.MinPriceCents = price
	}
	if s.Sales == 0 || price > s.MaxPriceCents {
		next.MaxPriceCents = price
	}
	*s = next
	return nil
}

// Counts are the figures of one rate bucket.
type Counts struct {
	Sales        int64
	Units        int64
	RevenueCents int64
}

func (c *Counts) add(quantity, revenue int64) error {
	next := *c
	var err error
	if next.Sales, err = addInt64(c.Sales, 1); err != nil {
		return fmt.Errorf("rate sales: %w", err)
	}
	if next.Units, err = addInt64(c.Units, quantity); err != nil {
		return fmt.Errorf("rate units: %w", err)
	}
	if next.RevenueCents, err = addInt64(c.RevenueCents, revenue); err != nil {
		return fmt.Errorf("rate revenue_cents: %w", err)
	}
	*c = next
	return nil
}

// CategoryDelta is what a batch adds to one category.
type CategoryDelta struct {
	Category salesv1.Category
	Stats
	// Units maps product id to the units sold in this category.
	Units map[string]int64
}

// PricePoint is the unit price of one electronics sale.
type PricePoint struct {
	SoldAtMillis int64
	PriceCents   int64
	SaleID       string
	Offset       int64
}

// RateKey names the rate buckets of one category in one minute, by sold_at.
type RateKey struct {
	Category salesv1.Category
	// Minute is the Unix second the minute starts at.
	Minute int64
}

// RateMinute is what sold in one category in one minute, in total and per
// second.
type RateMinute struct {
	Counts
	// Seconds maps the Unix second a bucket starts at to its figures.
	Seconds map[int64]*Counts
}

// Delta is everything one partition's batch adds to the aggregates. After
// Add or AddDeadLetter returns an error the Delta must be discarded.
type Delta struct {
	Topic     string
	Partition int32
	// Next is the offset after the last record folded, -1 before any.
	Next int64

	DeadLetters int64
	// Duplicates counts the sales dropped as copies of sales counted
	// before (see Dedup).
	Duplicates int64
	Totals     Stats
	Categories map[salesv1.Category]*CategoryDelta
	// Units maps product id to units sold over all categories.
	Units map[string]int64
	// Ingest maps ingest protocol to the sales that came through it.
	Ingest map[string]int64
	// Prices maps an electronics product id to its newest price points,
	// oldest first, at most PriceHistoryLen after Finish.
	Prices map[string][]PricePoint
	Rates  map[RateKey]*RateMinute

	// Seen maps the dedup keys of the sales this Delta counts to their
	// record timestamps (Unix ms), to be remembered with it; nil when
	// dedup is off.
	Seen map[SaleKey]int64
	// SeenTrimBefore is the record timestamp (Unix ms) before which
	// remembered keys can no longer match a later copy and may be
	// forgotten; zero forgets nothing.
	SeenTrimBefore int64

	// seenOrder lists the keys of Seen in offset order, when Fold filled
	// it, so that SeenBlob needs no sort.
	seenOrder []SaleKey
	// seenBlob and seenNewest memoise SeenBlob.
	seenBlob   []byte
	seenNewest int64
}

// NewDelta returns an empty Delta for one partition.
func NewDelta(topic string, partition int32) *Delta {
	return &Delta{
		Topic:      topic,
		Partition:  partition,
		Next:       -1,
		Categories: make(map[salesv1.Category]*CategoryDelta, 4),
		Units:      make(map[string]int64),
		Ingest:     make(map[string]int64, 2),
		Prices:     make(map[string][]PricePoint),
		Rates:      make(map[RateKey]*RateMinute),
	}
}

func (d *Delta) observe(offset int64) {
	d.Next = max(d.Next, offset+1)
}

// Add folds one sale into the Delta.
func (d *Delta) Add(s Sale) error {
	revenue, err := mulNonNegative(s.PriceCents, s.Quantity)
	if err != nil {
		return fmt.Errorf("revenue of sale at offset %d: %w", s.Offset, err)
	}
	if err := d.Totals.add(s.PriceCents, s.Quantity, revenue); err != nil {
		return fmt.Errorf("totals: %w", err)
	}
	cat := d.Categories[s.Category]
	if cat == nil {
		cat = &CategoryDelta{Category: s.Category, Units: make(map[string]int64)}
		d.Categories[s.Category] = cat
	}
	if err := cat.add(s.PriceCents, s.Quantity, revenue); err != nil {
		return fmt.Errorf("category %s: %w", keys.CategoryName(s.Category), err)
	}
	if err := increment(cat.Units, s.ProductID, s.Quantity); err != nil {
		return fmt.Errorf("category %s units of %s: %w", keys.CategoryName(s.Category), s.ProductID, err)
	}
	if err := increment(d.Units, s.ProductID, s.Quantity); err != nil {
		return fmt.Errorf("units of %s: %w", s.ProductID, err)
	}
	if err := increment(d.Ingest, s.Protocol, 1); err != nil {
		return fmt.Errorf("ingest %s: %w", s.Protocol, err)
	}
	if err := d.addRate(s, revenue); err != nil {
		return err
	}
	if s.Category == salesv1.Category_CATEGORY_ELECTRONICS {
		points := append(d.Prices[s.ProductID], PricePoint{
			SoldAtMillis: s.SoldAtMillis,
			PriceCents:   s.PriceCents,
			SaleID:       s.SaleID,
			Offset:       s.Offset,
		})
		// Trim now and then rather than at every sale, so memory stays
		// bounded by the history length, not by the batch size.
		if len(points) >= 4*PriceHistoryLen {
			points = newestPoints(points)
		}
		d.Prices[s.ProductID] = points
	}
	d.observe(s.Offset)
	return nil
}

func (d *Delta) addRate(s Sale, revenue int64) error {
	second := floorDiv(s.SoldAtMillis, 1000)
	key := RateKey{Category: s.Category, Minute: floorDiv(second, 60) * 60}
	m := d.Rates[key]
	if m == nil {
		m = &RateMinute{Seconds: make(map[int64]*Counts, 1)}
		d.Rates[key] = m
	}
	if err := m.add(s.Quantity, revenue); err != nil {
		return err
	}
	c := m.Seconds[second]
	if c == nil {
		c = new(Counts)
		m.Seconds[second] = c
	}
	return c.add(s.Quantity, revenue)
}

// AddDeadLetter counts one record that went to the dead-letter topic.
func (d *Delta) AddDeadLetter(offset int64) error {
	n, err := addInt64(d.DeadLetters, 1)
	if err != nil {
		return fmt.Errorf("dead_letters: %w", err)
	}
	d.DeadLetters = n
	d.observe(offset)
	return nil
}

// Finish orders each price history by sold_at, then offset, and keeps only
// the newest PriceHistoryLen points.
func (d *Delta) Finish() {
	for id, points := range d.Prices {
		d.Prices[id] = newestPoints(points)
	}
}

func newestPoints(points []PricePoint) []PricePoint {
	slices.SortFunc(points, func(a, b PricePoint) int {
		return cmp.Or(cmp.Compare(a.SoldAtMillis, b.SoldAtMillis), cmp.Compare(a.Offset, b.Offset))
	})
	if len(points) > PriceHistoryLen {
		points = slices.Clone(points[len(points)-PriceHistoryLen:])
	}
	return points
}

func increment(m map[string]int64, key string, by int64) error {
	n, err := addInt64(m[key], by)
	if err != nil {
		return err
	}
	m[key] = n
	return nil
}

// floorDiv divides rounding towards negative infinity, so that a bucket
// always starts at or before its sales.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// DeadLetter is a record that cannot be counted, and why.
type DeadLetter struct {
	Record *kgo.Record
	Err    *DeadLetterError
}

// Fold decodes one partition's records, in offset order, into a finished
// Delta without dedup, and the records to dead-letter. The error is not
// about a record, which would be a dead letter, but about the batch: a sum
// that does not fit in an int64.
func (dec *Decoder) Fold(topic string, partition int32, records []*kgo.Record) (*Delta, []DeadLetter, error) {
	b, err := dec.DecodeBatch(topic, partition, records)
	if err != nil {
		return nil, nil, err
	}
	d, err := b.Fold(Dedup{})
	if err != nil {
		return nil, nil, err
	}
	return d, b.Dead, nil
}
