package ingest

import (
	"context"
	"sync"
	"time"
)

// deadlines hands out contexts that expire at a deadline rounded down to a
// tick, shared by every call whose deadline falls in the same tick. Under
// load thousands of calls a second each need a deadline for their records
// and one for their wait; sharing them costs one timer per tick instead of
// a context, a timer and a goroutine-safe cancel per call. Rounding down
// only ever makes a deadline earlier, by less than a tick.
type deadlines struct {
	tick time.Duration

	mu sync.Mutex
	at map[int64]sharedDeadline
	// swept is the tick up to which expired entries were dropped.
	swept int64
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newDeadlines(tick time.Duration) *deadlines {
	return &deadlines{tick: tick, at: map[int64]sharedDeadline{}}
}

// context returns a context that is done at t rounded down to a tick. It
// carries no values and is never cancelled before then.
func (d *deadlines) context(t time.Time) context.Context {
	k := t.UnixNano() / int64(d.tick)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.at[k]; ok {
		return e.ctx
	}
	if now := time.Now().UnixNano() / int64(d.tick); now > d.swept {
		d.sweep(now)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, k*int64(d.tick)))
	d.at[k] = sharedDeadline{ctx, cancel}
	return ctx
}

// sweep drops the entries that expired before tick now. Their timers have
// fired already, so cancel only releases what the context holds.
func (d *deadlines) sweep(now int64) {
	drop := func(k int64) {
		if e, ok := d.at[k]; ok {
			e.cancel()
			delete(d.at, k)
		}
	}
	if now-d.swept > int64(len(d.at)) {
		for k := range d.at {
			if k < now {
				drop(k)
			}
		}
	} else {
		for k := d.swept; k < now; k++ {
			drop(k)
		}
	}
	d.swept = now
}

// len returns how many shared deadlines are held, for tests.
func (d *deadlines) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.at)
}
