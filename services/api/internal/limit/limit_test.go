package limit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// feed observes n calls of the given latency, spread evenly over one
// window starting at *now, each admitted with inflight calls served; it
// moves *now past the window.
func feed(a *Adaptive, now *time.Time, n int, latency time.Duration, inflight int64) {
	step := a.cfg.Window / time.Duration(n)
	for range n {
		*now = now.Add(step)
		a.Observe(*now, latency, inflight)
	}
}

var t0 = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

// newAt returns an Adaptive whose first window starts at t0, so that each
// feed closes exactly one window.
func newAt(cfg Config) (*Adaptive, time.Time) {
	a := NewAdaptive(cfg)
	a.start = t0
	return a, t0
}

func TestAdaptive(t *testing.T) {
	t.Parallel()
	cfg := Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond, Window: 100 * time.Millisecond}
	tests := []struct {
		name string
		// windows of (latency, inflight as a fraction of the limit)
		latency  time.Duration
		busy     float64
		windows  int
		start    int64 // the limit before, driven down first by slow windows if below Max
		want     func(got int64) bool
		describe string
	}{
		{"starts at the ceiling and stays there while fast", 10 * time.Millisecond, 1, 20, 1024,
			func(got int64) bool { return got == 1024 }, "1024"},
		{"shrinks when slow", 200 * time.Millisecond, 1, 1, 1024,
			// 1024 × max(0.5, 50/200) = 512.
			func(got int64) bool { return got == 512 }, "512"},
		{"shrinks in proportion to the overshoot", 80 * time.Millisecond, 1, 1, 1024,
			// 1024 × 50/80 = 640.
			func(got int64) bool { return got == 640 }, "640"},
		{"stops at the floor", time.Second, 1, 50, 1024,
			func(got int64) bool { return got == 64 }, "64 (Min)"},
		{"grows back while fast and in use", 10 * time.Millisecond, 1, 20, 64,
			// 64 + √64 = 72, then + √72 …: well above 64 after 20 windows, below Max.
			func(got int64) bool { return got > 200 && got < 1024 }, "between 200 and 1024"},
		{"grows to the ceiling and no further", 10 * time.Millisecond, 1, 200, 64,
			func(got int64) bool { return got == 1024 }, "1024"},
		{"does not grow while idle", 10 * time.Millisecond, 0.1, 50, 64,
			func(got int64) bool { return got == 64 }, "64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, now := newAt(cfg)
			for a.Limit() > tt.start {
				feed(a, &now, 100, time.Second, a.Limit())
			}
			for range tt.windows {
				feed(a, &now, 100, tt.latency, int64(tt.busy*float64(a.Limit())))
			}
			if got := a.Limit(); !tt.want(got) {
				t.Errorf("Limit() after %d windows of %v = %d, want %s", tt.windows, tt.latency, got, tt.describe)
			}
		})
	}
}

// TestAdaptiveSettles plays a server whose latency is inflight/throughput
// (Little's law, a saturated server at 5,000 calls/s) plus 5ms of work: the
// limit must settle where the latency is near the target, not at a bound.
func TestAdaptiveSettles(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 16, Target: 50 * time.Millisecond})
	var latency time.Duration
	for range 300 {
		limit := a.Limit()
		latency = 5*time.Millisecond + time.Duration(float64(limit)/5000*float64(time.Second))
		feed(a, &now, 100, latency, limit)
	}
	if got := a.Limit(); got < 150 || got > 260 {
		t.Errorf("Limit() = %d, want about 225 (50ms × 5,000/s minus the work)", got)
	}
	if latency > 70*time.Millisecond {
		t.Errorf("latency at the settled limit = %v, want near the 50ms target", latency)
	}
}

func TestAdaptiveWindow(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond, Window: 100 * time.Millisecond, MinSamples: 20})
	// Fewer samples than MinSamples, over a long time: the limit holds.
	for range 19 {
		now = now.Add(time.Second)
		a.Observe(now, time.Second, 1024)
	}
	if got := a.Limit(); got != 1024 {
		t.Fatalf("Limit() after 19 samples = %d, want 1024 (too few to judge)", got)
	}
	// The twentieth closes the window.
	a.Observe(now.Add(time.Millisecond), time.Second, 1024)
	if got := a.Limit(); got != 512 {
		t.Fatalf("Limit() after 20 slow samples = %d, want 512", got)
	}
	// Many samples within less than a window: the limit holds.
	for range 1000 {
		now = now.Add(10 * time.Microsecond)
		a.Observe(now, time.Second, 1024)
	}
	if got := a.Limit(); got != 512 {
		t.Errorf("Limit() after 1,000 samples in 10ms = %d, want 512 (one window at most every 100ms)", got)
	}
}

// TestAdaptivePercentile: the limit follows the 90th percentile, so a few
// slow calls in a window (a GC pause) do not move it, and many do.
func TestAdaptivePercentile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		slow int // of 100
		want int64
	}{{5, 1024}, {20, 512}} {
		a, now := newAt(Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond, Window: 100 * time.Millisecond})
		for i := range 100 {
			latency := 10 * time.Millisecond
			if i%(100/tt.slow) == 0 {
				latency = time.Second
			}
			now = now.Add(time.Millisecond + time.Microsecond)
			a.Observe(now, latency, 1024)
		}
		if got := a.Limit(); got != tt.want {
			t.Errorf("Limit() after a window with %d%% slow calls = %d, want %d", tt.slow, got, tt.want)
		}
	}
}

// TestAdaptiveBaseline: when the work itself is slower than the target (a
// far broker), the limit holds the latency near twice what it costs
// unloaded instead of sinking to its floor.
func TestAdaptiveBaseline(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 16, Target: 50 * time.Millisecond, Window: 100 * time.Millisecond})
	// Light load (the limit does not bind): 80ms per call.
	for range 10 {
		feed(a, &now, 100, 80*time.Millisecond, 100)
	}
	if got := a.Baseline(); got != 80*time.Millisecond {
		t.Fatalf("Baseline() = %v, want 80ms", got)
	}
	if got := a.Limit(); got != 1024 {
		t.Fatalf("Limit() at 80ms with a baseline of 80ms = %d, want 1024 (under 2 × baseline)", got)
	}
	// Overload at the limit: 256ms. The baseline does not learn from it.
	feed(a, &now, 100, 256*time.Millisecond, a.Limit())
	if got := a.Limit(); got != 640 {
		t.Errorf("Limit() after a 256ms window = %d, want 640 (1024 × 160/256)", got)
	}
	if got := a.Baseline(); got != 80*time.Millisecond {
		t.Errorf("Baseline() after a window at the limit = %v, want 80ms still", got)
	}
}

func TestNewAdaptiveBounds(t *testing.T) {
	t.Parallel()
	a := NewAdaptive(Config{Max: 10, Min: 20, Target: time.Millisecond})
	if got := a.Limit(); got != 20 {
		t.Errorf("Limit() with Min 20 above Max 10 = %d, want 20", got)
	}
	if got := NewAdaptive(Config{}).Limit(); got != 1 {
		t.Errorf("NewAdaptive(Config{}).Limit() = %d, want 1", got)
	}
	if got := Fixed(7).Limit(); got != 7 {
		t.Errorf("Fixed(7).Limit() = %d, want 7", got)
	}
}

// TestAdaptiveConcurrent observes from many goroutines while others read
// the limit (run with -race): the limit stays within its bounds.
func TestAdaptiveConcurrent(t *testing.T) {
	t.Parallel()
	a := NewAdaptive(Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond, Window: time.Millisecond, MinSamples: 5})
	var clock atomic.Int64 // shared, so that windows close
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				latency := 10 * time.Millisecond
				if (i/200+g)%2 == 0 {
					latency = 300 * time.Millisecond
				}
				a.Observe(t0.Add(time.Duration(clock.Add(1))*100*time.Microsecond), latency, a.Limit())
				if l := a.Limit(); l < 64 || l > 1024 {
					t.Errorf("Limit() = %d, want within [64, 1024]", l)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAdaptiveHoldsUnboundLimit: slow calls that never reach the limit do
// not shrink it: admission queues nothing then, so a lower limit would not
// make them faster.
func TestAdaptiveHoldsUnboundLimit(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond})
	// A fast baseline first, so that the slow windows overshoot the
	// target: only the limit not binding may then hold it.
	feed(a, &now, 100, 10*time.Millisecond, 300)
	for range 20 {
		feed(a, &now, 100, time.Second, 300)
	}
	if got := a.Limit(); got != 1024 {
		t.Errorf("Limit() after slow windows with 300 of 1024 in flight = %d, want 1024", got)
	}
}

// TestAdaptiveHoldsWhileThroughputFalls: a binding limit with slow calls
// is not cut while the throughput is falling: the calls are slow for a
// reason a lower limit would not cure (a slow broker, a busy machine), and
// a cut would only serve fewer of them.
func TestAdaptiveHoldsWhileThroughputFalls(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 64, Target: 50 * time.Millisecond})
	for range 20 {
		feed(a, &now, 300, 10*time.Millisecond, a.Limit())
	}
	// A cut that cost throughput would be undone some windows later:
	// look after each window.
	for i := range 5 {
		feed(a, &now, 100, 200*time.Millisecond, a.Limit())
		if got := a.Limit(); got != 1024 {
			t.Fatalf("Limit() after %d slow windows serving a third of the best throughput = %d, want 1024 (no cut)", i+1, got)
		}
	}
}

// TestAdaptiveGrowsWhenShrinkingCostsThroughput plays a server whose
// latency does not depend on the limit (a CPU taken by refused calls): a
// smaller limit only serves fewer calls. The limit must not sink to its
// floor: once a window serves less than 90% of the best recent throughput,
// it grows back.
func TestAdaptiveGrowsWhenShrinkingCostsThroughput(t *testing.T) {
	t.Parallel()
	a, now := newAt(Config{Max: 1024, Min: 16, Target: 50 * time.Millisecond})
	lowest := a.Limit()
	for range 300 {
		limit := a.Limit()
		// 300ms whatever the limit: throughput = limit / 300ms, i.e.
		// limit × 10 / 3 calls a window of 100ms.
		feed(a, &now, int(limit*10/30)+1, 300*time.Millisecond, limit)
		lowest = min(lowest, a.Limit())
	}
	if lowest < 256 {
		t.Errorf("lowest Limit() = %d, want at least 256: shrinking that only cut throughput went on", lowest)
	}
}
