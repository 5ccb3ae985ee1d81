package histogram

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
)

// ticksPerHalfDistance is HdrHistogram's default for its percentile
// distribution: five reported levels per halving of the distance to 100%.
const ticksPerHalfDistance = 5

// WritePercentiles writes the distribution in HdrHistogram's percentile
// format (the .hgrm text of outputPercentileDistribution): Value,
// Percentile, TotalCount and 1/(1-Percentile) columns, then the
// Mean/StdDeviation/Max/Total count footer. Values are divided by scale
// (1e6 prints nanoseconds as milliseconds). As in HdrHistogram, a level's
// value is the highest value of the bucket that reaches it, here capped at
// the maximum recorded, as Quantile is; mean and deviation are taken from
// the buckets' midpoints.
func (h *Histogram) WritePercentiles(w io.Writer, scale float64) error {
	ew := &errWriter{w: w}
	ew.printf("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
	n := h.Count()
	if n > 0 {
		level, seen := 0.0, int64(0)
		for i := range h.counts {
			c := h.counts[i].Load()
			if c == 0 {
				continue
			}
			seen += c
			v := float64(min(highest(i), h.Max())) / scale
			if seen == n {
				// HdrHistogram reports the last bucket once at the next
				// level, then the 100% line.
				if level < 100 {
					ew.printf("%12.3f %2.12f %10d %14.2f\n", v, level/100, seen, 1/(1-level/100))
				}
				ew.printf("%12.3f %2.12f %10d\n", v, 1.0, seen)
				break
			}
			for 100*float64(seen)/float64(n) >= level {
				ew.printf("%12.3f %2.12f %10d %14.2f\n", v, level/100, seen, 1/(1-level/100))
				ticks := ticksPerHalfDistance * math.Pow(2, math.Floor(math.Log2(100/(100-level)))+1)
				level += 100 / ticks
			}
		}
	}
	mean, sd := h.bucketMoments()
	ew.printf("#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean/scale, sd/scale)
	ew.printf("#[Max     = %12.3f, Total count    = %12d]\n", float64(h.Max())/scale, n)
	ew.printf("#[Buckets = %12d, SubBuckets     = %12d]\n", 64-subBits, 2*subCount)
	return ew.err
}

// bucketMoments returns the mean and the standard deviation of the
// recorded values, each taken as its bucket's midpoint.
func (h *Histogram) bucketMoments() (mean, sd float64) {
	n := h.Count()
	if n == 0 {
		return 0, 0
	}
	mid := func(i int) float64 { return (float64(lowest(i)) + float64(highest(i))) / 2 }
	var sum float64
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			sum += mid(i) * float64(c)
		}
	}
	mean = sum / float64(n)
	var sq float64
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			d := mid(i) - mean
			sq += d * d * float64(c)
		}
	}
	return mean, math.Sqrt(sq / float64(n))
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

// CDF returns the distribution's steps: for each non-empty bucket, its
// highest value (capped at the maximum) and the fraction of values at or
// below it.
func (h *Histogram) CDF() (values []int64, fractions []float64) {
	n := h.Count()
	var seen int64
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		seen += c
		values = append(values, min(highest(i), h.Max()))
		fractions = append(fractions, float64(seen)/float64(n))
	}
	return values, fractions
}

// wireForm is a histogram in JSON: its non-empty buckets as
// "index:count" pairs separated by spaces (one string, so that indented
// results stay short), and the exact sum, minimum and maximum.
type wireForm struct {
	SubBits int    `json:"sub_bits"`
	Buckets string `json:"buckets"`
	Sum     int64  `json:"sum"`
	Min     int64  `json:"min"`
	Max     int64  `json:"max"`
}

// MarshalJSON writes the non-empty buckets, so that a histogram can be
// saved with the results and its distribution drawn again later.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	var b []byte
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ':')
			b = strconv.AppendInt(b, c, 10)
		}
	}
	return json.Marshal(wireForm{SubBits: subBits, Buckets: string(b), Sum: h.sum.Load(), Min: h.Min(), Max: h.Max()})
}

// UnmarshalJSON reads what MarshalJSON wrote into an empty histogram.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var f wireForm
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f.SubBits != subBits {
		return fmt.Errorf("histogram: %d sub-bucket bits, want %d", f.SubBits, subBits)
	}
	if h.counts == nil {
		*h = Histogram{counts: make([]atomic.Int64, buckets)}
	}
	var total int64
	for _, pair := range strings.Fields(f.Buckets) {
		is, cs, ok := strings.Cut(pair, ":")
		i, err1 := strconv.Atoi(is)
		c, err2 := strconv.ParseInt(cs, 10, 64)
		if !ok || err1 != nil || err2 != nil || i < 0 || i >= buckets || c < 0 {
			return fmt.Errorf("histogram: bucket %q: want index:count", pair)
		}
		h.counts[i].Store(c)
		total += c
	}
	h.total.Store(total)
	h.sum.Store(f.Sum)
	h.max.Store(f.Max)
	if total == 0 {
		h.min.Store(math.MaxInt64)
	} else {
		h.min.Store(f.Min)
	}
	return nil
}
