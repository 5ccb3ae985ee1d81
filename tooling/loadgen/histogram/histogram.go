// Package histogram records latencies in a log-linear histogram, in the
// manner of HdrHistogram: values below 2^subBits are counted exactly, and
// every larger value lands in a bucket no wider than 1/2^subBits of its
// magnitude, so any reported percentile is within 0.8% of the true value.
// Recording is lock-free and safe from many goroutines.
package histogram

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	// subBits sets the precision: 2^subBits sub-buckets per power of two.
	subBits  = 7
	subCount = 1 << subBits
	// buckets covers every non-negative int64.
	buckets = (64 - subBits + 1) * subCount
)

// Histogram counts non-negative int64 values (nanoseconds, for latencies).
// The zero value is not usable; call New.
type Histogram struct {
	counts []atomic.Int64
	total  atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64
	max    atomic.Int64
}

// New returns an empty histogram.
func New() *Histogram {
	h := &Histogram{counts: make([]atomic.Int64, buckets)}
	h.min.Store(math.MaxInt64)
	return h
}

// index returns the bucket of v (v >= 0).
func index(v int64) int {
	if v < subCount {
		return int(v)
	}
	// Keep the top subBits+1 significant bits: v>>shift is in
	// [subCount, 2*subCount).
	shift := bits.Len64(uint64(v)) - subBits - 1
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// highest returns the largest value that lands in bucket i.
func highest(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	mantissa := int64(i%subCount + subCount)
	return (mantissa+1)<<shift - 1
}

// lowest returns the smallest value that lands in bucket i.
func lowest(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	return int64(i%subCount+subCount) << shift
}

// Record counts one value; negative values count as zero.
func (h *Histogram) Record(v int64) {
	v = max(v, 0)
	h.counts[index(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// RecordDuration counts one duration in nanoseconds.
func (h *Histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Count returns the number of values recorded.
func (h *Histogram) Count() int64 { return h.total.Load() }

// Min returns the smallest value recorded, or 0 when empty.
func (h *Histogram) Min() int64 {
	if h.Count() == 0 {
		return 0
	}
	return h.min.Load()
}

// Max returns the largest value recorded, or 0 when empty.
func (h *Histogram) Max() int64 { return h.max.Load() }

// Mean returns the exact mean of the values recorded, or 0 when empty.
func (h *Histogram) Mean() float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q (0 < q <= 1): the highest value
// of the bucket holding the ceil(q*n)-th smallest value, capped at the
// maximum recorded, so a percentile is never under-reported. It returns 0
// when the histogram is empty.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(highest(i), h.Max())
		}
	}
	return h.Max()
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.Count() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
	for {
		cur, v := h.min.Load(), o.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur, v := h.max.Load(), o.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}
