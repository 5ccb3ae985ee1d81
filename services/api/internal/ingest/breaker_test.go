package ingest

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestBreaker(t *testing.T) {
	t.Parallel()
	// Each step is a call: let time pass (virtual time, in a synctest
	// bubble), ask allow, then report an outcome when allowed.
	type step struct {
		advance   time.Duration
		outcome   outcome
		wantErr   bool
		wantProbe bool
		wantState breakerState
	}
	fail := func(advance time.Duration, state breakerState) step {
		return step{advance: advance, outcome: outcomeFailure, wantState: state}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after threshold failures with no recent success", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerOpen),
			{wantErr: true, wantState: breakerOpen},
		}},
		{"stays closed while successes are recent", []step{
			{advance: 0, outcome: outcomeSuccess, wantState: breakerClosed},
			fail(100*time.Millisecond, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerClosed), // three failures, but a success 100ms ago
			fail(time.Second, breakerOpen),
		}},
		{"a success resets the count", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			{outcome: outcomeSuccess, wantState: breakerClosed},
			fail(2*time.Second, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerOpen),
		}},
		{"neutral outcomes count for nothing", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			{outcome: outcomeNeutral, wantState: breakerClosed},
			{outcome: outcomeNeutral, wantState: breakerClosed},
			fail(0, breakerOpen),
		}},
		{"one probe after the cool-down closes it on success", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerOpen),
			{advance: 400 * time.Millisecond, wantErr: true, wantState: breakerOpen},
			{advance: 600 * time.Millisecond, outcome: outcomeSuccess, wantProbe: true, wantState: breakerClosed},
			{outcome: outcomeSuccess, wantState: breakerClosed},
		}},
		{"a failed probe reopens it for another cool-down", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerOpen),
			{advance: time.Second, outcome: outcomeFailure, wantProbe: true, wantState: breakerOpen},
			{advance: 999 * time.Millisecond, wantErr: true, wantState: breakerOpen},
			{advance: time.Millisecond, outcome: outcomeSuccess, wantProbe: true, wantState: breakerClosed},
		}},
		{"a neutral probe lets the next call probe", []step{
			fail(time.Second, breakerClosed),
			fail(0, breakerClosed),
			fail(0, breakerOpen),
			{advance: time.Second, outcome: outcomeNeutral, wantProbe: true, wantState: breakerHalfOpen},
			{outcome: outcomeSuccess, wantProbe: true, wantState: breakerClosed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(3, time.Second, time.Second, nil)
				for i, s := range tt.steps {
					time.Sleep(s.advance)
					probe, err := b.allow()
					if gotErr := err != nil; gotErr != s.wantErr || probe != s.wantProbe {
						t.Fatalf("step %d: allow() = %v, %v, want probe %v, error %v", i, probe, err, s.wantProbe, s.wantErr)
					}
					if err != nil && !errors.Is(err, ErrSalesLogDown) {
						t.Fatalf("step %d: allow() error = %v, want ErrSalesLogDown", i, err)
					}
					if err == nil {
						b.done(probe, s.outcome)
					}
					if b.state != s.wantState {
						t.Fatalf("step %d: state = %v, want %v", i, b.state, s.wantState)
					}
				}
			})
		})
	}
}

func TestBreakerHalfOpenAdmitsOneProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(1, 0, time.Second, nil)
		b.done(false, outcomeFailure)
		time.Sleep(time.Second - time.Nanosecond)
		if p, err := b.allow(); p || !errors.Is(err, ErrSalesLogDown) {
			t.Fatalf("allow() a nanosecond before the cool-down ends = %v, %v, want ErrSalesLogDown", p, err)
		}
		time.Sleep(time.Nanosecond)
		probe, err := b.allow()
		if !probe || err != nil {
			t.Fatalf("allow() after the cool-down = %v, %v, want the probe", probe, err)
		}
		for range 3 {
			if p, err := b.allow(); p || !errors.Is(err, ErrSalesLogDown) {
				t.Fatalf("allow() while probing = %v, %v, want ErrSalesLogDown", p, err)
			}
		}
		b.done(true, outcomeSuccess)
		if p, err := b.allow(); p || err != nil {
			t.Fatalf("allow() after a good probe = %v, %v, want allowed", p, err)
		}
	})
}
