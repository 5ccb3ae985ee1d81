package browser

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// categoryKeys are the names the page's test ids use.
var categoryKeys = map[salesv1.Category]string{
	salesv1.Category_CATEGORY_ELECTRONICS: "electronics",
	salesv1.Category_CATEGORY_CLOTHING:    "clothing",
	salesv1.Category_CATEGORY_HOME:        "home",
	salesv1.Category_CATEGORY_BEAUTY:      "beauty",
}

// agg is the exact aggregate of a set of sales.
type agg struct{ sales, units, revenue, priceSum, min, max int64 }

func (a *agg) add(s *salesv1.Sale) {
	p, q := s.GetPriceCents(), int64(s.GetQuantity())
	a.sales++
	a.units += q
	a.revenue += p * q
	a.priceSum += p
	if a.min == 0 || p < a.min {
		a.min = p
	}
	a.max = max(a.max, p)
}

// truth is what the page must show: every sale the api acknowledged.
type truth struct {
	total    agg
	cats     map[salesv1.Category]*agg
	units    map[string]int64                      // product → units
	catUnits map[salesv1.Category]map[string]int64 // category → product → units
	ingest   map[string]int64
}

func newTruth() *truth {
	t := &truth{cats: map[salesv1.Category]*agg{}, units: map[string]int64{}, catUnits: map[salesv1.Category]map[string]int64{}, ingest: map[string]int64{}}
	for c := range categoryKeys {
		t.cats[c] = &agg{}
		t.catUnits[c] = map[string]int64{}
	}
	return t
}

func (t *truth) acked(s *salesv1.Sale, protocol string) {
	t.total.add(s)
	t.cats[s.GetCategory()].add(s)
	t.units[s.GetProductId()] += int64(s.GetQuantity())
	t.catUnits[s.GetCategory()][s.GetProductId()] += int64(s.GetQuantity())
	t.ingest[protocol]++
}

// ranking is the page's data-value of a ranking: "id:units,…", best (most
// units first) or worst (fewest first), ties by id, five at most.
func ranking(units map[string]int64, best bool) string {
	ids := make([]string, 0, len(units))
	for id := range units {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(units[a], units[b]); c != 0 {
			if best {
				return -c
			}
			return c
		}
		return cmp.Compare(a, b)
	})
	var parts []string
	for _, id := range ids[:min(5, len(ids))] {
		parts = append(parts, id+":"+strconv.FormatInt(units[id], 10))
	}
	return strings.Join(parts, ",")
}

// knownSales is the fixed set the test sends: every category, a skewed mix
// of products, prices with cents, quantities from 1 to 7.
func knownSales() []*salesv1.Sale {
	products := map[salesv1.Category][]string{
		salesv1.Category_CATEGORY_ELECTRONICS: {"TV-55", "LAPTOP-14", "PHONE-X", "EARBUDS", "CAMERA"},
		salesv1.Category_CATEGORY_CLOTHING:    {"JACKET", "JEANS", "SNEAKERS", "SCARF"},
		salesv1.Category_CATEGORY_HOME:        {"SOFA", "LAMP", "KETTLE"},
		salesv1.Category_CATEGORY_BEAUTY:      {"SERUM", "PERFUME", "LIPSTICK"},
	}
	var out []*salesv1.Sale
	for i := range 160 {
		cat := salesv1.Category(1 + i%4)
		ps := products[cat]
		// Popularity falls with the index: the first products sell most.
		p := ps[(i*i/7)%len(ps)]
		out = append(out, &salesv1.Sale{
			Category:   cat,
			ProductId:  p,
			PriceCents: int64(199 + (i*7919)%99800),
			Quantity:   int32(1 + (i*13)%7),
		})
	}
	return out
}

// sender sends one sale through one protocol.
type sender struct {
	protocol string // the ingest-protocol the aggregator counts it under
	send     func(ctx context.Context, base string, s *salesv1.Sale) error
}

// h2c is a client speaking cleartext HTTP/2, as gRPC clients do.
var h2c = func() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 64}}
}()

// senders covers the protocols a browser user cares to tell apart in the
// ingest mix, legacy REST included.
func senders() []sender {
	native := func(c *http.Client, opts ...connect.ClientOption) func(context.Context, string, *salesv1.Sale) error {
		return func(ctx context.Context, base string, s *salesv1.Sale) error {
			_, err := salesv1connect.NewSalesServiceClient(c, base, opts...).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: s})
			return err
		}
	}
	return []sender{
		{"connect+json", native(http.DefaultClient, connect.WithProtoJSON())},
		{"grpc", native(h2c, connect.WithGRPC())},
		{"grpc-web", native(http.DefaultClient, connect.WithGRPCWeb())},
		{"legacy-rest", func(ctx context.Context, base string, s *salesv1.Sale) error {
			names := map[salesv1.Category]string{1: "Electronica", 2: "Ropa", 3: "Hogar", 4: "Belleza"}
			body := fmt.Sprintf(`{"categoria":%q,"producto_id":%q,"precio":%d.%02d,"cantidad_vendida":%d}`,
				names[s.GetCategory()], s.GetProductId(), s.GetPriceCents()/100, s.GetPriceCents()%100, s.GetQuantity())
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/venta", bytes.NewBufferString(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("POST /venta = %d", resp.StatusCode)
			}
			return nil
		}},
	}
}
