package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/test/deploy/internal/dashboard"
)

// aggregate is what the aggregator must have counted for a scope.
type aggregate struct {
	sales, units, revenue, priceSum, minPrice, maxPrice int64
}

func (a *aggregate) add(price, qty int64) {
	if a.sales == 0 || price < a.minPrice {
		a.minPrice = price
	}
	a.maxPrice = max(a.maxPrice, price)
	a.sales++
	a.units += qty
	a.revenue += price * qty
	a.priceSum += price
}

func (a *aggregate) fields() map[string]float64 {
	return map[string]float64{
		"sales": float64(a.sales), "units": float64(a.units), "revenue_cents": float64(a.revenue),
		"price_sum_cents": float64(a.priceSum), "min_price_cents": float64(a.minPrice), "max_price_cents": float64(a.maxPrice),
	}
}

// truth is every aggregate of the sales the test produced.
type truth struct {
	prefix      string
	total       aggregate
	cats        map[string]*aggregate
	units       map[string]float64            // product -> units, all categories
	catUnits    map[string]map[string]float64 // category -> product -> units
	ingest      map[string]float64
	prices      map[string][]float64 // electronics product -> its sale prices in dollars
	deadLetters int64
	duplicates  int64
}

// problems compares a query's result with the truth where the truth is
// known, and the values the panel computes (averages, dollars) with exact
// ones.
func (tr *truth) problems(title string, q dashboard.Target, raw, out *dashboard.Frame) []string {
	var p []string
	k := keys.New(tr.prefix)
	var scope *aggregate
	var ranking map[string]float64
	switch q.KeyName {
	case k.Totals():
		scope = &tr.total
	case k.RankUnits():
		ranking = tr.units
	case k.Ingest():
		ranking = tr.ingest
	}
	for _, c := range keys.Categories() {
		switch q.KeyName {
		case k.Category(c):
			scope = tr.cats[keys.CategoryName(c)]
		case k.RankUnitsCategory(c):
			ranking = tr.catUnits[keys.CategoryName(c)]
		}
	}
	if scope != nil {
		want := scope.fields()
		if q.KeyName == k.Totals() {
			want[keys.FieldDeadLetters] = float64(tr.deadLetters)
			want[keys.FieldDuplicates] = float64(tr.duplicates)
		}
		for _, f := range raw.Fields {
			if w, ok := want[f.Name]; ok && f.Values[0] != w {
				p = append(p, fmt.Sprintf("%s %s = %v, want %v", q.KeyName, f.Name, f.Values[0], w))
			}
		}
		computed := map[string]float64{
			"Average price":    float64(scope.priceSum) / float64(scope.sales) / 100,
			"Average quantity": float64(scope.units) / float64(scope.sales),
			"Revenue":          float64(scope.revenue) / 100,
			"Lowest price":     float64(scope.minPrice) / 100,
			"Highest price":    float64(scope.maxPrice) / 100,
			"Lowest":           float64(scope.minPrice) / 100,
			"Highest":          float64(scope.maxPrice) / 100,
		}
		for _, f := range out.Fields {
			if w, ok := computed[f.Name]; ok {
				got, _ := f.Values[0].(float64)
				if !near(got, w) {
					p = append(p, fmt.Sprintf("panel %q: %s of %s = %v, want %v (exact sums over counts)", title, f.Name, q.KeyName, got, w))
				}
			}
		}
	}
	for _, f := range raw.Fields {
		if ranking != nil && f.Values[0] != ranking[f.Name] {
			p = append(p, fmt.Sprintf("%s %s = %v, want %v", q.KeyName, f.Name, f.Values[0], ranking[f.Name]))
		}
	}
	if product, ok := strings.CutPrefix(q.KeyName, k.Price("")); ok {
		prices := out.Field("Price")
		all := tr.prices[product]
		if prices == nil {
			return append(p, fmt.Sprintf("panel %q: no Price field", title))
		}
		if want := min(len(all), 20); len(prices.Values) != want {
			p = append(p, fmt.Sprintf("panel %q: %d prices of %s, want the last %d", title, len(prices.Values), product, want))
		}
		for _, v := range prices.Values {
			if !slices.Contains(all, v.(float64)) {
				p = append(p, fmt.Sprintf("panel %q: price %v of %s was never sold", title, v, product))
			}
		}
	}
	return p
}

// fillValkey produces sales into an in-process Kafka (kfake), with one
// undecodable record and one sale sent twice, runs the real aggregator
// binary on them with key prefix prefix as the ACL user u, and waits until
// it has counted every one.
func fillValkey(t *testing.T, ctx context.Context, addr, prefix string, u aclUser) *truth {
	t.Helper()
	bin := buildAggregator(t)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(12, "sales"), kfake.SeedTopics(1, "sales.dlq"))
	if err != nil {
		t.Fatalf("kfake.NewCluster error: %v", err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	tr := &truth{prefix: prefix, cats: map[string]*aggregate{}, units: map[string]float64{},
		catUnits: map[string]map[string]float64{}, ingest: map[string]float64{}, prices: map[string][]float64{}}
	const n = 240
	now := time.Now()
	categories, protocols := keys.Categories(), record.Protocols()
	var records []*kgo.Record
	for i := range n {
		cat := categories[i%len(categories)]
		name := keys.CategoryName(cat)
		product := fmt.Sprintf("%c%d", strings.ToUpper(name)[0], (i/len(categories))%7+1)
		price := int64(99 + (i*7919)%50000)
		qty := int64(1 + (i*31)%5)
		protocol := protocols[i%len(protocols)]
		sale := &salesv1.Sale{
			Category:   cat,
			ProductId:  product,
			PriceCents: price,
			Quantity:   int32(qty),
			SaleId:     fmt.Sprintf("dash-%s-%d", prefix[:len(prefix)-1], i),
			SoldAt:     timestamppb.New(now.Add(-time.Duration(n-i) * time.Second)),
		}
		v, err := proto.Marshal(sale)
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, &kgo.Record{Topic: "sales", Key: []byte(product), Value: v, Headers: []kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())},
			{Key: record.HeaderIngestProtocol, Value: []byte(protocol)},
		}})
		if tr.cats[name] == nil {
			tr.cats[name] = &aggregate{}
			tr.catUnits[name] = map[string]float64{}
		}
		tr.cats[name].add(price, qty)
		tr.total.add(price, qty)
		tr.units[product] += float64(qty)
		tr.catUnits[name][product] += float64(qty)
		tr.ingest[string(protocol)]++
		if cat == salesv1.Category_CATEGORY_ELECTRONICS {
			tr.prices[product] = append(tr.prices[product], float64(price)/100)
		}
	}
	// One record that cannot be decoded: it goes to the dead-letter topic.
	records = append(records, &kgo.Record{Topic: "sales", Key: []byte("X1"), Value: []byte("not a protobuf sale"),
		Headers: []kgo.RecordHeader{{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: []byte(record.Schema())}}})
	tr.deadLetters = 1
	// A client that lost the acknowledgement re-sends a sale with the same
	// sale_id: the aggregator drops the copy and counts it in duplicates.
	orig := records[n/2]
	records = append(records, &kgo.Record{Topic: "sales", Key: orig.Key, Value: orig.Value, Headers: orig.Headers})
	tr.duplicates = 1

	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("ProduceSync(%d records) error: %v", len(records), err)
	}
	producer.Close()

	var logs syncBuffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(cleanEnv(),
		"KAFKA_BROKERS="+brokers, "KAFKA_TOPIC=sales", "KAFKA_DLQ_TOPIC=sales.dlq",
		"KAFKA_GROUP=bfdash-"+prefix[:len(prefix)-1], "KAFKA_TOPIC_PARTITIONS=12",
		"VALKEY_ADDR="+addr, "VALKEY_USERNAME="+u.name, "VALKEY_PASSWORD="+u.password,
		"VALKEY_KEY_PREFIX="+prefix, "POLL_MAX_RECORDS=50", "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	defer stop()

	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		vals, err := admin.Do(ctx, admin.B().Hmget().Key(keys.New(prefix).Totals()).Field(keys.FieldSales, keys.FieldDeadLetters, keys.FieldDuplicates).Build()).ToArray()
		if err == nil {
			sales, _ := vals[0].ToString()
			dead, _ := vals[1].ToString()
			dup, _ := vals[2].ToString()
			if sales == strconv.Itoa(n) && dead == "1" && dup == "1" {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			t.Fatalf("the aggregator did not count %d sales, 1 dead letter and 1 duplicate within 90s (last error %v); its log:\n%s", n, err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	t.Logf("aggregator (ACL user %s, prefix %s) counted %d sales, 1 dead letter and 1 duplicate", u.name, prefix, n)
	return tr
}

// buildAggregator builds services/aggregator from the repository root
// (through go.work), as the images do.
func buildAggregator(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "aggregator")
	cmd := exec.Command("go", "build", "-o", bin, "./services/aggregator")
	cmd.Dir = repoRoot(t)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./services/aggregator: %v\n%s", err, out)
	}
	return bin
}

// cleanEnv is the environment without GOWORK (the workspace builds the
// services) and without service settings that would leak into a child.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "GOWORK" || strings.HasPrefix(name, "KAFKA_") || strings.HasPrefix(name, "VALKEY_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
