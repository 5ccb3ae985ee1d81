// Package pacing schedules an open-loop load: calls are due at a constant
// rate from a start time, whatever the server does. A caller measures each
// call's latency from the moment it was due, not from when it was sent, so
// that a stalled server is charged for the calls it delayed (no coordinated
// omission).
package pacing

import (
	"context"
	"sync/atomic"
	"time"
)

// Schedule hands out due times: call i is due at start + i/rate. It is safe
// for many goroutines; each due time is handed out exactly once.
type Schedule struct {
	start    time.Time
	interval float64 // nanoseconds between calls
	next     atomic.Int64
}

// New returns a schedule of rate calls per second from start. rate must be
// positive.
func New(start time.Time, rate float64) *Schedule {
	return &Schedule{start: start, interval: float64(time.Second) / rate}
}

// Due returns the due time of call i.
func (s *Schedule) Due(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * s.interval))
}

// Next takes the next call and returns its index and due time.
func (s *Schedule) Next() (int64, time.Time) {
	i := s.next.Add(1) - 1
	return i, s.Due(i)
}

// Taken returns how many calls have been handed out.
func (s *Schedule) Taken() int64 { return s.next.Load() }

// Wait sleeps until t or until ctx is done, and reports whether t was
// reached.
func Wait(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
