package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	dto "github.com/prometheus/client_model/go"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/auth"
	"blackfriday.local/services/api/internal/legacy"
	"blackfriday.local/services/api/internal/metrics"
)

const (
	goodToken  = "good-token-0123456789abcdef"
	otherToken = "other-token-0123456789abcdef"
	wrongToken = "wrong-token-0123456789abcdef"
)

func testTokens(t *testing.T) *auth.Tokens {
	t.Helper()
	tokens, err := auth.Load("", goodToken+","+otherToken)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// withAuth sets the Authorization header of every request.
type withAuth struct {
	rt     http.RoundTripper
	header string
}

func (a withAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if a.header != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", a.header)
	}
	return a.rt.RoundTrip(req)
}

// authClients returns an HTTP/1.1 and an h2c client sending header.
func authClients(t *testing.T, header string) (http1, h2c *http.Client) {
	t.Helper()
	return &http.Client{Transport: withAuth{httpClient(t, true, false).Transport, header}},
		&http.Client{Transport: withAuth{httpClient(t, false, true).Transport, header}}
}

// writePath is one way of writing a sale, returning the Connect code the
// client saw (for REST, the code in the error body) and, for an error, the
// WWW-Authenticate challenge (every value of it, so that one sent twice
// shows).
type writePath struct {
	name      string
	procedure string
	protocol  string
	call      func(t *testing.T, h *harness, header string) (connect.Code, string, error)
}

func rpcWrite(name, procedure, protocol string, h2c bool, opts ...connect.ClientOption) writePath {
	return writePath{name, procedure, protocol, func(t *testing.T, h *harness, header string) (connect.Code, string, error) {
		c1, c2 := authClients(t, header)
		c := c1
		if h2c {
			c = c2
		}
		ctx := context.Background()
		var err error
		switch procedure {
		case salesv1connect.SalesServiceRecordSaleProcedure:
			_, err = salesv1connect.NewSalesServiceClient(c, h.url, opts...).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: validSale()})
		case salesv1connect.SalesServiceRecordSalesProcedure:
			_, err = salesv1connect.NewSalesServiceClient(c, h.url, opts...).RecordSales(ctx, &salesv1.RecordSalesRequest{Sales: []*salesv1.Sale{validSale()}})
		default:
			_, err = blackfridayconnect.NewProductSaleServiceClient(c, h.url, opts...).ProcesarVenta(ctx, &legacypb.ProductSaleRequest{
				Categoria: legacypb.CategoriaProducto_HOGAR, ProductoId: "P7", Precio: 19.99, CantidadVendida: 1,
			})
		}
		if err == nil {
			return 0, "", nil
		}
		ce := new(connect.Error)
		if !errors.As(err, &ce) {
			return connect.CodeUnknown, "", err
		}
		return ce.Code(), strings.Join(ce.Meta().Values(AuthenticateKey), " | "), ce
	}}
}

func restWrite(path string) writePath {
	return writePath{"legacy REST POST " + path, path, "legacy-rest", func(t *testing.T, h *harness, header string) (connect.Code, string, error) {
		req, err := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(`{"categoria":"Hogar","producto_id":"P7","precio":19.99,"cantidad_vendida":1}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return 0, "", nil
		}
		var body struct{ Error, Message string }
		if err := json.Unmarshal(b, &body); err != nil {
			return connect.CodeUnknown, "", fmt.Errorf("POST %s = %d %s", path, resp.StatusCode, b)
		}
		var code connect.Code
		if err := code.UnmarshalText([]byte(body.Error)); err != nil {
			return connect.CodeUnknown, "", fmt.Errorf("POST %s = %d %s", path, resp.StatusCode, b)
		}
		if code == connect.CodeUnauthenticated && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s unauthenticated = HTTP %d, want 401", path, resp.StatusCode)
		}
		return code, strings.Join(resp.Header.Values("WWW-Authenticate"), " | "), fmt.Errorf("POST %s = %d %s", path, resp.StatusCode, b)
	}}
}

// everyWritePath lists every write the server takes, over every protocol.
func everyWritePath() []writePath {
	return []writePath{
		rpcWrite("Connect JSON over HTTP/1.1", salesv1connect.SalesServiceRecordSaleProcedure, "connect+json", false, connect.WithProtoJSON()),
		rpcWrite("Connect JSON over h2c", salesv1connect.SalesServiceRecordSaleProcedure, "connect+json", true, connect.WithProtoJSON()),
		rpcWrite("Connect proto over HTTP/1.1", salesv1connect.SalesServiceRecordSaleProcedure, "connect+proto", false),
		rpcWrite("gRPC over h2c", salesv1connect.SalesServiceRecordSaleProcedure, "grpc", true, connect.WithGRPC()),
		rpcWrite("gRPC-Web over HTTP/1.1", salesv1connect.SalesServiceRecordSaleProcedure, "grpc-web", false, connect.WithGRPCWeb()),
		rpcWrite("RecordSales over gRPC", salesv1connect.SalesServiceRecordSalesProcedure, "grpc", true, connect.WithGRPC()),
		rpcWrite("legacy gRPC ProcesarVenta", blackfridayconnect.ProductSaleServiceProcesarVentaProcedure, "legacy-grpc", true, connect.WithGRPC()),
		restWrite("/venta"),
		restWrite("/procesar"),
	}
}

// lockedBuffer collects the server's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriteAuthEveryProtocol turns authentication on and writes a sale
// through every protocol without a token, with a wrong one, with a malformed
// header and with each accepted token: only the last are written, the others
// answer unauthenticated (HTTP 401 for REST) with a challenge, are counted
// in the metrics under that code, and no token appears in any log.
func TestWriteAuthEveryProtocol(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	m := metrics.New()
	h := newHarness(t, options{
		server:  Config{WriteTokens: testTokens(t)},
		metrics: m,
		log:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	tests := []struct {
		name          string
		header        string
		wantCode      connect.Code // 0: written
		wantChallenge string
	}{
		{"no token", "", connect.CodeUnauthenticated, `Bearer realm="blackfriday"`},
		{"wrong token", "Bearer " + wrongToken, connect.CodeUnauthenticated, `Bearer realm="blackfriday", error="invalid_token"`},
		{"token prefix", "Bearer " + goodToken[:len(goodToken)-1], connect.CodeUnauthenticated, `Bearer realm="blackfriday", error="invalid_token"`},
		{"basic scheme", "Basic " + goodToken, connect.CodeUnauthenticated, `Bearer realm="blackfriday", error="invalid_token"`},
		{"bare token", goodToken, connect.CodeUnauthenticated, `Bearer realm="blackfriday", error="invalid_token"`},
		{"good token", "Bearer " + goodToken, 0, ""},
		{"other good token, scheme in lower case", "bearer " + otherToken, 0, ""},
	}
	written := 0
	for _, path := range everyWritePath() {
		for _, tt := range tests {
			if tt.wantCode == 0 {
				written++
			}
			t.Run(path.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				code, challenge, err := path.call(t, h, tt.header)
				if code != tt.wantCode || challenge != tt.wantChallenge {
					t.Errorf("%s with %s = %v (challenge %q), want code %v (challenge %q)", path.name, tt.name, err, challenge, tt.wantCode, tt.wantChallenge)
				}
				if err != nil && tt.wantCode == connect.CodeUnauthenticated && !strings.Contains(err.Error(), "bearer token") {
					t.Errorf("%s with %s = %v, want a message about the bearer token", path.name, tt.name, err)
				}
			})
		}
	}
	t.Cleanup(func() {
		if n := h.written(t); n != int64(written) {
			t.Errorf("topic holds %d records, want the %d sent with an accepted token", n, written)
		}
		for _, token := range []string{goodToken, otherToken, wrongToken, goodToken[:len(goodToken)-1]} {
			if strings.Contains(logs.String(), token) {
				t.Errorf("the server logged a token (%s…)", token[:4])
			}
		}
		// Each path was refused 5 times; the metrics count each refusal
		// under its procedure and protocol.
		refused := map[string]float64{}
		for _, p := range everyWritePath() {
			refused[p.procedure+" "+p.protocol] += 5
		}
		got := counts(t, m, "unauthenticated")
		for key, want := range refused {
			if got[key] != want {
				t.Errorf("bf_api_requests_total{%s, code=unauthenticated} = %v, want %v", key, got[key], want)
			}
		}
	})
}

// counts reads bf_api_requests_total for one code, by "procedure protocol".
func counts(t *testing.T, m *metrics.Metrics, code string) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "bf_api_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			labels := labelMap(metric)
			if labels["code"] == code {
				out[labels["procedure"]+" "+labels["protocol"]] += metric.GetCounter().GetValue()
			}
		}
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// fakeAnalytics answers GetSummary and WatchSummary with empty aggregates.
type fakeAnalytics struct {
	salesv1connect.UnimplementedAnalyticsServiceHandler
}

func (fakeAnalytics) GetSummary(context.Context, *salesv1.GetSummaryRequest) (*salesv1.GetSummaryResponse, error) {
	return &salesv1.GetSummaryResponse{}, nil
}

func (a fakeAnalytics) WatchSummary(ctx context.Context, _ *salesv1.WatchSummaryRequest, s *connect.ServerStream[salesv1.WatchSummaryResponse]) error {
	return a.Watch(ctx, s.Send)
}

// Watch serves WatchSummary on both servers, as analytics.Service does.
func (fakeAnalytics) Watch(_ context.Context, send func(*salesv1.WatchSummaryResponse) error) error {
	return send(&salesv1.WatchSummaryResponse{Event: &salesv1.WatchSummaryResponse_Snapshot{Snapshot: &salesv1.SummarySnapshot{Version: 1}}})
}

// readCalls are the read paths: unary and streaming analytics, reflection,
// health, the probes and the dashboard. Each returns the Connect code (0 for
// success) or, for plain HTTP, maps its status.
func readCalls(t *testing.T, h *harness, header string) map[string]connect.Code {
	t.Helper()
	_, h2c := authClients(t, header)
	ctx := context.Background()
	out := map[string]connect.Code{}
	analyticsClient := salesv1connect.NewAnalyticsServiceClient(h2c, h.url, connect.WithGRPC())
	_, err := analyticsClient.GetSummary(ctx, &salesv1.GetSummaryRequest{})
	out["GetSummary"] = errCode(err)
	stream, err := analyticsClient.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
		stream.Close()
	}
	out["WatchSummary"] = errCode(err)
	_, err = grpchealth.NewClient(h2c, h.url, connect.WithGRPC()).Check(ctx, &grpchealth.CheckRequest{})
	out["health"] = errCode(err)
	refl := grpcreflect.NewClient(h2c, h.url, connect.WithGRPC())
	rs := refl.NewStream(ctx)
	_, err = rs.ListServices()
	_, _ = rs.Close()
	out["reflection"] = errCode(err)
	for _, path := range []string{"/healthz", "/"} {
		req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			out[path] = connect.CodeUnknown
		} else {
			out[path] = 0
		}
	}
	return out
}

func errCode(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// TestReadAuth checks that reads stay open when only writes are
// authenticated, and that READ_AUTH closes AnalyticsService (unary and
// streaming) and reflection but never health, the probes or the
// dashboard's files.
func TestReadAuth(t *testing.T) {
	t.Parallel()
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html></html>") })
	open := newHarness(t, options{server: Config{WriteTokens: testTokens(t)}, analytics: fakeAnalytics{}, dashboard: page})
	closed := newHarness(t, options{server: Config{WriteTokens: testTokens(t), ReadAuth: true}, analytics: fakeAnalytics{}, dashboard: page})
	all := func(c connect.Code) map[string]connect.Code {
		return map[string]connect.Code{"GetSummary": c, "WatchSummary": c, "reflection": c, "health": 0, "/healthz": 0, "/": 0}
	}
	tests := []struct {
		name   string
		h      *harness
		header string
		want   map[string]connect.Code
	}{
		{"writes only, no token", open, "", all(0)},
		{"read auth, no token", closed, "", all(connect.CodeUnauthenticated)},
		{"read auth, wrong token", closed, "Bearer " + wrongToken, all(connect.CodeUnauthenticated)},
		{"read auth, good token", closed, "Bearer " + goodToken, all(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := readCalls(t, tt.h, tt.header)
			for call, want := range tt.want {
				if got[call] != want {
					t.Errorf("%s with %s = %v, want %v", call, tt.name, got[call], want)
				}
			}
		})
	}
}

// TestLegacyOpen leaves the course's API open while SalesService needs a
// token (LEGACY_WRITE_AUTH=false).
func TestLegacyOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{server: Config{WriteTokens: testTokens(t), LegacyOpen: true}})
	for _, path := range everyWritePath() {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			want := connect.CodeUnauthenticated
			if path.protocol == "legacy-rest" || path.protocol == "legacy-grpc" {
				want = 0
			}
			if code, _, err := path.call(t, h, ""); code != want {
				t.Errorf("%s without a token = %v, want code %v", path.name, err, want)
			}
		})
	}
}

// TestAuthOffByDefault writes without a token when no token is configured.
func TestAuthOffByDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	for _, path := range everyWritePath() {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			if code, _, err := path.call(t, h, ""); code != 0 {
				t.Errorf("%s without a token, authentication off = %v, want it written", path.name, err)
			}
		})
	}
}

// okRecorder acknowledges every sale.
type okRecorder struct{}

func (okRecorder) Record(context.Context, *salesv1.Sale) error { return nil }
func (okRecorder) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	return make([]error, len(sales))
}

// TestAuthInterceptor checks the interceptor alone, on handlers mounted
// without admission: admission refuses unauthenticated writes first, and
// the interceptor must hold for any handler mounted without it.
func TestAuthInterceptor(t *testing.T) {
	t.Parallel()
	errs := newErrorMapper(time.Second, testLogger())
	opts := connect.WithInterceptors(errorInterceptor(errs), authInterceptor{policy: &authPolicy{tokens: testTokens(t)}})
	mux := http.NewServeMux()
	mux.Handle(salesv1connect.NewSalesServiceHandler(&salesService{rec: okRecorder{}, errors: errs}, opts))
	mux.Handle(blackfridayconnect.NewProductSaleServiceHandler(legacy.New(okRecorder{}, mustValidator(t)), opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tests := []struct {
		header string
		want   connect.Code
	}{
		{"", connect.CodeUnauthenticated},
		{"Bearer " + wrongToken, connect.CodeUnauthenticated},
		{"Bearer " + goodToken, 0},
	}
	for _, tt := range tests {
		c := &http.Client{Transport: withAuth{http.DefaultTransport, tt.header}}
		_, err := salesv1connect.NewSalesServiceClient(c, srv.URL).RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
		if errCode(err) != tt.want {
			t.Errorf("RecordSale(%q) without admission = %v, want code %v", tt.header, err, tt.want)
		}
		_, err = blackfridayconnect.NewProductSaleServiceClient(c, srv.URL).ProcesarVenta(context.Background(), &legacypb.ProductSaleRequest{
			Categoria: legacypb.CategoriaProducto_HOGAR, ProductoId: "P7", Precio: 1, CantidadVendida: 1,
		})
		if errCode(err) != tt.want {
			t.Errorf("ProcesarVenta(%q) without admission = %v, want code %v", tt.header, err, tt.want)
		}
	}
}

func mustValidator(t *testing.T) protovalidate.Validator {
	t.Helper()
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
