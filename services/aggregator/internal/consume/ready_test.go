package consume

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/services/aggregator/internal/store"
)

// TestReadyWhileOnePartitionFails: partitions apply in parallel, each in its
// own retry loop, so one partition's success must not hide another's
// failure from /readyz. On virtual time, the retries back off exactly:
// 100ms, doubling, up to 10s apart.
func TestReadyWhileOnePartitionFails(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{}, nil, nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
		c.running.Store(true)
		c.joined.Store(true)
		if !c.Ready() {
			t.Fatal("Ready() = false before any failure, want true")
		}

		var down atomic.Bool
		down.Store(true)
		start := time.Now()
		var mu sync.Mutex
		var attempts []time.Duration // since start
		done := make(chan error, 1)
		go func() {
			done <- c.retry(t.Context(), "apply partition 0", func() error {
				mu.Lock()
				attempts = append(attempts, time.Since(start))
				mu.Unlock()
				if down.Load() {
					return errors.New("valkey down")
				}
				return nil
			})
		}()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(attempts)
		mu.Unlock()
		want := []time.Duration{0, 100, 300, 700, 1500, 3100, 6300, 12700, 22700}
		for i := range want {
			want[i] *= time.Millisecond
		}
		if !slices.Equal(got, want) {
			t.Errorf("attempts in 30s at %v, want at %v", got, want)
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
		if got, want := time.Since(start), 32700*time.Millisecond; got != want {
			t.Errorf("retry() once Valkey is back returned after %v, want %v: 10s after the last attempt", got, want)
		}
		if !c.Ready() {
			t.Error("Ready() = false after every partition recovered, want true")
		}

		// A failing loop that ends because the consumer stops counts no
		// more.
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan error, 1)
		go func() {
			stopped <- c.retry(ctx, "apply partition 2", func() error { return errors.New("valkey down") })
		}()
		synctest.Wait()
		if n := c.failing.Load(); n != 1 {
			t.Fatalf("%d retry loops counted as failing after one failed, want 1", n)
		}
		cancel()
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Fatalf("retry() when its context ends = %v, want context.Canceled", err)
		}
		if n := c.failing.Load(); n != 0 {
			t.Errorf("%d retry loops counted as failing after they ended, want 0", n)
		}
	})
}

// TestReadyAfterLogReset: a partition whose log went back under its stored
// offset makes the consumer unready for LogResetUnready after the last
// such event, then ready again by itself.
func TestReadyAfterLogReset(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		obs := newRecorder()
		c := New(Config{LogResetUnready: time.Minute, Observer: obs}, nil, nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
		c.running.Store(true)
		c.joined.Store(true)
		if !c.Ready() {
			t.Fatal("Ready() = false before any event, want true")
		}
		reset := verdict{reason: reasonTruncated, to: store.Position{Offset: 5, Epoch: -1}, rewound: 7}
		c.reportMove(topic, 0, store.Position{Offset: 12, Epoch: 2}, reset)
		time.Sleep(40 * time.Second)
		if c.Ready() {
			t.Error("Ready() 40s after a log reset = true, want false for a minute")
		}
		// A second event starts the minute again.
		c.reportMove(topic, 1, store.Position{Offset: 12, Epoch: 2}, reset)
		time.Sleep(59 * time.Second)
		if c.Ready() {
			t.Error("Ready() 59s after the second log reset = true, want false")
		}
		time.Sleep(time.Second)
		if !c.Ready() {
			t.Error("Ready() a minute after the last log reset = false, want true")
		}
		// Recording a topic ID is no event.
		c.reportMove(topic, 2, store.Position{Offset: 12, Epoch: -1}, verdict{adopt: true, to: store.Position{Offset: 12, TopicID: "x", Epoch: -1}})
		if !c.Ready() {
			t.Error("Ready() after a topic id was recorded = false, want true")
		}
		if resets, rewound, _, _ := obs.snapshot(); resets[reasonTruncated] != 2 || rewound[reasonTruncated] != 14 {
			t.Errorf("observed resets %v rewinding %v, want 2 truncated rewinding 14", resets, rewound)
		}
	})
}

// TestReadyWhileRefused: a partition Valkey refuses keeps the consumer
// unready until it is accepted again, whatever the others do.
func TestReadyWhileRefused(t *testing.T) {
	t.Parallel()
	cl, err := kgo.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	obs := newRecorder()
	c := New(Config{Observer: obs}, nil, nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
	c.running.Store(true)
	c.joined.Store(true)
	p0, p1 := topicPartition{topic: topic, partition: 0}, topicPartition{topic: topic, partition: 1}
	c.refuse(cl, p0, "", nil, store.ErrGuard)
	c.refuse(cl, p1, "", nil, store.ErrGuard)
	c.refuse(cl, p1, "", nil, store.ErrGuard)
	if got := cl.PauseFetchPartitions(nil); len(got[topic]) != 2 {
		t.Errorf("paused partitions = %v, want 0 and 1", got)
	}
	for _, step := range []struct {
		accept    topicPartition
		wantReady bool
		wantNow   int
	}{
		{accept: p1, wantReady: false, wantNow: 1},
		{accept: p1, wantReady: false, wantNow: 1}, // already accepted
		{accept: p0, wantReady: true, wantNow: 0},
	} {
		c.accepted(cl, step.accept)
		_, _, refused, now := obs.snapshot()
		if c.Ready() != step.wantReady || now != step.wantNow || refused != 3 {
			t.Errorf("after accepting %d: Ready() = %v, refused partitions %d, refusals %d; want %v, %d, 3",
				step.accept.partition, c.Ready(), now, refused, step.wantReady, step.wantNow)
		}
	}
	if got := cl.PauseFetchPartitions(nil); len(got) != 0 {
		t.Errorf("paused partitions after every refusal ended = %v, want none", got)
	}
}
