package aggregate

import (
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestSeenSetMatchesValkey keeps a SeenSet in step with a model of the
// Valkey sorted set (ZADD of each batch's member, ZREMRANGEBYSCORE of the
// old ones) through many batches with resent sale ids, former-format
// members and out-of-order timestamps, and checks after every batch that
// it answers exactly as a set freshly parsed from the model's members,
// which is what a restarted aggregator would load.
func TestSeenSetMatchesValkey(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	valkey := map[string]int64{} // member -> score
	set := NewSeenSet()
	// Former-format members: one key each, scored by its timestamp.
	for i := range 20 {
		k := KeyOf("legacy-" + strconv.Itoa(i))
		valkey[string(k[:])] = int64(1000 + i*10)
	}
	members := func() ([]string, []int64) {
		var m []string
		var s []int64
		for k, v := range valkey {
			m = append(m, k)
			s = append(s, v)
		}
		return m, s
	}
	var err error
	set, err = ParseSeenSet(members())
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	now := int64(1000)
	for batch := range 400 {
		d := NewDelta("sales", 0)
		d.Seen = map[SaleKey]int64{}
		for range rng.IntN(6) {
			// Ids from a small pool, so that many are counted again
			// (as copies further apart than the window would be).
			id := "sale-" + strconv.Itoa(rng.IntN(60))
			if rng.IntN(10) == 0 {
				id = "legacy-" + strconv.Itoa(rng.IntN(20))
			}
			d.Seen[KeyOf(id)] = now + rng.Int64N(40) - 20
			next++
		}
		next++
		d.Next = next
		now += rng.Int64N(15)
		d.SeenTrimBefore = now - 150 + rng.Int64N(100)
		if rng.IntN(5) == 0 {
			d.SeenTrimBefore = 0
		}

		member, newest := d.SeenBlob()
		if member != nil {
			valkey[string(member)] = newest
			set.Add(member, newest)
		}
		if d.SeenTrimBefore != 0 {
			for m, score := range valkey {
				if score < d.SeenTrimBefore {
					delete(valkey, m)
				}
			}
			set.Forget(d.SeenTrimBefore)
		}

		fresh, err := ParseSeenSet(members())
		if err != nil {
			t.Fatalf("batch %d: ParseSeenSet() = %v", batch, err)
		}
		if !maps.Equal(set.Seen(), fresh.Seen()) {
			t.Fatalf("batch %d: kept set %v, parsed from valkey %v", batch, set.Seen(), fresh.Seen())
		}
	}
	if set.Len() == 0 {
		t.Errorf("the set ended empty; the test forgot too much to mean anything")
	}
}

func TestParseSeenSetRejectsStrangeMembers(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 15, 17, 31, 33, 8 + 24 + 1} {
		if _, err := ParseSeenSet([]string{string(make([]byte, n))}, []int64{1}); err == nil {
			t.Errorf("ParseSeenSet(a %d-byte member) = nil, want an error", n)
		}
	}
}
