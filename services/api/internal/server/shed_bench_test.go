package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"buf.build/go/protovalidate"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// BenchmarkShed measures what the server's handler spends on a write it
// sheds (every slot taken), per protocol, without the transport.
func BenchmarkShed(b *testing.B) {
	v, err := protovalidate.New()
	if err != nil {
		b.Fatal(err)
	}
	srv := New(Config{MaxRequestBytes: 1 << 20, ProduceTimeout: time.Second, MaxInflightWrites: 1}, Deps{
		Recorder: okRecorder{}, Analytics: fakeAnalytics{}, Validator: v, Kafka: pinger{}, Valkey: pinger{}, Logger: testLogger(),
	})
	h := srv.Handler()
	msg := frame(0, marshal(b, &salesv1.RecordSaleRequest{Sale: validSale()}))
	for _, tt := range []struct{ name, ct string }{
		{"grpc", "application/grpc"}, {"grpc-web", "application/grpc-web+proto"}, {"connect-json", "application/json"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			// Hold the only slot.
			srv.adm.calls.Store(1)
			defer srv.adm.calls.Store(0)
			// The request is built once: a shed call's body is never read.
			req := httptest.NewRequest(http.MethodPost, salesv1connect.SalesServiceRecordSaleProcedure, bytes.NewReader(msg))
			req.Header.Set("Content-Type", tt.ct)
			b.ReportAllocs()
			for b.Loop() {
				w := discardWriter{header: http.Header{}}
				h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ header http.Header }

func (w discardWriter) Header() http.Header         { return w.header }
func (w discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w discardWriter) WriteHeader(int)             {}
