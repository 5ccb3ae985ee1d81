// Package web serves the live dashboard: the page and its assets, built from
// web/ by `make web-build` and embedded in the api binary, so a fresh clone
// builds the api without node or npm.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed dist
var dist embed.FS

// asset is one file, ready to serve.
type asset struct {
	body        []byte
	gzipped     []byte // nil when gzip does not make it smaller
	contentType string
	etag        string
}

// Handler serves the dashboard: the page at / and its files under /assets/.
// Every file is revalidated on each load (Cache-Control: no-cache) against a
// strong ETag of its content, so a new api version is picked up at once and
// an unchanged file costs a 304. Clients that accept gzip get it.
type Handler struct {
	assets map[string]*asset
}

// New loads the embedded files.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(dist, "dist", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &asset{
			body:        body,
			contentType: mime.TypeByExtension(path.Ext(name)),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		if z := gzipped(body); len(z) < len(body) {
			a.gzipped = z
		}
		h.assets[strings.TrimPrefix(name, "dist")] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded dashboard: %w", err)
	}
	if h.assets["/index.html"] == nil {
		return nil, fmt.Errorf("embedded dashboard has no index.html")
	}
	return h, nil
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// ServeHTTP serves GET and HEAD requests for the page and its assets.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path
	if name == "/" {
		name = "/index.html"
	}
	a := h.assets[name]
	if a == nil || name == "/index.html" && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Add("Vary", "Accept-Encoding")
	if name == "/index.html" {
		// The page loads only its own assets and talks only to this origin.
		hdr.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gzipped != nil && acceptsGzip(r) {
		body = a.gzipped
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); k == "q" {
				q, err := strconv.ParseFloat(v, 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
