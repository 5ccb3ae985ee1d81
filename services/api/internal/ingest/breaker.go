package ingest

import (
	"sync"
	"time"
)

// breakerState is where the circuit breaker stands.
type breakerState int

const (
	// breakerClosed lets every call try Kafka.
	breakerClosed breakerState = iota
	// breakerOpen rejects every call until the cool-down ends.
	breakerOpen
	// breakerHalfOpen lets one call probe Kafka while rejecting the rest.
	breakerHalfOpen
)

func (s breakerState) String() string {
	switch s {
	case breakerOpen:
		return "open"
	case breakerHalfOpen:
		return "half-open"
	default:
		return "closed"
	}
}

// outcome is what a call taught the breaker about Kafka.
type outcome int

const (
	// outcomeNeutral says nothing about Kafka: the caller gave up, or the
	// buffer was full.
	outcomeNeutral outcome = iota
	// outcomeSuccess means Kafka acknowledged a record.
	outcomeSuccess
	// outcomeFailure means Kafka failed a record or did not acknowledge it
	// in time.
	outcomeFailure
)

// breaker makes calls fail fast while Kafka is down. Without it every call
// would wait the full produce timeout, tying up a goroutine and a buffered
// record each, only to fail. It opens after threshold consecutive delivery
// failures with no success within window, rejects calls for coolDown, then
// lets a single call probe Kafka: a success closes it, a failure opens it for
// another cool-down. Any success closes it, so it recovers by itself.
type breaker struct {
	threshold int
	window    time.Duration
	coolDown  time.Duration
	onChange  func(from, to breakerState)

	mu          sync.Mutex
	state       breakerState
	failures    int
	lastSuccess time.Time
	openUntil   time.Time
	probing     bool
}

func newBreaker(threshold int, window, coolDown time.Duration, onChange func(from, to breakerState)) *breaker {
	return &breaker{
		threshold:   threshold,
		window:      window,
		coolDown:    coolDown,
		onChange:    onChange,
		lastSuccess: time.Now(),
	}
}

// allow reports whether a call may try Kafka. probe is true when the call is
// the one probe of a half-open breaker; it must be passed back to done.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return false, nil
	case breakerOpen:
		if time.Now().Before(b.openUntil) {
			return false, ErrSalesLogDown
		}
		b.setLocked(breakerHalfOpen)
	}
	if b.probing {
		return false, ErrSalesLogDown
	}
	b.probing = true
	return true, nil
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(probe bool, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch o {
	case outcomeSuccess:
		b.failures = 0
		b.lastSuccess = time.Now()
		b.setLocked(breakerClosed)
	case outcomeFailure:
		b.failures++
		now := time.Now()
		switch {
		case probe && b.state == breakerHalfOpen:
			b.openLocked(now)
		case b.state == breakerClosed && b.failures >= b.threshold && now.Sub(b.lastSuccess) >= b.window:
			b.openLocked(now)
		}
	}
}

func (b *breaker) openLocked(now time.Time) {
	b.openUntil = now.Add(b.coolDown)
	b.setLocked(breakerOpen)
}

func (b *breaker) setLocked(to breakerState) {
	if from := b.state; from != to {
		b.state = to
		if b.onChange != nil {
			b.onChange(from, to)
		}
	}
}
