// Package limit decides how many write calls the api serves at once.
//
// Fixed is a constant limit. Adaptive moves its limit with the latency of
// the calls it lets in, in the manner of Netflix's concurrency-limits
// (gradient) and Envoy's adaptive concurrency filter: every window it scales
// the limit by target/latency when the calls are slower than the target,
// and adds √limit of headroom while the limit is in use, so that under
// overload the limit settles where the admitted calls are answered near the
// target instead of queueing behind a fixed number of others.
package limit

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Fixed is a limit that never moves.
type Fixed int64

// Limit returns the limit.
func (f Fixed) Limit() int64 { return int64(f) }

// Observe does nothing: a fixed limit learns nothing from latencies.
func (Fixed) Observe(time.Time, time.Duration, int64) {}

// Config is an Adaptive limit's settings.
type Config struct {
	// Max is the ceiling, and the limit at start (MAX_INFLIGHT_WRITES).
	Max int64
	// Min is the floor: the limit never goes below it, so that a latency
	// the limit cannot cure (a slow broker, a CPU taken by refusals) does
	// not shut the writes off.
	Min int64
	// Target is the latency the admitted calls should be answered in, at
	// the 90th percentile of a window.
	Target time.Duration
	// Window is how often the limit moves (100ms when zero).
	Window time.Duration
	// MinSamples is the fewest latencies a window needs before the limit
	// moves on it (20 when zero): a window of three calls says nothing.
	MinSamples int
}

// Defaults of Config.
const (
	defaultWindow     = 100 * time.Millisecond
	defaultMinSamples = 20
	// maxSamples caps the latencies a window keeps; beyond it the rest
	// of the window is judged on the first ones.
	maxSamples = 4096
	// tolerance is how far above the learned baseline the latency may go
	// before it counts as high, when the baseline exceeds Target/tolerance
	// (a far broker, a slow disk): the limit then holds the latency near
	// tolerance × baseline instead of pinning itself at Min.
	tolerance = 2
	// baselineRise is the fraction of the gap by which the baseline rises
	// towards a slower window (it falls at once to a faster one): it
	// follows a broker that got slower over tens of seconds, not a burst.
	baselineRise = 1.0 / 64
	// minGradient bounds one window's decrease: a single slow window (a
	// GC pause, a broker hiccup) at most halves the limit.
	minGradient = 0.5
	// throughputHold is the share of the recent best throughput a window
	// must keep for the limit to shrink further: below it, shrinking has
	// cost calls served instead of queueing, so the latency is not the
	// limit's to cure (a CPU taken by refusals, a slow broker).
	throughputHold = 0.9
	// bestDecay is how much of the best throughput is remembered from one
	// window to the next: about 7 s of half-life at 100 ms windows.
	bestDecay = 0.99
	// smoothing is the weight of a window's throughput in the running
	// average the limit judges (about five windows): one window of a few
	// hundred calls is too noisy, and the best of noisy windows would be
	// a peak no average reaches.
	smoothing = 0.2
	// judgeWindows is how many windows after a cut its cost in throughput
	// is judged: the calls admitted before it take a latency or so to
	// drain, and the running average a few windows more to show it.
	judgeWindows = 10
	// holdWindows is how many windows the limit does not shrink after a
	// cut that cost throughput was undone: the latency is not the limit's
	// to cure, and trying again at once would cost as much again.
	holdWindows = 50
)

// Adaptive is a concurrency limit that follows the latency of the calls it
// admits. Its methods are safe for concurrent use.
type Adaptive struct {
	cfg   Config
	limit atomic.Int64

	mu sync.Mutex
	// value is the limit as a real number, so that small steps add up.
	value float64
	// start is when the current window began; zero before the first
	// sample.
	start   time.Time
	samples []time.Duration
	// calls counts the window's calls, beyond maxSamples too.
	calls int
	// peak is the most calls in flight seen in the window.
	peak int64
	// baseline is the latency of windows in which the limit did not bind
	// (no call could have been refused): what the work costs when nothing
	// queues for admission.
	baseline time.Duration
	// rate is the running average of the windows' throughput, in calls
	// per second; best is its best recent value, decaying by bestDecay a
	// window.
	rate float64
	best float64
	// cutFrom is the limit before the cuts being judged, and judging how
	// many more windows judge them; hold counts windows without cuts.
	cutFrom float64
	judging int
	hold    int
}

// NewAdaptive returns an adaptive limit starting at cfg.Max. Min is raised
// to 1 and Max to Min if need be.
func NewAdaptive(cfg Config) *Adaptive {
	cfg.Min = max(cfg.Min, 1)
	cfg.Max = max(cfg.Max, cfg.Min)
	if cfg.Window <= 0 {
		cfg.Window = defaultWindow
	}
	if cfg.MinSamples <= 0 {
		cfg.MinSamples = defaultMinSamples
	}
	a := &Adaptive{cfg: cfg, value: float64(cfg.Max), samples: make([]time.Duration, 0, 256)}
	a.limit.Store(cfg.Max)
	return a
}

// Limit returns the current limit: a call may be served if fewer than this
// many are. It costs one atomic load.
func (a *Adaptive) Limit() int64 { return a.limit.Load() }

// Observe records that an admitted call ended at end after latency, and
// that inflight calls (itself included) were being served when it was
// admitted. Calls whose latency says nothing about load (refused by
// validation, say) should not be observed.
func (a *Adaptive) Observe(end time.Time, latency time.Duration, inflight int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.start.IsZero() {
		a.start = end
	}
	if len(a.samples) < maxSamples {
		a.samples = append(a.samples, latency)
	}
	a.calls++
	a.peak = max(a.peak, inflight)
	elapsed := end.Sub(a.start)
	if elapsed < a.cfg.Window || len(a.samples) < a.cfg.MinSamples {
		return
	}
	a.update(float64(a.calls) / elapsed.Seconds())
	a.start = end
	a.samples = a.samples[:0]
	a.calls = 0
	a.peak = 0
}

// update moves the limit on the window just ended, which served
// throughput calls a second; a.mu is held.
func (a *Adaptive) update(throughput float64) {
	slices.Sort(a.samples)
	p90 := a.samples[(len(a.samples)*9)/10]
	median := a.samples[len(a.samples)/2]
	limit := a.value
	// bound is whether the limit may have refused calls in this window:
	// then the latency holds queueing that admission let in, and says
	// nothing about the baseline.
	bound := float64(a.peak) >= 0.9*limit
	if !bound {
		if a.baseline == 0 || median < a.baseline {
			a.baseline = median
		} else {
			a.baseline += time.Duration(float64(median-a.baseline) * baselineRise)
		}
	}
	if a.rate == 0 {
		a.rate = throughput
	} else {
		a.rate += smoothing * (throughput - a.rate)
	}
	held := a.rate >= throughputHold*a.best
	a.best = max(a.rate, a.best*bestDecay)
	// A cut should shorten the queue, not the calls served. If the
	// throughput fell after one, the latency came from elsewhere (a CPU
	// taken by refused calls, a slow broker): undo it, and try no other
	// for a while.
	if a.judging > 0 {
		a.judging--
		if !held {
			a.value, a.judging, a.hold = a.cutFrom, 0, holdWindows
			a.limit.Store(int64(a.value))
			return
		}
	}
	if a.hold > 0 {
		a.hold--
	}
	target := max(a.cfg.Target, tolerance*a.baseline)
	gradient := 1.0
	// Shrink only a limit that binds: while calls in flight stay below
	// it, admission queues nothing and refuses nothing, so the latency is
	// the work's own (a slow broker, a busy machine) and a lower limit
	// would not cure it, only cut the throughput the next burst needs.
	if bound && p90 > target && held && a.hold == 0 {
		gradient = max(minGradient, float64(target)/float64(p90))
		if a.judging == 0 {
			a.cutFrom = limit
		}
		a.judging = judgeWindows
	}
	limit *= gradient
	// Headroom only while the limit is in use: an idle api keeps the limit
	// it has instead of growing it past anything it has tested.
	if gradient == 1 && float64(a.peak) >= limit/2 {
		limit += math.Sqrt(limit)
	}
	a.value = min(max(limit, float64(a.cfg.Min)), float64(a.cfg.Max))
	a.limit.Store(int64(a.value))
}

// Baseline returns the learned latency of windows in which the limit did
// not bind, or 0 before there is one.
func (a *Adaptive) Baseline() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.baseline
}
