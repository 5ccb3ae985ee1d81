package ingest

import (
	"testing"
	"time"
)

func TestDeadlinesShareATick(t *testing.T) {
	const tick = 10 * time.Millisecond
	d := newDeadlines(tick)
	base := time.Now().Add(time.Hour).Truncate(tick)

	a := d.context(base.Add(2 * time.Millisecond))
	b := d.context(base.Add(9 * time.Millisecond))
	if a != b {
		t.Errorf("deadlines %v and %v in one tick got different contexts", base.Add(2*time.Millisecond), base.Add(9*time.Millisecond))
	}
	if got, ok := a.Deadline(); !ok || !got.Equal(base) {
		t.Errorf("Deadline() = %v, %v; want %v (rounded down), true", got, ok, base)
	}
	if c := d.context(base.Add(tick)); c == a {
		t.Error("deadlines a tick apart share a context")
	}
	if a.Err() != nil {
		t.Errorf("a context due in an hour is done: %v", a.Err())
	}
}

func TestDeadlinesExpireAndAreDropped(t *testing.T) {
	const tick = time.Millisecond
	d := newDeadlines(tick)
	ctx := d.context(time.Now().Add(5 * time.Millisecond))
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a shared deadline 5ms away was not done after 5s")
	}
	if ctx.Err() == nil {
		t.Error("Err() = nil after Done")
	}
	// A new tick sweeps the expired entries away.
	time.Sleep(2 * tick)
	d.context(time.Now().Add(time.Hour))
	if n := d.len(); n != 1 {
		t.Errorf("%d shared deadlines held after the sweep, want 1 (the live one)", n)
	}
}

func TestDeadlinesInThePastAreDone(t *testing.T) {
	d := newDeadlines(time.Millisecond)
	ctx := d.context(time.Now().Add(-time.Second))
	if ctx.Err() == nil {
		t.Error("a deadline a second ago gave a live context")
	}
}
