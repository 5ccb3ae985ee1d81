package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/record"
	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

const (
	topic         = "sales"
	dlqTopic      = "sales.dlq"
	numPartitions = 6
)

// env is one test's world: a fake Kafka cluster, a real Valkey under a
// private prefix, and the ground truth of everything produced.
type env struct {
	t       *testing.T
	brokers []string
	cluster *kfake.Cluster
	valkey  rueidis.Client
	store   *store.Store
	keys    keys.Keys
	group   string

	producer *kgo.Client
	admin    *kadm.Client
	rng      *rand.Rand
	next     int // sequence number of the next generated record
	// dedupWindow is the consumers' DedupWindow.
	dedupWindow time.Duration

	mu    sync.Mutex
	truth truth
}

func newEnv(t *testing.T) *env {
	t.Helper()
	client, prefix := valkeytest.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(numPartitions, topic))
	if err != nil {
		t.Fatalf("kfake.NewCluster() = %v", err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	if err := EnsureTopics(t.Context(), []kgo.Opt{kgo.SeedBrokers(brokers...)}, numPartitions, topic, dlqTopic); err != nil {
		t.Fatalf("EnsureTopics() = %v", err)
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(producer.Close)
	st := store.New(client, prefix, 25*time.Hour)
	return &env{
		t:        t,
		brokers:  brokers,
		cluster:  cluster,
		valkey:   client,
		store:    st,
		keys:     st.Keys(),
		group:    "aggregator-test",
		producer: producer,
		admin:    kadm.NewClient(producer),
		rng:      rand.New(rand.NewPCG(uint64(len(t.Name())), 42)),
		truth:    newTruth(),
	}
}

// consumer is a running Consumer and how to stop it.
type consumer struct {
	*Consumer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	err    error         // what Run returned, once done is closed
}

// stop cancels the consumer and waits for it to leave the group.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case <-c.done:
		if c.err != nil {
			t.Errorf("Run() = %v, want nil", c.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run() did not return 30s after cancel")
	}
}

// start runs a consumer until stop or the end of the test. st wraps the
// real store when set.
func (e *env) start(name string, maxPoll int, st Store, opts ...kgo.Opt) *consumer {
	e.t.Helper()
	log := slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("consumer", name)
	return run(e.t, New(e.config(maxPoll, opts), cmp.Or[Store](st, e.store), aggregate.NewDecoder(), log))
}

// config configures the env's consumers: short timeouts, so that the
// tests take seconds on real time, then opts.
func (e *env) config(maxPoll int, opts []kgo.Opt) Config {
	return Config{
		Brokers:           e.brokers,
		Topic:             topic,
		DLQTopic:          dlqTopic,
		Group:             e.group,
		MaxPollRecords:    maxPoll,
		ReconcileInterval: time.Second,
		DedupWindow:       e.dedupWindow,
		ClientOptions: append([]kgo.Opt{
			kgo.FetchMaxWait(250 * time.Millisecond),
			kgo.HeartbeatInterval(250 * time.Millisecond),
			kgo.SessionTimeout(6 * time.Second),
			kgo.RebalanceTimeout(10 * time.Second),
		}, opts...),
	}
}

// run runs c until stop or the end of the test.
func run(t *testing.T, c *Consumer) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc := &consumer{Consumer: c, cancel: cancel, done: make(chan struct{})}
	// The goroutine ends when stop or the cleanup cancels ctx.
	go func() {
		defer close(rc.done)
		rc.err = c.Run(ctx)
	}()
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

// poisonKinds are the ways a record can be unusable.
var poisonKinds = []string{"garbage", "schema", "content-type", "invalid", "no-sale-id", "no-sold-at"}

var protocols = []string{"connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc"}

// produce generates n records, one in poisonEvery a poison record (0 for
// none), optionally all for one product, writes them, and adds them to the
// ground truth.
func (e *env) produce(n, poisonEvery int, product string) {
	e.t.Helper()
	records := make([]*kgo.Record, 0, n)
	for range n {
		seq := e.next
		id := product
		if id == "" {
			// Skewed popularity: low product numbers sell most.
			id = fmt.Sprintf("P%03d", int(40*e.rng.Float64()*e.rng.Float64()))
		}
		s := e.newSale(id)
		if seq%7 == 0 {
			s.Quantity = 10000
			s.PriceCents = 100000000
		}
		protocol := protocols[seq%len(protocols)]
		poison := ""
		if poisonEvery > 0 && seq%poisonEvery == poisonEvery-1 {
			poison = poisonKinds[(seq/poisonEvery)%len(poisonKinds)]
		}
		switch poison {
		case "invalid":
			s.PriceCents = 0
		case "no-sale-id":
			s.SaleId = ""
		case "no-sold-at":
			s.SoldAt = nil
		}
		r := saleRecord(e.t, s, protocol)
		switch poison {
		case "garbage":
			r.Value = []byte("{\"not\":\"protobuf\"}")
		case "schema":
			r.Headers[1].Value = []byte("blackfriday.v0.Sale")
		case "content-type":
			r.Headers = r.Headers[1:]
		}
		records = append(records, r)
		e.mu.Lock()
		if poison != "" {
			e.truth.deadLetters++
		} else {
			e.truth.add(s, protocol)
		}
		e.mu.Unlock()
	}
	if err := e.producer.ProduceSync(e.t.Context(), records...).FirstErr(); err != nil {
		e.t.Fatalf("ProduceSync() = %v", err)
	}
}

// saleRecord is a sale as the api writes it: keyed by product, with the
// record contract's headers.
func saleRecord(t testing.TB, s *salesv1.Sale, protocol string) *kgo.Record {
	t.Helper()
	value, err := proto.Marshal(s)
	if err != nil {
		t.Fatalf("proto.Marshal() = %v", err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(s.GetProductId()), Value: value, Headers: []kgo.RecordHeader{
		{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
		{Key: record.HeaderSchema, Value: []byte(record.Schema())},
		{Key: record.HeaderIngestProtocol, Value: []byte(protocol)},
	}}
}

// waitCaughtUp waits until Valkey's offset of every partition is its end
// offset, that is every produced record is counted.
func (e *env) waitCaughtUp() {
	e.t.Helper()
	want := e.endOffsets()
	var got map[int32]int64
	var err error
	for deadline := time.Now().Add(hangBound); ; time.Sleep(50 * time.Millisecond) {
		if got, err = e.storedOffsets(); err == nil && maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stored offsets = %v, %v; want the end offsets %v within %v", got, err, want, hangBound)
		}
	}
}

// storedTotal sums the stored offsets, a measure of progress.
func (e *env) storedTotal() int64 {
	e.t.Helper()
	got, err := e.storedOffsets()
	if err != nil {
		e.t.Fatalf("stored offsets: %v", err)
	}
	var n int64
	for _, o := range got {
		n += max(o, 0)
	}
	return n
}

// waitFor polls cond until it holds, for at most hangBound.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(hangBound); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", hangBound, what)
		}
	}
}

// truth is what the aggregates must be, computed the plain way.
type truth struct {
	totals      map[string]int64
	cats        map[salesv1.Category]map[string]int64
	units       map[string]int64
	catUnits    map[salesv1.Category]map[string]int64
	ingest      map[string]int64
	prices      map[string][]string // member strings, oldest first
	lastSold    map[string]int64
	deadLetters int64
	duplicates  int64
}

func newTruth() truth {
	t := truth{
		totals:   map[string]int64{},
		cats:     map[salesv1.Category]map[string]int64{},
		units:    map[string]int64{},
		catUnits: map[salesv1.Category]map[string]int64{},
		ingest:   map[string]int64{},
		prices:   map[string][]string{},
		lastSold: map[string]int64{},
	}
	for c := salesv1.Category(1); c <= 4; c++ {
		t.cats[c] = map[string]int64{}
		t.catUnits[c] = map[string]int64{}
	}
	return t
}

func (t *truth) add(s *salesv1.Sale, protocol string) {
	price, qty := s.GetPriceCents(), int64(s.GetQuantity())
	for _, m := range []map[string]int64{t.totals, t.cats[s.GetCategory()]} {
		if m["sales"] == 0 || price < m["min_price_cents"] {
			m["min_price_cents"] = price
		}
		if m["sales"] == 0 || price > m["max_price_cents"] {
			m["max_price_cents"] = price
		}
		m["sales"]++
		m["units"] += qty
		m["revenue_cents"] += price * qty
		m["price_sum_cents"] += price
	}
	t.units[s.GetProductId()] += qty
	t.catUnits[s.GetCategory()][s.GetProductId()] += qty
	t.ingest[protocol]++
	if s.GetCategory() == salesv1.Category_CATEGORY_ELECTRONICS {
		ms := s.GetSoldAt().AsTime().UnixMilli()
		p := append(t.prices[s.GetProductId()], fmt.Sprintf("%d:%d:%s", ms, price, s.GetSaleId()))
		if len(p) > aggregate.PriceHistoryLen {
			p = p[1:]
		}
		t.prices[s.GetProductId()] = p
		t.lastSold[s.GetProductId()] = ms
	}
}

func fields(m map[string]int64) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = strconv.FormatInt(v, 10)
	}
	return out
}

// check compares every aggregate in Valkey with the ground truth.
func (e *env) check() {
	e.t.Helper()
	t := e.t
	ctx := t.Context()
	e.mu.Lock()
	tr := e.truth
	e.mu.Unlock()
	k := e.keys
	hash := func(key string) map[string]string {
		m, err := e.valkey.Do(ctx, e.valkey.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatalf("HGETALL %s = %v", key, err)
		}
		return m
	}
	zscores := func(key string) map[string]int64 {
		zs, err := e.valkey.Do(ctx, e.valkey.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
		if err != nil {
			t.Fatalf("ZRANGE %s = %v", key, err)
		}
		out := map[string]int64{}
		for _, z := range zs {
			out[z.Member] = int64(z.Score)
		}
		return out
	}
	zmembers := func(key string) []string {
		m, err := e.valkey.Do(ctx, e.valkey.B().Zrange().Key(key).Min("0").Max("-1").Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("ZRANGE %s = %v", key, err)
		}
		return m
	}

	wantTotals := fields(tr.totals)
	if tr.deadLetters > 0 {
		wantTotals["dead_letters"] = strconv.FormatInt(tr.deadLetters, 10)
	}
	if tr.duplicates > 0 {
		wantTotals["duplicates"] = strconv.FormatInt(tr.duplicates, 10)
	}
	if got := hash(k.Totals()); !maps.Equal(got, wantTotals) {
		t.Errorf("%s = %v, want %v", k.Totals(), got, wantTotals)
	}
	for c := salesv1.Category(1); c <= 4; c++ {
		if got, want := hash(k.Category(c)), fields(tr.cats[c]); !maps.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k.Category(c), got, want)
		}
		if got := zscores(k.RankUnitsCategory(c)); !maps.Equal(got, tr.catUnits[c]) {
			t.Errorf("%s = %v, want %v", k.RankUnitsCategory(c), got, tr.catUnits[c])
		}
		// Every sale lands in exactly one rate bucket and every applied
		// batch in exactly one ratelog entry, so both add up to the
		// category's totals exactly when nothing was counted twice.
		rate, ratelog := e.rateSums(c), e.ratelogSums(c)
		for _, f := range []string{"sales", "units", "revenue_cents"} {
			if rate[f] != tr.cats[c][f] {
				t.Errorf("sum of %s %s = %d, want %d", k.RatePattern(c), f, rate[f], tr.cats[c][f])
			}
			if rate["seconds:"+f] != tr.cats[c][f] {
				t.Errorf("sum of per-second %s in rate hashes of %v = %d, want %d", f, c, rate["seconds:"+f], tr.cats[c][f])
			}
			if ratelog[f] != tr.cats[c][f] {
				t.Errorf("sum of %s %s = %d, want %d", k.RateLog(c), f, ratelog[f], tr.cats[c][f])
			}
		}
	}
	if got := zscores(k.RankUnits()); !maps.Equal(got, tr.units) {
		t.Errorf("%s = %v, want %v", k.RankUnits(), got, tr.units)
	}
	if got := fields(tr.ingest); !maps.Equal(hash(k.Ingest()), got) {
		t.Errorf("%s = %v, want %v", k.Ingest(), hash(k.Ingest()), got)
	}
	for id, want := range tr.prices {
		if got := zmembers(k.Price(id)); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k.Price(id), got, want)
		}
	}
	if got := zscores(k.PriceIndex()); !maps.Equal(got, tr.lastSold) {
		t.Errorf("%s = %v, want %v", k.PriceIndex(), got, tr.lastSold)
	}
}

func (e *env) rateSums(c salesv1.Category) map[string]int64 {
	e.t.Helper()
	ctx := e.t.Context()
	keys, err := valkeytest.Match(ctx, e.valkey, e.keys.RatePattern(c))
	if err != nil {
		e.t.Fatal(err)
	}
	sums := map[string]int64{}
	for _, key := range keys {
		m, err := e.valkey.Do(ctx, e.valkey.B().Hgetall().Key(key).Build()).AsIntMap()
		if err != nil {
			e.t.Fatalf("HGETALL %s = %v", key, err)
		}
		for f, v := range m {
			if _, per, ok := strings.Cut(f, ":"); ok {
				sums["seconds:"+per] += v
			} else {
				sums[f] += v
			}
		}
	}
	return sums
}

func (e *env) ratelogSums(c salesv1.Category) map[string]int64 {
	e.t.Helper()
	entries, err := e.valkey.Do(e.t.Context(), e.valkey.B().Xrange().Key(e.keys.RateLog(c)).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		e.t.Fatalf("XRANGE %s = %v", e.keys.RateLog(c), err)
	}
	sums := map[string]int64{}
	for _, en := range entries {
		for f, v := range en.FieldValues {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				e.t.Fatalf("%s entry %s field %s = %q", e.keys.RateLog(c), en.ID, f, v)
			}
			sums[f] += n
		}
	}
	return sums
}

// readTopic reads every record of a topic.
func (e *env) readTopic(name string) []*kgo.Record {
	e.t.Helper()
	ends, err := e.admin.ListEndOffsets(e.t.Context(), name)
	if err != nil {
		e.t.Fatalf("ListEndOffsets(%s) = %v", name, err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(name),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatalf("reader of %s: %v", name, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			e.t.Fatalf("read %d of %d records of %s: %v", len(out), total, name, err)
		}
		out = append(out, fetches.Records()...)
	}
	return out
}

// flakyStore counts applies and fails some calls before they reach Valkey,
// or after, as a lost reply would.
type flakyStore struct {
	Store
	mu sync.Mutex
	// failBefore fails this many Apply calls without applying.
	failBefore int
	// failAfter applies, then fails, this many Apply calls.
	failAfter int
	// failLoads fails this many LoadPositions calls.
	failLoads int
	// hangAfter, when positive, lets this many Apply calls reach Valkey;
	// later ones hang until their context ends, as if Valkey stopped
	// answering.
	hangAfter int
	// afterApply, when set, runs after the nth successful Apply.
	afterApply func(n int)
	applies    int
}

var errInjected = errors.New("injected: connection reset by peer")

func (f *flakyStore) Apply(ctx context.Context, d *aggregate.Delta, base, next store.Position) (store.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hangAfter > 0 && f.applies >= f.hangAfter {
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return store.Outcome{}, ctx.Err()
	}
	if f.failBefore > 0 {
		f.failBefore--
		return store.Outcome{}, errInjected
	}
	out, err := f.Store.Apply(ctx, d, base, next)
	if err != nil {
		return out, err
	}
	f.applies++
	if f.afterApply != nil {
		f.afterApply(f.applies)
	}
	if f.failAfter > 0 {
		f.failAfter--
		return store.Outcome{}, errInjected
	}
	return out, nil
}

// count returns the batches applied through f.
func (f *flakyStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

func (f *flakyStore) LoadPositions(ctx context.Context, topic string, parts []int32) (map[int32]store.StoredPosition, error) {
	f.mu.Lock()
	fail := f.failLoads > 0
	if fail {
		f.failLoads--
	}
	f.mu.Unlock()
	if fail {
		return nil, errInjected
	}
	return f.Store.LoadPositions(ctx, topic, parts)
}
