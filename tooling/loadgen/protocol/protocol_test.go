package protocol_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/loadgen/internal/fakeapi"
	"blackfriday.local/tooling/loadgen/internal/sales"
	"blackfriday.local/tooling/loadgen/protocol"
)

// TestEveryProtocol sends sales over every protocol to a fake api and checks
// that each arrives intact, over the HTTP version the protocol uses, and
// that the bytes on the wire are counted.
func TestEveryProtocol(t *testing.T) {
	t.Parallel()
	gen := sales.New(1, 50)
	for _, name := range protocol.Names() {
		t.Run(string(name), func(t *testing.T) {
			t.Parallel()
			srv := fakeapi.New(t)
			batch := 1
			if name == protocol.Batch {
				batch = 7
			}
			c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: name, Batch: batch, Conns: 2, DialTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var sent []*salesv1.Sale
			for call := range 3 {
				s := make([]*salesv1.Sale, c.Batch())
				gen.Sales(s, uint64(call*100))
				reply := c.Send(context.Background(), s)
				if reply.Code != "ok" || reply.Err != nil {
					t.Fatalf("Send() = %+v, want ok", reply)
				}
				for i := range s {
					if !reply.Acked(i) {
						t.Errorf("Acked(%d) = false, want true", i)
					}
				}
				sent = append(sent, s...)
			}
			got := srv.Received()
			if len(got) != len(sent) {
				t.Fatalf("server received %d sales, want %d", len(got), len(sent))
			}
			wantMajor := 1
			if name.HTTP2() {
				wantMajor = 2
			}
			for i, r := range got {
				if !proto.Equal(r.Sale, sent[i]) {
					t.Errorf("sale %d arrived as %v, want %v", i, r.Sale, sent[i])
				}
				if r.HTTPMajor != wantMajor {
					t.Errorf("sale %d came over HTTP/%d, want HTTP/%d", i, r.HTTPMajor, wantMajor)
				}
			}
			w := c.Wire().Totals()
			if w.Sent < int64(3*20*c.Batch()) || w.Received < 3*20 || w.Conns < 1 {
				t.Errorf("wire totals %+v, want every call's bytes counted", w)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := fakeapi.New(t)
	// Fail every sale of product ELE-0001 as unavailable.
	srv.Fail = func(s *salesv1.Sale) connect.Code {
		if s.GetProductId() == "BAD" {
			return connect.CodeUnavailable
		}
		return 0
	}
	good := &salesv1.Sale{Category: 1, ProductId: "GOOD", PriceCents: 100, Quantity: 1}
	bad := &salesv1.Sale{Category: 1, ProductId: "BAD", PriceCents: 100, Quantity: 1}
	for _, name := range []protocol.Name{protocol.ConnectJSON, protocol.GRPC, protocol.GRPCGo, protocol.GRPCWeb, protocol.LegacyREST, protocol.LegacyGRPC} {
		c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: name})
		if err != nil {
			t.Fatal(err)
		}
		if r := c.Send(context.Background(), []*salesv1.Sale{bad}); r.Code != "unavailable" || r.Acked(0) {
			t.Errorf("%s: Send(bad) = %+v, want unavailable and not acknowledged", name, r)
		}
		c.Close()
	}
	// A batch reports its failed sales one by one, with either client.
	for _, name := range []protocol.Name{protocol.Batch, protocol.GRPCGo} {
		c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: name, Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		r := c.Send(context.Background(), []*salesv1.Sale{good, bad, good})
		if r.Code != "ok" || !r.Acked(0) || r.Acked(1) || !r.Acked(2) || r.ItemCodes[1] != "unavailable" {
			t.Errorf("%s: Send(good, bad, good) = %+v, want the second failed as unavailable", name, r)
		}
		c.Close()
	}
	// A server that is not there is unavailable.
	down, err := protocol.New(protocol.Config{Target: "http://127.0.0.1:1", Protocol: protocol.LegacyREST})
	if err != nil {
		t.Fatal(err)
	}
	if r := down.Send(context.Background(), []*salesv1.Sale{good}); r.Code != "unavailable" {
		t.Errorf("Send to a closed port = %+v, want unavailable", r)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     protocol.Config
		wantErr string
		batch   int
	}{
		{"batch default", protocol.Config{Protocol: protocol.Batch}, "", protocol.DefaultBatch},
		{"unary default", protocol.Config{Protocol: protocol.GRPC}, "", 1},
		{"batch over connect", protocol.Config{Protocol: protocol.ConnectJSON, Batch: 10}, "", 10},
		{"legacy batch", protocol.Config{Protocol: protocol.LegacyREST, Batch: 10}, "one sale per call", 0},
		{"too big", protocol.Config{Protocol: protocol.GRPC, Batch: 1001}, "at most 1000", 0},
		{"unknown", protocol.Config{Protocol: "soap"}, "unknown protocol", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := protocol.New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%+v) error = %v, want %q", tt.cfg, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Batch() != tt.batch {
				t.Errorf("Batch() = %d, want %d", c.Batch(), tt.batch)
			}
		})
	}
}

func TestVentaBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sale *salesv1.Sale
		want string
	}{
		{&salesv1.Sale{Category: 1, ProductId: "P7", PriceCents: 53288, Quantity: 13},
			`{"categoria":"Electronica","producto_id":"P7","precio":532.88,"cantidad_vendida":13}`},
		{&salesv1.Sale{Category: 4, ProductId: "B-1", PriceCents: 5, Quantity: 1},
			`{"categoria":"Belleza","producto_id":"B-1","precio":0.05,"cantidad_vendida":1}`},
	}
	for _, tt := range tests {
		if got := string(protocol.VentaBody(nil, tt.sale)); got != tt.want {
			t.Errorf("VentaBody(%v) = %s, want %s", tt.sale, got, tt.want)
		}
	}
}

func TestNotWritten(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"invalid_argument": true, "resource_exhausted": true,
		"unavailable": false, "deadline_exceeded": false, "internal": false, "canceled": false,
	} {
		if got := protocol.NotWritten(code); got != want {
			t.Errorf("NotWritten(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	for _, name := range []protocol.Name{protocol.LegacyREST, protocol.ConnectJSON} {
		c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: name, Token: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		r := c.Send(context.Background(), []*salesv1.Sale{{Category: 1, ProductId: "P", PriceCents: 1, Quantity: 1}})
		if r.Code != "unauthenticated" && !strings.HasPrefix(r.Code, "http_401") {
			t.Errorf("%s: Send to a 401 server = %+v, want unauthenticated", name, r)
		}
		if h := <-got; h != "Bearer s3cret" {
			t.Errorf("%s: Authorization = %q, want Bearer s3cret", name, h)
		}
		c.Close()
	}
}

// TestLean sends sales with the lean clients, and with connect-go's for
// comparison, to a fake api: they arrive intact over the HTTP version of
// their protocol, their bytes are counted, the lean ones time each call on
// the wire, and every client reads the api's Sale-Recorded answer to a
// failure.
func TestLean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  protocol.Name
		lean  bool
		major int
	}{
		{protocol.GRPC, true, 2},
		{protocol.ConnectJSON, true, 1},
		{protocol.GRPC, false, 2},
		{protocol.ConnectJSON, false, 1},
		{protocol.GRPCGo, false, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/lean=%v", tt.name, tt.lean), func(t *testing.T) {
			t.Parallel()
			srv := fakeapi.New(t)
			c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: tt.name, Conns: 2, DialTimeout: time.Second, Lean: tt.lean})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			gen := sales.New(3, 50)
			var sent []*salesv1.Sale
			for i := range 5 {
				s := make([]*salesv1.Sale, 1)
				gen.Sales(s, uint64(i))
				before := time.Now()
				reply := c.Send(context.Background(), s)
				if reply.Code != "ok" || reply.Err != nil {
					t.Fatalf("Send() = %+v, want ok", reply)
				}
				if tt.lean && (reply.Wrote.Before(before) || (tt.name == protocol.GRPC && reply.Answered.Before(reply.Wrote))) {
					t.Errorf("Send() wrote at %v, answered at %v, want both after %v and in order", reply.Wrote, reply.Answered, before)
				}
				sent = append(sent, s...)
			}
			got := srv.Received()
			if len(got) != len(sent) {
				t.Fatalf("server received %d sales, want %d", len(got), len(sent))
			}
			for i := range got {
				if !proto.Equal(got[i].Sale, sent[i]) || got[i].HTTPMajor != tt.major {
					t.Errorf("sale %d arrived as %v over HTTP/%d, want %v over HTTP/%d", i, got[i].Sale, got[i].HTTPMajor, sent[i], tt.major)
				}
			}
			if w := c.Wire().Totals(); w.Sent == 0 || w.Received == 0 {
				t.Errorf("wire totals %+v, want bytes both ways", w)
			}

			srv.Fail = func(*salesv1.Sale) connect.Code { return connect.CodeResourceExhausted }
			s := make([]*salesv1.Sale, 1)
			gen.Sales(s, 99)
			if reply := c.Send(context.Background(), s); reply.Code != "resource_exhausted" || reply.Recorded != "no" {
				t.Errorf("Send() to a failing api = code %q, Sale-Recorded %q, want resource_exhausted and no", reply.Code, reply.Recorded)
			}
		})
	}
}

func TestLeanRejects(t *testing.T) {
	t.Parallel()
	for _, cfg := range []protocol.Config{
		{Target: "http://127.0.0.1:1", Protocol: protocol.GRPCWeb, Lean: true},
		{Target: "http://127.0.0.1:1", Protocol: protocol.Batch, Lean: true},
		{Target: "http://127.0.0.1:1", Protocol: protocol.GRPC, Batch: 7, Lean: true},
	} {
		if _, err := protocol.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestIngest(t *testing.T) {
	t.Parallel()
	for _, n := range protocol.Names() {
		if got := n.Ingest(); !slices.Contains(record.Protocols(), got) {
			t.Errorf("%s.Ingest() = %q, want one of %v", n, got, record.Protocols())
		}
	}
}

// TestGoAway: an api that asks clients to leave their connections now and
// then (as it does at MAX_CONNECTION_AGE, with a GOAWAY over HTTP/2 and
// "Connection: close" over HTTP/1.1) costs no call of any client, lean or
// not, with several calls in flight: each moves to new connections, and
// every sale arrives once.
func TestGoAway(t *testing.T) {
	t.Parallel()
	type client struct {
		name protocol.Name
		lean bool
	}
	var clients []client
	for _, n := range protocol.Names() {
		clients = append(clients, client{n, false})
	}
	clients = append(clients, client{protocol.GRPC, true}, client{protocol.ConnectJSON, true})
	const callers, calls, connCalls = 8, 40, 25
	for _, tt := range clients {
		t.Run(fmt.Sprintf("%s/lean=%v", tt.name, tt.lean), func(t *testing.T) {
			t.Parallel()
			srv := fakeapi.New(t)
			srv.ConnCalls = connCalls
			c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: tt.name, Conns: tt.name.Conns(callers, 2),
				DialTimeout: time.Second, Lean: tt.lean})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			gen := sales.New(5, 50)
			var wg sync.WaitGroup
			var mu sync.Mutex
			failed := map[string]int{}
			for caller := range callers {
				wg.Go(func() {
					for i := range calls {
						s := make([]*salesv1.Sale, c.Batch())
						gen.Sales(s, uint64((caller*calls+i)*c.Batch()))
						if r := c.Send(context.Background(), s); r.Code != "ok" {
							mu.Lock()
							failed[fmt.Sprintf("%s: %v", r.Code, r.Err)]++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			if len(failed) > 0 {
				t.Errorf("calls failed across the server's GOAWAYs: %v, want none", failed)
			}
			if got, want := len(srv.Received()), callers*calls*c.Batch(); got != want {
				t.Errorf("server received %d sales, want %d", got, want)
			}
			// Each connection carries at most connCalls calls, and a few
			// more in flight when it is asked to go.
			if w := c.Wire().Totals(); w.Conns < 2*callers*calls/(connCalls*4) {
				t.Errorf("client dialed %d connections for %d calls, want them renewed every %d calls or so", w.Conns, callers*calls, connCalls)
			}
		})
	}
}

// TestHTTP2Conns: a client over HTTP/2 spreads its calls over Conns
// connections, so that behind a Service they reach several replicas of the
// api; over HTTP/1.1 calls one at a time keep one connection.
func TestHTTP2Conns(t *testing.T) {
	t.Parallel()
	for _, name := range protocol.Names() {
		for _, lean := range []bool{false, true} {
			if lean && name != protocol.GRPC && name != protocol.ConnectJSON {
				continue
			}
			t.Run(fmt.Sprintf("%s/lean=%v", name, lean), func(t *testing.T) {
				t.Parallel()
				srv := fakeapi.New(t)
				const conns = 3
				c, err := protocol.New(protocol.Config{Target: srv.URL, Protocol: name, Conns: name.Conns(1, conns), DialTimeout: time.Second, Lean: lean})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				gen := sales.New(7, 50)
				for i := range 5 * conns {
					s := make([]*salesv1.Sale, c.Batch())
					gen.Sales(s, uint64(i*c.Batch()))
					if r := c.Send(context.Background(), s); r.Code != "ok" {
						t.Fatalf("Send() = %+v, want ok", r)
					}
				}
				want := int64(1)
				if name.HTTP2() {
					want = conns
				}
				if got := c.Wire().Totals().Conns; got != want {
					t.Errorf("client dialed %d connections for calls one at a time, want %d", got, want)
				}
			})
		}
	}
}
