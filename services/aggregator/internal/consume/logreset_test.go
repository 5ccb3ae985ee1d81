package consume

import (
	"fmt"
	"maps"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// recreateTopic deletes the sales topic and creates it again: a new topic
// ID, and offsets that start again from 0. The test's producer forgets the
// old topic, as an api restarted after the recreation would.
func (e *env) recreateTopic() {
	e.t.Helper()
	if err := e.cluster.DeleteTopic(topic); err != nil {
		e.t.Fatalf("DeleteTopic(%s) = %v", topic, err)
	}
	if err := e.cluster.CreateTopic(topic, numPartitions, nil); err != nil {
		e.t.Fatalf("CreateTopic(%s) = %v", topic, err)
	}
	e.producer.PurgeTopicsFromClient(topic)
}

// forgetTopicIDs removes what the aggregator stores beside each offset
// (the topic ID and the leader epoch), leaving the offsets hash as an
// aggregator that kept only offsets wrote it.
func (e *env) forgetTopicIDs() {
	e.t.Helper()
	var fields []string
	for p := range int32(numPartitions) {
		fields = append(fields, keys.TopicIDField(topic, p), keys.EpochField(topic, p))
	}
	if err := e.valkey.Do(e.t.Context(), e.valkey.B().Hdel().Key(e.keys.Offsets()).Field(fields...).Build()).Error(); err != nil {
		e.t.Fatalf("HDEL %s: %v", e.keys.Offsets(), err)
	}
}

// TestConsumerCountsRecreatedTopic deletes and recreates the sales topic
// after its sales were counted: the new topic's offsets start again below
// the stored ones, and every sale written to it must be counted, once,
// while what was counted before stays counted.
func TestConsumerCountsRecreatedTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// stopFirst recreates the topic while no consumer runs, and
		// starts one afterwards.
		stopFirst bool
		// legacy leaves only the offsets in Valkey, as an aggregator that
		// did not store topic IDs wrote them: the recreation can then only
		// be seen as a log that ends below the stored offsets.
		legacy bool
		// copies sends copies of sales counted before the recreation
		// after it: dedup must drop them.
		copies     bool
		wantReason string
	}{
		{name: "while running", wantReason: "recreated"},
		{name: "while stopped", stopFirst: true, wantReason: "recreated"},
		{name: "copies of earlier sales", copies: true, wantReason: "recreated"},
		{name: "store without topic ids", stopFirst: true, legacy: true, wantReason: "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.dedupWindow = time.Hour
			var originals []*salesv1.Sale
			for i := range 60 {
				originals = append(originals, e.newSale("P0"+strconv.Itoa(10+i%30)))
			}
			e.produceSales(originals, false)
			e.produce(540, 0, "")
			c := e.startWatched("a", 100, nil)
			e.waitCaughtUp()
			e.check()

			if tt.stopFirst {
				c.stop(t)
			}
			if tt.legacy {
				e.forgetTopicIDs()
			}
			e.recreateTopic()
			if tt.copies {
				// A client retrying sales it was not sure of: same
				// sale_id, same product, so the same partition.
				e.produceSales(originals, true)
			}
			// Fewer than before on every partition, so that the new
			// offsets stay below the stored ones.
			e.produce(90, 0, "")
			if tt.stopFirst {
				c = e.startWatched("b", 100, nil)
			}
			e.waitCounted()
			e.check()

			resets, rewound, _, _ := c.obs.snapshot()
			if resets[tt.wantReason] == 0 || rewound[tt.wantReason] == 0 {
				t.Errorf("observed log resets %v rewinding %v, want some for reason %q", resets, rewound, tt.wantReason)
			}
			if c.logs.errorWith("reason", tt.wantReason) == nil {
				t.Errorf("logged errors %v, want one with reason=%s", c.logs.errors(), tt.wantReason)
			}
			if c.Ready() {
				t.Errorf("Ready() right after the topic was recreated = true, want false")
			}
		})
	}
}

// TestConsumerCountsTruncatedLog loses records of the log that were
// counted, as an unclean leader election or a lost disk does: the leader
// epoch moves on and new records take the lost offsets. Whether the log
// ends below the stored offset or has grown past it again, every new record
// must be counted.
func TestConsumerCountsTruncatedLog(t *testing.T) {
	t.Parallel()
	const lost = 100 // offsets counted per partition that the log then loses
	tests := []struct {
		name string
		// after is how many sales are written once the log lost records.
		after int
		// noEpoch stores no leader epoch, as an aggregator before them
		// did: where the log diverged is then unknown, the whole log is
		// read again, and dedup drops what was counted.
		noEpoch bool
	}{
		{name: "log end below the stored offset", after: 120},
		{name: "log grown past the stored offset", after: 3000},
		{name: "log end below the stored offset, no epoch stored", after: 120, noEpoch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.dedupWindow = time.Hour
			e.produce(300, 0, "")
			c := e.startWatched("a", 100, nil)
			e.waitCaughtUp()
			c.stop(t)

			// The partitions counted lost more records than the log now
			// holds: the leader that had them is gone, and a new leader
			// epoch writes over their offsets.
			stored, err := e.store.LoadOffsets(t.Context(), topic, []int32{0, 1, 2, 3, 4, 5})
			if err != nil {
				t.Fatal(err)
			}
			for p, offset := range stored {
				if offset < 0 {
					continue
				}
				fake := strconv.FormatInt(offset+lost, 10)
				field := topic + ":" + strconv.Itoa(int(p))
				cmd := e.valkey.B().Hset().Key(e.keys.Offsets()).FieldValue().FieldValue(field, fake)
				if !tt.noEpoch {
					epoch := e.cluster.PartitionInfo(topic, p).Epoch
					cmd = cmd.FieldValue(field+":epoch", strconv.Itoa(int(epoch))+"@"+fake)
				}
				if err := e.valkey.Do(t.Context(), cmd.Build()).Error(); err != nil {
					t.Fatal(err)
				}
				if err := e.cluster.MoveTopicPartition(topic, p, e.cluster.LeaderFor(topic, p)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.noEpoch {
				e.forgetTopicIDs()
				// The whole log is read again: every sale counted before
				// is a copy within the window.
				e.truth.duplicates += e.truth.totals["sales"]
			}
			e.produce(tt.after, 0, "")
			c = e.startWatched("b", 100, nil)
			e.waitCounted()
			e.check()

			resets, rewound, _, _ := c.obs.snapshot()
			if resets["truncated"] == 0 || rewound["truncated"] == 0 {
				t.Errorf("observed log resets %v rewinding %v, want some for reason truncated", resets, rewound)
			}
			if c.logs.errorWith("reason", "truncated") == nil {
				t.Errorf("logged errors %v, want one with reason=truncated", c.logs.errors())
			}
			if c.Ready() {
				t.Errorf("Ready() right after records were lost = true, want false")
			}
		})
	}
}

// TestConsumerUnreadyAfterRecreatedTopic recreates the topic under a running
// consumer, on virtual time: the consumer counts the new topic's sales,
// reports the reset, and is not ready for exactly LogResetUnready from it.
func TestConsumerUnreadyAfterRecreatedTopic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const unready = 2 * time.Minute
		v := newVirtual(t)
		c := v.start(func(cfg *Config) { cfg.LogResetUnready = unready })
		v.produce(50)
		time.Sleep(time.Minute)
		synctest.Wait()
		if !c.Ready() {
			t.Fatal("Ready() = false after counting, want true")
		}
		_, before := v.store.snapshot()

		if err := v.cluster.DeleteTopic(topic); err != nil {
			t.Fatalf("DeleteTopic(%s) = %v", topic, err)
		}
		if err := v.cluster.CreateTopic(topic, numPartitions, nil); err != nil {
			t.Fatalf("CreateTopic(%s) = %v", topic, err)
		}
		v.producer.PurgeTopicsFromClient(topic)
		clear(v.produced)
		v.produce(10)
		time.Sleep(time.Minute)
		synctest.Wait()
		if offsets, sales := v.store.snapshot(); !maps.Equal(offsets, v.produced) || sales != before+v.total() {
			t.Fatalf("stored offsets %v, %d sales; want the new topic's ends %v and %d sales", offsets, sales, v.produced, before+v.total())
		}
		if resets, _, _, _ := c.obs.snapshot(); resets[reasonRecreated] != numPartitions {
			t.Errorf("observed log resets %v, want %d recreated", resets, numPartitions)
		}
		// The window runs from the last reset the log reports.
		var at time.Time
		for _, rec := range c.logs.errors() {
			if rec["reason"] != reasonRecreated {
				continue
			}
			logged, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			if err != nil {
				t.Fatalf("time of %v: %v", rec, err)
			}
			if logged.After(at) {
				at = logged
			}
		}
		if at.IsZero() {
			t.Fatalf("logged errors %v, want one with reason=%s", c.logs.errors(), reasonRecreated)
		}

		time.Sleep(time.Until(at.Add(unready)) - time.Millisecond)
		if c.Ready() {
			t.Errorf("Ready() %v after the reset = true, want false for %v", unready-time.Millisecond, unready)
		}
		time.Sleep(time.Millisecond)
		if !c.Ready() {
			t.Errorf("Ready() %v after the reset = false, want true", unready)
		}
	})
}
