package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestLegacyREST checks the course's REST answers over real HTTP.
func TestLegacyREST(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{maxRequestBytes: 1024})
	const good = `{"categoria":"Electronica","producto_id":"P7","precio":532.8812345,"cantidad_vendida":13}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		wantStatus  int
		wantBody    map[string]string // fields of the JSON answer; sale_id is checked apart
		wantHeader  map[string]string
	}{
		{"course example", "POST", "/venta", "application/json", good, 200, map[string]string{"estado": "OK"}, nil},
		{"procesar", "POST", "/procesar", "application/json; charset=utf-8", good, 200, map[string]string{"estado": "OK"}, nil},
		{"no content type", "POST", "/venta", "", good, 200, map[string]string{"estado": "OK"}, nil},
		{"bad precio", "POST", "/venta", "application/json", `{"categoria":"Ropa","producto_id":"P7","precio":"caro","cantidad_vendida":1}`,
			400, map[string]string{"error": "invalid_argument", "field": "precio", "message": "must be a number"}, nil},
		{"zero precio", "POST", "/venta", "application/json", `{"categoria":"Ropa","producto_id":"P7","precio":0.004,"cantidad_vendida":1}`,
			400, map[string]string{"error": "invalid_argument", "field": "precio",
				"message": "must be greater than 0 and less than or equal to 100000000 (precio is 0 cents once rounded to cents)"}, nil},
		{"bad producto", "POST", "/venta", "application/json", `{"categoria":"Ropa","producto_id":"P 7","precio":1,"cantidad_vendida":1}`,
			400, map[string]string{"error": "invalid_argument", "field": "producto_id",
				"message": "does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"}, nil},
		{"too many units", "POST", "/venta", "application/json", `{"categoria":1,"producto_id":"P7","precio":1,"cantidad_vendida":10001}`,
			400, map[string]string{"error": "invalid_argument", "field": "cantidad_vendida",
				"message": "must be greater than or equal to 1 and less than or equal to 10000"}, nil},
		{"missing categoria", "POST", "/venta", "application/json", `{"producto_id":"P7","precio":1,"cantidad_vendida":1}`,
			400, map[string]string{"error": "invalid_argument", "field": "categoria", "message": "is required"}, nil},
		{"not JSON", "POST", "/venta", "application/json", `categoria=1`,
			400, map[string]string{"error": "invalid_argument", "message": "body is not valid JSON (at byte 1)"}, nil},
		{"wrong method", "GET", "/venta", "", "",
			405, map[string]string{"error": "unimplemented", "message": "use POST"}, map[string]string{"Allow": "POST"}},
		{"wrong content type", "POST", "/procesar", "text/plain", good,
			415, map[string]string{"error": "invalid_argument", "message": "Content-Type must be application/json"}, nil},
		{"oversized", "POST", "/venta", "application/json", `{"categoria":1,"producto_id":"P7","precio":1,"cantidad_vendida":1,"x":"` + strings.Repeat("x", 2000) + `"}`,
			413, map[string]string{"error": "resource_exhausted", "message": "request body is larger than 1024 bytes"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, h.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var got map[string]string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s %s body = %s, want JSON: %v", tt.method, tt.path, b, err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				if got["sale_id"] == "" {
					t.Errorf("%s %s = %s, want a sale_id", tt.method, tt.path, b)
				}
				delete(got, "sale_id")
			}
			if !equalMaps(got, tt.wantBody) {
				t.Errorf("%s %s = %s, want %v", tt.method, tt.path, b, tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if resp.Header.Get(k) != v {
					t.Errorf("%s %s header %s = %q, want %q", tt.method, tt.path, k, resp.Header.Get(k), v)
				}
			}
		})
	}
	t.Cleanup(func() {
		// Only the three good requests were written.
		recs := h.consume(t)
		if len(recs) != 3 {
			t.Fatalf("topic holds %d records, want 3", len(recs))
		}
		want := &salesv1.Sale{Category: salesv1.Category_CATEGORY_ELECTRONICS, ProductId: "P7", PriceCents: 53288, Quantity: 13}
		for _, r := range recs {
			got := &salesv1.Sale{}
			if err := proto.Unmarshal(r.Value, got); err != nil {
				t.Fatal(err)
			}
			want.SaleId, want.SoldAt = got.GetSaleId(), got.GetSoldAt()
			if !proto.Equal(got, want) {
				t.Errorf("record = %v, want %v", got, want)
			}
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLegacyPathsAgree sends the same prices through REST and gRPC: both
// round the decimal text half to even, so they record the same cents.
func TestLegacyPathsAgree(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	h2c := httpClient(t, false, true)
	prices := []struct {
		text  string
		cents int64
	}{{"0.125", 12}, {"2.675", 268}, {"1.005", 100}, {"532.8812345", 53288}, {"0.135", 14}, {"1e2", 10000}}
	for i, p := range prices {
		body := `{"categoria":4,"producto_id":"R` + string(rune('a'+i)) + `","precio":` + p.text + `,"cantidad_vendida":1}`
		resp, err := http.Post(h.url+"/venta", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /venta %s = %d, want 200", body, resp.StatusCode)
		}
		var f float64
		if err := json.Unmarshal([]byte(p.text), &f); err != nil {
			t.Fatal(err)
		}
		sale := &salesv1.Sale{Category: salesv1.Category_CATEGORY_BEAUTY, ProductId: "G" + string(rune('a'+i)), PriceCents: 0, Quantity: 1}
		_, err = legacyGRPCPrice(context.Background(), h2c, h, sale, f)
		if err != nil {
			t.Fatalf("ProcesarVenta(precio %v) = %v", f, err)
		}
	}
	got := map[string]int64{}
	for _, r := range h.consume(t) {
		s := &salesv1.Sale{}
		if err := proto.Unmarshal(r.Value, s); err != nil {
			t.Fatal(err)
		}
		got[s.GetProductId()] = s.GetPriceCents()
	}
	for i, p := range prices {
		suffix := string(rune('a' + i))
		if got["R"+suffix] != p.cents || got["G"+suffix] != p.cents {
			t.Errorf("precio %s recorded as %d cents (REST) and %d (gRPC), want %d", p.text, got["R"+suffix], got["G"+suffix], p.cents)
		}
	}
}
