package server

// Stalled request bodies: a write call whose body stops arriving holds only
// the bytes it sent, only until the body deadline, and only within its
// client's share of the byte budget. docs/security.md describes the rules.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/metrics"
)

// pipedCall is a request whose body the test writes piece by piece, over a
// real connection: the transport sends each piece as it is written (a chunk
// over HTTP/1.1, a DATA frame over HTTP/2).
type pipedCall struct {
	body *io.PipeWriter
	done chan answer
}

// startPiped sends a POST to url with header and the first bytes of its
// body, and leaves the body open.
func startPiped(t *testing.T, c *http.Client, url string, header http.Header, first []byte) *pipedCall {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	call := &pipedCall{body: pw, done: make(chan answer, 1)}
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			call.done <- answer{code: "transport", message: err.Error()}
			return
		}
		call.done <- answerOf(resp)
	}()
	// Cleanups run last in, first out: this one ends the call before the
	// harness shuts the server down.
	t.Cleanup(func() {
		_ = pw.CloseWithError(io.ErrUnexpectedEOF)
		<-call.done
	})
	if len(first) > 0 {
		call.send(t, first)
	}
	return call
}

// send writes more of the body; it returns once the transport has taken it.
func (c *pipedCall) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := c.body.Write(b); err != nil {
		t.Fatalf("writing a piped body: %v", err)
	}
}

// finish ends the body and returns the answer.
func (c *pipedCall) finish(t *testing.T, last []byte) answer {
	t.Helper()
	if len(last) > 0 {
		c.send(t, last)
	}
	_ = c.body.Close()
	return c.wait(t)
}

// wait returns the answer, failing the test if none comes within the hang
// bound.
func (c *pipedCall) wait(t *testing.T) answer {
	t.Helper()
	select {
	case a := <-c.done:
		c.done <- a // for the cleanup
		return a
	case <-time.After(hangBound):
		t.Fatalf("no answer within %v", hangBound)
		return answer{}
	}
}

// answerOf reads an answer in any protocol: gRPC and gRPC-Web status, or a
// Connect or course REST JSON error.
func answerOf(resp *http.Response) answer {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") {
		status, msg := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		if status == "" {
			status, msg = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
		}
		if status == "" {
			status, msg = webTrailer(b)
		}
		switch status {
		case "":
			return answer{code: "no grpc-status", status: resp.StatusCode}
		case "0":
			return answer{status: resp.StatusCode}
		}
		return answer{code: codeName(status), message: msg, status: resp.StatusCode}
	}
	if resp.StatusCode == http.StatusOK {
		return answer{status: resp.StatusCode}
	}
	var e struct{ Code, Message, Error string }
	_ = json.Unmarshal(b, &e)
	if e.Code == "" {
		e.Code = e.Error
	}
	return answer{code: e.Code, message: e.Message, status: resp.StatusCode}
}

// refusedCalls counts the calls of procedure answered resource_exhausted,
// whatever their protocol.
func refusedCalls(t *testing.T, m *metrics.Metrics, procedure string) float64 {
	t.Helper()
	var n float64
	for key, v := range counts(t, m, "resource_exhausted") {
		if strings.HasPrefix(key, procedure+" ") {
			n += v
		}
	}
	return n
}

// ordinaryVenta is a course REST sale.
var ordinaryVenta = []byte(`{"categoria":"Hogar","producto_id":"P7","precio":19.99,"cantidad_vendida":1}`)

// TestStalledBodiesLeaveWritesOpen is the attack on the byte budget: 70
// calls that claim a gzipped body and send one byte of it, and one plain
// call that sends nearly MAX_REQUEST_BYTES, all left open, all from one
// client. Ordinary sales, from that same client, are still recorded while
// they stay open.
func TestStalledBodiesLeaveWritesOpen(t *testing.T) {
	t.Parallel()
	const (
		maxRequest = 1 << 20
		stalled    = 70
		sales      = 20
	)
	m := metrics.New()
	h := newHarness(t, options{metrics: m, maxRequestBytes: maxRequest, server: Config{
		// Production's budget; and deadlines beyond the test's length, so
		// that what it measures is what the stalled calls hold, not how
		// soon they are cut.
		MaxInflightBytes: 64 << 20,
		UnaryTimeout:     time.Minute,
		WriteBodyTimeout: time.Minute,
	}})
	procesar := h.url + blackfridayconnect.ProductSaleServiceProcesarVentaProcedure
	attacker := httpClient(t, true, false)

	gz := http.Header{"Content-Type": {"application/proto"}, "Content-Encoding": {"gzip"}}
	for range stalled {
		startPiped(t, attacker, procesar, gz, []byte{0x1f})
	}
	waitFor(t, "every stalled call admitted or refused", func() bool {
		return gauge(t, m, "bf_api_inflight_writes")+refusedCalls(t, m, blackfridayconnect.ProductSaleServiceProcesarVentaProcedure) == stalled
	})
	// The plain call takes what is left of the budget, as far as one body
	// may: nearly MAX_REQUEST_BYTES.
	before := gauge(t, m, "bf_api_inflight_request_bytes")
	plain := min(64<<20-int(before)-16, maxRequest-64)
	startPiped(t, attacker, procesar, http.Header{"Content-Type": {"application/proto"}}, bytes.Repeat([]byte{0x0a}, plain))
	waitFor(t, "the plain body read", func() bool {
		return gauge(t, m, "bf_api_inflight_request_bytes") >= before+float64(plain)
	})
	t.Logf("stalled calls in flight: %.0f, holding %.0f bytes", gauge(t, m, "bf_api_inflight_writes"), gauge(t, m, "bf_api_inflight_request_bytes"))

	ordinary := httpClient(t, true, false)
	var failed []answer
	for range sales {
		if a := postConnect(t, ordinary, h.url+"/venta", "application/json", ordinaryVenta, nil); a.status != http.StatusOK {
			failed = append(failed, a)
		}
	}
	if len(failed) > 0 {
		t.Errorf("POST /venta with %d stalled calls open: %d of %d failed, the first with %v; want every one recorded", stalled+1, len(failed), sales, failed[0])
	}
	if n := gauge(t, m, "bf_api_inflight_writes"); n != stalled+1 {
		t.Errorf("calls in flight after the sales = %v, want all %d stalled ones admitted and still open", n, stalled+1)
	}
	if n := h.written(t); n != int64(sales-len(failed)) {
		t.Errorf("topic holds %d records, want the %d sales recorded", n, sales-len(failed))
	}
}

// TestCompressedBodyHoldsWhatItSent: over every protocol that can compress
// a request, a compressed body that stalls holds only the bytes it sent,
// not the decompression allowance; the allowance is taken only once the
// message is whole, and given back with the rest when the call ends.
func TestCompressedBodyHoldsWhatItSent(t *testing.T) {
	t.Parallel()
	const maxRequest = 64 << 10
	msg := marshal(t, &salesv1.RecordSaleRequest{Sale: validSale()})
	jsonMsg := jsonSale("quantity", "2")
	record := salesv1connect.SalesServiceRecordSaleProcedure
	tests := []struct {
		name   string
		h2c    bool
		header http.Header
		body   []byte
	}{
		{"Connect proto", false, http.Header{"Content-Type": {"application/proto"}, "Content-Encoding": {"gzip"}}, gzipped(t, msg)},
		{"Connect JSON", false, http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, gzipped(t, jsonMsg)},
		{"gRPC", true, http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"gzip"}, "Te": {"trailers"}}, frame(1, gzipped(t, msg))},
		{"gRPC-Web", false, http.Header{"Content-Type": {"application/grpc-web+proto"}, "Grpc-Encoding": {"gzip"}}, frame(1, gzipped(t, msg))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.name == "gRPC" && testGRPCServer() == GRPCServerGo {
				t.Skip("grpc-go reads a message whole before admission sees the call: a stalled body holds no call slot or budget there")
			}
			m := metrics.New()
			h := newHarness(t, options{metrics: m, maxRequestBytes: maxRequest, server: Config{
				MaxInflightBytes: 4 * maxRequest, UnaryTimeout: time.Minute, WriteBodyTimeout: time.Minute,
			}})
			held := func() float64 { return gauge(t, m, "bf_api_inflight_request_bytes") }
			sent := len(tt.body) - 1
			call := startPiped(t, httpClient(t, !tt.h2c, tt.h2c), h.url+record, tt.header, tt.body[:sent])
			waitFor(t, "the call admitted", func() bool { return gauge(t, m, "bf_api_inflight_writes") == 1 })
			// The server reads what arrives: once it has, it must hold
			// no more than that.
			waitFor(t, "the bytes sent read", func() bool { return held() >= float64(sent) })
			if got := held(); got != float64(sent) {
				t.Errorf("bytes held by a compressed body stalled after %d bytes = %v, want %d (what it sent)", sent, got, sent)
			}
			if a := call.finish(t, tt.body[sent:]); a.code != "" {
				t.Errorf("the compressed call once whole = %v, want OK", a)
			}
			waitFor(t, "every byte given back", func() bool { return held() == 0 })
		})
	}
}

// TestCompressedBodyReservesBeforeDecompressing: when a compressed message
// is whole but the budget cannot hold what it may decompress to, the call
// is refused for the budget (resource_exhausted, Retry-After) before
// anything is decompressed, and nothing is written; once the budget is
// free the same bytes are recorded, over the same connections.
func TestCompressedBodyReservesBeforeDecompressing(t *testing.T) {
	t.Parallel()
	const maxRequest = 64 << 10
	msg := marshal(t, &salesv1.RecordSaleRequest{Sale: validSale()})
	m := metrics.New()
	h := newHarness(t, options{metrics: m, maxRequestBytes: maxRequest, server: Config{
		MaxInflightBytes: maxRequest + maxRequest/2, UnaryTimeout: time.Minute, WriteBodyTimeout: time.Minute,
	}})
	record := h.url + salesv1connect.SalesServiceRecordSaleProcedure
	// A plain body that stalls holding more than the budget can spare
	// besides an allowance (maxRequest).
	hog := startPiped(t, httpClient(t, true, false), record, http.Header{"Content-Type": {"application/proto"}}, bytes.Repeat([]byte{0x0a}, maxRequest/2))
	waitFor(t, "the plain body read", func() bool { return gauge(t, m, "bf_api_inflight_request_bytes") >= maxRequest/2 })

	tests := []struct {
		name   string
		client *http.Client
		header http.Header
		body   []byte
	}{
		{"Connect", httpClient(t, true, false), http.Header{"Content-Type": {"application/proto"}, "Content-Encoding": {"gzip"}}, gzipped(t, msg)},
		{"gRPC", httpClient(t, false, true), http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"gzip"}, "Te": {"trailers"}}, frame(1, gzipped(t, msg))},
	}
	for _, tt := range tests {
		a := startPiped(t, tt.client, record, tt.header, nil).finish(t, tt.body)
		if a.code != "resource_exhausted" || !strings.Contains(a.message, "request bytes") {
			t.Errorf("%s: a whole compressed message without room for its allowance = %v, want resource_exhausted naming the byte limit", tt.name, a)
		}
	}
	if n := h.written(t); n != 0 {
		t.Errorf("topic holds %d records, want none", n)
	}
	hog.body.CloseWithError(io.ErrUnexpectedEOF)
	hog.wait(t)
	waitFor(t, "the budget free", func() bool { return gauge(t, m, "bf_api_inflight_request_bytes") == 0 })
	// The refused bodies were whole, so their connections serve on.
	for _, tt := range tests {
		if a := startPiped(t, tt.client, record, tt.header, nil).finish(t, tt.body); a.code != "" {
			t.Errorf("%s: the compressed call with the budget free, on the refused call's connection = %v, want OK", tt.name, a)
		}
	}
}

// TestWriteBodyDeadline: a write call whose body stops arriving is answered
// deadline_exceeded at the body deadline, long before the unary one, over
// every protocol, and gives back its slot and bytes; a call whose body
// arrived in time is not cut by that deadline however long it then waits
// for Kafka.
func TestWriteBodyDeadline(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 300 * time.Millisecond
	g := newGate()
	m := metrics.New()
	h := newHarness(t, options{recorder: g, metrics: m, server: Config{
		UnaryTimeout: time.Minute, WriteBodyTimeout: bodyTimeout,
	}})
	t.Cleanup(g.release)
	record := salesv1connect.SalesServiceRecordSaleProcedure
	msg := marshal(t, &salesv1.RecordSaleRequest{Sale: validSale()})
	tests := []struct {
		name   string
		h2c    bool
		path   string
		header http.Header
		body   []byte
	}{
		{"Connect JSON", false, record, http.Header{"Content-Type": {"application/json"}}, jsonSale("quantity", "2")},
		{"Connect proto over h2c", true, record, http.Header{"Content-Type": {"application/proto"}}, msg},
		{"gRPC", true, record, http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}, frame(0, msg)},
		{"gRPC-Web", false, record, http.Header{"Content-Type": {"application/grpc-web+proto"}}, frame(0, msg)},
		{"course REST", false, "/venta", http.Header{"Content-Type": {"application/json"}}, ordinaryVenta},
	}
	for _, tt := range tests {
		t.Run("stalled "+tt.name, func(t *testing.T) {
			start := time.Now()
			a := startPiped(t, httpClient(t, !tt.h2c, tt.h2c), h.url+tt.path, tt.header, tt.body[:3]).wait(t)
			took := time.Since(start)
			want := "request body"
			if tt.name == "gRPC" && testGRPCServer() == GRPCServerGo {
				// grpc-go ends the read itself, in its own words.
				want = "context deadline exceeded"
			}
			if a.code != "deadline_exceeded" || !strings.Contains(a.message, want) {
				t.Errorf("a body stalled past the %v body deadline = %v after %v, want deadline_exceeded naming the body", bodyTimeout, a, took)
			}
			waitFor(t, "the slot and bytes given back", func() bool {
				return gauge(t, m, "bf_api_inflight_writes") == 0 && gauge(t, m, "bf_api_inflight_request_bytes") == 0
			})
		})
	}
	t.Run("whole bodies outlive the body deadline", func(t *testing.T) {
		var calls []*pipedCall
		for _, tt := range tests {
			c := startPiped(t, httpClient(t, !tt.h2c, tt.h2c), h.url+tt.path, tt.header, tt.body)
			_ = c.body.Close()
			calls = append(calls, c)
		}
		waitFor(t, "every call waiting for Kafka", func() bool { return g.waiting() == len(tests) })
		time.Sleep(3 * bodyTimeout)
		g.release()
		for i, c := range calls {
			if a := c.wait(t); a.code != "" {
				t.Errorf("%s: a whole body that waited for Kafka past the body deadline = %v, want OK", tests[i].name, a)
			}
		}
	})
	if n := gauge(t, m, "bf_api_write_body_timeouts_total"); n != float64(len(tests)) {
		t.Errorf("bf_api_write_body_timeouts_total = %v, want %d", n, len(tests))
	}
}

// viaProxy is a client behind a proxy: every request carries
// X-Forwarded-For.
type viaProxy struct {
	rt   http.RoundTripper
	addr string
}

func (f viaProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Forwarded-For", f.addr)
	return f.rt.RoundTrip(req)
}

// behind returns c with every request forwarded for addr.
func behind(c *http.Client, addr string) *http.Client {
	return &http.Client{Transport: viaProxy{rt: c.Transport, addr: addr}}
}

// TestClientByteShare: one client's stalled bodies fill only its share of
// the byte budget; its next body is cut at the share with
// resource_exhausted, while another client's sales still go through. Behind
// a trusted proxy the client is the address X-Forwarded-For names (the
// nearest untrusted one); from anywhere else the header is ignored.
func TestClientByteShare(t *testing.T) {
	t.Parallel()
	const (
		maxRequest = 64 << 10
		share      = 160 << 10
		piece      = 60 << 10
	)
	proxy := netip.MustParsePrefix("127.0.0.0/8")
	tests := []struct {
		name    string
		trusted []netip.Prefix
		// a and b are the X-Forwarded-For headers of two clients.
		a, b string
		// same: a and b are one client (the header is not believed).
		same bool
	}{
		{"behind a trusted proxy", []netip.Prefix{proxy}, "203.0.113.7", "203.0.113.8", false},
		{"a spoofed hop before the proxy's", []netip.Prefix{proxy}, "198.51.100.1, 203.0.113.7", "198.51.100.1, 203.0.113.8", false},
		{"from an untrusted peer", nil, "203.0.113.7", "203.0.113.8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.name == "gRPC" && testGRPCServer() == GRPCServerGo {
				t.Skip("grpc-go reads a message whole before admission sees the call: a stalled body holds no call slot or budget there")
			}
			m := metrics.New()
			h := newHarness(t, options{metrics: m, maxRequestBytes: maxRequest, server: Config{
				MaxInflightBytes: 1 << 20, MaxInflightBytesPerClient: share, TrustedProxies: tt.trusted,
				UnaryTimeout: time.Minute, WriteBodyTimeout: time.Minute,
			}})
			record := h.url + salesv1connect.SalesServiceRecordSaleProcedure
			proto := http.Header{"Content-Type": {"application/proto"}}
			held := func() float64 { return gauge(t, m, "bf_api_inflight_request_bytes") }
			a, b := behind(httpClient(t, true, false), tt.a), behind(httpClient(t, true, false), tt.b)

			for i := range 2 {
				startPiped(t, a, record, proto, bytes.Repeat([]byte{0x0a}, piece))
				waitFor(t, "a's stalled body read", func() bool { return held() >= float64((i+1)*piece) })
			}
			third := startPiped(t, a, record, proto, bytes.Repeat([]byte{0x0a}, piece))
			if got := third.wait(t); got.code != "resource_exhausted" || !strings.Contains(got.message, "share") {
				t.Errorf("a third stalled body from one client, beyond its %d-byte share = %v, want resource_exhausted naming the client's share", share, got)
			}
			if n := gauge(t, m, "bf_api_client_share_refusals_total"); n != 1 {
				t.Errorf("bf_api_client_share_refusals_total = %v, want 1", n)
			}

			other := startPiped(t, b, record, proto, bytes.Repeat([]byte{0x0a}, piece))
			if tt.same {
				if got := other.wait(t); got.code != "resource_exhausted" {
					t.Errorf("a stalled body from the same peer under another X-Forwarded-For = %v, want resource_exhausted: an untrusted peer's header names no client", got)
				}
				return
			}
			waitFor(t, "b's stalled body read", func() bool { return held() >= 3*piece })
			msg := marshal(t, &salesv1.RecordSaleRequest{Sale: validSale()})
			if got := startPiped(t, b, record, proto, nil).finish(t, msg); got.code != "" {
				t.Errorf("a sale from another client while the first holds its share = %v, want OK", got)
			}
			// The cut call gives its bytes back as its handler returns,
			// just after it answers.
			waitFor(t, "bf_api_inflight_request_bytes_top_client at the first client's two bodies", func() bool {
				return gauge(t, m, "bf_api_inflight_request_bytes_top_client") == 2*piece
			})
		})
	}
}
