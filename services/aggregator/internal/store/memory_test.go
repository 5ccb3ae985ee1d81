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
// on sets filled the way apply.lua fills them: 16-byte keys scored by record
// time in Unix ms. It fails if an entry costs more than the bound that
// docs/valkey-keys.md promises. BF_DEDUP_MEMORY_ENTRIES overrides the
// largest size (default 200,000).
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
		entries int
		// maxPerEntry bounds the bytes per entry.
		maxPerEntry float64
	}{
		{entries: 100, maxPerEntry: 40},   // a listpack: compact
		{entries: 1000, maxPerEntry: 128}, // a skiplist and a dict
		{entries: largest, maxPerEntry: 128},
	}
	start := time.Now().UnixMilli()
	for _, tt := range tests {
		key := f.keys.Prefix() + "seen:memory:" + strconv.Itoa(tt.entries)
		for first := 0; first < tt.entries; first += 1000 {
			cmd := f.client.B().Zadd().Key(key).ScoreMember()
			for i := first; i < min(first+1000, tt.entries); i++ {
				k := aggregate.KeyOf("0197c0de-0000-7000-8000-" + strconv.Itoa(i))
				cmd = cmd.ScoreMember(float64(start+int64(i)), string(k[:]))
			}
			f.do(t, cmd.Build())
		}
		bytes, err := f.client.Do(ctx, f.client.B().MemoryUsage().Key(key).Samples(0).Build()).AsInt64()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s SAMPLES 0 = %v", key, err)
		}
		per := float64(bytes) / float64(tt.entries)
		t.Logf("dedup set of %d sale ids: MEMORY USAGE %d bytes, %.1f bytes per id", tt.entries, bytes, per)
		if per > tt.maxPerEntry {
			t.Errorf("dedup set of %d ids costs %.1f bytes per id, want at most %.0f", tt.entries, per, tt.maxPerEntry)
		}
	}
}
