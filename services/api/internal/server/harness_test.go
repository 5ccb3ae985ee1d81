package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/metrics"
)

// hangBound is how much later than its own deadline a call may answer
// before a test calls it hung. The race-detected tests run side by side on
// two-core machines, where a call can stall for a second, so time bounds in
// these tests tell an answer from a hang, never a fast answer from a slow one.
const hangBound = 5 * time.Second

const topic = "sales"

// harness is a real server on a real listener, producing to an in-process
// Kafka (kfake).
type harness struct {
	url      string
	cluster  *kfake.Cluster
	addrs    []string
	producer *ingest.Producer
	srv      *Server
}

// options adjust a harness.
type options struct {
	produce         ingest.Config
	maxRequestBytes int64
	// recorder replaces the producer on the ingest paths.
	recorder Recorder
	// analytics replaces the (unreachable) Valkey-backed service.
	analytics salesv1connect.AnalyticsServiceHandler
	valkey    Pinger
	cluster   []kfake.Opt
	// server overrides the server's limits and policies: CORS, tokens,
	// in-flight limits, timeouts. Its MaxRequestBytes, ProduceTimeout and
	// (when nil) CORSAllowedOrigins are filled in.
	server Config
	// metrics, when set, is the server's registry.
	metrics *metrics.Metrics
	// log, when set, receives the server's logs.
	log *slog.Logger
	// dashboard, when set, serves / and /assets/.
	dashboard http.Handler
	// tracing traces the calls (produce.Hooks and Traced, the records).
	tracing Tracing
}

func testLogger() *slog.Logger {
	if os.Getenv("BF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testGRPCServer is the server of native gRPC that harnesses get unless a
// test names one: BF_TEST_GRPC_SERVER (grpc-go or connect), or the
// default, grpc-go. make test-go runs this package's tests under both.
func testGRPCServer() string {
	if v := os.Getenv("BF_TEST_GRPC_SERVER"); v != "" {
		return v
	}
	return GRPCServerGo
}

func newHarness(tb testing.TB, o options) *harness {
	tb.Helper()
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(6, topic)}, o.cluster...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cluster.Close)
	h := &harness{cluster: cluster, addrs: cluster.ListenAddrs()}

	log := testLogger()
	if o.log != nil {
		log = o.log
	}
	pc := o.produce
	pc.Brokers, pc.Topic, pc.Partitions = h.addrs, topic, 6
	if pc.ProduceTimeout == 0 {
		pc.ProduceTimeout = 3 * time.Second
	}
	if pc.MaxBufferedRecords == 0 {
		pc.MaxBufferedRecords = 10000
	}
	h.producer, err = ingest.New(pc, log)
	if err != nil {
		tb.Fatal(err)
	}
	var rec Recorder = h.producer
	if o.recorder != nil {
		rec = o.recorder
	}
	store := analytics.New(analytics.Config{Addr: "127.0.0.1:1", KeyPrefix: "bf:"})
	tb.Cleanup(store.Close)
	var an salesv1connect.AnalyticsServiceHandler = store
	if o.analytics != nil {
		an = o.analytics
	}
	var valkey Pinger = store
	if o.valkey != nil {
		valkey = o.valkey
	}
	validator, err := protovalidate.New()
	if err != nil {
		tb.Fatal(err)
	}
	maxBytes := o.maxRequestBytes
	if maxBytes == 0 {
		maxBytes = 4 << 20
	}
	cfg := o.server
	if cfg.GRPCServer == "" {
		cfg.GRPCServer = testGRPCServer()
	}
	cfg.MaxRequestBytes, cfg.ProduceTimeout = maxBytes, pc.ProduceTimeout
	if cfg.CORSAllowedOrigins == nil {
		cfg.CORSAllowedOrigins = []string{"*"}
	}
	h.srv = New(cfg, Deps{
		Recorder:  rec,
		Analytics: an,
		Validator: validator,
		Kafka:     h.producer,
		Valkey:    valkey,
		Logger:    log,
		Metrics:   o.metrics,
		Dashboard: o.dashboard,
		Tracing:   o.tracing,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	tb.Cleanup(func() {
		// A connection the default transport dialed but never used is
		// "new" to the server, and Shutdown waits 5s before it counts
		// such a connection as idle; closing it here keeps the wait out.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown() = %v, want nil", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("Serve() = %v, want http.ErrServerClosed", err)
		}
		_ = h.producer.Close(ctx)
	})
	return h
}

// clients speak HTTP/1.1 only, or cleartext HTTP/2 only (prior knowledge, as
// gRPC clients do). checkProto fails the test if a response came over
// another protocol version.
func httpClient(tb testing.TB, http1, h2c bool) *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(http1)
	p.SetUnencryptedHTTP2(h2c)
	want := 1
	if h2c {
		want = 2
	}
	tr := &http.Transport{Protocols: p}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: checkProto{tb: tb, rt: tr, want: want}}
}

type checkProto struct {
	tb   testing.TB
	rt   http.RoundTripper
	want int
}

func (c checkProto) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err == nil && resp.ProtoMajor != c.want {
		c.tb.Errorf("%s %s answered over %s, want HTTP/%d", req.Method, req.URL.Path, resp.Proto, c.want)
	}
	return resp, err
}

// written counts the records on the topic.
func (h *harness) written(tb testing.TB) int64 {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offsets, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		tb.Fatalf("ListEndOffsets: %v", err)
	}
	var n int64
	offsets.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// consume reads every record on the topic.
func (h *harness) consume(tb testing.TB) []*kgo.Record {
	tb.Helper()
	want := h.written(tb)
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for int64(len(recs)) < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			tb.Fatalf("consumed %d of %d records: %v", len(recs), want, err)
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// saleIDs returns the sale_id of every record on the topic.
func (h *harness) saleIDs(tb testing.TB) map[string]bool {
	tb.Helper()
	ids := map[string]bool{}
	for _, r := range h.consume(tb) {
		s := &salesv1.Sale{}
		if err := proto.Unmarshal(r.Value, s); err != nil {
			tb.Fatal(err)
		}
		ids[s.GetSaleId()] = true
	}
	return ids
}

// produceErrors answers every produce request with code for each partition.
func produceErrors(c *kfake.Cluster, code int16) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// sleepProduce holds every produce request until release is closed. The
// returned channel is closed once a produce request is held.
func sleepProduce(c *kfake.Cluster, release <-chan struct{}) <-chan struct{} {
	held := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() { close(held) })
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	return held
}
