package server

import (
	"net/http"
	"strings"
	"testing"

	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/web"
)

// TestDashboardRoutes checks that the dashboard is served at / and /assets/
// next to the APIs, and nowhere else.
func TestDashboardRoutes(t *testing.T) {
	t.Parallel()
	dashboard, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	s := newStreamServer(t, Config{}, Deps{Analytics: salesv1connect.UnimplementedAnalyticsServiceHandler{}, Dashboard: dashboard})
	tests := []struct {
		method, path string
		status       int
		contentType  string
	}{
		{http.MethodGet, "/", 200, "text/html"},
		{http.MethodHead, "/", 200, "text/html"},
		{http.MethodGet, "/assets/app.js", 200, "text/javascript"},
		{http.MethodGet, "/assets/app.css", 200, "text/css"},
		{http.MethodGet, "/nope", 404, ""},
		{http.MethodGet, "/healthz", 200, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, s.url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.contentType) {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.status, tt.contentType)
			}
		})
	}
}
