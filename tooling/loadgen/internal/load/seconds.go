package load

import (
	"math"
	"sync/atomic"
	"time"

	"blackfriday.local/tooling/loadgen/histogram"
)

// Second is one second of a run's measured window: the calls that ended
// in it (in open loop, that were due in it), the failed ones, and their
// latency percentiles in milliseconds.
type Second struct {
	Second int     `json:"second"`
	Calls  int64   `json:"calls"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// second counts one second of the window.
type second struct {
	hist   *histogram.Histogram
	errors *atomic.Int64
}

func newSeconds(window time.Duration) []second {
	n := max(int(math.Ceil(window.Seconds())), 1)
	s := make([]second, n)
	for i := range s {
		s[i] = second{hist: histogram.New(), errors: new(atomic.Int64)}
	}
	return s
}

// perSecond counts a call of the window in the second at holds.
func (r *runner) perSecond(at time.Time, latency time.Duration, ok bool) {
	i := int(at.Sub(r.t0) / time.Second)
	if i < 0 || i >= len(r.secs) {
		return
	}
	r.secs[i].hist.RecordDuration(latency)
	if !ok {
		r.secs[i].errors.Add(1)
	}
}

// seconds summarises the window second by second.
func seconds(secs []second) []Second {
	out := make([]Second, len(secs))
	for i, s := range secs {
		h := s.hist
		out[i] = Second{
			Second: i, Calls: h.Count(), Errors: s.errors.Load(),
			P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max()),
		}
	}
	return out
}
