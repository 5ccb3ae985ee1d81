package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// pinger answers Ping with err.
type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("GET %s = %s, want JSON", url, b)
	}
	return resp.StatusCode, got
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		valkey     Pinger
		wantStatus int
		want       map[string]any
	}{
		{"valkey down", nil, 503, map[string]any{"ready": false, "kafka": "ok", "valkey": "unreachable", "shutting_down": false}},
		{"all up", pinger{}, 200, map[string]any{"ready": true, "kafka": "ok", "valkey": "ok", "shutting_down": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, options{valkey: tt.valkey})
			if status, got := getJSON(t, h.url+"/healthz"); status != 200 || got["status"] != "ok" {
				t.Errorf("GET /healthz = %d %v, want 200 ok", status, got)
			}
			status, got := getJSON(t, h.url+"/readyz")
			if status != tt.wantStatus || !equalAny(got, tt.want) {
				t.Errorf("GET /readyz = %d %v, want %d %v", status, got, tt.wantStatus, tt.want)
			}
		})
	}
}

func equalAny(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestReadinessDuringShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{valkey: pinger{}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shut down without waiting
	_ = h.srv.Shutdown(ctx)
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 503 || got["shutting_down"] != true || got["ready"] != false {
		t.Errorf("GET /readyz after Shutdown = %d %s, want 503 shutting down", rec.Code, rec.Body)
	}
}

func TestGRPCHealthAndReflection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	h2c := httpClient(t, false, true)
	health := grpchealth.NewClient(h2c, h.url, connect.WithGRPC())
	for _, service := range []string{"", salesv1connect.SalesServiceName, salesv1connect.AnalyticsServiceName, "blackfriday.ProductSaleService"} {
		resp, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil || resp.Status != grpchealth.StatusServing {
			t.Errorf("health Check(%q) = %v, %v, want SERVING", service, resp, err)
		}
	}

	stream := grpcreflect.NewClient(h2c, h.url, connect.WithGRPC()).NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatalf("ListServices() = %v", err)
	}
	for _, want := range []string{
		salesv1connect.SalesServiceName, salesv1connect.AnalyticsServiceName,
		"blackfriday.ProductSaleService", grpchealth.HealthV1ServiceName,
	} {
		if !containsName(names, want) {
			t.Errorf("ListServices() = %v, want it to hold %s", names, want)
		}
	}
}

func containsName[T ~string](names []T, want string) bool {
	for _, n := range names {
		if string(n) == want {
			return true
		}
	}
	return false
}

// TestCORS checks the browser rules with an explicit allowlist, as in
// production: an allowed origin gets the CORS headers on preflights (Connect,
// gRPC-Web and the course's REST, with a bearer token) and on actual calls,
// with the sale's metadata exposed; any other origin gets none, so the
// browser keeps the answer from its page. CORS off gives no header to any
// origin; "*" gives them to all.
func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed = "https://api.blackfriday.example.com"
	allowlist := newHarness(t, options{server: Config{CORSAllowedOrigins: []string{allowed, "http://localhost:5173"}}})
	off := newHarness(t, options{server: Config{CORSAllowedOrigins: []string{}}})
	any := newHarness(t, options{})
	preflights := []struct {
		name    string
		path    string
		headers string
	}{
		// Browsers send the header names sorted and in lower case.
		{"Connect", salesv1connect.SalesServiceRecordSaleProcedure, "authorization,connect-protocol-version,content-type"},
		{"Connect with timeout", salesv1connect.SalesServiceRecordSaleProcedure, "connect-protocol-version,connect-timeout-ms,content-type"},
		{"gRPC-Web", salesv1connect.SalesServiceRecordSaleProcedure, "authorization,content-type,x-grpc-web,x-user-agent"},
		{"gRPC-Web stream", salesv1connect.AnalyticsServiceWatchSummaryProcedure, "content-type,grpc-timeout,x-grpc-web,x-user-agent"},
		{"REST", "/venta", "authorization,content-type"},
	}
	tests := []struct {
		name      string
		h         *harness
		origin    string
		wantAllow string // the Access-Control-Allow-Origin wanted; "" for none
	}{
		{"allowed origin", allowlist, allowed, allowed},
		{"other allowed origin", allowlist, "http://localhost:5173", "http://localhost:5173"},
		{"disallowed origin", allowlist, "https://evil.example", ""},
		{"allowed host, other scheme", allowlist, "http://api.blackfriday.example.com", ""},
		{"allowed host as a suffix", allowlist, "https://api.blackfriday.example.com.evil.example", ""},
		{"CORS off", off, allowed, ""},
		{"any origin", any, "https://evil.example", "*"},
	}
	for _, tt := range tests {
		for _, p := range preflights {
			t.Run(tt.name+"/preflight "+p.name, func(t *testing.T) {
				t.Parallel()
				req, err := http.NewRequest(http.MethodOptions, tt.h.url+p.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Origin", tt.origin)
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", p.headers)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got := resp.Header.Get("Access-Control-Allow-Origin")
				if got != tt.wantAllow {
					t.Errorf("preflight %s from %s: Access-Control-Allow-Origin = %q, want %q", p.name, tt.origin, got, tt.wantAllow)
				}
				methods, headers := resp.Header.Get("Access-Control-Allow-Methods"), resp.Header.Get("Access-Control-Allow-Headers")
				if tt.wantAllow == "" {
					if methods != "" || headers != "" {
						t.Errorf("preflight %s from %s allows %q, %q, want no CORS header", p.name, tt.origin, methods, headers)
					}
					return
				}
				if !strings.Contains(methods, "POST") || !strings.EqualFold(strings.ReplaceAll(headers, " ", ""), p.headers) {
					t.Errorf("preflight %s from %s = %d, methods %q, headers %q, want POST and %s", p.name, tt.origin, resp.StatusCode, methods, headers, p.headers)
				}
			})
		}
		t.Run(tt.name+"/actual call", func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodPost, tt.h.url+salesv1connect.SalesServiceRecordSaleProcedure,
				strings.NewReader(`{"sale":{"category":"CATEGORY_HOME","productId":"P1","priceCents":1,"quantity":0}}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", tt.origin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got, exposed := resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Expose-Headers")
			if got != tt.wantAllow {
				t.Errorf("POST RecordSale from %s: Access-Control-Allow-Origin = %q, want %q", tt.origin, got, tt.wantAllow)
			}
			if tt.wantAllow != "" && !(strings.Contains(exposed, "Sale-Id") && strings.Contains(exposed, "Www-Authenticate")) {
				t.Errorf("POST RecordSale from %s exposes %q, want Sale-Id and WWW-Authenticate among them", tt.origin, exposed)
			}
			if tt.wantAllow == "" && exposed != "" {
				t.Errorf("POST RecordSale from %s exposes %q, want no CORS header", tt.origin, exposed)
			}
		})
	}
}

// panicker panics on every sale.
type panicker struct{}

func (panicker) Record(context.Context, *salesv1.Sale) error { panic("boom") }
func (panicker) RecordAll(context.Context, []*salesv1.Sale) []error {
	panic("boom")
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{recorder: panicker{}})
	c := salesv1connect.NewSalesServiceClient(httpClient(t, true, false), h.url, connect.WithProtoJSON())
	_, err := c.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
	if ce := new(connect.Error); !errors.As(err, &ce) || ce.Code() != connect.CodeInternal || ce.Message() != "internal error" {
		t.Errorf("RecordSale() with a panicking handler = %v, want internal: internal error", err)
	}
	resp, err := http.Post(h.url+"/venta", "application/json", strings.NewReader(`{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || !strings.Contains(string(b), `"error":"internal"`) {
		t.Errorf("POST /venta with a panicking handler = %d %s, want 500 internal", resp.StatusCode, b)
	}
	// The server still serves.
	if status, _ := getJSON(t, h.url+"/healthz"); status != 200 {
		t.Errorf("GET /healthz after panics = %d, want 200", status)
	}
}
