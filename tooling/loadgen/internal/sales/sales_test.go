package sales

import (
	"regexp"
	"testing"

	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

func TestDeterministic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		a, b     *Generator
		wantSame bool
	}{
		{"same seed", New(7, 200), New(7, 200), true},
		{"other seed", New(7, 200), New(8, 200), false},
		{"other catalogue size", New(7, 200), New(7, 50), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			same := 0
			for i := range uint64(1000) {
				if proto.Equal(tt.a.Sale(i), tt.b.Sale(i)) {
					same++
				}
			}
			if tt.wantSame && same != 1000 {
				t.Errorf("%d of 1000 sales equal, want all", same)
			}
			if !tt.wantSame && same > 500 {
				t.Errorf("%d of 1000 sales equal, want most to differ", same)
			}
		})
	}
	// Sales(i) is the same sale whoever asks, in any order.
	g := New(3, 200)
	batch := make([]*salesv1.Sale, 10)
	g.Sales(batch, 100)
	for j, s := range batch {
		if !proto.Equal(s, g.Sale(100+uint64(j))) {
			t.Errorf("Sales(…, 100)[%d] = %v, want Sale(%d) = %v", j, s, 100+j, g.Sale(100+uint64(j)))
		}
	}
}

var productID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// TestRealistic checks every sale is valid by the schema's rules, and the
// mix: category shares, skewed popularity, prices within each category's
// range.
func TestRealistic(t *testing.T) {
	t.Parallel()
	const n = 100000
	g := New(1, 200)
	catCount := map[salesv1.Category]int{}
	prodCount := map[string]int{}
	units := 0
	for i := range uint64(n) {
		s := g.Sale(i)
		c := s.GetCategory()
		if c < 1 || c > 4 || !productID.MatchString(s.GetProductId()) || len(s.GetProductId()) > 64 ||
			s.GetPriceCents() < 1 || s.GetPriceCents() > 100_000_000 || s.GetQuantity() < 1 || s.GetQuantity() > 10000 {
			t.Fatalf("Sale(%d) = %v, not valid by the schema", i, s)
		}
		cat := categories[c-1]
		if s.GetPriceCents() > cat.maxCents+100 || s.GetPriceCents() < cat.minCents/2-100 {
			t.Fatalf("Sale(%d) price %d outside %v's range [%d, %d]", i, s.GetPriceCents(), c, cat.minCents, cat.maxCents)
		}
		catCount[c]++
		prodCount[s.GetProductId()]++
		units += int(s.GetQuantity())
	}
	for _, c := range categories {
		share := float64(catCount[c.cat]) / n
		if share < c.weight-0.01 || share > c.weight+0.01 {
			t.Errorf("%v has %.3f of the sales, want %.2f", c.cat, share, c.weight)
		}
	}
	top, tenth := prodCount["CLO-0001"], prodCount["CLO-0010"]
	if top < 5*tenth {
		t.Errorf("CLO-0001 sold %d times and CLO-0010 %d, want a skew of at least 5×", top, tenth)
	}
	if avg := float64(units) / n; avg < 1.2 || avg > 2.5 {
		t.Errorf("average quantity %.2f, want small baskets (1.2 to 2.5)", avg)
	}
}
