package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/contract/record"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

// TestRun starts the whole service against a fake Kafka and a real Valkey:
// configuration, topic creation, probes, counting and a clean shutdown.
func TestRun(t *testing.T) {
	valkey, prefix := valkeytest.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "sales"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()

	t.Setenv("KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("VALKEY_ADDR", valkeytest.Addr(t))
	t.Setenv("VALKEY_KEY_PREFIX", prefix)
	t.Setenv("HTTP_ADDR", httpAddr)
	t.Setenv("LOG_LEVEL", "warn")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	var records []*kgo.Record
	for i := range 100 {
		value, err := proto.Marshal(&salesv1.Sale{
			Category: salesv1.Category_CATEGORY_HOME, ProductId: fmt.Sprintf("H%d", i%7), PriceCents: 250, Quantity: 2,
			SaleId: fmt.Sprintf("s%d", i), SoldAt: timestamppb.New(time.Now().Add(-time.Minute)),
		})
		if err != nil {
			t.Fatal(err)
		}
		headers := []kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())},
		}
		if i%50 == 0 {
			headers = headers[:1] // poison: no schema
		}
		records = append(records, &kgo.Record{Topic: "sales", Key: []byte(fmt.Sprintf("H%d", i%7)), Value: value, Headers: headers})
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"sales": "98", "units": "196", "revenue_cents": "49000", "price_sum_cents": "24500",
		"min_price_cents": "250", "max_price_cents": "250", "dead_letters": "2"}
	var got map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, err = valkey.Do(ctx, valkey.B().Hgetall().Key(prefix+"totals").Build()).AsStrMap()
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%stotals = %v, %v, want %v", prefix, got, err, want)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s = %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
	// The alerts' gauges (metrics.Health), wired to the consumer and to
	// this Valkey.
	if _, body := get(t, "http://"+httpAddr+"/metrics"); !strings.Contains(body, "\nbf_aggregator_ready 1\n") ||
		!strings.Contains(body, "\nbf_aggregator_valkey_up 1\n") {
		t.Errorf("GET /metrics lacks bf_aggregator_ready 1 or bf_aggregator_valkey_up 1")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run() = %v, want nil after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run() did not return 30s after cancel")
	}
}

// TestRunRefusesMisspeltSetting: a variable that looks like one of the
// aggregator's settings and is not stops the start, naming it and the
// setting it was probably meant to be, while a setting of the api is only
// noted. Nothing is dialled: Kafka and Valkey are left at addresses where
// nothing listens.
func TestRunRefusesMisspeltSetting(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("VALKEY_ADDR", "127.0.0.1:1")
	t.Setenv("DEDUP_WINDOWS", "1m")
	t.Setenv("KAFKA_LINGER", "1ms")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := run(ctx)
	if err == nil || !strings.Contains(err.Error(), "DEDUP_WINDOWS is not a setting of the aggregator (did you mean DEDUP_WINDOW?)") {
		t.Fatalf("run() = %v, want the misspelt DEDUP_WINDOWS refused", err)
	}
	if strings.Contains(err.Error(), "KAFKA_LINGER") {
		t.Errorf("run() = %v, want the api's KAFKA_LINGER only noted", err)
	}
}
