package server

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kfake"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// noopRecorder acknowledges every sale without writing it: the same server,
// interceptors and validation, minus Kafka.
type noopRecorder struct{}

func (noopRecorder) Record(context.Context, *salesv1.Sale) error { return nil }
func (noopRecorder) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	return make([]error, len(sales))
}

// BenchmarkRecordSale measures one RecordSale call per iteration, client and
// server in one process over a real listener, for each protocol: through the
// real producer to kfake ("kafka"), and through a no-op recorder ("noop").
// The difference is the cost of waiting for Kafka's acknowledgement.
func BenchmarkRecordSale(b *testing.B) {
	protocols := []struct {
		name string
		h2c  bool
		opts []connect.ClientOption
	}{
		{"connect-json", false, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-proto", false, nil},
		{"grpc", true, []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", false, []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	backends := []struct {
		name string
		rec  Recorder
	}{
		{"kafka", nil},
		{"noop", noopRecorder{}},
	}
	for _, p := range protocols {
		for _, backend := range backends {
			b.Run(p.name+"/"+backend.name, func(b *testing.B) {
				// The broker acknowledges without storing, so memory stays
				// flat however long the benchmark runs.
				h := newHarness(b, options{recorder: backend.rec, cluster: []kfake.Opt{kfake.BlackholeProduce()}})
				client := salesv1connect.NewSalesServiceClient(httpClient(b, !p.h2c, p.h2c), h.url, p.opts...)
				ctx := context.Background()
				req := &salesv1.RecordSaleRequest{Sale: validSale()}
				// Warm up: connections, metadata, producer id.
				if _, err := client.RecordSale(ctx, req); err != nil {
					b.Fatalf("RecordSale() = %v", err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := client.RecordSale(ctx, req); err != nil {
						b.Fatalf("RecordSale() = %v", err)
					}
				}
			})
		}
	}
}

// BenchmarkRecordSaleParallel measures throughput with many concurrent gRPC
// callers, where records share batches while a produce request is in flight.
func BenchmarkRecordSaleParallel(b *testing.B) {
	for _, backend := range []struct {
		name string
		rec  Recorder
	}{{"kafka", nil}, {"noop", noopRecorder{}}} {
		b.Run("grpc/"+backend.name, func(b *testing.B) {
			h := newHarness(b, options{recorder: backend.rec, cluster: []kfake.Opt{kfake.BlackholeProduce()}})
			client := salesv1connect.NewSalesServiceClient(httpClient(b, false, true), h.url, connect.WithGRPC())
			if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
				b.Fatalf("RecordSale() = %v", err)
			}
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
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
