package consume

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/record"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

func TestConsumerCountsExactlyAndDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.produce(3000, 53, "")
	e.start("a", 500, nil)
	e.waitCaughtUp()
	e.check()

	dead := e.readTopic(dlqTopic)
	if int64(len(dead)) != e.truth.deadLetters {
		t.Fatalf("dead letters in %s = %d, want %d", dlqTopic, len(dead), e.truth.deadLetters)
	}
	// Each dead letter must carry its origin, and be the original record.
	reader, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	reasons := map[string]int{}
	for _, r := range dead {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h[record.HeaderDLQTopic] != topic || h[record.HeaderDLQReason] == "" {
			t.Errorf("dead letter headers = %v, want %s=%s and a %s", h, record.HeaderDLQTopic, topic, record.HeaderDLQReason)
		}
		p, err1 := strconv.ParseInt(h[record.HeaderDLQPartition], 10, 32)
		o, err2 := strconv.ParseInt(h[record.HeaderDLQOffset], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("dead letter partition/offset headers = %q/%q", h[record.HeaderDLQPartition], h[record.HeaderDLQOffset])
		}
		orig := e.fetchOne(reader, int32(p), o)
		if string(orig.Key) != string(r.Key) || string(orig.Value) != string(r.Value) || len(r.Headers) != len(orig.Headers)+4 {
			t.Errorf("dead letter of %d/%d = key %q, %d headers, want the original key %q and its %d headers plus 4",
				p, o, r.Key, len(r.Headers), orig.Key, len(orig.Headers))
		}
		reason := h[record.HeaderDLQReason]
		if i := len(reason); i > 0 {
			for j, c := range reason {
				if c == ':' {
					i = j
					break
				}
			}
			reasons[reason[:i]]++
		}
	}
	for _, want := range []string{"undecodable", "bad-schema", "bad-content-type", "invalid", "missing-sale-id", "missing-sold-at"} {
		if reasons[want] == 0 {
			t.Errorf("dead letter reasons = %v, want some %s", reasons, want)
		}
	}
}

// fetchOne reads the record at partition/offset of the sales topic.
func (e *env) fetchOne(cl *kgo.Client, partition int32, offset int64) *kgo.Record {
	e.t.Helper()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: {partition}})
	for {
		fetches := cl.PollRecords(e.t.Context(), 1)
		if err := e.t.Context().Err(); err != nil {
			e.t.Fatal(err)
		}
		for _, r := range fetches.Records() {
			if r.Partition == partition && r.Offset == offset {
				return r
			}
		}
	}
}

func TestConsumerRestartMidStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// stopFirst stops the first consumer once it has counted some
		// records.
		stopFirst func(e *env, c *consumer)
		flaky     func(cancel func()) *flakyStore
		opts      []kgo.Opt
	}{
		{
			name:      "context canceled",
			stopFirst: func(e *env, c *consumer) { c.stop(e.t) },
		},
		{
			// The first consumer dies right after Valkey applied a batch,
			// before it heard back or committed anything to Kafka. With
			// static membership it does not even leave the group; its
			// successor takes its place.
			name: "crash after apply, without leaving",
			flaky: func(cancel func()) *flakyStore {
				return &flakyStore{failAfter: 1 << 30, afterApply: func(n int) {
					if n == 5 {
						cancel()
					}
				}}
			},
			opts: []kgo.Opt{kgo.InstanceID("aggregator-0")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.produce(2000, 97, "")
			var first *consumer
			if tt.flaky != nil {
				// The store learns how to kill the consumer once it runs.
				kill := make(chan context.CancelFunc, 1)
				fs := tt.flaky(func() { (<-kill)() })
				fs.Store = e.store
				first = e.start("first", 40, fs, tt.opts...)
				kill <- first.cancel
				select {
				case <-first.done:
				case <-t.Context().Done():
				}
			} else {
				first = e.start("first", 40, nil, tt.opts...)
				e.waitFor("the first consumer to count some records", func() bool { return e.storedTotal() >= 200 })
				tt.stopFirst(e, first)
			}
			if n := e.storedTotal(); n == 0 || n >= 2000 {
				t.Fatalf("records counted when the first consumer stopped = %d, want some but not all", n)
			}
			e.produce(1000, 97, "")
			e.start("second", 500, nil, tt.opts...)
			e.waitCaughtUp()
			e.check()
		})
	}
}

func TestConsumerRebalance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.produce(1500, 61, "")
	countA, countB := &flakyStore{Store: e.store}, &flakyStore{Store: e.store}
	a := e.start("a", 50, countA)
	e.waitFor("a to count some records", func() bool { return e.storedTotal() >= 100 })
	b := e.start("b", 50, countB)
	e.produce(1500, 61, "")
	e.waitFor("b to own partitions", func() bool { return len(b.parts.owned()[topic]) > 0 })
	e.waitFor("a and b to share the partitions", func() bool {
		return len(a.parts.owned()[topic])+len(b.parts.owned()[topic]) == numPartitions
	})
	e.produce(1000, 61, "")
	e.waitFor("b to apply batches", func() bool { return countB.count() > 0 })
	b.stop(t)
	e.produce(1000, 61, "")
	e.waitCaughtUp()
	e.check()
	if countA.count() == 0 {
		t.Errorf("batches applied by a = 0, want some")
	}
	if got := len(a.parts.owned()[topic]); got != numPartitions {
		t.Errorf("partitions owned by a after b left = %d, want %d", got, numPartitions)
	}
}

func TestConsumerRebuildsAfterValkeyLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.produce(2000, 71, "")
	e.start("a", 300, nil)
	e.waitCaughtUp()
	e.check()

	// Valkey restarts empty. Only one partition gets new sales: the
	// others must notice too.
	if err := valkeytest.Delete(t.Context(), e.valkey, e.keys.Prefix()); err != nil {
		t.Fatal(err)
	}
	e.produce(10, 0, "P001")
	e.waitCaughtUp()
	e.check()
}

// TestConsumerRebuildsIdleAfterValkeyLoss loses Valkey's data while no
// sale flows at all: the consumer must notice on its own, from its periodic
// reconcile, not wait for the next sale.
func TestConsumerRebuildsIdleAfterValkeyLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dedupWindow = time.Hour
	e.produce(1500, 71, "")
	e.start("a", 300, nil)
	e.waitCaughtUp()
	e.check()
	if err := valkeytest.Delete(t.Context(), e.valkey, e.keys.Prefix()); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp()
	e.check()
}

func TestConsumerReplay(t *testing.T) {
	t.Parallel()
	t.Run("kafka offsets reset to zero", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.produce(1500, 41, "")
		a := e.start("a", 200, nil)
		e.waitCaughtUp()
		a.stop(t)

		committed, err := e.admin.FetchOffsets(t.Context(), e.group)
		if err != nil {
			t.Fatalf("FetchOffsets() = %v", err)
		}
		var sum int64
		committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
		if sum <= 0 {
			t.Errorf("offsets committed to kafka sum to %d, want the consumed records (lag monitoring)", sum)
		}
		reset := kadm.Offsets{}
		for p := range int32(numPartitions) {
			reset.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
		}
		if _, err := e.admin.CommitOffsets(t.Context(), e.group, reset); err != nil {
			t.Fatalf("CommitOffsets(0) = %v", err)
		}
		e.produce(300, 41, "")
		e.start("b", 200, nil)
		e.waitCaughtUp()
		e.check()
	})

	t.Run("fetch rewound under a live consumer", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.produce(1500, 41, "")
		a := e.start("a", 200, nil)
		e.waitCaughtUp()
		// Kafka delivers everything again while Valkey is ahead.
		a.client.Load().SetOffsets(rewindAll())
		e.produce(300, 41, "")
		e.waitCaughtUp()
		e.check()
	})

	t.Run("stale base", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.produce(1500, 41, "")
		a := e.start("a", 200, nil)
		e.waitCaughtUp()
		// The consumer believes Valkey is at 0 and reads from there:
		// every apply must conflict and skip ahead, counting nothing
		// twice.
		for p := range int32(numPartitions) {
			tp := topicPartition{topic: topic, partition: p}
			pos, _ := a.parts.position(tp)
			pos.offset = 0
			a.parts.setPosition(tp, pos)
		}
		a.client.Load().SetOffsets(rewindAll())
		e.produce(300, 41, "")
		e.waitCaughtUp()
		e.check()
	})
}

func rewindAll() map[string]map[int32]kgo.EpochOffset {
	m := map[int32]kgo.EpochOffset{}
	for p := range int32(numPartitions) {
		m[p] = kgo.EpochOffset{Epoch: -1, Offset: 0}
	}
	return map[string]map[int32]kgo.EpochOffset{topic: m}
}

func TestConsumerRetriesValkeyErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.produce(1200, 31, "")
	fs := &flakyStore{Store: e.store, failBefore: 2, failAfter: 2, failLoads: 2}
	c := e.start("a", 100, fs)
	e.waitCaughtUp()
	e.check()
	if !c.Ready() {
		t.Errorf("Ready() after recovering = false, want true")
	}
}

// TestConsumerReconcilesWhileIdle runs the periodic reconcile on virtual
// time: an idle member compares its partitions with the store every
// ReconcileInterval (30s by default), exactly, and a store that lost its
// data meanwhile is rebuilt from the next one on, not before.
func TestConsumerReconcilesWhileIdle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		v := newVirtual(t)
		v.start(nil)
		v.produce(50)
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); !v.counted() {
			t.Fatalf("stored offsets %v; want every partition at its end %v", offsets, v.produced)
		}
		// The positions are read on assignment, then by every reconcile.
		_, loads := v.store.calls(0)
		var gaps []time.Duration
		for i := 2; i < len(loads); i++ {
			gaps = append(gaps, loads[i].Sub(loads[i-1]))
		}
		if want := []time.Duration{30 * time.Second, 30 * time.Second}; !slices.Equal(gaps, want) {
			t.Fatalf("positions read %d times in 100s, the reconciles %v apart; want 4 reads, the reconciles %v apart", len(loads), gaps, want)
		}

		last := loads[len(loads)-1]
		time.Sleep(time.Until(last.Add(time.Second)))
		v.store.lose()
		next := last.Add(30 * time.Second)
		time.Sleep(time.Until(next) - time.Millisecond)
		synctest.Wait()
		if offsets, sales := v.store.snapshot(); len(offsets) != 0 || sales != 0 {
			t.Errorf("stored offsets %v and %d sales before the next reconcile; want nothing: an idle member has no other way to notice", offsets, sales)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if _, loads := v.store.calls(0); !loads[len(loads)-1].Equal(next) {
			t.Errorf("positions last read %v after the reconcile before the loss, want %v", loads[len(loads)-1].Sub(last), next.Sub(last))
		}
		// The partitions are read again from their start with the next
		// fetch: the one in flight may hold it up to its wait.
		time.Sleep(fetchMaxWait)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); !v.counted() {
			t.Errorf("stored offsets %v a fetch after the reconcile that found the loss; want every partition rebuilt to its end %v", offsets, v.produced)
		}
	})
}
