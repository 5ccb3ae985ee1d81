package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"testing"

	"connectrpc.com/connect"
	"github.com/redis/rueidis"
	"google.golang.org/protobuf/encoding/protojson"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/testenv"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/analytics"
)

// getSummary fetches GetSummary with an HTTP GET, as curl --get does.
func getSummary(t *testing.T, h *harness) (int, []byte) {
	t.Helper()
	q := url.Values{"encoding": {"json"}, "message": {"{}"}}
	resp, err := http.Get(h.url + salesv1connect.AnalyticsServiceGetSummaryProcedure + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAnalyticsValkeyDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	status, b := getSummary(t, h)
	const want = `{"code":"unavailable","message":"analytics store is unavailable; retry later"}`
	if status != http.StatusServiceUnavailable || string(b) != want {
		t.Errorf("GET GetSummary with Valkey down = %d %s, want 503 %s", status, b, want)
	}
}

func TestAnalyticsOverConnect(t *testing.T) {
	t.Parallel()
	addr := testenv.Valkey(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "bftest:" + hex.EncodeToString(b) + ":"
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	totals := keys.New(prefix).Totals()
	seed := c.B().Hset().Key(totals).FieldValue().FieldValue("sales", "3").FieldValue("units", "5").Build()
	if err := c.Do(ctx, seed).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Do(ctx, c.B().Del().Key(totals).Build()) })
	store := analytics.New(analytics.Config{Addr: addr, KeyPrefix: prefix})
	t.Cleanup(store.Close)
	h := newHarness(t, options{analytics: store, valkey: store})

	status, body := getSummary(t, h)
	var got salesv1.GetSummaryResponse
	if status != http.StatusOK || protojson.Unmarshal(body, &got) != nil || got.GetSales() != 3 || got.GetUnits() != 5 || len(got.GetCategories()) != 4 {
		t.Errorf("GET GetSummary = %d %s, want 200 with 3 sales, 5 units, 4 categories", status, body)
	}
	if status, ready := getJSON(t, h.url+"/readyz"); status != 200 || ready["valkey"] != "ok" {
		t.Errorf("GET /readyz = %d %v, want 200 with valkey ok", status, ready)
	}

	client := salesv1connect.NewAnalyticsServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
	_, err = client.GetTopProducts(ctx, &salesv1.GetTopProductsRequest{Limit: 101})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("GetTopProducts(limit 101) = %v, want invalid_argument", err)
	}
	top, err := client.GetTopProducts(ctx, &salesv1.GetTopProductsRequest{})
	if err != nil || len(top.GetProducts()) != 0 {
		t.Errorf("GetTopProducts() = %v, %v, want no products", top, err)
	}
}
