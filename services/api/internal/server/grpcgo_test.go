package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// grpcServers are the two servers native gRPC can be served by.
var grpcServers = []string{GRPCServerGo, GRPCServerConnect}

// outcome is what a gRPC client learned of a call, whichever client it was.
type outcome struct {
	code              codes.Code
	message           string
	header, trailer   http.Header
	saleID            string
	recorded, retry   string
	challenge         string
	detailsForInvalid int
}

// rpcClient records one sale over gRPC with one client library.
type rpcClient struct {
	name   string
	record func(t *testing.T, url, token string, sale *salesv1.Sale) outcome
}

// grpcGoClient is grpc-go's own client, over h2c.
func grpcGoClient(t *testing.T, url, token string, sale *salesv1.Sale) outcome {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	var header, trailer metadata.MD
	resp, err := salesv1.NewSalesServiceClient(conn).RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale},
		grpc.Header(&header), grpc.Trailer(&trailer))
	st := status.Convert(err)
	o := outcome{code: st.Code(), message: st.Message(), header: mdHeader(header), trailer: mdHeader(trailer)}
	if err == nil {
		o.saleID = resp.GetSaleId()
	}
	o.detailsForInvalid = len(st.Details())
	return o.read()
}

// connectGRPCClient is connect-go's gRPC client, over h2c.
func connectGRPCClient(t *testing.T, url, token string, sale *salesv1.Sale) outcome {
	t.Helper()
	client := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), url, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx, call := connect.NewClientContext(ctx)
	if token != "" {
		call.RequestHeader().Set("Authorization", "Bearer "+token)
	}
	resp, err := client.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale})
	if err == nil {
		return outcome{code: codes.OK, header: call.ResponseHeader(), trailer: call.ResponseTrailer(), saleID: resp.GetSaleId()}.read()
	}
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		t.Fatalf("RecordSale() = %v, want a Connect error", err)
	}
	// connect-go gives a trailers-only answer's metadata as the error's.
	return outcome{code: codes.Code(ce.Code()), message: ce.Message(), header: ce.Meta(), trailer: ce.Meta(),
		detailsForInvalid: len(ce.Details())}.read()
}

func mdHeader(md metadata.MD) http.Header {
	h := http.Header{}
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return h
}

// read fills in the metadata the api sends, from headers or trailers.
func (o outcome) read() outcome {
	get := func(k string) string {
		if v := o.trailer.Get(k); v != "" {
			return v
		}
		return o.header.Get(k)
	}
	o.recorded, o.retry, o.challenge = get(SaleRecordedKey), get(RetryAfterKey), get(AuthenticateKey)
	if o.saleID == "" {
		o.saleID = get(SaleIDKey)
	}
	return o
}

var rpcClients = []rpcClient{{"grpc-go client", grpcGoClient}, {"connect-go gRPC client", connectGRPCClient}}

// failingRecorder fails every sale as certainly not written.
type failingRecorder struct{}

func (failingRecorder) Record(_ context.Context, s *salesv1.Sale) error {
	return &ingest.SaleError{SaleID: s.GetSaleId(), Unwritten: true, Err: ingest.ErrSalesLogDown}
}

func (f failingRecorder) RecordAll(ctx context.Context, sales []*salesv1.Sale) []error {
	errs := make([]error, len(sales))
	for i, s := range sales {
		errs[i] = f.Record(ctx, s)
	}
	return errs
}

// TestGRPCBothServers sends the same calls with both gRPC client libraries
// to both servers of gRPC, and wants the same answers: codes, messages
// naming the field, and the metadata (Sale-Recorded, Sale-Id, Retry-After,
// WWW-Authenticate).
func TestGRPCBothServers(t *testing.T) {
	t.Parallel()
	for _, server := range grpcServers {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			open := newHarness(t, options{server: Config{GRPCServer: server}})
			authed := newHarness(t, options{server: Config{GRPCServer: server, WriteTokens: testTokens(t)}})
			down := newHarness(t, options{server: Config{GRPCServer: server}, recorder: failingRecorder{}})
			g := newGate()
			t.Cleanup(g.release)
			full := newHarness(t, options{server: Config{GRPCServer: server, MaxInflightWrites: 1}, recorder: g})

			for _, c := range rpcClients {
				t.Run(c.name, func(t *testing.T) {
					if o := c.record(t, open.url, "", validSale()); o.code != codes.OK || o.saleID == "" {
						t.Errorf("RecordSale(valid) = %+v, want OK with a sale_id", o)
					}
					bad := validSale()
					bad.PriceCents = -1
					o := c.record(t, open.url, "", bad)
					if o.code != codes.InvalidArgument || !strings.Contains(o.message, "sale.price_cents") || o.detailsForInvalid != 1 {
						t.Errorf("RecordSale(price -1) = %+v, want invalid_argument naming sale.price_cents, with the violations", o)
					}
					if o.recorded != recordedNo {
						t.Errorf("RecordSale(price -1) Sale-Recorded = %q, want %q", o.recorded, recordedNo)
					}

					o = c.record(t, authed.url, "", validSale())
					if o.code != codes.Unauthenticated || o.challenge != challenge || o.recorded != recordedNo {
						t.Errorf("RecordSale(no token) = %+v, want unauthenticated, WWW-Authenticate %q, Sale-Recorded no", o, challenge)
					}
					if o := c.record(t, authed.url, "wrong-token-0123456789abcdef", validSale()); o.code != codes.Unauthenticated || o.challenge != challengeInvalid {
						t.Errorf("RecordSale(bad token) = %+v, want unauthenticated, WWW-Authenticate %q", o, challengeInvalid)
					}
					if o := c.record(t, authed.url, goodToken, validSale()); o.code != codes.OK {
						t.Errorf("RecordSale(good token) = %+v, want OK", o)
					}

					sale := validSale()
					sale.SaleId = "0193a5b6-0000-7000-8000-000000000001"
					o = c.record(t, down.url, "", sale)
					if o.code != codes.Unavailable || o.recorded != recordedNo || o.saleID != sale.SaleId {
						t.Errorf("RecordSale(sales log down) = %+v, want unavailable, Sale-Recorded no, Sale-Id %s", o, sale.SaleId)
					}
				})
			}

			// Admission: one call holds the only slot; the next is refused
			// at once, by both clients.
			held := make(chan outcome, 1)
			go func() { held <- grpcGoClient(t, full.url, "", validSale()) }()
			waitFor(t, "the first call admitted", func() bool { return g.waiting() == 1 })
			for _, c := range rpcClients {
				o := c.record(t, full.url, "", validSale())
				if o.code != codes.ResourceExhausted || o.retry != "1" || o.recorded != recordedNo {
					t.Errorf("%s: RecordSale beyond MAX_INFLIGHT_WRITES = %+v, want resource_exhausted, Retry-After 1, Sale-Recorded no", c.name, o)
				}
			}
			g.release()
			if o := <-held; o.code != codes.OK {
				t.Errorf("the admitted call = %+v, want OK", o)
			}
		})
	}
}

// TestGRPCGoSharesThePort: with grpc-go on, native gRPC connections reach
// grpc-go and every other protocol the HTTP server, on the one port.
func TestGRPCGoSharesThePort(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{server: Config{GRPCServer: GRPCServerGo}})
	routed := &h.srv.routed
	for _, c := range rpcClients {
		before := routed.grpc.Load()
		if o := c.record(t, h.url, "", validSale()); o.code != codes.OK {
			t.Errorf("%s: RecordSale = %+v, want OK", c.name, o)
		}
		if routed.grpc.Load() != before+1 {
			t.Errorf("%s: connections handed to grpc-go = %d, want %d", c.name, routed.grpc.Load(), before+1)
		}
	}
	others := []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"gRPC-Web over HTTP/1.1", httpClient(t, true, false), []connect.ClientOption{connect.WithGRPCWeb()}},
		{"gRPC-Web over h2c", httpClient(t, false, true), []connect.ClientOption{connect.WithGRPCWeb()}},
		{"Connect JSON over HTTP/1.1", httpClient(t, true, false), []connect.ClientOption{connect.WithProtoJSON()}},
		{"Connect proto over h2c", httpClient(t, false, true), nil},
	}
	for _, tt := range others {
		before := routed.http.Load()
		client := salesv1connect.NewSalesServiceClient(tt.hc, h.url, tt.opts...)
		if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
			t.Errorf("%s: RecordSale() = %v, want OK", tt.name, err)
		}
		if routed.http.Load() != before+1 {
			t.Errorf("%s: connections handed to the HTTP server = %d, want %d", tt.name, routed.http.Load(), before+1)
		}
	}
	if status, _ := getJSON(t, h.url+"/healthz"); status != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", status)
	}
	if routed.grpc.Load() != 2 {
		t.Errorf("connections handed to grpc-go = %d, want the 2 native gRPC clients'", routed.grpc.Load())
	}
}

// TestSplitListenerHostileClients: a client that stalls while its
// protocol is sniffed is closed at the sniffing deadline and delays nobody;
// garbage goes to the HTTP server, which refuses it; garbage after the
// HTTP/2 preface, and a client that sends more than the sniffing limit
// before its headers, are closed.
func TestSplitListenerHostileClients(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	h := newHarness(t, options{server: Config{GRPCServer: GRPCServerGo, ReadHeaderTimeout: timeout}})
	addr := strings.TrimPrefix(h.url, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closedWithin reads c until the server closes it, and fails if that
	// takes longer than a hang would.
	closedWithin := func(name string, c net.Conn) []byte {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(timeout + hangBound))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after %v, want it closed at the sniffing deadline", name, timeout+hangBound)
		}
		return b
	}

	stalled := []struct {
		name  string
		bytes []byte
	}{
		{"nothing", nil},
		{"half a preface", []byte(http2.ClientPreface[:10])},
		{"a preface and no headers", []byte(http2.ClientPreface)},
	}
	var conns []net.Conn
	for _, s := range stalled {
		c := dial()
		if _, err := c.Write(s.bytes); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// While they stall, others are served at once.
	for _, c := range rpcClients {
		if o := c.record(t, h.url, "", validSale()); o.code != codes.OK {
			t.Errorf("%s: RecordSale while others stall = %+v, want OK", c.name, o)
		}
	}
	for i, c := range conns {
		closedWithin("stalled after "+stalled[i].name, c)
	}

	// Garbage that is not HTTP/2 is the HTTP server's: 400, then closed.
	c := dial()
	if _, err := c.Write([]byte("\x16\x03\x01garbage that is not HTTP\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage bytes: answer %v, %v; want 400", resp, err)
	}

	// Garbage after the preface: a frame header of a frame too large.
	c = dial()
	if _, err := c.Write(append([]byte(http2.ClientPreface), 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	closedWithin("garbage after the preface", c)

	// More than the sniffing limit before any headers: SETTINGS frames.
	c = dial()
	flood := []byte(http2.ClientPreface)
	for len(flood) < 2*sniffMaxBytes {
		flood = append(flood, 0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0)
	}
	go func() { _, _ = c.Write(flood) }()
	closedWithin("a flood of SETTINGS", c)

	routed := &h.srv.routed
	if got := routed.dropped.Load(); got < int64(len(stalled)) {
		t.Errorf("connections dropped while sniffed = %d, want at least %d", got, len(stalled))
	}
	// The server still serves both ways.
	if status, _ := getJSON(t, h.url+"/healthz"); status != http.StatusOK {
		t.Errorf("GET /healthz after hostile clients = %d, want 200", status)
	}
	if o := grpcGoClient(t, h.url, "", validSale()); o.code != codes.OK {
		t.Errorf("RecordSale after hostile clients = %+v, want OK", o)
	}
}

// TestGRPCGoMaxConnectionAge: grpc-go asks a connection past
// MAX_CONNECTION_AGE to go (GOAWAY), and its client dials again.
func TestGRPCGoMaxConnectionAge(t *testing.T) {
	t.Parallel()
	const age = 300 * time.Millisecond
	h := newHarness(t, options{server: Config{GRPCServer: GRPCServerGo, MaxConnectionAge: age, MaxConnectionAgeGrace: time.Second}})
	var dials atomic.Int64
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(h.url, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := salesv1.NewSalesServiceClient(conn)
	deadline := time.Now().Add(40*age + hangBound)
	for dials.Load() < 3 && time.Now().Before(deadline) {
		if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
			t.Fatalf("RecordSale() = %v, want OK across connection ages", err)
		}
		time.Sleep(age / 10)
	}
	if dials.Load() < 3 {
		t.Errorf("connections dialed = %d, want 3 or more: grpc-go did not age them", dials.Load())
	}
	if h.srv.ages.aged.Load() < 1 {
		t.Errorf("bf_api_connections_aged_total = %d, want at least 1", h.srv.ages.aged.Load())
	}
}

// TestSplitListenerProxiedConnections: a proxy carries its clients' calls
// of every protocol over one upstream HTTP/2 connection. One whose first
// call is native gRPC but came through a proxy (X-Forwarded-For, Via,
// Forwarded or x-envoy-*) stays with the HTTP server, and the Connect and gRPC-Web calls
// after it on the same connection are served. Without those headers the
// connection goes to grpc-go, which refuses the calls of other protocols:
// the hazard the rule avoids.
func TestSplitListenerProxiedConnections(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{server: Config{GRPCServer: GRPCServerGo}})
	routed := &h.srv.routed
	mixed := func(hc *http.Client, header map[string]string) []error {
		var errs []error
		stamp := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				for k, v := range header {
					req.Header().Set(k, v)
				}
				return next(ctx, req)
			}
		})
		for _, opt := range []connect.ClientOption{connect.WithGRPC(), connect.WithGRPCWeb(), connect.WithProtoJSON()} {
			client := salesv1connect.NewSalesServiceClient(hc, h.url, opt, connect.WithInterceptors(stamp))
			_, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
			errs = append(errs, err)
		}
		return errs
	}
	for _, header := range []map[string]string{
		{"X-Forwarded-For": "203.0.113.7"},
		{"Via": "1.1 google"},
		{"Forwarded": "for=203.0.113.7"},
		{"X-Envoy-Expected-Rq-Timeout-Ms": "15000"},
	} {
		grpcBefore, httpBefore := routed.grpc.Load(), routed.http.Load()
		for i, err := range mixed(httpClient(t, false, true), header) {
			if err != nil {
				t.Errorf("proxied (%v) call %d on one connection = %v, want OK", header, i+1, err)
			}
		}
		if routed.grpc.Load() != grpcBefore || routed.http.Load() != httpBefore+1 {
			t.Errorf("proxied (%v): connections to grpc-go +%d, to the HTTP server +%d, want +0 and +1", header,
				routed.grpc.Load()-grpcBefore, routed.http.Load()-httpBefore)
		}
	}
	errs := mixed(httpClient(t, false, true), nil)
	if errs[0] != nil {
		t.Errorf("direct gRPC call = %v, want OK", errs[0])
	}
	if errs[1] == nil || errs[2] == nil {
		t.Errorf("gRPC-Web and Connect after a direct gRPC call on its connection = %v, %v: want grpc-go to refuse them (else the proxy rule is not needed)", errs[1], errs[2])
	}
}
