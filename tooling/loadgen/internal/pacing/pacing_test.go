package pacing

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	tests := []struct {
		rate float64
		i    int64
		want time.Duration
	}{
		{1000, 0, 0},
		{1000, 1, time.Millisecond},
		{1000, 1500, 1500 * time.Millisecond},
		{3, 1, time.Second / 3},
		{0.5, 3, 6 * time.Second},
	}
	for _, tt := range tests {
		if got := New(start, tt.rate).Due(tt.i).Sub(start); got != tt.want {
			t.Errorf("New(start, %v).Due(%d) = start+%v, want start+%v", tt.rate, tt.i, got, tt.want)
		}
	}
}

func TestNextHandsOutEachCallOnce(t *testing.T) {
	t.Parallel()
	s := New(time.Now(), 1e6)
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				i, _ := s.Next()
				mu.Lock()
				if seen[i] {
					t.Errorf("call %d handed out twice", i)
				}
				seen[i] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 8000 || s.Taken() != 8000 {
		t.Errorf("handed out %d distinct calls, Taken() = %d, want 8000", len(seen), s.Taken())
	}
}

// TestPacedRate runs a schedule with waiting workers, as the open loop
// does, and checks the calls start on time.
func TestPacedRate(t *testing.T) {
	t.Parallel()
	const rate, window = 2000.0, 300 * time.Millisecond
	start := time.Now()
	s := New(start, rate)
	end := start.Add(window)
	var mu sync.Mutex
	var started int
	var worstLag time.Duration
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				_, due := s.Next()
				if !due.Before(end) || !Wait(context.Background(), due) {
					return
				}
				lag := time.Since(due)
				mu.Lock()
				started++
				worstLag = max(worstLag, lag)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if want := int(rate * window.Seconds()); started != want {
		t.Errorf("%d calls started in %v at %v/s, want exactly %d", started, window, rate, want)
	}
	if elapsed := time.Since(start); elapsed < window-5*time.Millisecond {
		t.Errorf("the schedule ended after %v, before its %v window", elapsed, window)
	}
	t.Logf("worst start lag %v", worstLag)
}

func TestWaitCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Now().Add(time.Hour)) {
		t.Error("Wait(cancelled, in an hour) = true, want false")
	}
	if Wait(ctx, time.Now().Add(-time.Second)) {
		t.Error("Wait(cancelled, past) = true, want false")
	}
	if !Wait(context.Background(), time.Now().Add(-time.Second)) {
		t.Error("Wait(background, past) = false, want true")
	}
}
