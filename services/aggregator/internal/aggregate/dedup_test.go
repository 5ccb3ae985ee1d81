package aggregate

import (
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

func TestKeyOf(t *testing.T) {
	t.Parallel()
	a, b := KeyOf("0197c0de-0000-7000-8000-000000000001"), KeyOf("0197c0de-0000-7000-8000-000000000002")
	if a == b {
		t.Errorf("KeyOf(two ids) = %x for both, want distinct keys", a)
	}
	if got := KeyOf("0197c0de-0000-7000-8000-000000000001"); got != a {
		t.Errorf("KeyOf(same id) = %x, want %x", got, a)
	}
	// The first 16 bytes of SHA-256("s1"), so other tools can compute it.
	if got, want := KeyOf("s1"), (SaleKey{0xe8, 0xbc, 0x16, 0x3c, 0x82, 0xee, 0xe1, 0x87, 0x33, 0x28, 0x8c, 0x7d, 0x4a, 0xc6, 0x36, 0xdb}); got != want {
		t.Errorf("KeyOf(s1) = %x, want %x", got, want)
	}
}

// copyOf is a sale with the given id, offset and record time (ms after t0).
func copyOf(id string, offset, recordAfter int64) Sale {
	s := sale(offset, home, "H1", 100, 1, t0)
	s.SaleID = id
	s.RecordMillis = t0 + recordAfter
	return s
}

func TestBatchFoldDedup(t *testing.T) {
	t.Parallel()
	const window = 10 * time.Second
	tests := []struct {
		name     string
		sales    []Sale
		dd       Dedup
		wantSold int64
		wantDups int64
		// wantSeen maps sale ids to the record time (ms after t0) to
		// remember.
		wantSeen map[string]int64
	}{
		{
			name:     "dedup off counts every copy",
			sales:    []Sale{copyOf("a", 0, 0), copyOf("a", 1, 1)},
			dd:       Dedup{},
			wantSold: 2,
		},
		{
			name:     "distinct ids",
			sales:    []Sale{copyOf("a", 0, 0), copyOf("b", 1, 1)},
			dd:       Dedup{Window: window},
			wantSold: 2,
			wantSeen: map[string]int64{"a": 0, "b": 1},
		},
		{
			name:     "a copy in the same batch",
			sales:    []Sale{copyOf("a", 0, 0), copyOf("b", 1, 5), copyOf("a", 2, 9000)},
			dd:       Dedup{Window: window},
			wantSold: 2, wantDups: 1,
			wantSeen: map[string]int64{"a": 0, "b": 5},
		},
		{
			name:     "a copy of a sale counted in an earlier batch",
			sales:    []Sale{copyOf("a", 7, 10000)},
			dd:       Dedup{Window: window, Seen: map[SaleKey]int64{KeyOf("a"): t0}},
			wantSold: 0, wantDups: 1,
			wantSeen: map[string]int64{},
		},
		{
			name:     "a copy written before the counted one",
			sales:    []Sale{copyOf("a", 7, -3000)},
			dd:       Dedup{Window: window, Seen: map[SaleKey]int64{KeyOf("a"): t0}},
			wantSold: 0, wantDups: 1,
			wantSeen: map[string]int64{},
		},
		{
			name:     "a copy written long before the counted one",
			sales:    []Sale{copyOf("a", 7, -10001)},
			dd:       Dedup{Window: window, Seen: map[SaleKey]int64{KeyOf("a"): t0}},
			wantSold: 1,
			wantSeen: map[string]int64{"a": -10001},
		},
		{
			name:     "a copy just past the window counts again and restarts it",
			sales:    []Sale{copyOf("a", 7, 10001), copyOf("a", 8, 15000)},
			dd:       Dedup{Window: window, Seen: map[SaleKey]int64{KeyOf("a"): t0}},
			wantSold: 1, wantDups: 1,
			wantSeen: map[string]int64{"a": 10001},
		},
		{
			name:     "three copies in a batch",
			sales:    []Sale{copyOf("a", 0, 0), copyOf("a", 1, 0), copyOf("a", 2, 0)},
			dd:       Dedup{Window: window},
			wantSold: 1, wantDups: 2,
			wantSeen: map[string]int64{"a": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &Batch{Topic: "sales", Partition: 3, Sales: tt.sales}
			d, err := b.Fold(tt.dd)
			if err != nil {
				t.Fatalf("Fold() = %v, want nil", err)
			}
			if d.Totals.Sales != tt.wantSold || d.Duplicates != tt.wantDups {
				t.Errorf("Fold() sales, duplicates = %d, %d, want %d, %d", d.Totals.Sales, d.Duplicates, tt.wantSold, tt.wantDups)
			}
			if want := tt.sales[len(tt.sales)-1].Offset + 1; d.Next != want {
				t.Errorf("Fold().Next = %d, want %d: duplicates are consumed too", d.Next, want)
			}
			var want map[SaleKey]int64
			if tt.wantSeen != nil {
				want = map[SaleKey]int64{}
				for id, ms := range tt.wantSeen {
					want[KeyOf(id)] = t0 + ms
				}
			}
			if !maps.Equal(d.Seen, want) || (d.Seen == nil) != (want == nil) {
				t.Errorf("Fold().Seen = %v, want %v", d.Seen, want)
			}
			if tt.dd.Window > 0 {
				var newest int64
				for _, s := range tt.sales {
					newest = max(newest, s.RecordMillis)
				}
				if want := newest - tt.dd.Window.Milliseconds() - DedupSlack.Milliseconds(); d.SeenTrimBefore != want {
					t.Errorf("Fold().SeenTrimBefore = %d, want %d", d.SeenTrimBefore, want)
				}
			} else if d.SeenTrimBefore != 0 {
				t.Errorf("Fold().SeenTrimBefore = %d with dedup off, want 0", d.SeenTrimBefore)
			}
		})
	}
}

// TestDedupVerdictsIgnoreBatchBoundaries replays the same records cut into
// batches of every size: the sales counted and dropped must not change, so a
// rebuild from the topic reaches the aggregates the first pass reached.
func TestDedupVerdictsIgnoreBatchBoundaries(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	// Copies of a few ids, some within the window of the counted copy and
	// some past it, with timestamps slightly out of order.
	var sales []Sale
	at := []int64{0, 300, 200, 2100, 2500, 1900, 4300, 4200, 6600, 9000, 8990, 11100}
	for i, ms := range at {
		sales = append(sales, copyOf([]string{"a", "b", "a", "c"}[i%4], int64(i), ms))
	}
	var want *Delta
	for size := 1; size <= len(sales); size++ {
		seen := map[SaleKey]int64{}
		var sold, dups int64
		for start := 0; start < len(sales); start += size {
			b := &Batch{Topic: "sales", Partition: 0, Sales: sales[start:min(start+size, len(sales))]}
			d, err := b.Fold(Dedup{Window: window, Seen: maps.Clone(seen)})
			if err != nil {
				t.Fatalf("batches of %d: Fold() = %v", size, err)
			}
			sold += d.Totals.Sales
			dups += d.Duplicates
			maps.Copy(seen, d.Seen)
			maps.DeleteFunc(seen, func(_ SaleKey, ms int64) bool { return ms < d.SeenTrimBefore })
		}
		if want == nil {
			want = &Delta{Duplicates: dups, Totals: Stats{Sales: sold}}
			continue
		}
		if sold != want.Totals.Sales || dups != want.Duplicates {
			t.Errorf("batches of %d: sales, duplicates = %d, %d, want %d, %d as with batches of 1",
				size, sold, dups, want.Totals.Sales, want.Duplicates)
		}
	}
	if want.Totals.Sales+want.Duplicates != int64(len(sales)) || want.Duplicates == 0 || want.Totals.Sales <= 3 {
		t.Errorf("batches of 1: sales, duplicates = %d, %d, want some of each", want.Totals.Sales, want.Duplicates)
	}
}

func TestDecodeBatch(t *testing.T) {
	t.Parallel()
	dec := NewDecoder()
	var records []*kgo.Record
	for i, edit := range []func(*salesv1.Sale){
		nil,
		func(s *salesv1.Sale) { s.Quantity = 0 },
		nil, // the same sale id again
	} {
		r := saleRecord(t, edit)
		r.Offset = int64(10 + i)
		r.Timestamp = r.Timestamp.Add(time.Duration(i) * time.Second)
		records = append(records, r)
	}
	b, err := dec.DecodeBatch("sales", 2, records)
	if err != nil {
		t.Fatalf("DecodeBatch() = %v", err)
	}
	if len(b.Sales) != 2 || len(b.Dead) != 1 || b.Dead[0].Record.Offset != 11 {
		t.Fatalf("DecodeBatch() = %d sales, dead letters %+v, want 2 sales and offset 11 dead", len(b.Sales), b.Dead)
	}
	if got, want := b.Sales[1].RecordMillis, records[2].Timestamp.UnixMilli(); got != want {
		t.Errorf("DecodeBatch().Sales[1].RecordMillis = %d, want %d", got, want)
	}
	d, err := b.Fold(Dedup{Window: time.Minute})
	if err != nil {
		t.Fatalf("Fold() = %v", err)
	}
	if d.Totals.Sales != 1 || d.Duplicates != 1 || d.DeadLetters != 1 || d.Next != 13 {
		t.Errorf("Fold() sales=%d duplicates=%d dead=%d next=%d, want 1 1 1 13", d.Totals.Sales, d.Duplicates, d.DeadLetters, d.Next)
	}
}
