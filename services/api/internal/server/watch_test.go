package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/redis/rueidis"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/testenv"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/lag"
)

// valkey is a real Valkey or Redis server under a fresh key prefix.
type valkey struct {
	addr, prefix string
	client       rueidis.Client
}

func newValkey(t *testing.T) *valkey {
	t.Helper()
	addr := testenv.Valkey(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	v := &valkey{addr: addr, prefix: "bftest:" + hex.EncodeToString(b) + ":", client: c}
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, err := c.Do(ctx, c.B().Keys().Pattern(v.prefix+"*").Build()).AsStrSlice(); err == nil && len(keys) > 0 {
			_ = c.Do(ctx, c.B().Del().Key(keys...).Build()).Error()
		}
		c.Close()
	})
	return v
}

// count writes what one applied batch changes: the totals and an offset.
func (v *valkey) count(t *testing.T, sales int, offset int) {
	t.Helper()
	ctx := context.Background()
	k := keys.New(v.prefix)
	for _, cmd := range []rueidis.Completed{
		v.client.B().Hset().Key(k.Totals()).FieldValue().FieldValue(keys.FieldSales, fmt.Sprint(sales)).FieldValue(keys.FieldUnits, fmt.Sprint(2*sales)).Build(),
		v.client.B().Hset().Key(k.Offsets()).FieldValue().FieldValue(keys.OffsetField(topic, 0), fmt.Sprint(offset)).Build(),
	} {
		if err := v.client.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// store is an analytics service over v, watching often, with the lag read
// from the Kafka at brokers.
func (v *valkey) store(t *testing.T, brokers []string, heartbeat time.Duration) *analytics.Service {
	t.Helper()
	offsets, err := lag.New(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(offsets.Close)
	return v.storeWith(t, offsets, heartbeat)
}

// storeWith is store with the lag read from offsets.
func (v *valkey) storeWith(t *testing.T, offsets analytics.TopicOffsets, heartbeat time.Duration) *analytics.Service {
	t.Helper()
	s := analytics.New(analytics.Config{
		Addr: v.addr, KeyPrefix: v.prefix, Topic: topic, Offsets: offsets,
		WatchInterval: 20 * time.Millisecond, WatchHeartbeat: heartbeat,
	})
	t.Cleanup(s.Close)
	return s
}

// lateOffsets reads Kafka's offsets once set has named the brokers.
type lateOffsets struct {
	mu  sync.Mutex
	src *lag.Kafka
}

func (l *lateOffsets) set(t *testing.T, brokers []string) {
	src, err := lag.New(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.src = src
}

func (l *lateOffsets) Offsets(ctx context.Context) (map[int32]analytics.PartitionOffsets, error) {
	l.mu.Lock()
	src := l.src
	l.mu.Unlock()
	if src == nil {
		return nil, errors.New("no brokers yet")
	}
	return src.Offsets(ctx)
}

// protocolClients are the ways a client can stream: every protocol over
// each HTTP version it runs on.
func protocolClients(t *testing.T) []struct {
	name string
	http *http.Client
	opts []connect.ClientOption
} {
	http1, h2c := httpClient(t, true, false), httpClient(t, false, true)
	// Native gRPC gets connections of its own: the server hands an h2c
	// connection to grpc-go or to connect-go by its first call, for good.
	grpcH2C := httpClient(t, false, true)
	return []struct {
		name string
		http *http.Client
		opts []connect.ClientOption
	}{
		{"Connect proto over HTTP/1.1", http1, nil},
		{"Connect JSON over HTTP/1.1", http1, []connect.ClientOption{connect.WithProtoJSON()}},
		{"Connect proto over h2c", h2c, nil},
		{"gRPC over h2c", grpcH2C, []connect.ClientOption{connect.WithGRPC()}},
		{"gRPC-Web over HTTP/1.1", http1, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"gRPC-Web over h2c", h2c, []connect.ClientOption{connect.WithGRPCWeb()}},
	}
}

// receive returns the stream's next message, failing the test when the
// stream ends.
func receive(t *testing.T, s *connect.ServerStreamForClient[salesv1.WatchSummaryResponse]) *salesv1.WatchSummaryResponse {
	t.Helper()
	if !s.Receive() {
		t.Fatalf("WatchSummary stream ended: %v", s.Err())
	}
	return s.Msg()
}

func receiveSnapshot(t *testing.T, s *connect.ServerStreamForClient[salesv1.WatchSummaryResponse]) *salesv1.SummarySnapshot {
	t.Helper()
	for {
		if snap := receive(t, s).GetSnapshot(); snap != nil {
			return snap
		}
	}
}

// TestWatchSummaryEveryProtocol streams over Connect, gRPC and gRPC-Web:
// the first snapshot equals GetSummary, a change brings a new snapshot, a
// quiet stream gets heartbeats, and a recorded sale shows up as lag until
// the aggregates count it.
func TestWatchSummaryEveryProtocol(t *testing.T) {
	t.Parallel()
	v := newValkey(t)
	// The store reads the lag from the harness's Kafka, which exists only
	// once the harness does.
	kafka := &lateOffsets{}
	store := v.storeWith(t, kafka, 100*time.Millisecond)
	h := newHarness(t, options{analytics: store, valkey: store})
	kafka.set(t, h.addrs)

	v.count(t, 1, 0)
	for i, c := range protocolClients(t) {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			client := salesv1connect.NewAnalyticsServiceClient(c.http, h.url, c.opts...)
			stream, err := client.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
			if err != nil {
				t.Fatalf("WatchSummary() = %v", err)
			}
			defer stream.Close()

			first := receive(t, stream).GetSnapshot()
			want, err := client.GetSummary(ctx, &salesv1.GetSummaryRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if first == nil || !proto.Equal(first.GetSummary(), want) {
				t.Fatalf("WatchSummary() first message = %v, want a snapshot of GetSummary() = %v", first, want)
			}

			// The change comes in a later snapshot (the lag may bring
			// others first).
			v.count(t, 10+i, 0)
			snap := receiveSnapshot(t, stream)
			for snap.GetSummary().GetSales() != int64(10+i) {
				snap = receiveSnapshot(t, stream)
			}
			if snap.GetVersion() <= first.GetVersion() {
				t.Errorf("WatchSummary() after a change = version %d, want > %d", snap.GetVersion(), first.GetVersion())
			}
			var beats int
			for beats < 2 {
				if m := receive(t, stream); m.GetHeartbeat() != nil {
					beats++
				}
			}
		})
	}

	// The lag: Kafka's end offsets minus the stored ones.
	t.Run("lag", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := salesv1connect.NewAnalyticsServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
		stream, err := client.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		snap := receiveSnapshot(t, stream)
		for !snap.GetLag().GetKnown() {
			snap = receiveSnapshot(t, stream)
		}
		if got := snap.GetLag(); got.GetRecords() != 0 || len(got.GetPartitions()) != 6 {
			t.Fatalf("lag of an empty topic = %v, want 0 records over 6 partitions", got)
		}
		sales := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
		if _, err := sales.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: &salesv1.Sale{
			Category: salesv1.Category_CATEGORY_HOME, ProductId: "H1", PriceCents: 100, Quantity: 1,
		}}); err != nil {
			t.Fatal(err)
		}
		for snap.GetLag().GetRecords() != 1 {
			snap = receiveSnapshot(t, stream)
		}
	})
}

// streamServer is a server with short timeouts, to show that streams
// outlive them.
type streamServer struct {
	url      string
	srv      *Server
	served   chan error
	shutdown bool
}

func newStreamServer(t *testing.T, cfg Config, deps Deps) *streamServer {
	t.Helper()
	validator, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxRequestBytes = 1 << 20
	cfg.CORSAllowedOrigins = []string{"*"}
	deps.Validator, deps.Logger = validator, testLogger()
	if deps.Recorder == nil {
		deps.Recorder = slowRecorder{}
	}
	if deps.Kafka == nil {
		deps.Kafka, deps.Valkey = slowRecorder{}, slowRecorder{}
	}
	s := &streamServer{srv: New(cfg, deps), served: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	go func() { s.served <- s.srv.Serve(ln) }()
	t.Cleanup(func() {
		if !s.shutdown {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.srv.Shutdown(ctx)
			<-s.served
		}
	})
	return s
}

// slowRecorder takes twice the hang bound to record a sale, or fails when
// the context ends first.
type slowRecorder struct{}

func (slowRecorder) Record(ctx context.Context, _ *salesv1.Sale) error {
	select {
	case <-time.After(2 * hangBound):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r slowRecorder) RecordAll(ctx context.Context, sales []*salesv1.Sale) []error {
	errs := make([]error, len(sales))
	for i := range errs {
		errs[i] = r.Record(ctx, nil)
	}
	return errs
}

func (slowRecorder) Ping(context.Context) error { return nil }

// shortTimeouts are far below the time the tests hold streams open.
var shortTimeouts = Config{
	ProduceTimeout:     100 * time.Millisecond,
	UnaryTimeout:       200 * time.Millisecond,
	ReadHeaderTimeout:  200 * time.Millisecond,
	IdleTimeout:        200 * time.Millisecond,
	StreamWriteTimeout: 200 * time.Millisecond,
}

// TestWatchSummaryOutlivesTimeouts holds streams open over every protocol
// for several times the server's header, read/write and idle timeouts, and
// checks that heartbeats keep arriving and nothing is cut.
func TestWatchSummaryOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	v := newValkey(t)
	v.count(t, 1, 0)
	store := v.store(t, []string{"127.0.0.1:1"}, 50*time.Millisecond)
	s := newStreamServer(t, shortTimeouts, Deps{Analytics: store})
	const hold = 2 * time.Second // ten times every timeout
	for _, c := range protocolClients(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), hold+5*time.Second)
			defer cancel()
			client := salesv1connect.NewAnalyticsServiceClient(c.http, s.url, c.opts...)
			stream, err := client.WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
			if err != nil {
				t.Fatalf("WatchSummary() = %v", err)
			}
			defer stream.Close()
			receiveSnapshot(t, stream)
			start := time.Now()
			var beats int
			for time.Since(start) < hold {
				if receive(t, stream).GetHeartbeat() != nil {
					beats++
				}
			}
			if want := int(hold / (50 * time.Millisecond) / 2); beats < want {
				t.Errorf("heartbeats over %v = %d, want at least %d", hold, beats, want)
			}
		})
	}
}

// TestUnaryDeadlines checks that unary calls are still bounded once the
// server-wide timeouts are gone: a handler slower than the write deadline
// gets its connection or stream cut, and a request body trickled in slower
// than the read deadline is abandoned.
func TestUnaryDeadlines(t *testing.T) {
	t.Parallel()
	s := newStreamServer(t, shortTimeouts, Deps{Analytics: salesv1connect.UnimplementedAnalyticsServiceHandler{}})
	sale := &salesv1.RecordSaleRequest{Sale: &salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "H1", PriceCents: 1, Quantity: 1}}
	for _, c := range protocolClients(t) {
		t.Run("slow handler over "+c.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, err := salesv1connect.NewSalesServiceClient(c.http, s.url, c.opts...).RecordSale(context.Background(), sale)
			// The write deadline is 300ms after the start; the handler
			// takes twice the hang bound.
			if took := time.Since(start); err == nil || took > hangBound {
				t.Errorf("RecordSale() with a slow handler and a 300ms write deadline = %v after %v, want an error at the deadline", err, took)
			}
		})
	}
	t.Run("trickled body", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /venta HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		start := time.Now()
		closed := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, bufio.NewReader(conn))
			closed <- err
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-closed:
				t.Logf("trickled body cut after %v (read deadline 200ms)", time.Since(start).Round(time.Millisecond))
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return // cut: the server closed the connection
				}
				if time.Since(start) > hangBound {
					t.Fatalf("server still reading a trickled body after %v, want it cut at the 200ms read deadline", hangBound)
				}
			}
		}
	})
}

// TestWatchSummaryShutdown checks that a graceful shutdown ends streams at
// once with unavailable, instead of waiting for them until its deadline.
func TestWatchSummaryShutdown(t *testing.T) {
	t.Parallel()
	v := newValkey(t)
	v.count(t, 1, 0)
	store := v.store(t, []string{"127.0.0.1:1"}, time.Minute)
	s := newStreamServer(t, Config{ProduceTimeout: time.Second}, Deps{Analytics: store})
	client := salesv1connect.NewAnalyticsServiceClient(httpClient(t, false, true), s.url, connect.WithGRPC())
	stream, err := client.WatchSummary(context.Background(), &salesv1.WatchSummaryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	receiveSnapshot(t, stream)

	s.shutdown = true
	// Shutdown waiting for the stream would end at this deadline with an
	// error.
	ctx, cancel := context.WithTimeout(context.Background(), 2*hangBound)
	defer cancel()
	start := time.Now()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() with a stream open = %v after %v, want nil", err, time.Since(start))
	}
	if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve() = %v, want http.ErrServerClosed", err)
	}
	for stream.Receive() {
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
		t.Errorf("stream at shutdown ended with %v, want unavailable", stream.Err())
	}
	if took := time.Since(start); took > hangBound {
		t.Errorf("Shutdown() with a stream open took %v, want it prompt", took)
	}
}

// TestWatchSummaryValkeyDown checks the error a watcher gets when there is
// nothing to show.
func TestWatchSummaryValkeyDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	client := salesv1connect.NewAnalyticsServiceClient(httpClient(t, true, false), h.url)
	stream, err := client.WatchSummary(context.Background(), &salesv1.WatchSummaryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() {
		t.Errorf("WatchSummary() with Valkey down sent %v", stream.Msg())
	}
	if ce := new(connect.Error); !errors.As(stream.Err(), &ce) || ce.Code() != connect.CodeUnavailable || strings.Contains(ce.Message(), "127.0.0.1") {
		t.Errorf("WatchSummary() with Valkey down = %v, want unavailable naming no address", stream.Err())
	}
}
