package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// TestTinyDeadlinesFailNobodyElse: while well-behaved callers record sales
// of one product, hostile callers record sales of the same product with a
// 1 ms deadline (Connect-Timeout-Ms over Connect JSON, grpc-timeout over
// gRPC). Their records share a partition and franz-go's buffer with the
// others', but not their deadline: no well-behaved call fails, and a
// hostile call is told "no" only for a sale that was never written.
func TestTinyDeadlinesFailNobodyElse(t *testing.T) {
	t.Parallel()
	const duration = 3 * time.Second
	// The api's default linger: records wait in franz-go's buffer for
	// company, so hostile and polite ones share batches.
	h := newHarness(t, options{produce: ingest.Config{Linger: time.Millisecond}})
	warmUp(t, h)

	var (
		mu       sync.Mutex
		acked    []string // polite sales acknowledged
		refused  []string // hostile sales answered Sale-Recorded: no
		failures []string // polite calls that failed
		answers  = map[string]int{}
	)
	var seq atomic.Int64
	hot := func(who string) *salesv1.Sale {
		s := validSale()
		s.ProductId = "HOT"
		s.SaleId = fmt.Sprintf("%s-%d", who, seq.Add(1))
		return s
	}
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			// Half over HTTP/1.1, half over one HTTP/2 connection each.
			client := salesv1connect.NewSalesServiceClient(httpClient(t, true, false), h.url, connect.WithProtoJSON())
			if i%2 == 1 {
				client = salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
			}
			for time.Now().Before(stop) {
				sale := hot("polite")
				_, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: sale})
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					acked = append(acked, sale.GetSaleId())
				}
				mu.Unlock()
			}
		})
	}
	// Connect JSON with Connect-Timeout-Ms: 1, by hand so that the answer
	// the server sends is read whatever the deadline said.
	plain := httpClient(t, true, false)
	wg.Go(func() {
		for time.Now().Before(stop) {
			sale := hot("hostile")
			body, err := json.Marshal(map[string]any{"sale": map[string]any{
				"category": "CATEGORY_HOME", "productId": sale.GetProductId(), "priceCents": 100, "quantity": 1, "saleId": sale.GetSaleId(),
			}})
			if err != nil {
				t.Error(err)
				return
			}
			req, err := http.NewRequest(http.MethodPost, h.url+"/blackfriday.sales.v1.SalesService/RecordSale", strings.NewReader(string(body)))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Connect-Timeout-Ms", "1")
			resp, err := plain.Do(req)
			if err != nil {
				t.Errorf("hostile call: %v", err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			recorded := resp.Header.Get(SaleRecordedKey)
			answers[fmt.Sprintf("%d Sale-Recorded=%q", resp.StatusCode, recorded)]++
			switch {
			case recorded == "no":
				refused = append(refused, sale.GetSaleId())
			case resp.StatusCode != http.StatusOK && recorded != "unknown":
				t.Errorf("hostile call answered %d with Sale-Recorded %q, want no or unknown", resp.StatusCode, recorded)
			}
			mu.Unlock()
		}
	})
	// gRPC with grpc-timeout: 1m (one millisecond).
	wg.Go(func() {
		client := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
		for time.Now().Before(stop) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, _ = client.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: hot("hostile-grpc")})
			cancel()
		}
	})
	wg.Wait()

	t.Logf("%d polite calls acknowledged, %d failed; hostile Connect answers: %v", len(acked), len(failures), answers)
	if len(failures) > 0 {
		t.Errorf("%d of %d well-behaved calls failed beside callers with a 1 ms deadline, want 0; first: %s",
			len(failures), len(failures)+len(acked), failures[0])
	}
	if len(acked) == 0 {
		t.Fatal("no well-behaved call was acknowledged")
	}
	onTopic := h.saleIDs(t)
	for _, id := range acked {
		if !onTopic[id] {
			t.Errorf("sale %s was acknowledged but is not on the topic", id)
		}
	}
	for _, id := range refused {
		if onTopic[id] {
			t.Errorf("sale %s was answered Sale-Recorded: no but is on the topic", id)
		}
	}
}

// TestCloseAnswersInFlightUnknown: when the producer closes with a sale in
// flight (the shutdown deadline passed before Kafka answered), the sale may
// yet be written, and its caller is told so: Sale-Recorded unknown, never
// no.
func TestCloseAnswersInFlightUnknown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{produce: ingest.Config{ProduceTimeout: 4 * hangBound}})
	warmUp(t, h)
	release := make(chan struct{})
	held := sleepProduce(h.cluster, release)
	defer close(release)
	answer := make(chan *failure, 1)
	go func() { answer <- grpcPath(t, h, validSale()) }()
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.producer.Close(ctx); err == nil {
		t.Error("Close() = nil with a sale in flight, want the flush to time out")
	}
	select {
	case f := <-answer:
		if f == nil || f.code != connect.CodeUnavailable || f.recorded != "unknown" {
			t.Errorf("RecordSale() in flight when the producer closed = %+v, want unavailable with Sale-Recorded unknown", f)
		}
	case <-time.After(hangBound):
		t.Fatal("RecordSale() in flight when the producer closed never answered")
	}
}
