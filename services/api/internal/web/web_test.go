package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	h, err := New()
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	tests := []struct {
		name, path, accept string
		status             int
		contentType, body  string
		gzipped            bool
	}{
		{"page", "/", "", 200, "text/html; charset=utf-8", `<script type="module" src="/assets/app.js">`, false},
		{"page gzipped", "/", "gzip, br", 200, "text/html; charset=utf-8", `data-testid="total-sales"`, true},
		{"gzip refused", "/", "gzip;q=0", 200, "text/html; charset=utf-8", "<!doctype html>", false},
		{"script", "/assets/app.js", "", 200, "text/javascript; charset=utf-8", "WatchSummary", false},
		{"styles", "/assets/app.css", "gzip", 200, "text/css; charset=utf-8", ".uplot", true},
		{"index only at /", "/index.html", "", 404, "", "", false},
		{"missing", "/assets/nope.js", "", 404, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept-Encoding", tt.accept)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("GET %s = %d, want %d", tt.path, rec.Code, tt.status)
			}
			if tt.status != 200 {
				return
			}
			body := rec.Body.Bytes()
			if gz := rec.Header().Get("Content-Encoding") == "gzip"; gz != tt.gzipped {
				t.Errorf("GET %s (Accept-Encoding %q) gzipped = %v, want %v", tt.path, tt.accept, gz, tt.gzipped)
			} else if gz {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if got := rec.Header().Get("Content-Type"); got != tt.contentType {
				t.Errorf("GET %s Content-Type = %q, want %q", tt.path, got, tt.contentType)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("GET %s body lacks %q", tt.path, tt.body)
			}
			etag := rec.Header().Get("ETag")
			if etag == "" || rec.Header().Get("Cache-Control") != "no-cache" {
				t.Errorf("GET %s ETag = %q, Cache-Control = %q, want an ETag and no-cache", tt.path, etag, rec.Header().Get("Cache-Control"))
			}
			req = httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.Header.Set("If-None-Match", etag)
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
				t.Errorf("GET %s If-None-Match its ETag = %d with %d bytes, want 304 and none", tt.path, rec.Code, rec.Body.Len())
			}
		})
	}
}
