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
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

func validSale() *salesv1.Sale {
	return &salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "P1", PriceCents: 1999, Quantity: 2}
}

// TestValidation checks that every rule of the schema answers
// invalid_argument naming the field, over every protocol, and that nothing
// reaches the topic.
func TestValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	http1, h2c := httpClient(t, true, false), httpClient(t, false, true)
	clients := map[string]salesv1connect.SalesServiceClient{
		"connect+json":  salesv1connect.NewSalesServiceClient(http1, h.url, connect.WithProtoJSON()),
		"connect+proto": salesv1connect.NewSalesServiceClient(http1, h.url),
		"grpc":          salesv1connect.NewSalesServiceClient(h2c, h.url, connect.WithGRPC()),
		"grpc-web":      salesv1connect.NewSalesServiceClient(http1, h.url, connect.WithGRPCWeb()),
	}
	long := strings.Repeat("x", 65)
	edit := func(f func(*salesv1.Sale)) *salesv1.RecordSaleRequest {
		s := validSale()
		f(s)
		return &salesv1.RecordSaleRequest{Sale: s}
	}
	tests := []struct {
		name string
		req  *salesv1.RecordSaleRequest
		want string // the violation, as the message names it
	}{
		{"missing sale", &salesv1.RecordSaleRequest{}, "sale: value is required"},
		{"unspecified category", edit(func(s *salesv1.Sale) { s.Category = 0 }), "sale.category: value is required"},
		{"unknown category", edit(func(s *salesv1.Sale) { s.Category = 9 }), "sale.category: value must be one of the defined enum values"},
		{"missing product", edit(func(s *salesv1.Sale) { s.ProductId = "" }), "sale.product_id: value is required"},
		{"long product", edit(func(s *salesv1.Sale) { s.ProductId = long }), "sale.product_id: must be at most 64 characters"},
		{"product pattern", edit(func(s *salesv1.Sale) { s.ProductId = "-P1" }), "sale.product_id: does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"},
		{"product with space", edit(func(s *salesv1.Sale) { s.ProductId = "P 1" }), "sale.product_id: does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"},
		{"zero price", edit(func(s *salesv1.Sale) { s.PriceCents = 0 }), "sale.price_cents: must be greater than 0 and less than or equal to 100000000"},
		{"negative price", edit(func(s *salesv1.Sale) { s.PriceCents = -5 }), "sale.price_cents: must be greater than 0 and less than or equal to 100000000"},
		{"huge price", edit(func(s *salesv1.Sale) { s.PriceCents = 100_000_001 }), "sale.price_cents: must be greater than 0 and less than or equal to 100000000"},
		{"zero quantity", edit(func(s *salesv1.Sale) { s.Quantity = 0 }), "sale.quantity: must be greater than or equal to 1 and less than or equal to 10000"},
		{"negative quantity", edit(func(s *salesv1.Sale) { s.Quantity = -1 }), "sale.quantity: must be greater than or equal to 1 and less than or equal to 10000"},
		{"huge quantity", edit(func(s *salesv1.Sale) { s.Quantity = 10_001 }), "sale.quantity: must be greater than or equal to 1 and less than or equal to 10000"},
		{"long sale id", edit(func(s *salesv1.Sale) { s.SaleId = long }), "sale.sale_id: must be at most 64 characters"},
		{"sale id pattern", edit(func(s *salesv1.Sale) { s.SaleId = "_x" }), "sale.sale_id: does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"},
		{"sold before 2000", edit(func(s *salesv1.Sale) { s.SoldAt = timestamppb.New(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC)) }), "sale.sold_at: must be greater than 2000-01-01T00:00:00Z"},
		{"sold in the future", edit(func(s *salesv1.Sale) { s.SoldAt = timestamppb.New(time.Now().Add(2 * time.Hour)) }), "sale.sold_at: must not be more than one hour in the future"},
	}
	for _, tt := range tests {
		for protocol, client := range clients {
			t.Run(tt.name+"/"+protocol, func(t *testing.T) {
				t.Parallel()
				resp, err := client.RecordSale(context.Background(), tt.req)
				checkInvalid(t, "RecordSale", resp, err, tt.want)
			})
		}
	}

	batch := func(n int, f func(i int, s *salesv1.Sale)) *salesv1.RecordSalesRequest {
		req := &salesv1.RecordSalesRequest{}
		for i := range n {
			s := validSale()
			f(i, s)
			req.Sales = append(req.Sales, s)
		}
		return req
	}
	batchTests := []struct {
		name string
		req  *salesv1.RecordSalesRequest
		want string
	}{
		{"empty batch", &salesv1.RecordSalesRequest{}, "sales: must contain at least 1 item(s)"},
		{"oversized batch", batch(1001, func(int, *salesv1.Sale) {}), "sales: must contain no more than 1000 item(s)"},
		{"one bad quantity", batch(4, func(i int, s *salesv1.Sale) {
			if i == 2 {
				s.Quantity = 0
			}
		}), "sales[2].quantity: must be greater than or equal to 1 and less than or equal to 10000"},
		{"one bad price", batch(5, func(i int, s *salesv1.Sale) {
			if i == 3 {
				s.PriceCents = -1
			}
		}), "sales[3].price_cents: must be greater than 0 and less than or equal to 100000000"},
	}
	for _, tt := range batchTests {
		for protocol, client := range clients {
			t.Run(tt.name+"/"+protocol, func(t *testing.T) {
				t.Parallel()
				resp, err := client.RecordSales(context.Background(), tt.req)
				checkInvalid(t, "RecordSales", resp, err, tt.want)
			})
		}
	}

	t.Cleanup(func() {
		if n := h.written(t); n != 0 {
			t.Errorf("topic holds %d records after invalid sales only, want 0", n)
		}
	})
}

func checkInvalid(t *testing.T, method string, resp any, err error, want string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		t.Fatalf("%s() = %v, %v, want invalid_argument", method, resp, err)
	}
	if got := ce.Message(); got != "validation error: "+want {
		t.Errorf("%s() message = %q, want %q", method, got, "validation error: "+want)
	}
}

// TestValidationOverRawHTTP posts JSON as curl would: a bad price is HTTP 400
// with the field named.
func TestValidationOverRawHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"bad price", `{"sale":{"category":"CATEGORY_ELECTRONICS","productId":"P1","priceCents":"-1","quantity":2}}`,
			400, "invalid_argument", "sale.price_cents: must be greater than 0"},
		{"price as number", `{"sale":{"category":"CATEGORY_ELECTRONICS","productId":"P1","priceCents":0,"quantity":2}}`,
			400, "invalid_argument", "sale.price_cents"},
		{"category by number", `{"sale":{"category":7,"productId":"P1","priceCents":1,"quantity":2}}`,
			400, "invalid_argument", "sale.category"},
		{"not JSON", `{"sale":`, 400, "invalid_argument", "unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := http.Post(h.url+salesv1connect.SalesServiceRecordSaleProcedure, "application/json", bytes.NewBufferString(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var got struct{ Code, Message string }
			if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != tt.wantStatus || got.Code != tt.wantCode || !strings.Contains(got.Message, tt.wantMsg) {
				t.Errorf("POST RecordSale %s = %d %s, want %d with %s naming %q", tt.body, resp.StatusCode, b, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
		})
	}
	t.Cleanup(func() {
		if n := h.written(t); n != 0 {
			t.Errorf("topic holds %d records after invalid sales only, want 0", n)
		}
	})
}
