package consume

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/aggregator/internal/valkeytest"
)

// produceCopies writes n distinct sales, the i-th of them copies(i) times,
// the copies stamped lag apart, as a client retrying after a lost
// acknowledgement would, the copies of different sales interleaved when
// shuffle is set. The ground truth counts a copy when it is the
// first, or comes more than the dedup window after the last counted one.
func (e *env) produceCopies(n int, copies func(i int) int, lag time.Duration, shuffle bool) {
	e.t.Helper()
	base := time.Now()
	var records []*kgo.Record
	for i := range n {
		seq := e.next
		e.next++
		id := fmt.Sprintf("P%03d", int(40*e.rng.Float64()*e.rng.Float64()))
		s := &salesv1.Sale{
			// Not electronics: identical copies would collapse into one
			// price history point, which the ground truth does not model.
			Category:   salesv1.Category(2 + (seq % 3)),
			ProductId:  id,
			PriceCents: 1 + e.rng.Int64N(200000),
			Quantity:   int32(1 + e.rng.IntN(5)),
			SaleId:     fmt.Sprintf("retried-%06d", seq),
			SoldAt:     timestamppb.New(time.Now().Add(-time.Hour).Truncate(time.Second).Add(time.Duration(seq) * time.Millisecond)),
		}
		last := 0
		for c := range copies(i) {
			e.mu.Lock()
			if c == 0 || e.dedupWindow == 0 || time.Duration(c-last)*lag > e.dedupWindow {
				e.truth.add(s, "grpc")
				last = c
			} else {
				e.truth.duplicates++
			}
			e.mu.Unlock()
			r := saleRecord(e.t, s, "grpc")
			r.Timestamp = base.Add(time.Duration(c) * lag)
			records = append(records, r)
		}
	}
	if shuffle {
		// Records of one partition stay in the order they are written;
		// with copies far apart in time the ground truth would depend
		// on that order.
		if lag*time.Duration(len(records)) > e.dedupWindow {
			e.t.Fatalf("produceCopies(shuffle) with copies up to %v apart, more than the window %v", lag*time.Duration(len(records)), e.dedupWindow)
		}
		e.rng.Shuffle(len(records), func(i, j int) { records[i], records[j] = records[j], records[i] })
	}
	if err := e.producer.ProduceSync(e.t.Context(), records...).FirstErr(); err != nil {
		e.t.Fatalf("ProduceSync() = %v", err)
	}
}

func TestConsumerDropsDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dedupWindow = time.Hour
	copies := func(i int) int { return 1 + i%3 }
	e.produceCopies(900, copies, time.Millisecond, true)
	e.produce(300, 0, "")
	e.start("a", 70, nil)
	e.waitCaughtUp()
	e.check()
	if e.truth.duplicates != 900 {
		t.Fatalf("ground truth duplicates = %d, want 900", e.truth.duplicates)
	}

	// Valkey loses everything: the rebuild from the topic must reach the
	// same verdicts, though its batches are cut differently.
	if err := valkeytest.Delete(t.Context(), e.valkey, e.keys.Prefix()); err != nil {
		t.Fatal(err)
	}
	e.produceCopies(30, copies, 0, true)
	e.waitCaughtUp()
	e.check()
}

func TestConsumerDedupWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window time.Duration
		lag    time.Duration
		// wantDuplicates is how many copies are dropped.
		wantDuplicates int64
	}{
		{name: "off", window: 0, lag: time.Millisecond, wantDuplicates: 0},
		{name: "within the window", window: time.Minute, lag: 29 * time.Second, wantDuplicates: 100},
		// The third copy is 80s after the first, which counted, though
		// only 40s after the second, which did not.
		{name: "window measured from the counted copy", window: time.Minute, lag: 40 * time.Second, wantDuplicates: 50},
		{name: "past the window", window: time.Minute, lag: 61 * time.Second, wantDuplicates: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.dedupWindow = tt.window
			// Three copies of each sale.
			e.produceCopies(50, func(int) int { return 3 }, tt.lag, false)
			if e.truth.duplicates != tt.wantDuplicates {
				t.Fatalf("ground truth duplicates = %d, want %d", e.truth.duplicates, tt.wantDuplicates)
			}
			e.start("a", 1000, nil)
			e.waitCaughtUp()
			e.check()
		})
	}
}

// TestConsumerDedupAcrossRestarts drops copies whose first copy a previous
// consumer counted: the dedup set a consumer keeps in memory is loaded from
// Valkey when it takes a partition over, and loaded again after an apply
// whose reply was lost.
func TestConsumerDedupAcrossRestarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dedupWindow = time.Hour
	copies := func(i int) int { return 1 + i%3 }
	e.produceCopies(900, copies, time.Millisecond, true)
	// Valkey stops answering the first consumer after 30 applies, each of
	// at most one poll's 40 records: however fast it runs, it cannot count
	// all 1,800 records before it is stopped.
	const applies = 30
	fs := &flakyStore{Store: e.store, failAfter: 3, hangAfter: applies}
	first := e.start("first", 40, fs)
	e.waitFor("the first consumer's applies", func() bool { return fs.count() == applies })
	first.stop(t)
	if n := e.straddling(); n == 0 {
		t.Fatalf("sales with copies both counted and left to count when the first consumer stopped = 0, want some")
	}
	e.produceCopies(300, copies, time.Millisecond, true)
	e.start("second", 70, nil)
	e.waitCaughtUp()
	e.check()
}

// straddling counts the sales with copies on both sides of their
// partition's stored offset: some counted, some still to count. Copies of
// a sale share its key, so its partition, and its value.
func (e *env) straddling() int {
	e.t.Helper()
	stored, err := e.storedOffsets()
	if err != nil {
		e.t.Fatalf("stored offsets: %v", err)
	}
	counted, left := map[string]bool{}, map[string]bool{}
	for _, r := range e.readTopic(topic) {
		if r.Offset < stored[r.Partition] {
			counted[string(r.Value)] = true
		} else {
			left[string(r.Value)] = true
		}
	}
	n := 0
	for v := range counted {
		if left[v] {
			n++
		}
	}
	return n
}
