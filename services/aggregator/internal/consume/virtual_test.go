package consume

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
)

// virtual is a consumer's world inside a synctest bubble: kfake listening
// on a virtual network that the clients dial through, and a store in
// memory, since a real Valkey is reached over real sockets, which a bubble
// cannot wait on. Time is the bubble's: backoffs and intervals elapse at
// once, and exactly.
type virtual struct {
	t        *testing.T
	net      *kfake.VirtualNetwork
	cluster  *kfake.Cluster
	brokers  []string
	producer *kgo.Client
	store    *memStore
	// produced counts the records written to each partition.
	produced map[int32]int64
}

// newVirtual starts the world; call it inside synctest.Test.
func newVirtual(t *testing.T) *virtual {
	t.Helper()
	vn := new(kfake.VirtualNetwork)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(9092), kfake.ListenFn(vn.Listen),
		kfake.SeedTopics(numPartitions, topic, dlqTopic))
	if err != nil {
		t.Fatalf("kfake.NewCluster() = %v", err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	// Each record goes to the partition it names, so that every
	// partition gets its share.
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.Dialer(vn.DialContext),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(producer.Close)
	// The bubble's clock starts at midnight, 1 January 2000 UTC, the bound
	// sold_at must be past; a minute on, a sale sold now is valid.
	time.Sleep(time.Minute)
	return &virtual{t: t, net: vn, cluster: cluster, brokers: brokers, producer: producer, store: newMemStore(), produced: map[int32]int64{}}
}

// start runs a consumer with the configuration's defaults, bar what
// configure (if set) changes, until the end of the test, watched.
func (v *virtual) start(configure func(*Config)) *watched {
	v.t.Helper()
	cfg := Config{
		Brokers:       v.brokers,
		Topic:         topic,
		DLQTopic:      dlqTopic,
		Group:         "aggregator-test",
		ClientOptions: []kgo.Opt{kgo.Dialer(v.net.DialContext)},
	}
	if configure != nil {
		configure(&cfg)
	}
	return watch(v.t, "a", cfg, v.store)
}

// produce writes n sales to each partition.
func (v *virtual) produce(n int) {
	v.t.Helper()
	var records []*kgo.Record
	for p := range int32(numPartitions) {
		for range n {
			seq := len(records) + int(v.total())
			r := saleRecord(v.t, &salesv1.Sale{
				Category:   salesv1.Category_CATEGORY_HOME,
				ProductId:  fmt.Sprintf("P%03d", seq%40),
				PriceCents: 100,
				Quantity:   1,
				SaleId:     fmt.Sprintf("sale-%06d", seq),
				SoldAt:     timestamppb.Now(),
			}, "grpc")
			r.Partition = p
			records = append(records, r)
		}
	}
	if err := v.producer.ProduceSync(v.t.Context(), records...).FirstErr(); err != nil {
		v.t.Fatalf("ProduceSync() = %v", err)
	}
	for p := range int32(numPartitions) {
		v.produced[p] += int64(n)
	}
}

// total returns how many sales were written.
func (v *virtual) total() int64 {
	var n int64
	for _, c := range v.produced {
		n += c
	}
	return n
}

// counted reports whether the store holds every partition but those in
// but at its end offset, with their sales counted once.
func (v *virtual) counted(but ...int32) bool {
	offsets, sales := v.store.snapshot()
	var want int64
	for p, n := range v.produced {
		if slices.Contains(but, p) {
			continue
		}
		if offsets[p] != n {
			return false
		}
		want += n
	}
	return sales == want
}

// memStore is a Store in memory. It keeps each partition's position with
// the compare-and-set apply.lua does, counts the sales applied, refuses
// the batches of the partitions it is told to, and notes when it was
// asked what.
type memStore struct {
	mu        sync.Mutex
	positions map[int32]store.Position
	sales     int64
	// refused holds the partitions whose batches are refused
	// (store.ErrGuard), as apply.lua refuses data it did not write.
	refused map[int32]bool
	// applies notes when each partition's batches came, loads when the
	// positions were read.
	applies map[int32][]time.Time
	loads   []time.Time
}

func newMemStore() *memStore {
	return &memStore{positions: map[int32]store.Position{}, refused: map[int32]bool{}, applies: map[int32][]time.Time{}}
}

func (m *memStore) position(partition int32) store.Position {
	if p, ok := m.positions[partition]; ok {
		return p
	}
	return store.Position{Offset: -1, Epoch: -1}
}

func (m *memStore) Apply(_ context.Context, d *aggregate.Delta, base, next store.Position) (store.Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applies[d.Partition] = append(m.applies[d.Partition], time.Now())
	cur := m.position(d.Partition)
	if cur.Offset != base.Offset || cur.TopicID != base.TopicID {
		return store.Outcome{Stored: cur.Offset, StoredTopicID: cur.TopicID}, nil
	}
	if m.refused[d.Partition] {
		return store.Outcome{}, fmt.Errorf("%w: injected", store.ErrGuard)
	}
	m.positions[d.Partition] = next
	m.sales += d.Totals.Sales
	return store.Outcome{Applied: true, Stored: next.Offset, StoredTopicID: next.TopicID}, nil
}

func (m *memStore) Reset(_ context.Context, _ string, partition int32, base, next store.Position) (store.Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.position(partition)
	if cur.Offset != base.Offset || cur.TopicID != base.TopicID {
		return store.Outcome{Stored: cur.Offset, StoredTopicID: cur.TopicID}, nil
	}
	m.positions[partition] = next
	return store.Outcome{Applied: true, Stored: next.Offset, StoredTopicID: next.TopicID}, nil
}

func (m *memStore) LoadPositions(_ context.Context, _ string, partitions []int32) (map[int32]store.StoredPosition, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads = append(m.loads, time.Now())
	out := make(map[int32]store.StoredPosition, len(partitions))
	for _, p := range partitions {
		out[p] = store.StoredPosition{Position: m.position(p)}
	}
	return out, nil
}

// LoadSeen remembers no sale: the tests here run without dedup.
func (m *memStore) LoadSeen(_ context.Context, _ string, partition int32) (int64, *aggregate.SeenSet, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.position(partition).Offset, aggregate.NewSeenSet(), nil
}

// refuse starts or ends refusing a partition's batches.
func (m *memStore) refuse(partition int32, refused bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refused[partition] = refused
}

// lose forgets everything, as a Valkey restarted without its data.
func (m *memStore) lose() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.positions)
	m.sales = 0
}

// snapshot returns the stored offsets and the sales counted.
func (m *memStore) snapshot() (map[int32]int64, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	offsets := make(map[int32]int64, len(m.positions))
	for p, pos := range m.positions {
		offsets[p] = pos.Offset
	}
	return offsets, m.sales
}

// calls returns when a partition's batches were applied, and when the
// positions were read.
func (m *memStore) calls(partition int32) (applies, loads []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.applies[partition]...), append([]time.Time(nil), m.loads...)
}

// fetchMaxWait is how long a fetch waits for records: franz-go's default,
// which the consumers here keep.
const fetchMaxWait = 5 * time.Second
