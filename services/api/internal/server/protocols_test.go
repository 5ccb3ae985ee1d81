package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// sender sends one sale through one protocol and returns the sale_id the
// server reported ("" when the protocol reports none).
type sender func(ctx context.Context, h *harness, sale *salesv1.Sale) (string, error)

func recordSale(c *http.Client, opts ...connect.ClientOption) sender {
	return func(ctx context.Context, h *harness, sale *salesv1.Sale) (string, error) {
		resp, err := salesv1connect.NewSalesServiceClient(c, h.url, opts...).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale})
		return resp.GetSaleId(), err
	}
}

func recordSales(c *http.Client, opts ...connect.ClientOption) sender {
	return func(ctx context.Context, h *harness, sale *salesv1.Sale) (string, error) {
		resp, err := salesv1connect.NewSalesServiceClient(c, h.url, opts...).RecordSales(ctx, &salesv1.RecordSalesRequest{Sales: []*salesv1.Sale{sale}})
		if err != nil {
			return "", err
		}
		if resp.GetAccepted() != 1 || resp.GetFailed() != 0 || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetErrorCode() != "" {
			return "", fmt.Errorf("RecordSales = %v, want one accepted sale", resp)
		}
		return resp.GetResults()[0].GetSaleId(), nil
	}
}

// courseNames are the course's category names, written as its clients do.
func courseName(c salesv1.Category) string {
	return map[salesv1.Category]string{1: "Electrónica", 2: "ROPA", 3: "hogar", 4: "Belleza"}[c]
}

func legacyREST(c *http.Client, path string) sender {
	return func(ctx context.Context, h *harness, sale *salesv1.Sale) (string, error) {
		// A float with more decimals than cents, rounding back to them.
		body := fmt.Sprintf(`{"categoria":%q,"producto_id":%q,"precio":%d.%02d4999,"cantidad_vendida":%d,"tienda":"centro"}`,
			courseName(sale.GetCategory()), sale.GetProductId(), sale.GetPriceCents()/100, sale.GetPriceCents()%100, sale.GetQuantity())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+path, bytes.NewBufferString(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var got struct {
			Estado string `json:"estado"`
			SaleID string `json:"sale_id"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Estado != "OK" {
			return "", fmt.Errorf("POST %s = %d %s, want 200 with estado OK", path, resp.StatusCode, b)
		}
		return got.SaleID, nil
	}
}

func legacyGRPC(c *http.Client, opts ...connect.ClientOption) sender {
	return func(ctx context.Context, h *harness, sale *salesv1.Sale) (string, error) {
		// A float a little off the cents, rounding back to them.
		return legacyGRPCPrice(ctx, c, h, sale, float64(sale.GetPriceCents())/100+0.000049, opts...)
	}
}

// legacyGRPCPrice sends sale through ProcesarVenta with the price precio.
func legacyGRPCPrice(ctx context.Context, c *http.Client, h *harness, sale *salesv1.Sale, precio float64, opts ...connect.ClientOption) (string, error) {
	if len(opts) == 0 {
		opts = []connect.ClientOption{connect.WithGRPC()}
	}
	resp, err := blackfridayconnect.NewProductSaleServiceClient(c, h.url, opts...).ProcesarVenta(ctx, &legacypb.ProductSaleRequest{
		Categoria:       legacypb.CategoriaProducto(sale.GetCategory()),
		ProductoId:      sale.GetProductId(),
		Precio:          precio,
		CantidadVendida: sale.GetQuantity(),
	})
	if err != nil {
		return "", err
	}
	if resp.GetEstado() != "OK" {
		return "", fmt.Errorf("ProcesarVenta estado = %q, want OK", resp.GetEstado())
	}
	return "", nil
}

// TestRecordSaleEveryProtocol sends sales through every protocol and
// transport the server speaks, then reads the topic and checks every record
// against the record contract, exactly.
func TestRecordSaleEveryProtocol(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	http1, h2c := httpClient(t, true, false), httpClient(t, false, true)
	// A connection goes to one server, by its first call (sniff.go): with
	// grpc-go on, native gRPC and gRPC with JSON each need connections of
	// their own.
	grpcH2C, grpcJSONH2C := httpClient(t, false, true), httpClient(t, false, true)
	tests := []struct {
		name     string
		protocol string // the ingest-protocol header
		send     sender
		// native protocols carry the client's sale_id and sold_at; the
		// legacy ones cannot.
		native bool
	}{
		{"Connect JSON over HTTP/1.1", "connect+json", recordSale(http1, connect.WithProtoJSON()), true},
		{"Connect JSON over h2c", "connect+json", recordSale(h2c, connect.WithProtoJSON()), true},
		{"Connect proto over HTTP/1.1", "connect+proto", recordSale(http1), true},
		{"Connect proto over h2c", "connect+proto", recordSale(h2c), true},
		{"gzipped Connect JSON", "connect+json", recordSale(http1, connect.WithProtoJSON(), connect.WithSendGzip()), true},
		{"gRPC over h2c", "grpc", recordSale(grpcH2C, connect.WithGRPC()), true},
		{"gRPC with JSON over h2c", "grpc", recordSale(grpcJSONH2C, connect.WithGRPC(), connect.WithProtoJSON()), true},
		{"gRPC-Web over HTTP/1.1", "grpc-web", recordSale(http1, connect.WithGRPCWeb()), true},
		{"gRPC-Web over h2c", "grpc-web", recordSale(h2c, connect.WithGRPCWeb()), true},
		{"RecordSales over gRPC", "grpc", recordSales(grpcH2C, connect.WithGRPC()), true},
		{"RecordSales over Connect JSON", "connect+json", recordSales(http1, connect.WithProtoJSON()), true},
		{"legacy REST POST /venta", "legacy-rest", legacyREST(http1, "/venta"), false},
		{"legacy REST POST /procesar over h2c", "legacy-rest", legacyREST(h2c, "/procesar"), false},
		{"legacy gRPC ProcesarVenta", "legacy-grpc", legacyGRPC(grpcH2C, connect.WithGRPC()), false},
		{"legacy ProcesarVenta over Connect JSON", "legacy-grpc", legacyGRPC(http1, connect.WithProtoJSON()), false},
	}

	type sent struct {
		sale          *salesv1.Sale // as the client sent it
		reportedID    string
		protocol      string
		native        bool
		before, after time.Time
		clientStamped bool
	}
	var mu sync.Mutex
	byProduct := map[string]*sent{}
	t.Run("send", func(t *testing.T) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				for j, stamped := range []bool{false, true} {
					if stamped && !tt.native {
						continue
					}
					sale := &salesv1.Sale{
						Category:   salesv1.Category(1 + (i+j)%4),
						ProductId:  fmt.Sprintf("P-%d.%d", i, j),
						PriceCents: int64(1000*i + 17*j + 1),
						Quantity:   int32(1 + i%5),
					}
					if stamped {
						sale.SaleId = fmt.Sprintf("client:%d", i)
						sale.SoldAt = timestamppb.New(time.Unix(1_700_000_000+int64(i), 123_000_000))
					}
					s := &sent{sale: proto.Clone(sale).(*salesv1.Sale), protocol: tt.protocol, native: tt.native, clientStamped: stamped}
					s.before = time.Now()
					id, err := tt.send(context.Background(), h, sale)
					s.after = time.Now()
					if err != nil {
						t.Fatalf("%s: send(%v) = %v, want success", tt.name, sale, err)
					}
					s.reportedID = id
					mu.Lock()
					byProduct[sale.GetProductId()] = s
					mu.Unlock()
				}
			})
		}
	})
	if t.Failed() {
		return
	}

	recs := h.consume(t)
	if len(recs) != len(byProduct) {
		t.Fatalf("topic holds %d records, want %d", len(recs), len(byProduct))
	}
	for _, r := range recs {
		s, ok := byProduct[string(r.Key)]
		if !ok {
			t.Errorf("record with unexpected key %q", r.Key)
			continue
		}
		checkRecord(t, r, s.sale, s.protocol, s.reportedID, s.clientStamped, s.before, s.after)
	}
}

// checkRecord checks one record against the record contract: key, value,
// sale_id, sold_at and headers.
func checkRecord(t *testing.T, r *kgo.Record, sent *salesv1.Sale, protocol, reportedID string, clientStamped bool, before, after time.Time) {
	t.Helper()
	got := &salesv1.Sale{}
	if err := proto.Unmarshal(r.Value, got); err != nil {
		t.Fatalf("record %s: value does not decode as a Sale: %v", r.Key, err)
	}
	if string(r.Key) != got.GetProductId() {
		t.Errorf("record key = %q, want the product id %q", r.Key, got.GetProductId())
	}
	if clientStamped {
		if !proto.Equal(got, sent) {
			t.Errorf("record %s value = %v, want %v", r.Key, got, sent)
		}
	} else {
		id, err := uuid.Parse(got.GetSaleId())
		if err != nil || id.Version() != 7 {
			t.Errorf("record %s sale_id = %q, want a UUIDv7", r.Key, got.GetSaleId())
		}
		soldAt := got.GetSoldAt().AsTime()
		if soldAt.Before(before.Truncate(time.Microsecond)) || soldAt.After(after) {
			t.Errorf("record %s sold_at = %v, want the receive time, between %v and %v", r.Key, soldAt, before, after)
		}
		want := proto.Clone(sent).(*salesv1.Sale)
		want.SaleId, want.SoldAt = got.GetSaleId(), got.GetSoldAt()
		if !proto.Equal(got, want) {
			t.Errorf("record %s value = %v, want %v", r.Key, got, want)
		}
	}
	if reportedID != "" && reportedID != got.GetSaleId() {
		t.Errorf("record %s sale_id = %q, but the client was told %q", r.Key, got.GetSaleId(), reportedID)
	}
	wantHeaders := []kgo.RecordHeader{
		{Key: "content-type", Value: []byte("application/x-protobuf")},
		{Key: "schema", Value: []byte("blackfriday.sales.v1.Sale")},
		{Key: "ingest-protocol", Value: []byte(protocol)},
	}
	if !slices.EqualFunc(r.Headers, wantHeaders, func(a, b kgo.RecordHeader) bool {
		return a.Key == b.Key && string(a.Value) == string(b.Value)
	}) {
		t.Errorf("record %s headers = %v, want %v", r.Key, r.Headers, wantHeaders)
	}
}
