package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"blackfriday.local/contract/telemetry"
	"blackfriday.local/contract/testenv"
	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// noopRecorder acknowledges every sale without writing it: the same server,
// interceptors and validation, minus Kafka.
type noopRecorder struct{}

func (noopRecorder) Record(context.Context, *salesv1.Sale) error { return nil }
func (noopRecorder) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	return make([]error, len(sales))
}

// benchBackend is where a benchmark's sales go.
type benchBackend struct {
	name string
	// recorder builds the recorder; nil uses the harness's producer on
	// kfake.
	recorder func(b *testing.B) Recorder
}

// benchBackends are the in-process Kafka (kfake, acknowledging without
// storing), a real broker when BF_TEST_KAFKA_BROKERS names one, and the no-op
// recorder. kfake runs in the benchmark's process, so its own allocations
// count in "kafka"; "broker" counts only the api's side (client included).
func benchBackends() []benchBackend {
	backends := []benchBackend{{name: "kafka"}}
	if brokers := os.Getenv(testenv.KafkaBrokers); brokers != "" {
		backends = append(backends, benchBackend{name: "broker", recorder: func(b *testing.B) Recorder {
			return realBroker(b, strings.Split(brokers, ","))
		}})
	}
	return append(backends, benchBackend{name: "noop", recorder: func(*testing.B) Recorder { return noopRecorder{} }})
}

// realBroker returns a producer writing to a fresh topic on a real broker.
func realBroker(b *testing.B, brokers []string) Recorder {
	b.Helper()
	id := make([]byte, 5)
	_, _ = rand.Read(id)
	p, err := ingest.New(ingest.Config{
		Brokers: brokers, Topic: "bench-" + hex.EncodeToString(id), Partitions: 6,
		ProduceTimeout: 3 * time.Second, MaxBufferedRecords: 10000,
	}, testLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.EnsureTopic(ctx); err != nil {
		b.Fatalf("EnsureTopic: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// noGzip keeps responses uncompressed, as the load generator's clients do:
// connect-go clients otherwise accept gzip, and the server then compresses
// even a 40-byte answer.
var noGzip = connect.WithAcceptCompression("gzip", nil, nil)

// benchProtocol is one way of sending a sale; call sends req once.
type benchProtocol struct {
	name string
	call func(b testing.TB, h *harness) func(ctx context.Context) error
}

func connectCall(http1 bool, opts ...connect.ClientOption) func(b testing.TB, h *harness) func(context.Context) error {
	return func(b testing.TB, h *harness) func(context.Context) error {
		client := salesv1connect.NewSalesServiceClient(httpClient(b, http1, !http1), h.url, append(opts, noGzip)...)
		req := &salesv1.RecordSaleRequest{Sale: validSale()}
		return func(ctx context.Context) error {
			_, err := client.RecordSale(ctx, req)
			return err
		}
	}
}

var benchProtocols = []benchProtocol{
	{"connect-json", connectCall(true, connect.WithProtoJSON())},
	{"connect-json-h2c", connectCall(false, connect.WithProtoJSON())},
	{"connect-proto", connectCall(true)},
	{"grpc", connectCall(false, connect.WithGRPC())},
	{"grpc-web", connectCall(true, connect.WithGRPCWeb())},
	{"legacy-rest", func(b testing.TB, h *harness) func(context.Context) error {
		client := httpClient(b, true, false)
		body := []byte(`{"categoria":"Hogar","producto_id":"P1","precio":19.99,"cantidad_vendida":2}`)
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+"/venta", bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("POST /venta = %s", resp.Status)
			}
			return nil
		}
	}},
	{"legacy-grpc", func(b testing.TB, h *harness) func(context.Context) error {
		client := blackfridayconnect.NewProductSaleServiceClient(httpClient(b, false, true), h.url, connect.WithGRPC(), noGzip)
		req := &legacypb.ProductSaleRequest{Categoria: legacypb.CategoriaProducto_HOGAR, ProductoId: "P1", Precio: 19.99, CantidadVendida: 2}
		return func(ctx context.Context) error {
			_, err := client.ProcesarVenta(ctx, req)
			return err
		}
	}},
}

// BenchmarkRecordSale measures one call per iteration, client and server in
// one process over a real listener, for each protocol, through the real
// producer ("kafka": kfake in process; "broker": a real broker when
// BF_TEST_KAFKA_BROKERS is set) and through a no-op recorder ("noop"). The
// difference in allocs/op is the cost of the durable path; `make bench`
// prints it.
func BenchmarkRecordSale(b *testing.B) {
	for _, p := range benchProtocols {
		for _, backend := range benchBackends() {
			b.Run(p.name+"/"+backend.name, func(b *testing.B) {
				o := options{cluster: []kfake.Opt{kfake.BlackholeProduce()}}
				if backend.recorder != nil {
					o.recorder = backend.recorder(b)
				}
				// The broker acknowledges without storing, so memory stays
				// flat however long the benchmark runs.
				h := newHarness(b, o)
				call := p.call(b, h)
				ctx := context.Background()
				// Warm up: connections, metadata, producer id.
				if err := call(ctx); err != nil {
					b.Fatalf("first call = %v", err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := call(ctx); err != nil {
						b.Fatalf("call = %v", err)
					}
				}
			})
		}
	}
}

// batchSize is the batch of BenchmarkRecordSales, as in the batch target.
const batchSize = 500

// BenchmarkRecordSales measures one RecordSales call of 500 sales per
// iteration over gRPC; sales/op lets `make bench` compare sales per second
// with BenchmarkRecordSale/grpc.
func BenchmarkRecordSales(b *testing.B) {
	for _, backend := range benchBackends() {
		b.Run("grpc/"+backend.name, func(b *testing.B) {
			o := options{cluster: []kfake.Opt{kfake.BlackholeProduce()}}
			if backend.recorder != nil {
				o.recorder = backend.recorder(b)
			}
			h := newHarness(b, o)
			client := salesv1connect.NewSalesServiceClient(httpClient(b, false, true), h.url, connect.WithGRPC(), noGzip)
			req := &salesv1.RecordSalesRequest{}
			for i := range batchSize {
				s := validSale()
				s.ProductId = fmt.Sprintf("P%d", i%50)
				req.Sales = append(req.Sales, s)
			}
			ctx := context.Background()
			check := func() {
				resp, err := client.RecordSales(ctx, req)
				if err != nil {
					b.Fatalf("RecordSales() = %v", err)
				}
				if resp.GetAccepted() != batchSize {
					b.Fatalf("RecordSales() accepted %d of %d", resp.GetAccepted(), batchSize)
				}
			}
			check()
			b.ReportAllocs()
			for b.Loop() {
				check()
			}
			b.ReportMetric(batchSize, "sales/op")
		})
	}
}

// BenchmarkRecordSaleParallel measures throughput with many concurrent gRPC
// callers, where records share batches while a produce request is in flight.
func BenchmarkRecordSaleParallel(b *testing.B) {
	for _, backend := range benchBackends() {
		b.Run("grpc/"+backend.name, func(b *testing.B) {
			o := options{cluster: []kfake.Opt{kfake.BlackholeProduce()}}
			if backend.recorder != nil {
				o.recorder = backend.recorder(b)
			}
			h := newHarness(b, o)
			client := salesv1connect.NewSalesServiceClient(httpClient(b, false, true), h.url, connect.WithGRPC(), noGzip)
			if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
				b.Fatalf("RecordSale() = %v", err)
			}
			b.SetParallelism(16)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := &salesv1.RecordSaleRequest{Sale: validSale()}
				for pb.Next() {
					if _, err := client.RecordSale(context.Background(), req); err != nil {
						b.Errorf("RecordSale() = %v", err)
						return
					}
				}
			})
		})
	}
}

// discardSpans is an exporter that drops every span: with it, tracing costs
// what making, ending and batching spans costs, not shipping them.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// tracingModes are BenchmarkRecordSaleTracing's ways of running the server:
// each returns the harness options.
var tracingModes = []struct {
	name    string
	options func(b *testing.B) options
}{
	// The server as BenchmarkRecordSale builds it: no tracing code at all.
	{"baseline", func(*testing.B) options { return options{} }},
	// Tracing set up as the api's main does (services/api/tracing.go) when
	// telemetry.Start finds no endpoint, the other OTEL_ variables set: it
	// returns nil, and nothing is installed.
	{"off", func(b *testing.B) options {
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
		b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
		tel, err := telemetry.Start(context.Background(), telemetry.ServiceAPI, testLogger())
		if err != nil || tel != nil {
			b.Fatalf("telemetry.Start() without an endpoint = %v, %v; want nil, nil", tel, err)
		}
		return options{produce: ingest.Config{Traced: tel != nil}}
	}},
	// Every call traced and sampled (always_on), as the api's main sets it
	// up with an endpoint, into the SDK's batch processor with its default
	// schedule, and an exporter that drops the spans.
	{"on", func(b *testing.B) options { return tracedOptions(b, sdktrace.AlwaysSample()) }},
	// Every call traced, one in a hundred sampled (traceidratio 0.01): the
	// others make non-recording spans and still propagate their context.
	{"on-1pct", func(b *testing.B) options { return tracedOptions(b, sdktrace.TraceIDRatioBased(0.01)) }},
}

// tracedOptions traces as the api's main does with tracing on, sampling
// with sampler and discarding the spans.
func tracedOptions(b *testing.B, sampler sdktrace.Sampler) options {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.ParentBased(sampler)))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return options{
		produce: ingest.Config{Traced: true, Hooks: []kgo.Hook{kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))}},
		tracing: Tracing{Provider: tp, Propagator: prop},
	}
}

// BenchmarkRecordSaleTracing measures one RecordSale per iteration through
// the real producer on kfake, as BenchmarkRecordSale's "kafka" rows, with
// tracing in each of tracingModes, side by side: "off" must cost what the
// baseline does. `make bench BENCH_PATTERN=^BenchmarkRecordSaleTracing$`
// prints the ratios.
func BenchmarkRecordSaleTracing(b *testing.B) {
	for _, p := range benchProtocols {
		if p.name != "grpc" && p.name != "connect-json" && p.name != "legacy-rest" {
			continue
		}
		for _, mode := range tracingModes {
			b.Run(p.name+"/"+mode.name, func(b *testing.B) {
				o := mode.options(b)
				o.cluster = []kfake.Opt{kfake.BlackholeProduce()}
				h := newHarness(b, o)
				call := p.call(b, h)
				ctx := context.Background()
				if err := call(ctx); err != nil {
					b.Fatalf("first call = %v", err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := call(ctx); err != nil {
						b.Fatalf("call = %v", err)
					}
				}
			})
		}
	}
}
