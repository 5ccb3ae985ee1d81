package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/testenv"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// watchFixture is a fixture whose Service watches with short intervals.
func watchFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := newFixture(t)
	cfg.WatchInterval = cmp.Or(cfg.WatchInterval, 20*time.Millisecond)
	cfg.WatchHeartbeat = cmp.Or(cfg.WatchHeartbeat, time.Minute)
	cfg.Topic = cmp.Or(cfg.Topic, "sales")
	f.svc.hub = newHub(f.svc, cfg) // not started yet: safe to replace
	f.svc.hub.lagEvery = 20 * time.Millisecond
	return f
}

// stream is one watcher, run in the background, whose messages arrive on
// msgs.
type stream struct {
	msgs   chan *salesv1.WatchSummaryResponse
	cancel context.CancelFunc
	done   chan error
}

// watch starts a watcher. Each send waits for the test to take the message
// when buffer is 0, modelling a client that reads slowly.
func watch(t *testing.T, svc *Service, buffer int) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{msgs: make(chan *salesv1.WatchSummaryResponse, buffer), cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- svc.hub.watch(ctx, func(m *salesv1.WatchSummaryResponse) error {
			select {
			case s.msgs <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// next returns the next message, failing the test after a while.
func (s *stream) next(t *testing.T) *salesv1.WatchSummaryResponse {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case err := <-s.done:
		t.Fatalf("watch() ended early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no message from watch() within 5s")
	}
	return nil
}

// nextSnapshot skips heartbeats to the next snapshot.
func (s *stream) nextSnapshot(t *testing.T) *salesv1.SummarySnapshot {
	t.Helper()
	for {
		if snap := s.next(t).GetSnapshot(); snap != nil {
			return snap
		}
	}
}

// count applies a fake batch: what the aggregator's script changes in one
// step, the totals and a partition's offset.
func (f *fixture) count(t *testing.T, sales, offset int) {
	t.Helper()
	f.hset(t, "totals", "sales", sales, "units", 2*sales)
	f.hset(t, "offsets", "sales:0", offset)
}

func TestWatchSummarySnapshots(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{})
	f.count(t, 3, 3)
	f.hset(t, "cat:home", "sales", 3, "units", 6, "revenue_cents", 600, "price_sum_cents", 300, "min_price_cents", 100, "max_price_cents", 100)
	f.zadd(t, "rank:units", "H1", 4, "H2", 2)
	f.zadd(t, "rank:units:home", "H1", 4, "H2", 2)
	f.hset(t, "ingest", "grpc", 2, "legacy-rest", 1)

	s := watch(t, f.svc, 16)
	first := s.next(t).GetSnapshot()
	if first == nil {
		t.Fatal("watch() first message is not a snapshot")
	}
	want, err := f.svc.GetSummary(context.Background(), &salesv1.GetSummaryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first.GetSummary(), want) {
		t.Errorf("watch() snapshot summary = %v, want GetSummary() = %v", first.GetSummary(), want)
	}
	wantIngest := []*salesv1.IngestCount{{Protocol: "grpc", Sales: 2}, {Protocol: "legacy-rest", Sales: 1}}
	if got := first.GetIngest(); len(got) != 2 || !proto.Equal(got[0], wantIngest[0]) || !proto.Equal(got[1], wantIngest[1]) {
		t.Errorf("watch() snapshot ingest = %v, want %v", got, wantIngest)
	}
	if got := first.GetRankings(); len(got) != 5 || got[0].GetCategory() != salesv1.Category_CATEGORY_UNSPECIFIED ||
		len(got[0].GetBest()) != 2 || got[0].GetBest()[0].GetProductId() != "H1" || got[0].GetWorst()[0].GetProductId() != "H2" ||
		got[3].GetCategory() != salesv1.Category_CATEGORY_HOME || len(got[3].GetBest()) != 2 || len(got[1].GetBest()) != 0 {
		t.Errorf("watch() snapshot rankings = %v, want all and home ranking H1 then H2, others empty", got)
	}
	if got := first.GetSalesRate(); len(got.GetSeries()) != 4 || len(got.GetSeries()[0].GetPoints()) != 60 {
		t.Errorf("watch() snapshot sales rate = %d series of %d points, want 4 of 60", len(got.GetSeries()), len(got.GetSeries()[0].GetPoints()))
	}
	if got := first.GetLag(); got.GetKnown() {
		t.Errorf("watch() lag without a Kafka source = %v, want unknown", got)
	}

	// A batch applied: a new snapshot, with a higher version.
	f.count(t, 5, 5)
	second := s.nextSnapshot(t)
	if second.GetSummary().GetSales() != 5 || second.GetVersion() <= first.GetVersion() {
		t.Errorf("watch() after a batch = version %d with %d sales, want version > %d with 5 sales",
			second.GetVersion(), second.GetSummary().GetSales(), first.GetVersion())
	}
}

func TestWatchSummaryHeartbeats(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{WatchHeartbeat: 50 * time.Millisecond})
	f.count(t, 1, 1)
	s := watch(t, f.svc, 16)
	snap := s.nextSnapshot(t)
	// Nothing changes: only heartbeats follow, naming the snapshot.
	for range 3 {
		m := s.next(t)
		hb := m.GetHeartbeat()
		if hb == nil || hb.GetVersion() != snap.GetVersion() || hb.GetStale() || hb.GetSentAt() == nil {
			t.Fatalf("watch() while nothing changes sent %v, want a fresh heartbeat of version %d", m, snap.GetVersion())
		}
	}
}

// TestWatchSummarySlowClient checks that a client that does not read gets
// the latest state when it reads again, not a queue of what it missed.
func TestWatchSummarySlowClient(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{})
	f.count(t, 1, 1)
	slow := watch(t, f.svc, 0) // every send waits for the test
	fast := watch(t, f.svc, 1000)
	slow.nextSnapshot(t)
	fast.nextSnapshot(t)

	// 20 batches while the slow client reads nothing: the fast one sees
	// them (some coalesced by the poll interval), the slow one is stuck
	// in its send of the first.
	const batches = 20
	for i := 2; i <= batches+1; i++ {
		f.count(t, i, i)
		time.Sleep(30 * time.Millisecond)
	}
	var fastSeen int
	for snap := fast.nextSnapshot(t); snap.GetSummary().GetSales() != batches+1; snap = fast.nextSnapshot(t) {
		fastSeen++
	}
	if fastSeen < batches/2 {
		t.Errorf("fast watcher saw %d snapshots before the last of %d batches 30ms apart, want most", fastSeen, batches)
	}
	// The slow client's pending send held one snapshot; the one after it
	// is the latest state.
	_ = slow.next(t)
	var got *salesv1.SummarySnapshot
	for got == nil || got.GetSummary().GetSales() != batches+1 {
		got = slow.nextSnapshot(t)
		if got.GetSummary().GetSales() != batches+1 && got.GetSummary().GetSales() != 1 {
			t.Fatalf("slow watcher got a snapshot of %d sales after reading again, want the latest (%d): a backlog", got.GetSummary().GetSales(), batches+1)
		}
	}
	select {
	case m := <-slow.msgs:
		if m.GetSnapshot() != nil {
			t.Errorf("slow watcher got another snapshot %v after the latest, want none", m)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

// TestWatchSummaryOnePoller checks that many watchers share one poller: they
// all receive the very same snapshots, and the versions grow with the
// changes, not with the watchers.
func TestWatchSummaryOnePoller(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{})
	f.count(t, 1, 1)
	const watchers = 30
	streams := make([]*stream, watchers)
	for i := range streams {
		streams[i] = watch(t, f.svc, 16)
	}
	firsts := map[*salesv1.SummarySnapshot]bool{}
	for _, s := range streams {
		firsts[s.nextSnapshot(t)] = true
	}
	f.count(t, 2, 2)
	lasts := map[*salesv1.SummarySnapshot]bool{}
	for _, s := range streams {
		snap := s.nextSnapshot(t)
		for snap.GetSummary().GetSales() != 2 {
			snap = s.nextSnapshot(t)
		}
		lasts[snap] = true
	}
	if len(lasts) != 1 {
		t.Errorf("%d watchers got %d distinct snapshots of one change, want 1 shared", watchers, len(lasts))
	}
	for snap := range lasts {
		if snap.GetVersion() > 4 {
			t.Errorf("snapshot version after one change with %d watchers = %d, want at most a few", watchers, snap.GetVersion())
		}
	}
}

// TestWatchSummaryStopsWhenUnwatched checks that the poller runs only while
// someone watches.
func TestWatchSummaryStopsWhenUnwatched(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{})
	running := func() bool {
		f.svc.hub.mu.Lock()
		defer f.svc.hub.mu.Unlock()
		return f.svc.hub.running
	}
	s := watch(t, f.svc, 16)
	s.nextSnapshot(t)
	if !running() {
		t.Fatal("hub.running with a watcher = false, want true")
	}
	s.cancel()
	if err := <-s.done; !errors.Is(err, context.Canceled) {
		t.Errorf("watch() after cancel = %v, want context.Canceled", err)
	}
	s.done <- nil // for the cleanup
	deadline := time.Now().Add(2 * time.Second)
	for running() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if running() {
		t.Error("hub.running without watchers = true after 2s, want false")
	}
	// A new watcher starts it again.
	watch(t, f.svc, 16).nextSnapshot(t)
}

// TestWatchSummaryStale checks that a store failure after the first snapshot
// is told in a heartbeat, and its end in a fresh snapshot.
func TestWatchSummaryStale(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{})
	f.count(t, 1, 1)
	s := watch(t, f.svc, 16)
	s.nextSnapshot(t)

	// A key of the wrong type makes every read fail. SET replaces the hash
	// in one step, so no poll sees the store empty in between.
	ctx := context.Background()
	if err := f.client.Do(ctx, f.client.B().Set().Key(f.prefix+"totals").Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if hb := s.next(t).GetHeartbeat(); !hb.GetStale() {
		t.Fatalf("watch() after the store failed sent heartbeat %v, want stale", hb)
	}
	if err := f.client.Do(ctx, f.client.B().Del().Key(f.prefix+"totals").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	f.count(t, 7, 7)
	// Between the delete and the count the store is readable and empty,
	// and a poll may show it so: a snapshot of 0 sales is right then.
	for {
		switch n := s.nextSnapshot(t).GetSummary().GetSales(); n {
		case 7:
			return
		case 0:
			continue
		default:
			t.Fatalf("watch() after the store recovered = %d sales, want 7 (or 0 before the count)", n)
		}
	}
}

func TestWatchSummaryValkeyDown(t *testing.T) {
	t.Parallel()
	svc := New(Config{Addr: "127.0.0.1:1", KeyPrefix: "bf:", Timeout: 500 * time.Millisecond, WatchInterval: 20 * time.Millisecond})
	defer svc.Close()
	start := time.Now()
	err := svc.hub.watch(context.Background(), func(*salesv1.WatchSummaryResponse) error { return nil })
	// A stalled machine can slow the answer; only a hang passes the bound.
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > 10*time.Second {
		t.Errorf("watch() with Valkey down = %v after %v, want ErrUnavailable, not a wait", err, took)
	}
}

func TestWatchSummaryTooManyWatchers(t *testing.T) {
	t.Parallel()
	f := watchFixture(t, Config{MaxWatchers: 2})
	f.count(t, 1, 1)
	watch(t, f.svc, 16).nextSnapshot(t)
	watch(t, f.svc, 16).nextSnapshot(t)
	err := f.svc.hub.watch(context.Background(), func(*salesv1.WatchSummaryResponse) error { return nil })
	if !errors.Is(err, ErrTooManyWatchers) {
		t.Errorf("third watch() with MaxWatchers 2 = %v, want ErrTooManyWatchers", err)
	}
}

// fakeOffsets serves fixed Kafka offsets, or an error.
type fakeOffsets struct {
	mu      sync.Mutex
	offsets map[int32]PartitionOffsets
	err     error
	calls   atomic.Int64
}

func (f *fakeOffsets) Offsets(context.Context) (map[int32]PartitionOffsets, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offsets, f.err
}

func (f *fakeOffsets) set(o map[int32]PartitionOffsets, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offsets, f.err = o, err
}

func TestWatchSummaryLag(t *testing.T) {
	t.Parallel()
	kafka := &fakeOffsets{}
	kafka.set(map[int32]PartitionOffsets{0: {0, 10}, 1: {0, 4}}, nil)
	f := watchFixture(t, Config{Topic: "orders", Offsets: kafka})
	f.hset(t, "offsets", "orders:0", 6, "other:1", 1)
	s := watch(t, f.svc, 16)
	lag := s.nextSnapshot(t).GetLag()
	for !lag.GetKnown() {
		lag = s.nextSnapshot(t).GetLag()
	}
	if lag.GetRecords() != 8 || len(lag.GetPartitions()) != 2 {
		t.Errorf("lag = %v, want 8 records (4 on partition 0, all 4 of partition 1)", lag)
	}
	// The topic grows while the aggregates do not: the lag follows.
	kafka.set(map[int32]PartitionOffsets{0: {0, 10}, 1: {0, 9}}, nil)
	for lag.GetRecords() != 13 {
		lag = s.nextSnapshot(t).GetLag()
	}
	// Kafka unreachable: the lag is unknown, with the last values kept.
	kafka.set(nil, errors.New("down"))
	for lag.GetKnown() {
		lag = s.nextSnapshot(t).GetLag()
	}
	if lag.GetRecords() != 13 {
		t.Errorf("lag with Kafka down = %v, want unknown with the last 13 records", lag)
	}
}

func TestLagOf(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		stored map[string]string
		kafka  *kafkaState
		want   *salesv1.AggregatorLag
	}{
		{"no read yet", nil, &kafkaState{}, &salesv1.AggregatorLag{}},
		{"nothing counted: from the log start", nil, &kafkaState{offsets: map[int32]PartitionOffsets{0: {3, 10}}, readAt: at},
			&salesv1.AggregatorLag{Known: true, Records: 7, ReadAt: timestampOf(at), Partitions: []*salesv1.PartitionLag{
				{Partition: 0, EndOffset: 10, CountedOffset: 3, Records: 7},
			}}},
		{"stored offsets, in partition order", map[string]string{"s:0": "10", "s:1": "2", "t:1": "0"},
			&kafkaState{offsets: map[int32]PartitionOffsets{1: {0, 5}, 0: {0, 10}}, readAt: at},
			&salesv1.AggregatorLag{Known: true, Records: 3, ReadAt: timestampOf(at), Partitions: []*salesv1.PartitionLag{
				{Partition: 0, EndOffset: 10, CountedOffset: 10, Records: 0},
				{Partition: 1, EndOffset: 5, CountedOffset: 2, Records: 3},
			}}},
		{"stored past the end (a restored snapshot of Kafka) is no lag", map[string]string{"s:0": "12"},
			&kafkaState{offsets: map[int32]PartitionOffsets{0: {0, 10}}, readAt: at},
			&salesv1.AggregatorLag{Known: true, ReadAt: timestampOf(at), Partitions: []*salesv1.PartitionLag{
				{Partition: 0, EndOffset: 10, CountedOffset: 12},
			}}},
		{"last read failed", nil, &kafkaState{offsets: map[int32]PartitionOffsets{0: {0, 1}}, readAt: at, err: errors.New("x")},
			&salesv1.AggregatorLag{Records: 1, ReadAt: timestampOf(at), Partitions: []*salesv1.PartitionLag{
				{Partition: 0, EndOffset: 1, Records: 1},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := lagOf("s", tt.stored, tt.kafka); !proto.Equal(got, tt.want) {
				t.Errorf("lagOf(%v, %v) = %v, want %v", tt.stored, tt.kafka.offsets, got, tt.want)
			}
		})
	}
}

// BenchmarkWatchSummarySnapshot measures reading one snapshot.
func BenchmarkWatchSummarySnapshot(b *testing.B) {
	addr := valkeyAddrB(b)
	svc := New(Config{Addr: addr, KeyPrefix: fmt.Sprintf("bfbench:%d:", time.Now().UnixNano())})
	defer svc.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.snapshot(ctx, "sales", nil, &kafkaState{}); err != nil {
			b.Fatal(err)
		}
	}
}

func valkeyAddrB(b *testing.B) string {
	return testenv.Valkey(b)
}
