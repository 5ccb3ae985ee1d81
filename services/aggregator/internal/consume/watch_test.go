package consume

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

// hangBound tells an answer from a hang: the machine is shared and slow, so
// it bounds waits for things that happen in seconds when all is well.
const hangBound = 90 * time.Second

// recorder is an Observer that keeps what the tests assert on.
type recorder struct {
	noObserver
	mu sync.Mutex
	// resets counts log resets by reason, rewound sums how far they moved
	// the stored offsets back.
	resets, rewound map[string]int64
	refused         int
	refusedNow      int
}

func newRecorder() *recorder {
	return &recorder{resets: map[string]int64{}, rewound: map[string]int64{}}
}

func (r *recorder) LogReset(_ int32, reason string, rewound int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets[reason]++
	r.rewound[reason] += rewound
}

func (r *recorder) Refused(int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused++
}

func (r *recorder) RefusedPartitions(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusedNow = n
}

func (r *recorder) snapshot() (resets, rewound map[string]int64, refused, refusedNow int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.resets), maps.Clone(r.rewound), r.refused, r.refusedNow
}

// logBuffer keeps a consumer's log lines, JSON encoded, for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// errors returns the records logged at level ERROR.
func (b *logBuffer) errors() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "ERROR" {
			out = append(out, rec)
		}
	}
	return out
}

// errorWith returns the first record logged at ERROR whose attribute key
// is value, or nil.
func (b *logBuffer) errorWith(key, value string) map[string]any {
	for _, rec := range b.errors() {
		if fmt.Sprint(rec[key]) == value {
			return rec
		}
	}
	return nil
}

// watched is a running consumer whose log and observations the test reads.
type watched struct {
	*consumer
	logs *logBuffer
	obs  *recorder
}

// startWatched runs a consumer as start does, watched.
func (e *env) startWatched(name string, maxPoll int, st Store, opts ...kgo.Opt) *watched {
	e.t.Helper()
	return watch(e.t, name, e.config(maxPoll, opts), cmp.Or[Store](st, e.store))
}

// watch runs a consumer of cfg until stop or the end of the test, with its
// log kept (and also written to the test's output) and a recorder as its
// Observer.
func watch(t *testing.T, name string, cfg Config, st Store) *watched {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}),
		slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}),
	)).With("consumer", name)
	obs := newRecorder()
	cfg.Observer = obs
	return &watched{consumer: run(t, New(cfg, st, aggregate.NewDecoder(), log)), logs: logs, obs: obs}
}

// waitReady waits until c.Ready() is want.
func (e *env) waitReady(c *watched, want bool) {
	e.t.Helper()
	for deadline := time.Now().Add(hangBound); c.Ready() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("Ready() = %v for %v, want %v", !want, hangBound, want)
		}
	}
}

// waitCounted waits until every record is counted: the stored offsets are
// the end offsets and the totals hold every sale of the ground truth.
// Offsets alone may match too early when they moved back.
func (e *env) waitCounted() {
	e.t.Helper()
	e.waitCaughtUp()
	e.mu.Lock()
	want := e.truth.totals["sales"]
	e.mu.Unlock()
	var got int64
	for deadline := time.Now().Add(hangBound); ; time.Sleep(50 * time.Millisecond) {
		v, err := e.valkey.Do(e.t.Context(), e.valkey.B().Hget().Key(e.keys.Totals()).Field("sales").Build()).AsInt64()
		if err == nil && v == want {
			break
		}
		got = v
		if time.Now().After(deadline) {
			e.t.Fatalf("%s sales = %d, want %d within %v", e.keys.Totals(), got, want, hangBound)
		}
	}
	e.waitCaughtUp()
}

// endOffsets returns the end offset of every partition of the sales topic,
// -1 for an empty one (as Valkey stores a partition with nothing counted).
func (e *env) endOffsets() map[int32]int64 {
	e.t.Helper()
	ends, err := e.admin.ListEndOffsets(e.t.Context(), topic)
	if err != nil {
		e.t.Fatalf("ListEndOffsets() = %v", err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		out[o.Partition] = o.Offset
		if o.Offset == 0 {
			out[o.Partition] = -1
		}
	})
	return out
}

// waitCaughtUpExcept waits until every partition but stuck has counted its
// end offset, then checks that stuck has not.
func (e *env) waitCaughtUpExcept(stuck int32) {
	e.t.Helper()
	want := e.endOffsets()
	var got map[int32]int64
	var err error
	for deadline := time.Now().Add(hangBound); ; time.Sleep(50 * time.Millisecond) {
		got, err = e.storedOffsets()
		if err == nil {
			others := maps.Clone(got)
			delete(others, stuck)
			wantOthers := maps.Clone(want)
			delete(wantOthers, stuck)
			if maps.Equal(others, wantOthers) {
				break
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stored offsets = %v, %v; want every partition but %d at its end offset %v within %v", got, err, stuck, want, hangBound)
		}
	}
	if got[stuck] >= want[stuck] {
		e.t.Fatalf("stored offset of partition %d = %d, want it below its end offset %d: its batches were refused", stuck, got[stuck], want[stuck])
	}
}

// storedOffsets reads the offsets hash as it is: the stored offset of each
// partition, -1 for none, and -2 for a value that is not an offset.
func (e *env) storedOffsets() (map[int32]int64, error) {
	fields, err := e.valkey.Do(e.t.Context(), e.valkey.B().Hgetall().Key(e.keys.Offsets()).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := range int32(numPartitions) {
		v, ok := fields[topic+":"+strconv.Itoa(int(p))]
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case !ok:
			n = -1
		case err != nil:
			n = -2
		}
		out[p] = n
	}
	return out, nil
}

// newSale returns the next sale of product, with a random price and
// quantity. Sales are stamped at distinct, increasing times, an hour ago,
// so that price histories have one right order.
func (e *env) newSale(product string) *salesv1.Sale {
	seq := e.next
	e.next++
	num := 0
	fmt.Sscanf(product, "P%d", &num)
	return &salesv1.Sale{
		Category:   salesv1.Category(1 + num%4),
		ProductId:  product,
		PriceCents: 1 + e.rng.Int64N(200000),
		Quantity:   int32(1 + e.rng.IntN(5)),
		SaleId:     fmt.Sprintf("sale-%06d", seq),
		SoldAt:     timestamppb.New(time.Now().Add(-time.Hour).Truncate(time.Second).Add(time.Duration(seq) * time.Millisecond)),
	}
}

// produceSales writes sales as the api does and books them: counted, or,
// with copies set, dropped as copies of sales counted before. It returns
// the partition each landed on.
func (e *env) produceSales(sales []*salesv1.Sale, copies bool) []int32 {
	e.t.Helper()
	records := make([]*kgo.Record, len(sales))
	for i, s := range sales {
		records[i] = saleRecord(e.t, s, "grpc")
	}
	results := e.producer.ProduceSync(e.t.Context(), records...)
	if err := results.FirstErr(); err != nil {
		e.t.Fatalf("ProduceSync() = %v", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	parts := make([]int32, len(results))
	for i, r := range results {
		parts[i] = r.Record.Partition
		if copies {
			e.truth.duplicates++
		} else {
			e.truth.add(sales[i], "grpc")
		}
	}
	return parts
}
