// Package truth keeps the ground truth of a load run: a file with one line
// per sale the api acknowledged (its category, units and price in cents),
// and a checker that compares the aggregates the api reports with it,
// exactly.
//
// The file is CSV with a comment header:
//
//	# blackfriday ground truth v1: state,category,product_id,quantity,price_cents
//	a,1,ELE-0001,2,19999
//
// state is "a" for an acknowledged sale and "u" for a sale whose call failed
// in a way that leaves its fate unknown (it may have been written: a
// timeout, an unconfirmed write). category is the Category enum number.
package truth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Header is the first line of every ground-truth file.
const Header = "# blackfriday ground truth v1: state,category,product_id,quantity,price_cents"

// Writer appends sales to a ground-truth file. It is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	closer  io.Closer
	line    []byte
	acked   int64
	unknown int64
	err     error
}

// Create creates (or truncates) a ground-truth file.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := NewWriter(f)
	w.closer = f
	return w, nil
}

// NewWriter writes a ground truth to w.
func NewWriter(w io.Writer) *Writer {
	tw := &Writer{w: bufio.NewWriterSize(w, 256<<10)}
	_, tw.err = tw.w.WriteString(Header + "\n")
	return tw
}

// Add records sales: acked[i] says whether sale i was acknowledged; a sale
// that was not is recorded as unknown when maybe[i] is true and left out
// otherwise. A nil acked means every sale was acknowledged.
func (w *Writer) Add(sales []*salesv1.Sale, acked func(i int) bool, maybe func(i int) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range sales {
		state := byte('a')
		if acked != nil && !acked(i) {
			if maybe == nil || !maybe(i) {
				continue
			}
			state = 'u'
			w.unknown++
		} else {
			w.acked++
		}
		b := append(w.line[:0], state, ',')
		b = strconv.AppendInt(b, int64(s.GetCategory()), 10)
		b = append(b, ',')
		b = append(b, s.GetProductId()...)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(s.GetQuantity()), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, s.GetPriceCents(), 10)
		b = append(b, '\n')
		w.line = b
		if w.err == nil {
			_, w.err = w.w.Write(b)
		}
	}
}

// Counts returns the acknowledged and unknown sales written so far.
func (w *Writer) Counts() (acked, unknown int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.unknown
}

// Close flushes the file (and closes it when Create opened it).
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	if ferr := w.w.Flush(); err == nil {
		err = ferr
	}
	if w.closer != nil {
		if cerr := w.closer.Close(); err == nil {
			err = cerr
		}
		w.closer = nil
	}
	return err
}

// Agg is the exact aggregate of a set of sales.
type Agg struct {
	Sales, Units, Revenue, PriceSum, Min, Max int64
}

func (a *Agg) add(price, qty int64) {
	a.Sales++
	a.Units += qty
	a.Revenue += price * qty
	a.PriceSum += price
	if a.Min == 0 || price < a.Min {
		a.Min = price
	}
	a.Max = max(a.Max, price)
}

// Truth is what the aggregates must say after a set of ground-truth files.
type Truth struct {
	Total Agg
	// Cats is indexed by Category number (1 to 4).
	Cats [5]Agg
	// Products holds units per product, over all categories and per
	// category.
	Products    map[string]int64
	CatProducts [5]map[string]int64
	// Unknown counts the sales of unknown fate, left out of the sums;
	// Unknowns aggregates them, so a checker can also try the hypothesis
	// that every one of them was written.
	Unknown  int64
	Unknowns *Truth
}

// New returns an empty truth.
func New() *Truth {
	t := &Truth{Products: map[string]int64{}}
	for i := range t.CatProducts {
		t.CatProducts[i] = map[string]int64{}
	}
	return t
}

// Add counts one acknowledged sale.
func (t *Truth) Add(cat salesv1.Category, product string, qty int32, price int64) {
	t.Total.add(price, int64(qty))
	t.Cats[cat].add(price, int64(qty))
	t.Products[product] += int64(qty)
	t.CatProducts[cat][product] += int64(qty)
}

// Read adds a ground-truth file's sales to t.
func (t *Truth) Read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			if text != Header {
				return fmt.Errorf("line 1 = %q, want the header %q", text, Header)
			}
			continue
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, ",")
		if len(f) != 5 {
			return fmt.Errorf("line %d: %d fields, want 5", line, len(f))
		}
		cat, err1 := strconv.Atoi(f[1])
		qty, err2 := strconv.ParseInt(f[3], 10, 32)
		price, err3 := strconv.ParseInt(f[4], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if cat < 1 || cat > 4 || f[2] == "" || qty < 1 || price < 1 {
			return fmt.Errorf("line %d: %q is not a valid sale", line, text)
		}
		switch f[0] {
		case "a":
			t.Add(salesv1.Category(cat), f[2], int32(qty), price)
		case "u":
			t.Unknown++
			if t.Unknowns == nil {
				t.Unknowns = New()
			}
			t.Unknowns.Add(salesv1.Category(cat), f[2], int32(qty), price)
		default:
			return fmt.Errorf("line %d: state %q, want a or u", line, f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if line == 0 {
		return errors.New("empty file, want at least the header")
	}
	return nil
}

// Load reads ground-truth files into one truth.
func Load(paths ...string) (*Truth, error) {
	t := New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		err = t.Read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return t, nil
}

// WithUnknowns returns the truth if every sale of unknown fate was written
// after all, or nil when there are none.
func (t *Truth) WithUnknowns() *Truth {
	if t.Unknowns == nil {
		return nil
	}
	all := New()
	for _, src := range []*Truth{t, t.Unknowns} {
		all.Total.merge(src.Total)
		for c := range src.Cats {
			all.Cats[c].merge(src.Cats[c])
			for p, u := range src.CatProducts[c] {
				all.CatProducts[c][p] += u
			}
		}
		for p, u := range src.Products {
			all.Products[p] += u
		}
	}
	return all
}

// merge adds o's sales to a.
func (a *Agg) merge(o Agg) {
	if o.Sales == 0 {
		return
	}
	if a.Sales == 0 || o.Min < a.Min {
		a.Min = o.Min
	}
	a.Max = max(a.Max, o.Max)
	a.Sales += o.Sales
	a.Units += o.Units
	a.Revenue += o.Revenue
	a.PriceSum += o.PriceSum
}

// Diff returns "" when the summary equals the truth exactly, or the first
// difference.
func (t *Truth) Diff(got *salesv1.GetSummaryResponse) string {
	check := func(name string, got, want int64) string {
		if got != want {
			return fmt.Sprintf("%s = %d, want %d", name, got, want)
		}
		return ""
	}
	for _, d := range []string{
		check("sales", got.GetSales(), t.Total.Sales),
		check("units", got.GetUnits(), t.Total.Units),
		check("revenue_cents", got.GetRevenueCents(), t.Total.Revenue),
		check("min_price_cents", got.GetMinPriceCents(), t.Total.Min),
		check("max_price_cents", got.GetMaxPriceCents(), t.Total.Max),
		check("dead_letters", got.GetDeadLetters(), 0),
	} {
		if d != "" {
			return d
		}
	}
	if n := len(got.GetCategories()); n != 4 {
		return fmt.Sprintf("len(categories) = %d, want 4", n)
	}
	for i, c := range got.GetCategories() {
		cat := salesv1.Category(i + 1)
		if c.GetCategory() != cat {
			return fmt.Sprintf("categories[%d] = %v, want %v", i, c.GetCategory(), cat)
		}
		w, name := t.Cats[cat], keys.CategoryName(cat)
		for _, d := range []string{
			check(name+".sales", c.GetSales(), w.Sales),
			check(name+".units", c.GetUnits(), w.Units),
			check(name+".revenue_cents", c.GetRevenueCents(), w.Revenue),
			check(name+".price_sum_cents", c.GetPriceSumCents(), w.PriceSum),
			check(name+".min_price_cents", c.GetMinPriceCents(), w.Min),
			check(name+".max_price_cents", c.GetMaxPriceCents(), w.Max),
		} {
			if d != "" {
				return d
			}
		}
		if w.Sales == 0 {
			continue
		}
		if want := float64(w.PriceSum) / float64(w.Sales); c.GetAvgPriceCents() != want {
			return fmt.Sprintf("%s.avg_price_cents = %v, want %v", name, c.GetAvgPriceCents(), want)
		}
		if want := float64(w.Units) / float64(w.Sales); c.GetAvgQuantity() != want {
			return fmt.Sprintf("%s.avg_quantity = %v, want %v", name, c.GetAvgQuantity(), want)
		}
		if d := sellerDiff(name+".best_seller", c.GetBestSeller(), t.CatProducts[cat], true); d != "" {
			return d
		}
		if d := sellerDiff(name+".worst_seller", c.GetWorstSeller(), t.CatProducts[cat], false); d != "" {
			return d
		}
	}
	if t.Total.Sales > 0 {
		if d := sellerDiff("best_seller", got.GetBestSeller(), t.Products, true); d != "" {
			return d
		}
		if d := sellerDiff("worst_seller", got.GetWorstSeller(), t.Products, false); d != "" {
			return d
		}
	}
	return ""
}

// sellerDiff checks a best or worst seller: its units must be the extreme,
// and the product one of those with that many units (the server breaks
// ties).
func sellerDiff(name string, got *salesv1.ProductUnits, units map[string]int64, best bool) string {
	var want int64 = -1
	for _, u := range units {
		if want < 0 || (best && u > want) || (!best && u < want) {
			want = u
		}
	}
	if got.GetUnits() != want || units[got.GetProductId()] != want {
		return fmt.Sprintf("%s = %s with %d units, want a product with %d units (the truth has %d for %s)",
			name, got.GetProductId(), got.GetUnits(), want, units[got.GetProductId()], got.GetProductId())
	}
	return ""
}

// DiffTop returns "" when a ranking asked for limit products, best first,
// agrees with the truth: each product's units are exact, the order is by
// units, it lists as many products as it should, and no product left out
// sold more than the last one listed.
func (t *Truth) DiffTop(cat salesv1.Category, limit int, got []*salesv1.ProductUnits) string {
	units, name := t.Products, "all"
	if cat != salesv1.Category_CATEGORY_UNSPECIFIED {
		units, name = t.CatProducts[cat], keys.CategoryName(cat)
	}
	listed := map[string]bool{}
	for i, p := range got {
		if want := units[p.GetProductId()]; p.GetUnits() != want {
			return fmt.Sprintf("top[%s][%d] = %s with %d units, want %d", name, i, p.GetProductId(), p.GetUnits(), want)
		}
		if i > 0 && p.GetUnits() > got[i-1].GetUnits() {
			return fmt.Sprintf("top[%s][%d] has %d units, more than the one before it", name, i, p.GetUnits())
		}
		listed[p.GetProductId()] = true
	}
	if want := min(len(units), limit); len(got) != want {
		return fmt.Sprintf("top[%s] lists %d products, want %d", name, len(got), want)
	}
	if len(got) > 0 {
		last := got[len(got)-1].GetUnits()
		for p, u := range units {
			if !listed[p] && u > last {
				return fmt.Sprintf("top[%s] leaves out %s with %d units, more than the last listed (%d)", name, p, u, last)
			}
		}
	}
	return ""
}
