package store

import (
	"os"
	"strconv"
	"testing"
	"time"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

// TestDedupMemory measures what the dedup set costs in Valkey per
// remembered sale id, with MEMORY USAGE (SAMPLES 0: every element counted)
// on sets filled the way apply.lua fills them: one member per batch holding
// its sales' 16-byte keys and record timestamps (aggregate.Delta.SeenBlob),
// for batches of one sale (an idle pipeline: the worst case) up to 1,000.
// It fails if an entry costs more than the bound that docs/valkey-keys.md
// promises. BF_DEDUP_MEMORY_ENTRIES overrides the largest size (default
// 200,000).
func TestDedupMemory(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	largest := 200000
	if v := os.Getenv("BF_DEDUP_MEMORY_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			t.Fatalf("BF_DEDUP_MEMORY_ENTRIES=%q: want an integer of at least 1000", v)
		}
		largest = n
	}
	tests := []struct {
		entries, perBatch int
		// maxPerEntry bounds the bytes per entry.
		maxPerEntry float64
	}{
		{entries: 100, perBatch: 1, maxPerEntry: 48}, // a listpack: compact
		{entries: largest, perBatch: 1, maxPerEntry: 128},
		{entries: largest, perBatch: 10, maxPerEntry: 40},
		{entries: largest, perBatch: 100, maxPerEntry: 30},
		{entries: largest, perBatch: 1000, maxPerEntry: 30},
	}
	start := time.Now().UnixMilli()
	for _, tt := range tests {
		key := f.keys.Seen("memory-"+strconv.Itoa(tt.entries), int32(tt.perBatch))
		cmd := f.client.B().Zadd().Key(key).ScoreMember()
		members := 0
		for first := 0; first < tt.entries; first += tt.perBatch {
			d := aggregate.NewDelta("sales", 0)
			d.Seen = make(map[aggregate.SaleKey]int64, tt.perBatch)
			for i := first; i < min(first+tt.perBatch, tt.entries); i++ {
				d.Seen[aggregate.KeyOf("0197c0de-0000-7000-8000-"+strconv.Itoa(i))] = start + int64(i)
				d.Next = int64(i + 1)
			}
			member, newest := d.SeenBlob()
			cmd = cmd.ScoreMember(float64(newest), string(member))
			if members++; members == 1000 {
				f.do(t, cmd.Build())
				cmd, members = f.client.B().Zadd().Key(key).ScoreMember(), 0
			}
		}
		if members > 0 {
			f.do(t, cmd.Build())
		}
		bytes, err := f.client.Do(ctx, f.client.B().MemoryUsage().Key(key).Samples(0).Build()).AsInt64()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s SAMPLES 0 = %v", key, err)
		}
		per := float64(bytes) / float64(tt.entries)
		t.Logf("dedup set of %d sale ids in batches of %d: MEMORY USAGE %d bytes, %.1f bytes per id", tt.entries, tt.perBatch, bytes, per)
		if per > tt.maxPerEntry {
			t.Errorf("dedup set of %d ids in batches of %d costs %.1f bytes per id, want at most %.0f", tt.entries, tt.perBatch, per, tt.maxPerEntry)
		}
	}
}
