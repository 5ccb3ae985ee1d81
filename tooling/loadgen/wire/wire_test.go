package wire

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCountsExactBytes sends and receives known byte counts over raw TCP.
func TestCountsExactBytes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const request, response = 1234, 567
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.CopyN(io.Discard, conn, request)
		_, _ = conn.Write(bytes.Repeat([]byte("r"), response))
	}()
	c := NewCounter(time.Second)
	conn, err := c.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(bytes.Repeat([]byte("q"), request)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, response)); err != nil {
		t.Fatal(err)
	}
	want := Totals{Sent: request, Received: response, Conns: 1}
	if got := c.Totals(); got != want {
		t.Errorf("Totals() = %+v, want %+v", got, want)
	}
	if got := want.Sub(Totals{Sent: 34, Received: 67, Conns: 1}); got != (Totals{Sent: 1200, Received: 500}) {
		t.Errorf("Sub = %+v, want {1200 500 0}", got)
	}
}

// TestCountsHTTP checks that an HTTP/1.1 exchange is counted whole: the
// request line and headers as well as the body.
func TestCountsHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	c := NewCounter(time.Second)
	client := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}}
	body := strings.Repeat("x", 100)
	for range 3 {
		resp, err := client.Post(srv.URL, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := c.Totals()
	if got.Conns != 1 {
		t.Errorf("Conns = %d, want 1 (kept alive)", got.Conns)
	}
	// Each request is its body plus a request line and headers; each
	// response is "hello" plus a status line and headers.
	if got.Sent <= 3*100 || got.Sent > 3*400 {
		t.Errorf("Sent = %d bytes for 3 requests of 100-byte bodies, want a little more than 300", got.Sent)
	}
	if got.Received <= 3*5 || got.Received > 3*300 {
		t.Errorf("Received = %d bytes for 3 five-byte answers, want a little more than 15", got.Received)
	}
}
