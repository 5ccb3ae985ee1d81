package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blackfriday.local/services/aggregator/internal/metrics"
	"blackfriday.local/services/aggregator/internal/store"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

// TestReadyGauge checks that bf_aggregator_ready says what /readyz says,
// at every scrape, as the consumer's readiness changes.
func TestReadyGauge(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	m := metrics.New()
	m.Health(ready.Load, func() bool { return true })
	srv := httptest.NewServer(healthHandler(ready.Load, m.Handler()))
	defer srv.Close()
	for _, tt := range []struct {
		ready      bool
		wantStatus int
		wantGauge  string
	}{
		{false, http.StatusServiceUnavailable, "bf_aggregator_ready 0\n"},
		{true, http.StatusOK, "bf_aggregator_ready 1\n"},
		{false, http.StatusServiceUnavailable, "bf_aggregator_ready 0\n"},
	} {
		ready.Store(tt.ready)
		if status, _ := get(t, srv.URL+"/readyz"); status != tt.wantStatus {
			t.Errorf("ready %t: GET /readyz = %d, want %d", tt.ready, status, tt.wantStatus)
		}
		if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, tt.wantGauge) {
			t.Errorf("ready %t: GET /metrics lacks %q", tt.ready, tt.wantGauge)
		}
	}
}

// TestValkeyUp checks valkeyUp against a real Valkey reached through a
// proxy that the test cuts: up while Valkey answers, down once it cannot
// be reached or stops answering, within the timeout, and up again after.
func TestValkeyUp(t *testing.T) {
	t.Parallel()
	p := newProxy(t, valkeytest.Addr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := store.Dial(ctx, store.Options{Addr: p.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const timeout = 300 * time.Millisecond
	up := valkeyUp(client, timeout)
	check := func(want bool) {
		t.Helper()
		start := time.Now()
		got := up()
		took := time.Since(start)
		t.Logf("valkeyUp() = %t after %v", got, took.Round(time.Millisecond))
		if got != want {
			t.Errorf("valkeyUp() = %t, want %t", got, want)
		}
		if took > timeout+time.Second {
			t.Errorf("valkeyUp() took %v, want at most about %v", took, timeout)
		}
	}
	check(true)
	// Cutting the connection fails the first PING at once; the second
	// dials again and meets a Valkey that never answers, or none.
	p.set(silent)
	check(false)
	check(false)
	p.set(refusing)
	check(false)
	check(false)
	p.set(forwarding)
	deadline := time.Now().Add(10 * time.Second)
	for !up() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	check(true)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type proxyMode int

const (
	forwarding proxyMode = iota
	silent
	refusing
)

// proxy is a TCP proxy to a target whose mode a test sets: forwarding,
// silent (it accepts connections and reads, but never answers) or refusing
// (it closes every connection at once). Setting a mode cuts the open
// connections.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   proxyMode
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	// The accept loop ends when the cleanup closes the listener.
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.set(refusing)
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) set(mode proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// track registers c to be cut on the next set, unless the mode refuses it.
func (p *proxy) track(c net.Conn) (proxyMode, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == refusing {
		c.Close()
		return p.mode, false
	}
	p.conns[c] = struct{}{}
	return p.mode, true
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		mode, ok := p.track(c)
		if !ok {
			continue
		}
		// Each copy ends when set or the cleanup closes its connections.
		switch mode {
		case silent:
			go func() { _, _ = io.Copy(io.Discard, c) }()
		case forwarding:
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if _, ok := p.track(up); !ok {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}
}
