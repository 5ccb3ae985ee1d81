package consume

import (
	"maps"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/rueidis"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestConsumerRefusedPartitionDoesNotStallOthers breaks what Valkey holds
// for one partition only, so that apply.lua refuses its batches (or its
// stored offset cannot be read): every other partition must keep being
// counted, the member must say it is not ready, and once the data is fixed
// the refused partition must catch up by itself.
func TestConsumerRefusedPartitionDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	// stuck is the product whose partition is refused.
	const stuck = "P001"
	tests := []struct {
		name  string
		dedup bool
		// breakIt and fixIt break and repair Valkey's data for the
		// partition; product p is on partition part.
		breakIt, fixIt func(e *env, part int32) rueidis.Completed
		// second starts another member once the first one refused the
		// partition: whichever owns it after the rebalance refuses it,
		// and the rest flows.
		second bool
	}{
		{
			name: "a ranking would pass 2^53",
			breakIt: func(e *env, _ int32) rueidis.Completed {
				return e.valkey.B().Zadd().Key(e.keys.RankUnits()).ScoreMember().ScoreMember(9007199254740990, stuck).Build()
			},
			fixIt: func(e *env, _ int32) rueidis.Completed {
				return e.valkey.B().Zrem().Key(e.keys.RankUnits()).Member(stuck).Build()
			},
		},
		{
			name:  "the dedup set is not a sorted set",
			dedup: true,
			breakIt: func(e *env, part int32) rueidis.Completed {
				return e.valkey.B().Set().Key(e.keys.Seen(topic, part)).Value("not a sorted set").Build()
			},
			fixIt: func(e *env, part int32) rueidis.Completed {
				return e.valkey.B().Del().Key(e.keys.Seen(topic, part)).Build()
			},
		},
		{
			name: "the stored offset is not an integer",
			breakIt: func(e *env, part int32) rueidis.Completed {
				return e.valkey.B().Hset().Key(e.keys.Offsets()).FieldValue().FieldValue(keys.OffsetField(topic, part), "twelve").Build()
			},
			fixIt: func(e *env, part int32) rueidis.Completed {
				return e.valkey.B().Hdel().Key(e.keys.Offsets()).Field(keys.OffsetField(topic, part)).Build()
			},
		},
		{
			name:   "the next owner after a rebalance",
			second: true,
			breakIt: func(e *env, _ int32) rueidis.Completed {
				return e.valkey.B().Zadd().Key(e.keys.RankUnits()).ScoreMember().ScoreMember(9007199254740990, stuck).Build()
			},
			fixIt: func(e *env, _ int32) rueidis.Completed {
				return e.valkey.B().Zrem().Key(e.keys.RankUnits()).Member(stuck).Build()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tt.dedup {
				e.dedupWindow = time.Hour
			}
			// The stuck product sells first, so that its partition's
			// first batch is refused, and five units at once, so that it
			// passes 2^53 even as doubles round.
			first := e.newSale(stuck)
			first.Quantity = 5
			part := e.produceSales([]*salesv1.Sale{first}, false)[0]
			if err := e.valkey.Do(t.Context(), tt.breakIt(e, part)).Error(); err != nil {
				t.Fatal(err)
			}
			e.produce(1200, 0, "")
			// Small polls: a member that stops at the first refusal
			// leaves most of every partition uncounted.
			a := e.startWatched("a", 20, nil)
			members := []*watched{a}
			e.waitFor("a to count some records", func() bool {
				stored, err := e.storedOffsets()
				return err == nil && slices.ContainsFunc(slices.Collect(maps.Values(stored)), func(o int64) bool { return o > 0 })
			})
			if tt.second {
				b := e.startWatched("b", 20, nil)
				members = append(members, b)
				e.waitFor("a and b to share the partitions", func() bool {
					return len(a.parts.owned()[topic]) > 0 && len(b.parts.owned()[topic]) > 0
				})
			}
			// Sales keep coming once the partition is refused: the
			// others must go on counting them.
			e.waitCaughtUpExcept(part)
			e.produce(600, 0, "")
			e.waitCaughtUpExcept(part)

			refused, logged, notReady := 0, false, false
			for _, m := range members {
				_, _, n, _ := m.obs.snapshot()
				refused += n
				logged = logged || m.logs.errorWith("partition", strconv.Itoa(int(part))) != nil
				notReady = notReady || !m.Ready()
			}
			if refused == 0 {
				t.Errorf("observed refusals = 0, want some for partition %d", part)
			}
			if !logged {
				t.Errorf("no error logged for partition %d", part)
			}
			if !notReady {
				t.Errorf("Ready() = true on every member while partition %d is refused, want false on its owner", part)
			}

			if err := e.valkey.Do(t.Context(), tt.fixIt(e, part)).Error(); err != nil {
				t.Fatal(err)
			}
			e.waitCaughtUp()
			e.check()
			for _, m := range members {
				e.waitReady(m, true)
				if _, _, _, now := m.obs.snapshot(); now != 0 {
					t.Errorf("refused partitions reported after the fix = %d, want 0", now)
				}
			}
		})
	}
}

// TestRefusedPartitionBacksOff refuses one partition's batches, on virtual
// time: the batch is tried again 1s, 2s, 4s and so on up to 30s apart, the
// member says it is not ready meanwhile, the other partitions are counted
// as their sales come, and once the data is fixed the partition is counted
// at its next try, not before.
func TestRefusedPartitionBacksOff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const stuck = 2
		v := newVirtual(t)
		v.store.refuse(stuck, true)
		c := v.start(nil)
		v.produce(50)
		time.Sleep(100 * time.Second)
		synctest.Wait()

		tries, _ := v.store.calls(stuck)
		var gaps []time.Duration
		for i := 1; i < len(tries); i++ {
			gaps = append(gaps, tries[i].Sub(tries[i-1]))
		}
		wantGaps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
		if !slices.Equal(gaps, wantGaps) {
			t.Fatalf("partition %d tried %d times in 100s, %v apart; want 8 tries, %v apart", stuck, len(tries), gaps, wantGaps)
		}
		if offsets, _ := v.store.snapshot(); !v.counted(stuck) {
			t.Errorf("stored offsets %v; want every partition but %d at its end", offsets, stuck)
		}
		_, _, refused, refusedNow := c.obs.snapshot()
		if c.Ready() || refused != len(tries) || refusedNow != 1 {
			t.Errorf("Ready() = %v, refusals %d, refused partitions %d; want false, %d, 1", c.Ready(), refused, refusedNow, len(tries))
		}
		if c.logs.errorWith("partition", strconv.Itoa(stuck)) == nil {
			t.Errorf("no error logged for partition %d", stuck)
		}

		// Sales keep coming: the other partitions count them at once.
		v.produce(50)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); !v.counted(stuck) {
			t.Errorf("stored offsets %v after more sales; want every partition but %d at its end", offsets, stuck)
		}

		v.store.refuse(stuck, false)
		next := tries[len(tries)-1].Add(30 * time.Second)
		time.Sleep(time.Until(next) - time.Millisecond)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); offsets[stuck] > 0 || c.Ready() {
			t.Errorf("stored offset of partition %d = %d, Ready() = %v before its next try; want nothing counted, not ready", stuck, offsets[stuck], c.Ready())
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); offsets[stuck] <= 0 {
			t.Errorf("stored offset of partition %d = %d at its next try after the fix; want its refused batch counted", stuck, offsets[stuck])
		}
		if _, _, _, refusedNow := c.obs.snapshot(); !c.Ready() || refusedNow != 0 {
			t.Errorf("Ready() = %v, refused partitions %d after the fix; want true, 0", c.Ready(), refusedNow)
		}
		// The rest of the partition comes with the next fetch, which
		// includes it again.
		time.Sleep(fetchMaxWait)
		synctest.Wait()
		if offsets, _ := v.store.snapshot(); !v.counted() {
			t.Errorf("stored offsets %v a fetch after the fix; want every partition at its end %v", offsets, v.produced)
		}
	})
}
