package truth

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

func sale(cat salesv1.Category, product string, qty int32, price int64) *salesv1.Sale {
	return &salesv1.Sale{Category: cat, ProductId: product, Quantity: qty, PriceCents: price}
}

const (
	ele = salesv1.Category_CATEGORY_ELECTRONICS
	clo = salesv1.Category_CATEGORY_CLOTHING
)

// sample writes a small ground truth: three acknowledged sales, one of
// unknown fate and one rejected.
func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Add([]*salesv1.Sale{sale(ele, "ELE-1", 2, 1000), sale(clo, "CLO-1", 1, 250)}, nil, nil)
	failed := []*salesv1.Sale{sale(ele, "ELE-2", 1, 5000), sale(ele, "ELE-9", 9, 9)}
	w.Add(failed, func(int) bool { return false }, func(i int) bool { return i == 0 })
	w.Add([]*salesv1.Sale{sale(ele, "ELE-1", 3, 800)}, func(int) bool { return true }, nil)
	if acked, unknown := w.Counts(); acked != 3 || unknown != 1 {
		t.Fatalf("Counts() = %d, %d, want 3, 1", acked, unknown)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteRead(t *testing.T) {
	t.Parallel()
	b := sample(t)
	want := Header + "\na,1,ELE-1,2,1000\na,2,CLO-1,1,250\nu,1,ELE-2,1,5000\na,1,ELE-1,3,800\n"
	if string(b) != want {
		t.Fatalf("file =\n%s\nwant\n%s", b, want)
	}
	tr := New()
	if err := tr.Read(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if tr.Total != (Agg{Sales: 3, Units: 6, Revenue: 2000 + 250 + 2400, PriceSum: 2050, Min: 250, Max: 1000}) {
		t.Errorf("Total = %+v", tr.Total)
	}
	if tr.Cats[ele] != (Agg{Sales: 2, Units: 5, Revenue: 4400, PriceSum: 1800, Min: 800, Max: 1000}) {
		t.Errorf("Cats[electronics] = %+v", tr.Cats[ele])
	}
	if tr.Products["ELE-1"] != 5 || tr.CatProducts[clo]["CLO-1"] != 1 || tr.Unknown != 1 {
		t.Errorf("Products = %v, CatProducts[clothing] = %v, Unknown = %d", tr.Products, tr.CatProducts[clo], tr.Unknown)
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, file string }{
		{"empty", ""},
		{"no header", "a,1,P,1,1\n"},
		{"bad state", Header + "\nx,1,P,1,1\n"},
		{"bad category", Header + "\na,7,P,1,1\n"},
		{"few fields", Header + "\na,1,P,1\n"},
		{"zero price", Header + "\na,1,P,1,0\n"},
		{"not a number", Header + "\na,1,P,one,1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := New().Read(strings.NewReader(tt.file)); err == nil {
				t.Errorf("Read(%q) = nil, want an error", tt.file)
			}
		})
	}
}

// summary builds the summary an exact aggregator would report for tr.
func summary(tr *Truth) *salesv1.GetSummaryResponse {
	resp := &salesv1.GetSummaryResponse{
		Sales: tr.Total.Sales, Units: tr.Total.Units, RevenueCents: tr.Total.Revenue,
		MinPriceCents: tr.Total.Min, MaxPriceCents: tr.Total.Max,
		BestSeller: &salesv1.ProductUnits{ProductId: "ELE-1", Units: 5}, WorstSeller: &salesv1.ProductUnits{ProductId: "CLO-1", Units: 1},
	}
	for c := salesv1.Category(1); c <= 4; c++ {
		a := tr.Cats[c]
		cs := &salesv1.CategorySummary{Category: c, Sales: a.Sales, Units: a.Units, RevenueCents: a.Revenue,
			MinPriceCents: a.Min, MaxPriceCents: a.Max, PriceSumCents: a.PriceSum}
		if a.Sales > 0 {
			cs.AvgPriceCents = float64(a.PriceSum) / float64(a.Sales)
			cs.AvgQuantity = float64(a.Units) / float64(a.Sales)
			for p, u := range tr.CatProducts[c] {
				cs.BestSeller = &salesv1.ProductUnits{ProductId: p, Units: u}
				cs.WorstSeller = &salesv1.ProductUnits{ProductId: p, Units: u}
			}
		}
		resp.Categories = append(resp.Categories, cs)
	}
	return resp
}

func TestDiff(t *testing.T) {
	t.Parallel()
	tr := New()
	if err := tr.Read(bytes.NewReader(sample(t))); err != nil {
		t.Fatal(err)
	}
	exact := summary(tr)
	if d := tr.Diff(exact); d != "" {
		t.Fatalf("Diff(exact) = %q, want none", d)
	}
	tests := []struct {
		name   string
		change func(*salesv1.GetSummaryResponse)
		want   string
	}{
		{"one sale counted twice", func(s *salesv1.GetSummaryResponse) { s.Sales++ }, "sales = 4, want 3"},
		{"a unit lost", func(s *salesv1.GetSummaryResponse) { s.Units-- }, "units = 5, want 6"},
		{"revenue off by a cent", func(s *salesv1.GetSummaryResponse) { s.RevenueCents++ }, "revenue_cents"},
		{"max price", func(s *salesv1.GetSummaryResponse) { s.MaxPriceCents = 5000 }, "max_price_cents = 5000, want 1000"},
		{"dead letters", func(s *salesv1.GetSummaryResponse) { s.DeadLetters = 1 }, "dead_letters"},
		{"category sum", func(s *salesv1.GetSummaryResponse) { s.Categories[0].PriceSumCents++ }, "electronics.price_sum_cents"},
		{"category average", func(s *salesv1.GetSummaryResponse) { s.Categories[1].AvgQuantity = 2 }, "clothing.avg_quantity"},
		{"category order", func(s *salesv1.GetSummaryResponse) {
			s.Categories[0], s.Categories[1] = s.Categories[1], s.Categories[0]
		}, "categories[0]"},
		{"missing category", func(s *salesv1.GetSummaryResponse) { s.Categories = s.Categories[:3] }, "len(categories) = 3"},
		{"best seller units", func(s *salesv1.GetSummaryResponse) { s.BestSeller.Units = 4 }, "best_seller"},
		{"worst seller", func(s *salesv1.GetSummaryResponse) { s.WorstSeller.ProductId = "ELE-1" }, "worst_seller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := proto.Clone(exact).(*salesv1.GetSummaryResponse)
			tt.change(got)
			if d := tr.Diff(got); !strings.Contains(d, tt.want) {
				t.Errorf("Diff = %q, want it to mention %q", d, tt.want)
			}
		})
	}
}

func TestDiffTop(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Add(ele, "A", 5, 1)
	tr.Add(ele, "B", 3, 1)
	tr.Add(ele, "C", 1, 1)
	pu := func(p string, u int64) *salesv1.ProductUnits { return &salesv1.ProductUnits{ProductId: p, Units: u} }
	tests := []struct {
		name  string
		limit int
		got   []*salesv1.ProductUnits
		want  string
	}{
		{"exact", 10, []*salesv1.ProductUnits{pu("A", 5), pu("B", 3), pu("C", 1)}, ""},
		{"top two", 2, []*salesv1.ProductUnits{pu("A", 5), pu("B", 3)}, ""},
		{"wrong units", 10, []*salesv1.ProductUnits{pu("A", 6), pu("B", 3), pu("C", 1)}, "want 5"},
		{"out of order", 10, []*salesv1.ProductUnits{pu("B", 3), pu("A", 5), pu("C", 1)}, "more than the one before"},
		{"too short", 10, []*salesv1.ProductUnits{pu("A", 5)}, "lists 1 products, want 3"},
		{"skips a bigger one", 2, []*salesv1.ProductUnits{pu("A", 5), pu("C", 1)}, "leaves out B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := tr.DiffTop(ele, tt.limit, tt.got)
			if (tt.want == "") != (d == "") || !strings.Contains(d, tt.want) {
				t.Errorf("DiffTop = %q, want %q", d, tt.want)
			}
		})
	}
}

func TestWithUnknowns(t *testing.T) {
	t.Parallel()
	tr := New()
	if err := tr.Read(bytes.NewReader(sample(t))); err != nil {
		t.Fatal(err)
	}
	all := tr.WithUnknowns()
	if all == nil || all.Total.Sales != 4 || all.Total.Max != 5000 || all.Products["ELE-2"] != 1 || all.Cats[ele].Sales != 3 {
		t.Fatalf("WithUnknowns() = %+v, want the unknown ELE-2 sale counted", all)
	}
	if tr.Total.Sales != 3 {
		t.Errorf("WithUnknowns changed the truth: %d sales", tr.Total.Sales)
	}
	// A summary that counted the unknown sale matches the second
	// hypothesis only.
	s := summary(all)
	s.BestSeller = &salesv1.ProductUnits{ProductId: "ELE-1", Units: 5}
	s.WorstSeller = &salesv1.ProductUnits{ProductId: "CLO-1", Units: 1}
	s.Categories[0].BestSeller = &salesv1.ProductUnits{ProductId: "ELE-1", Units: 5}
	s.Categories[0].WorstSeller = &salesv1.ProductUnits{ProductId: "ELE-2", Units: 1}
	if d := tr.Diff(s); d == "" {
		t.Error("Diff(summary with the unknown sale) = none, want a difference")
	}
	if d := all.Diff(s); d != "" {
		t.Errorf("WithUnknowns().Diff(summary with the unknown sale) = %q, want none", d)
	}
	if New().WithUnknowns() != nil {
		t.Error("WithUnknowns() of a truth without unknowns is not nil")
	}
}
