package browser

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// box is where an element is drawn, and what it shows.
type box struct {
	Text     string  `json:"text"`
	Product  string  `json:"product"`
	Color    string  `json:"color"`
	X        float64 `json:"x"`
	Y        float64 `json:"y"`
	W        float64 `json:"w"`
	H        float64 `json:"h"`
	Scroll   float64 `json:"scroll"`
	Client   float64 `json:"client"`
	Canvases int     `json:"canvases"`
}

// boxes returns the boxes of the elements sel selects, in document order.
func boxes(t *testing.T, ctx context.Context, sel string) []box {
	t.Helper()
	js := fmt.Sprintf(`[...document.querySelectorAll(%q)].map(e => { const r = e.getBoundingClientRect();
	  return {text: e.textContent, product: e.dataset.product ?? "", color: e.dataset.color ?? "",
	    x: r.left, y: r.top, w: r.width, h: r.height, scroll: e.scrollWidth, client: e.clientWidth,
	    canvases: e.querySelectorAll("canvas").length}; })`, sel)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]box](js))
	if err != nil {
		t.Fatalf("read the boxes of %s: %v", sel, err)
	}
	return got
}

// overlaps names every pair of boxes that share any area: two labels drawn
// over each other, as "gRPC" and "gRPC-Web" were under narrow bars.
func overlaps(bs []box) []string {
	var out []string
	for i := range bs {
		for j := i + 1; j < len(bs); j++ {
			a, b := bs[i], bs[j]
			w := min(a.X+a.W, b.X+b.W) - max(a.X, b.X)
			h := min(a.Y+a.H, b.Y+b.H) - max(a.Y, b.Y)
			if w > 0.5 && h > 0.5 {
				out = append(out, fmt.Sprintf("%q (%.0f,%.0f %.0fx%.0f) and %q (%.0f,%.0f %.0fx%.0f) overlap by %.0fx%.0f px",
					a.Text, a.X, a.Y, a.W, a.H, b.Text, b.X, b.Y, b.W, b.H, w, h))
			}
		}
	}
	return out
}

// labelProblems checks that labels are drawn, whole and apart.
func labelProblems(bs []box) []string {
	out := overlaps(bs)
	for _, b := range bs {
		switch {
		case strings.TrimSpace(b.Text) == "" || b.W < 1 || b.H < 1:
			out = append(out, fmt.Sprintf("label %q is not drawn (%.0fx%.0f)", b.Text, b.W, b.H))
		case b.Scroll > b.Client+0.5:
			out = append(out, fmt.Sprintf("label %q is cut off (%.0f of %.0f px shown)", b.Text, b.Client, b.Scroll))
		}
	}
	return out
}

// productProblems checks that every product has a chart of its own: one
// chart each, in a colour no other has, apart from the others.
func productProblems(charts []box, products []string) []string {
	var out []string
	if len(charts) != len(products) {
		out = append(out, fmt.Sprintf("%d price charts, want one per product: %d (%v)", len(charts), len(products), products))
	}
	colors := map[string]string{}
	for i, s := range charts {
		if i < len(products) && s.Product != products[i] {
			out = append(out, fmt.Sprintf("price chart %d is for %q, want %q", i, s.Product, products[i]))
		}
		if s.Canvases != 1 {
			out = append(out, fmt.Sprintf("price chart %q has %d charts, want 1", s.Product, s.Canvases))
		}
		if other, ok := colors[s.Color]; ok || s.Color == "" {
			out = append(out, fmt.Sprintf("price charts %q and %q share the colour %q", other, s.Product, s.Color))
		}
		colors[s.Color] = s.Product
	}
	for i := range charts {
		charts[i].Text = charts[i].Product
	}
	return append(out, overlaps(charts)...)
}

// checkLayout checks the two panels whose labels used to be unreadable:
// the ingest mix's protocol names never collide, and each product of the
// electronics price history is drawn apart from the others.
func checkLayout(t *testing.T, ctx context.Context, analytics salesv1connect.AnalyticsServiceClient) {
	t.Helper()
	labels := boxes(t, ctx, `[data-testid="ingest-mix"] [data-testid="ingest-label"]`)
	if len(labels) < 6 {
		t.Errorf("ingest mix has %d labels, want one per protocol (6 or more)", len(labels))
	}
	for _, p := range labelProblems(labels) {
		t.Errorf("ingest mix: %s", p)
	}

	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hist, err := analytics.GetPriceHistory(callCtx, &salesv1.GetPriceHistoryRequest{})
	if err != nil {
		t.Fatalf("GetPriceHistory() = %v", err)
	}
	var products []string
	for _, p := range hist.GetProducts() {
		products = append(products, p.GetProductId())
	}
	if len(products) < 2 {
		t.Fatalf("GetPriceHistory() has %d products, want several to tell apart", len(products))
	}
	waitValue(t, ctx, "price-history", strings.Join(products, ","), 10*time.Second)
	for _, p := range productProblems(boxes(t, ctx, `[data-testid="price-product"]`), products) {
		t.Errorf("price history: %s", p)
	}
	t.Logf("ingest labels %d, apart; price charts %d, one per product %v", len(labels), len(products), products)
}

// TestLayoutChecksCanFail shows the layout checks failing on pages made to
// fail them: the old ingest axis, whose labels ran into each other, and
// price charts that miss a product and repeat a colour.
func TestLayoutChecksCanFail(t *testing.T) {
	ctx := newBrowser(t)
	const page = `document.body.innerHTML = ` + "`" + `
	  <div id="mix" style="position:relative; font: 12px sans-serif">
	    <span data-testid="ingest-label" style="position:absolute; left:100px">gRPC</span>
	    <span data-testid="ingest-label" style="position:absolute; left:124px">gRPC-Web</span>
	    <span data-testid="ingest-label" style="position:absolute; left:190px; width:20px; overflow:hidden; white-space:nowrap">legacy REST</span>
	  </div>
	  <div style="margin-top:40px">
	    <div data-testid="price-product" data-product="E1" data-color="#4e79a7" style="height:40px"><canvas></canvas></div>
	    <div data-testid="price-product" data-product="E2" data-color="#4e79a7" style="height:40px"><canvas></canvas></div>
	  </div>` + "`" + `; true`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](page)); err != nil {
		t.Fatalf("write the page: %v", err)
	}
	got := labelProblems(boxes(t, ctx, `[data-testid="ingest-label"]`))
	if !strings.Contains(strings.Join(got, "\n"), `"gRPC" (`) || !strings.Contains(strings.Join(got, "\n"), `"legacy REST" is cut off`) {
		t.Errorf("labelProblems(colliding labels) = %q, want gRPC and gRPC-Web overlapping and legacy REST cut off", got)
	}
	got = productProblems(boxes(t, ctx, `[data-testid="price-product"]`), []string{"E1", "E2", "E3"})
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "2 price charts, want one per product: 3") || !strings.Contains(joined, `share the colour "#4e79a7"`) {
		t.Errorf("productProblems(two charts, one colour, three products) = %q, want a missing chart and a shared colour", got)
	}
	t.Logf("found: %q", got)
}
