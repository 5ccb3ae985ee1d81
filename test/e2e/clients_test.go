package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// http1 speaks HTTP/1.1 only; h2c speaks HTTP/2 without TLS (prior
// knowledge), as gRPC clients do, and carries native gRPC only; connectH2C
// carries the other protocols over h2c. The api hands each connection to
// one server by its first call (grpc-go for native gRPC, by default), so a
// connection must not mix them.
var (
	http1      = &http.Client{Transport: &http.Transport{Protocols: protocols(true, false)}}
	h2c        = &http.Client{Transport: &http.Transport{Protocols: protocols(false, true)}}
	connectH2C = &http.Client{Transport: &http.Transport{Protocols: protocols(false, true)}}
)

// grpcServers are the values of the api's GRPC_SERVER: the servers native
// gRPC can be served by.
var grpcServers = []string{"grpc-go", "connect"}

// grpcGoRecord records a sale with grpc-go's own client.
func grpcGoRecord(ctx context.Context, s *stack, sale *salesv1.Sale) error {
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(s.url(), "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	}
	_, err = salesv1.NewSalesServiceClient(conn).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale})
	return err
}

func protocols(h1, h2c bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(h1)
	p.SetUnencryptedHTTP2(h2c)
	return p
}

// protocol is one way of sending a sale to the api.
type protocol struct {
	name   string // the record's ingest-protocol header value
	label  string
	record func(ctx context.Context, s *stack, sale *salesv1.Sale) error
}

// salesClient returns a SalesService client over the given transport.
func salesClient(s *stack, c *http.Client, opts ...connect.ClientOption) salesv1connect.SalesServiceClient {
	return salesClientAt(s, s.url(), c, opts...)
}

// salesClientAt returns a SalesService client of the api at base, with
// the stack's bearer token when it has one.
func salesClientAt(s *stack, base string, c *http.Client, opts ...connect.ClientOption) salesv1connect.SalesServiceClient {
	if s.token != "" {
		opts = append(opts, connect.WithInterceptors(withToken(s.token)))
	}
	return salesv1connect.NewSalesServiceClient(c, base, opts...)
}

// withToken adds the Authorization header a write needs where the api
// checks tokens.
func withToken(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

func analyticsClient(s *stack) salesv1connect.AnalyticsServiceClient {
	return salesv1connect.NewAnalyticsServiceClient(h2c, s.url(), connect.WithGRPC())
}

func unary(c *http.Client, opts ...connect.ClientOption) func(context.Context, *stack, *salesv1.Sale) error {
	return func(ctx context.Context, s *stack, sale *salesv1.Sale) error {
		_, err := salesClient(s, c, opts...).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale})
		return err
	}
}

// everyProtocol lists every ingest path the api serves.
var everyProtocol = []protocol{
	{"connect+json", "Connect JSON over HTTP/1.1", unary(http1, connect.WithProtoJSON())},
	{"connect+json", "Connect JSON over h2c", unary(connectH2C, connect.WithProtoJSON())},
	{"connect+proto", "Connect proto over HTTP/1.1", unary(http1)},
	{"grpc", "gRPC over h2c", unary(h2c, connect.WithGRPC())},
	{"grpc", "gRPC with grpc-go's client", grpcGoRecord},
	{"grpc-web", "gRPC-Web over HTTP/1.1", unary(http1, connect.WithGRPCWeb())},
	{"grpc", "RecordSales batch over gRPC", func(ctx context.Context, s *stack, sale *salesv1.Sale) error {
		resp, err := salesClient(s, h2c, connect.WithGRPC()).RecordSales(ctx, &salesv1.RecordSalesRequest{Sales: []*salesv1.Sale{sale}})
		if err != nil {
			return err
		}
		if resp.GetAccepted() != 1 || resp.GetResults()[0].GetErrorCode() != "" {
			return fmt.Errorf("RecordSales = %v, want one accepted sale", resp)
		}
		return nil
	}},
	{"legacy-rest", "legacy REST POST /venta", legacyREST("/venta")},
	{"legacy-rest", "legacy REST POST /procesar", legacyREST("/procesar")},
	{"legacy-grpc", "legacy gRPC ProcesarVenta", func(ctx context.Context, s *stack, sale *salesv1.Sale) error {
		c := blackfridayconnect.NewProductSaleServiceClient(h2c, s.url(), connect.WithGRPC())
		resp, err := c.ProcesarVenta(ctx, &legacypb.ProductSaleRequest{
			Categoria:       legacypb.CategoriaProducto(sale.GetCategory()),
			ProductoId:      sale.GetProductId(),
			Precio:          float64(sale.GetPriceCents())/100 + 0.000049, // rounds back to the cents
			CantidadVendida: sale.GetQuantity(),
		})
		if err != nil {
			return err
		}
		if resp.GetEstado() != "OK" {
			return fmt.Errorf("ProcesarVenta estado = %q, want OK", resp.GetEstado())
		}
		return nil
	}},
}

var legacyNames = map[salesv1.Category]string{
	salesv1.Category_CATEGORY_ELECTRONICS: "Electronica",
	salesv1.Category_CATEGORY_CLOTHING:    "ROPA",
	salesv1.Category_CATEGORY_HOME:        "hogar",
	salesv1.Category_CATEGORY_BEAUTY:      "Belleza",
}

// legacyREST posts the course's JSON body, with a float price carrying more
// decimals than cents, as the course clients did.
func legacyREST(path string) func(context.Context, *stack, *salesv1.Sale) error {
	return func(ctx context.Context, s *stack, sale *salesv1.Sale) error {
		body := fmt.Sprintf(`{"categoria":%q,"producto_id":%q,"precio":%d.%02d4999,"cantidad_vendida":%d}`,
			legacyNames[sale.GetCategory()], sale.GetProductId(), sale.GetPriceCents()/100, sale.GetPriceCents()%100, sale.GetQuantity())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url()+path, bytes.NewBufferString(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http1.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var got struct {
			Estado string `json:"estado"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Estado != "OK" {
			return fmt.Errorf("POST %s = %d %s, want 200 with estado OK", path, resp.StatusCode, b)
		}
		return nil
	}
}

// getSummaryJSON fetches GetSummary with an HTTP GET, as curl --get does.
func getSummaryJSON(ctx context.Context, t *testing.T, s *stack) *salesv1.GetSummaryResponse {
	t.Helper()
	q := url.Values{"encoding": {"json"}, "message": {"{}"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url()+"/"+salesv1connect.AnalyticsServiceName+"/GetSummary?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http1.Do(req)
	if err != nil {
		t.Fatalf("GET GetSummary: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET GetSummary = %d %s, want 200", resp.StatusCode, b)
	}
	var out salesv1.GetSummaryResponse
	if err := protojson.Unmarshal(b, &out); err != nil {
		t.Fatalf("GET GetSummary body %s: %v", b, err)
	}
	return &out
}
