package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestObserveAndScrape(t *testing.T) {
	t.Parallel()
	m := New()
	m.Observe("/blackfriday.sales.v1.SalesService/RecordSale", "grpc", "ok", 2*time.Millisecond)
	m.Observe("/blackfriday.sales.v1.SalesService/RecordSale", "grpc", "unavailable", time.Second)
	m.Gauge("bf_api_producer_buffered_records", "Records awaiting an ack.", func() float64 { return 7 })

	body := scrape(t, m)
	for _, want := range []string{
		`bf_api_requests_total{code="ok",procedure="/blackfriday.sales.v1.SalesService/RecordSale",protocol="grpc"} 1`,
		`bf_api_requests_total{code="unavailable",procedure="/blackfriday.sales.v1.SalesService/RecordSale",protocol="grpc"} 1`,
		`bf_api_request_duration_seconds_count{procedure="/blackfriday.sales.v1.SalesService/RecordSale",protocol="grpc"} 2`,
		`bf_api_producer_buffered_records 7`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape is missing %q", want)
		}
	}
}

func TestWrapHTTPMapsStatusToCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		code   string
	}{
		{http.StatusOK, "ok"},
		{http.StatusBadRequest, "invalid_argument"},
		{http.StatusRequestEntityTooLarge, "resource_exhausted"},
		{http.StatusTooManyRequests, "resource_exhausted"},
		{http.StatusMethodNotAllowed, "unimplemented"},
		{http.StatusServiceUnavailable, "unavailable"},
		{http.StatusInternalServerError, "internal"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			m := New()
			h := m.WrapHTTP("/venta", "legacy-rest", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/venta", nil))
			want := `bf_api_requests_total{code="` + tt.code + `",procedure="/venta",protocol="legacy-rest"} 1`
			if body := scrape(t, m); !strings.Contains(body, want) {
				t.Errorf("WrapHTTP(status %d) scrape lacks %s", tt.status, want)
			}
		})
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestCodeOfStatus(t *testing.T) {
	t.Parallel()
	tests := map[int]string{
		200: "ok", 400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "unimplemented",
		405: "unimplemented", 409: "aborted", 413: "resource_exhausted", 415: "invalid_argument", 429: "resource_exhausted",
		499: "canceled", 500: "internal", 501: "unimplemented", 503: "unavailable", 504: "deadline_exceeded", 418: "http_418",
	}
	for status, want := range tests {
		if got := CodeOfStatus(status); got != want {
			t.Errorf("CodeOfStatus(%d) = %q, want %q", status, got, want)
		}
	}
}
