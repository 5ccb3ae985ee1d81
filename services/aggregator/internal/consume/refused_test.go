package consume

import (
	"maps"
	"slices"
	"strconv"
	"testing"
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
