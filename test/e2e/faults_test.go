package e2e

// The fault suite (docs/reliability.md): each scenario runs the real
// api and aggregator under continuous load from several concurrent clients,
// injects one kind of fault, and then checks the end state exactly against
// the ground truth, the set of sales the api acknowledged: the aggregates
// through GetSummary and in Valkey (waitForTruth), and sale by sale against
// the topic (load.audit). Each logs one "RESULT |" row of the results table.
//
// FAULTS_DURATION sets how long each keeps its load running (8s by default;
// make faults runs them longer, with more kills).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/stack/valkey"
)

// lostDataLog is what the aggregator logs when it finds Valkey's data gone.
const lostDataLog = "valkey has no offset for this partition: its data was lost; rebuilding from the start of the topic"

// newFaultStack is a stack whose aggregators compare their offsets with
// Valkey every two seconds, so that lost data is noticed quickly even when
// idle.
func newFaultStack(t *testing.T) *stack {
	t.Helper()
	s := newStack(t)
	s.setEnv("RECONCILE_INTERVAL", "2s")
	return s
}

// TestFaultAggregatorSIGKILL kills the aggregator with SIGKILL again and
// again, at random points (in a batch, during start-up, while it rejoins the
// group), and restarts it.
func TestFaultAggregatorSIGKILL(t *testing.T) {
	s := newFaultStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
	d := faultsDuration(t)
	l := startLoad(t, s, 101, loadOptions{clients: 6})
	rng := rand.New(rand.NewPCG(101, 1))
	kills := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		sleepRandom(rng, 0, 1500*time.Millisecond)
		s.killAggregator("aggregator")
		kills++
		sleepRandom(rng, 0, 500*time.Millisecond)
		s.startAggregator("aggregator")
	}
	l.audit(context.Background(), "1. aggregator SIGKILL",
		fmt.Sprintf("%d SIGKILLs of the aggregator at random points 0–1.5 s apart (some during start-up), each restarted 0–0.5 s later", kills))
}

// TestFaultRebalance runs two aggregators that share the partitions, kills
// one with SIGKILL, and then starts a third: the group rebalances twice
// while sales flow.
func TestFaultRebalance(t *testing.T) {
	s := newFaultStack(t)
	s.startAggregator("a")
	s.startAggregator("b")
	s.startAPI()
	d := faultsDuration(t)
	l := startLoad(t, s, 202, loadOptions{clients: 6})
	time.Sleep(d / 3)
	s.killAggregator("b")
	time.Sleep(d / 3)
	s.startAggregator("c")
	time.Sleep(d / 3)
	l.audit(context.Background(), "2. rebalance",
		"aggregators a and b share 6 partitions; b SIGKILLed at 1/3; c joins at 2/3 (two rebalances, one after b's 10 s session expires)")
	for _, name := range []string{"a", "c"} {
		if n := s.aggregatorMetric(name, "bf_aggregator_sales_applied_total"); n == 0 {
			t.Errorf("aggregator %s counted no sales, want a share of the partitions", name)
		}
	}
}

// TestFaultBrokerOutage kills the Kafka broker with SIGKILL while sales flow
// and starts it again. The clients do what the api asks of them: a sale
// answered Sale-Recorded: no is given up, one answered unknown is retried
// with the same sale_id until acknowledged. The aggregator's dedup then
// counts each acknowledged sale exactly once, even when the first attempt
// was written after all.
func TestFaultBrokerOutage(t *testing.T) {
	s := newFaultStack(t)
	s.startAggregator("aggregator")
	const produceTimeout = 2 * time.Second
	s.startAPI("PRODUCE_TIMEOUT=" + produceTimeout.String())
	d := faultsDuration(t)
	ctx := context.Background()
	l := startLoad(t, s, 303, loadOptions{clients: 6, tolerate: true})
	time.Sleep(d / 3)
	kafkaCtl(ctx, t, "kill")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			kafkaCtl(context.Background(), t, "start")
		}
	})
	outage := max(d/3, 3*time.Second)
	time.Sleep(outage)
	kafkaCtl(ctx, t, "start")
	restarted = true
	time.Sleep(d / 3)
	l.audit(ctx, "3. broker outage",
		fmt.Sprintf("Kafka broker SIGKILLed at 1/3 of the load, started again %v later; PRODUCE_TIMEOUT=%v", outage, produceTimeout))

	l.mu.Lock()
	defer l.mu.Unlock()
	for code, n := range l.failedCodes {
		if c := code.String(); c != "unavailable" && c != "resource_exhausted" {
			t.Errorf("%d calls failed with %s during the outage, want unavailable or resource_exhausted", n, c)
		}
	}
	if len(l.failedCodes) == 0 {
		t.Errorf("no call failed while the broker was down, want some answered unavailable")
	}
	if l.slowestFailure > produceTimeout+2*time.Second {
		t.Errorf("the slowest failed call took %v, want at most PRODUCE_TIMEOUT (%v) and a little", l.slowestFailure, produceTimeout)
	}
}

// TestFaultValkeyRestartAOF restarts a Valkey that keeps an append-only
// file, once with SIGKILL and once with a clean shutdown, while sales flow:
// the aggregator waits, retries and converges.
func TestFaultValkeyRestartAOF(t *testing.T) {
	v := startValkey(t, valkey.Config{AppendOnly: true, AppendFsync: "everysec"})
	s := newFaultStack(t)
	s.useValkey(v.Addr())
	s.startAggregator("aggregator")
	s.startAPI()
	d := faultsDuration(t)
	l := startLoad(t, s, 404, loadOptions{clients: 6})
	time.Sleep(d / 3)
	v.kill()
	s.waitReady("aggregator", false, 5*time.Second)
	v.start()
	s.waitReady("aggregator", true, 30*time.Second)
	time.Sleep(d / 3)
	v.stop()
	time.Sleep(time.Second)
	v.start()
	time.Sleep(d / 3)
	l.audit(context.Background(), "4. Valkey restart (AOF)",
		"dedicated Valkey with appendonly yes, appendfsync everysec: SIGKILLed at 1/3 and restarted once the aggregator reported unready; shut down cleanly at 2/3 and restarted 1 s later")
	logs := s.aggregatorLog("aggregator")
	if !strings.Contains(logs, "succeeded after retrying") {
		t.Errorf("the aggregator never logged that a Valkey operation succeeded after retrying")
	}
	if strings.Contains(logs, lostDataLog) {
		t.Errorf("the aggregator logged %q, but Valkey kept its data (AOF)", lostDataLog)
	}
	resp, err := http.Get("http://" + s.aggAddrs["aggregator"] + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET aggregator /readyz after the restarts = %v, %v, want 200", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// TestFaultValkeyDataLoss loses every key in Valkey twice: a restart
// without persistence while sales flow, then a FLUSHALL while nothing
// flows at all. Each time the aggregator must notice, say so in its log,
// replay the topic from the start and converge exactly, dedup verdicts
// included (a tenth of the sales are sent twice).
func TestFaultValkeyDataLoss(t *testing.T) {
	v := startValkey(t, valkey.Config{})
	s := newFaultStack(t)
	s.useValkey(v.Addr())
	s.startAggregator("aggregator")
	s.startAPI()
	d := faultsDuration(t)
	ctx := context.Background()
	// Some acknowledged sales are sent again: the rebuilds must drop the
	// same copies the first pass dropped.
	l := startLoad(t, s, 505, loadOptions{clients: 6, afterAck: func(l *load, c caller, sale *salesv1.Sale, id string) {
		if rand.Float64() < 0.1 {
			l.resend(c, sale, id, time.Duration(rand.Int64N(int64(time.Second))), false)
		}
	}})
	time.Sleep(d / 2)
	v.kill()
	v.start() // empty: no persistence
	time.Sleep(d / 2)
	l.audit(ctx, "5a. Valkey loses everything (under load)",
		"dedicated Valkey without persistence SIGKILLed at 1/2 of the load and restarted empty; 10% of acknowledged sales sent again within the window")
	before := strings.Count(s.aggregatorLog("aggregator"), lostDataLog)
	if before == 0 {
		t.Fatalf("the aggregator never logged %q after Valkey lost its data", lostDataLog)
	}

	// Idle: no sale flows, so only the periodic reconcile can notice.
	c := s.valkeyClient()
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	c.Close()
	flushed := time.Now()
	l.audit(ctx, "5b. Valkey loses everything (idle)",
		"FLUSHALL on the dedicated Valkey after the load, with no sale flowing (found by the periodic reconcile, RECONCILE_INTERVAL=2s)")
	after := strings.Count(s.aggregatorLog("aggregator"), lostDataLog)
	if after <= before {
		t.Errorf("the aggregator logged %q %d times before the idle FLUSHALL and %d after, want more", lostDataLog, before, after)
	}
	t.Logf("rebuilt in %v after the idle FLUSHALL; the aggregator logged the loss %d times (once per partition and event)",
		time.Since(flushed).Round(100*time.Millisecond), after)
}

// TestFaultClientRetries has clients send acknowledged sales again with the
// same sale_id, as a client whose acknowledgement was lost would: copies
// within DEDUP_WINDOW are counted once, copies past it count again.
func TestFaultClientRetries(t *testing.T) {
	const window = 3 * time.Second
	s := newFaultStack(t)
	s.setEnv("DEDUP_WINDOW", window.String())
	s.startAggregator("aggregator")
	s.startAPI()
	d := faultsDuration(t)
	l := startLoad(t, s, 606, loadOptions{clients: 6, clientIDs: 3, afterAck: func(l *load, c caller, sale *salesv1.Sale, id string) {
		switch p := rand.Float64(); {
		case p < 0.15: // at once, as a client retrying on a timeout would
			l.resend(c, sale, id, 0, false)
		case p < 0.25: // twice, within the window
			l.resend(c, sale, id, time.Duration(rand.Int64N(int64(500*time.Millisecond))), false)
			l.resend(c, sale, id, time.Second+time.Duration(rand.Int64N(int64(500*time.Millisecond))), false)
		case p < 0.27: // long after: past the window, a new sale
			l.resend(c, sale, id, window+2*time.Second, true)
		}
	}})
	time.Sleep(d)
	l.audit(context.Background(), "6. client retries with the same sale_id",
		fmt.Sprintf("DEDUP_WINDOW=%v; 25%% of acknowledged sales sent again with the same sale_id (0–1.5 s later, within the window), 2%% sent again 5 s later (past the window: counted again)", window))
	dups := s.totalsField(context.Background(), keys.FieldDuplicates)
	if got := s.aggregatorMetric("aggregator", "bf_aggregator_duplicates_total"); int64(got) != dups || dups == 0 {
		t.Errorf("bf_aggregator_duplicates_total = %v, %stotals duplicates = %d, want them equal and positive", got, s.prefix, dups)
	}
}

// TestFaultPoisonRecords writes poison straight to the sales topic while
// sales flow: random bytes, a wrong schema header, a missing content type,
// JSON instead of protobuf and a well-formed sale that fails validation.
// Each lands in the dead-letter topic and is counted, and the aggregator
// keeps going.
func TestFaultPoisonRecords(t *testing.T) {
	s := newFaultStack(t)
	s.startAggregator("aggregator")
	s.startAPI()
	d := faultsDuration(t)
	ctx := context.Background()
	producer, err := kgo.NewClient(kgo.SeedBrokers(s.kafka), kgo.DefaultProduceTopic(s.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	l := startLoad(t, s, 707, loadOptions{clients: 4})

	valid := func(edit func(*salesv1.Sale)) []byte {
		sale := &salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "HOM-1", PriceCents: 999, Quantity: 1,
			SaleId: "poison-" + randomID(), SoldAt: timestamppb.Now()}
		if edit != nil {
			edit(sale)
		}
		b, err := proto.Marshal(sale)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	headers := func(contentType, schema string) []kgo.RecordHeader {
		h := []kgo.RecordHeader{{Key: "e2e-poison", Value: []byte("yes")}, {Key: record.HeaderSchema, Value: []byte(schema)}}
		if contentType != "" {
			h = append(h, kgo.RecordHeader{Key: record.HeaderContentType, Value: []byte(contentType)})
		}
		return h
	}
	protobuf, schema := record.ContentTypeProtobuf, record.Schema()
	kinds := []struct {
		reason string // the first word of dlq-reason
		record func(rng *rand.Rand) *kgo.Record
	}{
		{"undecodable", func(rng *rand.Rand) *kgo.Record {
			b := make([]byte, 1+rng.IntN(64))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			b[0] = 0xff // never a valid first tag
			return &kgo.Record{Value: b, Headers: headers(protobuf, schema)}
		}},
		{"bad-schema", func(*rand.Rand) *kgo.Record {
			return &kgo.Record{Value: valid(nil), Headers: headers(protobuf, "blackfriday.ProductSaleRequest")}
		}},
		{"bad-content-type", func(*rand.Rand) *kgo.Record {
			return &kgo.Record{Value: []byte(`{"category":"CATEGORY_HOME","productId":"HOM-1","priceCents":"999","quantity":1}`),
				Headers: headers("application/json", schema)}
		}},
		{"bad-content-type", func(*rand.Rand) *kgo.Record {
			return &kgo.Record{Value: valid(nil), Headers: headers("", schema)}
		}},
		{"invalid", func(*rand.Rand) *kgo.Record {
			return &kgo.Record{Value: valid(func(s *salesv1.Sale) { s.PriceCents = 0 }), Headers: headers(protobuf, schema)}
		}},
		{"invalid", func(*rand.Rand) *kgo.Record {
			return &kgo.Record{Value: valid(func(s *salesv1.Sale) { s.Quantity = 1000000 }), Headers: headers(protobuf, schema)}
		}},
	}
	rng := rand.New(rand.NewPCG(707, 2))
	want := map[string]int{}
	poisoned := 0
	for end := time.Now().Add(d); time.Now().Before(end); poisoned++ {
		k := kinds[poisoned%len(kinds)]
		r := k.record(rng)
		r.Key = []byte(fmt.Sprintf("HOM-%d", rng.IntN(40)))
		if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce poison: %v", err)
		}
		want[k.reason]++
		time.Sleep(50 * time.Millisecond)
	}
	l.audit(ctx, "7. poison records",
		fmt.Sprintf("%d poison records written straight to the topic, interleaved with the sales (random bytes, wrong schema, JSON, no content type, invalid sales)", poisoned))

	if got := s.totalsField(ctx, keys.FieldDeadLetters); got != int64(poisoned) {
		t.Errorf("%s %s = %d, want %d", keys.New(s.prefix).Totals(), keys.FieldDeadLetters, got, poisoned)
	}
	if got := s.aggregatorMetric("aggregator", "bf_aggregator_dead_letters_total"); int(got) != poisoned {
		t.Errorf("bf_aggregator_dead_letters_total = %v, want %d", got, poisoned)
	}
	dead := readTopic(ctx, t, s.kafka, s.topic+".dlq")
	got := map[string]int{}
	for _, r := range dead {
		var reason, origin string
		for _, h := range r.Headers {
			switch h.Key {
			case record.HeaderDLQReason:
				reason, _, _ = strings.Cut(string(h.Value), ":")
			case record.HeaderDLQTopic:
				origin = string(h.Value)
			}
		}
		if origin != s.topic || !hasHeader(r.Headers, "e2e-poison", "yes") {
			t.Errorf("dead letter with headers %v, want one of the poison records of %s", r.Headers, s.topic)
		}
		got[reason]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dead letters by reason = %v, want %v", got, want)
	}
	t.Logf("dead-letter topic %s.dlq holds %d records by reason %v; bf:totals dead_letters and bf_aggregator_dead_letters_total agree", s.topic, len(dead), got)
}
