package consume

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadyWhileOnePartitionFails: partitions apply in parallel, each in its
// own retry loop, so one partition's success must not hide another's
// failure from /readyz.
func TestReadyWhileOnePartitionFails(t *testing.T) {
	t.Parallel()
	c := &Consumer{log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	c.running.Store(true)
	c.joined.Store(true)
	if !c.Ready() {
		t.Fatal("Ready() = false before any failure, want true")
	}

	var down atomic.Bool
	down.Store(true)
	attempts := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- c.retry(t.Context(), "apply partition 0", func() error {
			n++
			select {
			case attempts <- n:
			default:
			}
			if down.Load() {
				return errors.New("valkey down")
			}
			return nil
		})
	}()
	// The second attempt comes after the first failed and was counted.
	for n := 0; n < 2; n = <-attempts {
	}
	if c.Ready() {
		t.Error("Ready() = true while partition 0 keeps failing, want false")
	}
	if err := c.retry(t.Context(), "apply partition 1", func() error { return nil }); err != nil {
		t.Fatalf("retry() of a succeeding apply = %v", err)
	}
	if c.Ready() {
		t.Error("Ready() = true after partition 1 succeeded while partition 0 still fails, want false")
	}

	down.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("retry() once Valkey is back = %v, want nil", err)
	}
	if !c.Ready() {
		t.Error("Ready() = false after every partition recovered, want true")
	}

	// A failing loop that ends because the consumer stops counts no more.
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() {
		stopped <- c.retry(ctx, "apply partition 2", func() error { return errors.New("valkey down") })
	}()
	for deadline := time.Now().Add(10 * time.Second); c.failing.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failing loop was never counted")
		}
	}
	cancel()
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("retry() when its context ends = %v, want context.Canceled", err)
	}
	if n := c.failing.Load(); n != 0 {
		t.Errorf("%d retry loops counted as failing after they ended, want 0", n)
	}
}
