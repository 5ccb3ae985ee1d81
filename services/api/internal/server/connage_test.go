package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kfake"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// dialCounter is a client transport that counts the connections it dials.
type dialCounter struct {
	dials atomic.Int64
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (d *dialCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dials.Add(1)
	return d.dial(ctx, network, addr)
}

// countingClient speaks HTTP/1.1 only or cleartext HTTP/2 only, through
// dial, counting its connections.
func countingClient(t *testing.T, h2c bool, dial func(context.Context, string, string) (net.Conn, error)) (*http.Client, *dialCounter) {
	t.Helper()
	d := &dialCounter{dial: dial}
	p := new(http.Protocols)
	p.SetHTTP1(!h2c)
	p.SetUnencryptedHTTP2(h2c)
	tr := &http.Transport{Protocols: p, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, d
}

// TestMaxConnectionAgeMovesClients: long-lived clients calling RecordSale
// without pause, several calls in flight at once, move to new connections
// as theirs reach their age, and not one call fails: over HTTP/2 the
// server's GOAWAY lets the calls in flight finish and the client opens its
// next ones on a new connection; over HTTP/1.1 the connection closes after
// an answer that says so. Each sale is written once.
func TestMaxConnectionAgeMovesClients(t *testing.T) {
	t.Parallel()
	const age = 250 * time.Millisecond
	// Each run lasts until the server has told this many connections to
	// go at their age.
	const wantAged = 3
	tests := []struct {
		name    string
		h2c     bool
		opts    []connect.ClientOption
		callers int
	}{
		{"gRPC over h2c", true, []connect.ClientOption{connect.WithGRPC()}, 4},
		{"Connect JSON over h2c", true, []connect.ClientOption{connect.WithProtoJSON()}, 4},
		{"Connect JSON over HTTP/1.1", false, []connect.ClientOption{connect.WithProtoJSON()}, 4},
		{"gRPC-Web over HTTP/1.1", false, []connect.ClientOption{connect.WithGRPCWeb()}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, options{server: Config{MaxConnectionAge: age, MaxConnectionAgeGrace: time.Minute}})
			hc, d := countingClient(t, tt.h2c, (&net.Dialer{}).DialContext)
			client := salesv1connect.NewSalesServiceClient(hc, h.url, tt.opts...)
			var calls, failed atomic.Int64
			var firstErr error
			var once sync.Once
			call := func() {
				_, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()})
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
			// One call first, so that an HTTP/2 client has its one
			// connection before the callers share it.
			call()

			// The callers call until the server has told wantAged
			// connections to go, or until a bound far beyond their ages
			// that only a hang reaches.
			ctx, cancel := context.WithTimeout(context.Background(), 40*age+4*hangBound)
			defer cancel()
			var wg sync.WaitGroup
			for range tt.callers {
				wg.Go(func() {
					for h.srv.ages.aged.Load() < wantAged && ctx.Err() == nil {
						call()
					}
				})
			}
			wg.Wait()
			aged, dials := h.srv.ages.aged.Load(), d.dials.Load()
			if aged < wantAged {
				t.Fatalf("after %d calls over %d connections dialed, connections told to go at the age of %v = %d, want %d",
					calls.Load(), dials, age, aged, wantAged)
			}
			// The first connection, and one more for each told to go but
			// the last, which the callers may have left as it was told.
			if dials < aged {
				t.Errorf("client dialed %d connections, want at least one for each of the %d told to go", dials, aged)
			}
			if failed.Load() > 0 {
				t.Errorf("%d of %d calls failed across the moves, want none; first: %v", failed.Load(), calls.Load(), firstErr)
			}
			if got := h.written(t); got != calls.Load() {
				t.Errorf("written = %d records for %d calls, want one each", got, calls.Load())
			}
			t.Logf("%d calls, %d failed, over %d connections dialed; %d told to go at their age", calls.Load(), failed.Load(), dials, aged)
		})
	}
}

// TestMaxConnectionAgeOff: without a maximum age a client keeps its one
// connection.
func TestMaxConnectionAgeOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	hc, d := countingClient(t, true, (&net.Dialer{}).DialContext)
	client := salesv1connect.NewSalesServiceClient(hc, h.url, connect.WithGRPC())
	for range 20 {
		if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
			t.Fatalf("RecordSale() = %v, want ok", err)
		}
	}
	if got := d.dials.Load(); got != 1 {
		t.Errorf("client dialed %d connections, want 1", got)
	}
}

// virtualServer is a server on a virtual network (kfake's, of in-memory
// pipes), so that in a synctest bubble its connections' ages and graces
// pass in virtual time, exactly. WatchSummary holds its streams open.
func virtualServer(t *testing.T, cfg Config) (url string, network *kfake.VirtualNetwork, srv *Server) {
	t.Helper()
	validator, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxRequestBytes, cfg.ProduceTimeout = 1<<20, time.Second
	// gRPC stays on connect-go here: over the virtual network's
	// unbuffered pipes grpc-go and Go's HTTP/2 client deadlock, each
	// flushing its SETTINGS before it reads. MAX_CONNECTION_AGE on grpc-go
	// is tested over TCP (TestMaxConnectionAgeMovesClients,
	// TestGRPCGoMaxConnectionAge).
	cfg.GRPCServer = GRPCServerConnect
	srv = New(cfg, Deps{
		Recorder: slowRecorder{}, Analytics: holdingAnalytics{}, Validator: validator,
		Kafka: slowRecorder{}, Valkey: slowRecorder{}, Logger: testLogger(),
	})
	network = new(kfake.VirtualNetwork)
	ln, err := network.Listen("tcp", "localhost:8080")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v, want http.ErrServerClosed", err)
		}
	})
	return "http://localhost:8080", network, srv
}

// TestMaxConnectionAgeGraceEndsStreams: a stream keeps its connection past
// the connection's age, for the grace; it then ends with unavailable (the
// code that says "reconnect"), and the connection is closed, so that the
// client's next call goes over a new one. A stream opened on a connection
// already past its age (which that call asks to go) ends at the same time,
// and one opened after the grace at once.
func TestMaxConnectionAgeGraceEndsStreams(t *testing.T) {
	t.Parallel()
	const age, grace = time.Minute, 30 * time.Second
	// The earliest and the latest a connection's grace ends, with jitter.
	spread := time.Duration(ageJitter * float64(age.Nanoseconds()))
	first, last := age-spread+grace, age+spread+grace
	for _, tt := range []struct {
		name string
		h2c  bool
		opts []connect.ClientOption
	}{
		{"gRPC over h2c", true, []connect.ClientOption{connect.WithGRPC()}},
		{"Connect over HTTP/1.1", false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				url, network, srv := virtualServer(t, Config{MaxConnectionAge: age, MaxConnectionAgeGrace: grace})
				hc, d := countingClient(t, tt.h2c, network.DialContext)
				analytics := salesv1connect.NewAnalyticsServiceClient(hc, url, tt.opts...)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				watch := func() <-chan error {
					t.Helper()
					stream, err := analytics.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
					if err != nil {
						t.Fatal(err)
					}
					receiveSnapshot(t, stream)
					ended := make(chan error, 1)
					go func() {
						for stream.Receive() {
						}
						ended <- stream.Err()
						_ = stream.Close()
					}()
					return ended
				}
				start := time.Now()
				streams := []<-chan error{watch()}

				// Past the age, and to the last instant of the shortest
				// grace, the stream carries on.
				time.Sleep(first - time.Nanosecond)
				synctest.Wait()
				select {
				case err := <-streams[0]:
					t.Fatalf("stream ended %v after it started (%v), want it open for its connection's age and grace (at least %v)", time.Since(start), err, first)
				default:
				}
				// A stream opened now, on an aged connection where the
				// client can (HTTP/2), asks the client to go, and ends
				// with the grace of the first.
				if tt.h2c {
					streams = append(streams, watch())
					if got := d.dials.Load(); got != 1 {
						t.Fatalf("client dialed %d connections for its streams, want 1", got)
					}
				}

				time.Sleep(last - first + time.Nanosecond)
				synctest.Wait()
				for i, ch := range streams {
					select {
					case err := <-ch:
						if connect.CodeOf(err) != connect.CodeUnavailable {
							t.Errorf("stream %d ended at its connection's grace with %v, want unavailable", i, err)
						}
					default:
						t.Fatalf("stream %d still open %v after the first started, want it ended by %v", i, time.Since(start), last)
					}
				}
				// Over HTTP/1.1 the client keeps the connection the stream
				// ended on: a stream it opens there now ends at once, with
				// the connection.
				if !tt.h2c {
					stream, err := analytics.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
					if err != nil {
						t.Fatal(err)
					}
					for stream.Receive() {
					}
					if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
						t.Errorf("stream opened after the grace ended with %v, want unavailable", stream.Err())
					}
					_ = stream.Close()
				}
				// The connection goes soon after its streams.
				time.Sleep(ageCloseDelay)
				synctest.Wait()
				if got := srv.conns.open.Load(); got != 0 {
					t.Errorf("connections open %v after the grace = %d, want 0", ageCloseDelay, got)
				}
				dials := d.dials.Load()
				if _, err := analytics.GetSummary(ctx, &salesv1.GetSummaryRequest{}); err != nil {
					t.Fatalf("GetSummary() after the grace = %v, want ok", err)
				}
				if got := d.dials.Load(); got != dials+1 {
					t.Errorf("client dialed %d connections for its next call, want 1", got-dials)
				}
			})
		})
	}
}

// TestAgeLimitJitter: each connection's age is the maximum give or take
// ageJitter, at random, so connections opened together go apart.
func TestAgeLimitJitter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const age = time.Hour
		conns := make(chan net.Conn)
		l := &ageLimit{Listener: chanListener(conns), age: age, grace: time.Minute, counts: &ageCounts{}}
		seen := map[time.Duration]bool{}
		for range 100 {
			server, client := net.Pipe()
			go func() { conns <- server }()
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			got := time.Until(c.(*agingConn).deadline)
			if spread := time.Duration(ageJitter * float64(age.Nanoseconds())); got < age-spread || got > age+spread {
				t.Errorf("connection's age = %v, want %v give or take %v%%", got, age, 100*ageJitter)
			}
			seen[got] = true
			_ = c.Close()
			_ = client.Close()
		}
		if len(seen) < 90 {
			t.Errorf("100 connections opened at once got %d distinct ages, want them spread", len(seen))
		}
	})
}

// chanListener accepts the connections sent on it.
type chanListener chan net.Conn

func (l chanListener) Accept() (net.Conn, error) { return <-l, nil }
func (l chanListener) Close() error              { return nil }
func (l chanListener) Addr() net.Addr            { return &net.TCPAddr{} }
