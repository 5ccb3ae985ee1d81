package histogram

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestBucketsBoundValues(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 123456789, math.MaxInt64 / 3, math.MaxInt64}
	for range 10000 {
		values = append(values, rng.Int64N(1<<40))
	}
	for _, v := range values {
		i := index(v)
		if i < 0 || i >= buckets {
			t.Fatalf("index(%d) = %d, want in [0, %d)", v, i, buckets)
		}
		lo, hi := lowest(i), highest(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= subCount {
			if rel := float64(hi-lo) / float64(lo); rel > 1.0/subCount {
				t.Fatalf("bucket of %d is %.4f wide relative to its value, want at most %.4f", v, rel, 1.0/subCount)
			}
		} else if lo != hi {
			t.Fatalf("bucket of small value %d = [%d, %d], want exact", v, lo, hi)
		}
	}
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	uniform := New()
	for v := int64(1); v <= 100000; v++ {
		uniform.Record(v)
	}
	small := New()
	for _, v := range []int64{5, 1, 3, 2, 4} {
		small.Record(v)
	}
	spike := New()
	for range 990 {
		spike.Record(1000)
	}
	for range 10 {
		spike.Record(1_000_000)
	}
	tests := []struct {
		name string
		h    *Histogram
		q    float64
		want int64
		tol  float64 // relative
	}{
		{"uniform p50", uniform, 0.50, 50000, 1.0 / subCount},
		{"uniform p90", uniform, 0.90, 90000, 1.0 / subCount},
		{"uniform p99", uniform, 0.99, 99000, 1.0 / subCount},
		{"uniform p99.9", uniform, 0.999, 99900, 1.0 / subCount},
		{"uniform max", uniform, 1, 100000, 0},
		{"small exact p50", small, 0.5, 3, 0},
		{"small exact p20", small, 0.2, 1, 0},
		{"small exact p100", small, 1, 5, 0},
		{"spike p99 is the tail", spike, 0.99, 1000, 1.0 / subCount},
		{"spike p99.5 is the spike", spike, 0.995, 1_000_000, 1.0 / subCount},
		{"empty", New(), 0.99, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.h.Quantile(tt.q)
			if got < tt.want || float64(got-tt.want) > tt.tol*float64(tt.want) {
				t.Errorf("Quantile(%v) = %d, want %d (never under, at most %.2f%% over)", tt.q, got, tt.want, tt.tol*100)
			}
		})
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	h := New()
	if h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Errorf("empty histogram: min %d max %d mean %v count %d, want zeros", h.Min(), h.Max(), h.Mean(), h.Count())
	}
	for _, v := range []int64{10, 20, 30, -5} {
		h.Record(v)
	}
	if h.Min() != 0 || h.Max() != 30 || h.Mean() != 15 || h.Count() != 4 {
		t.Errorf("min %d max %d mean %v count %d, want 0 30 15 4", h.Min(), h.Max(), h.Mean(), h.Count())
	}
}

func TestMergeAndConcurrentRecord(t *testing.T) {
	t.Parallel()
	a, b := New(), New()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for v := range int64(1000) {
				if g%2 == 0 {
					a.Record(v)
				} else {
					b.Record(v + 1000)
				}
			}
		})
	}
	wg.Wait()
	a.Merge(b)
	if a.Count() != 4000 {
		t.Errorf("Count() = %d, want 4000", a.Count())
	}
	if a.Min() != 0 || a.Max() != 1999 {
		t.Errorf("Min(), Max() = %d, %d, want 0, 1999", a.Min(), a.Max())
	}
	if got := a.Quantile(0.5); got < 999 || got > 1010 {
		t.Errorf("Quantile(0.5) = %d, want about 999", got)
	}
}
