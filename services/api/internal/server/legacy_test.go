package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
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
		{"own sale_id", "POST", "/venta", "application/json", strings.TrimSuffix(good, "}") + `,"sale_id":"caja-7:0042"}`,
			200, map[string]string{"estado": "OK", "sale_id": "caja-7:0042"}, nil},
		{"bad sale_id", "POST", "/venta", "application/json", strings.TrimSuffix(good, "}") + `,"sale_id":"caja 7"}`,
			400, map[string]string{"error": "invalid_argument", "field": "sale_id",
				"message": "does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"}, nil},
		{"sale_id not a string", "POST", "/venta", "application/json", strings.TrimSuffix(good, "}") + `,"sale_id":42}`,
			400, map[string]string{"error": "invalid_argument", "field": "sale_id", "message": "must be a string"}, nil},
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
				if want, ok := tt.wantBody["sale_id"]; got["sale_id"] == "" || ok && got["sale_id"] != want {
					t.Errorf("%s %s = %s, want a sale_id", tt.method, tt.path, b)
				}
				got["sale_id"] = tt.wantBody["sale_id"]
				if got["sale_id"] == "" {
					delete(got, "sale_id")
				}
			} else {
				// Every failure says whether the sale was written: here,
				// never.
				if got["sale_recorded"] != "no" || resp.Header.Get("Sale-Recorded") != "no" {
					t.Errorf("%s %s = %s, Sale-Recorded %q, want sale_recorded and Sale-Recorded no", tt.method, tt.path, b, resp.Header.Get("Sale-Recorded"))
				}
				delete(got, "sale_recorded")
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
		// Only the four good requests were written.
		recs := h.consume(t)
		if len(recs) != 4 {
			t.Fatalf("topic holds %d records, want 4", len(recs))
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

// TestLegacyAnswersSayWhatWasRecorded: a course sale that may have been
// written is answered "unknown" on both course APIs. The REST client can
// name its sale (sale_id, our extension of its body) and is told to retry
// with it; the gRPC client cannot, and is told nothing it cannot do.
func TestLegacyAnswersSayWhatWasRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{recorder: outcomeRecorder{}})
	for _, outcome := range []string{"no", "unknown"} {
		body := `{"categoria":"Hogar","producto_id":"` + outcome + `","precio":2.5,"cantidad_vendida":1,"sale_id":"caja-1:` + outcome + `"}`
		resp, err := http.Post(h.url+"/venta", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got map[string]string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("POST /venta = %s, want JSON", b)
		}
		if got["sale_recorded"] != outcome || resp.Header.Get(SaleRecordedKey) != outcome || got["sale_id"] != "caja-1:"+outcome {
			t.Errorf("POST /venta (%s) = %d %s, Sale-Recorded %q, want sale_recorded and Sale-Recorded %q and the client's sale_id",
				outcome, resp.StatusCode, b, resp.Header.Get(SaleRecordedKey), outcome)
		}
		if outcome == "unknown" && !strings.Contains(got["message"], "retry with the same sale_id") {
			t.Errorf("POST /venta (unknown) message = %q, want it to say to retry with the same sale_id", got["message"])
		}

		sale := validSale()
		sale.ProductId = outcome
		_, err = legacyGRPCPrice(context.Background(), httpClient(t, false, true), h, sale, 2.5)
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Meta().Get(SaleRecordedKey) != outcome {
			t.Fatalf("ProcesarVenta (%s) = %v, want an error with Sale-Recorded %q", outcome, err, outcome)
		}
		if strings.Contains(ce.Message(), "sale_id") {
			t.Errorf("ProcesarVenta (%s) message = %q: a course gRPC client cannot send a sale_id", outcome, ce.Message())
		}
		if outcome == "unknown" && !strings.Contains(ce.Message(), "may have been recorded") {
			t.Errorf("ProcesarVenta (unknown) message = %q, want it to say the sale may have been recorded", ce.Message())
		}
	}
}
