package consume

// Valkey refuses a batch (store.ErrGuard) when a value the batch would add
// to is not what the aggregator writes (a wrong type, a non-integer) or a
// counter would overflow; it refuses a partition whose stored offset is not
// an offset. That repeats until someone fixes the data, so the partition
// alone is paused (PauseFetchPartitions) and its batch tried again on a
// backoff from the poll loop, while the member's other partitions go on.
// The member is not ready while it holds any partition refused. Revoking
// the partition ends the refusal on this member; its next owner meets the
// same data and does the same.

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Retries of a refused partition back off from the first delay to the
// last: the data stays wrong until someone fixes it, and each attempt logs
// an error.
const (
	firstRefusedRetry = time.Second
	maxRefusedRetry   = 30 * time.Second
)

// refusal is a partition Valkey refuses.
type refusal struct {
	// records is the refused batch, applied again on retry; nil when the
	// stored offset itself is unreadable.
	records []*kgo.Record
	// topicID is the topic ID the records were read under.
	topicID  string
	attempts int
	retryAt  time.Time
}

// refusals holds the partitions Valkey refuses. The poll loop and the
// goroutines of one poll's partitions use it.
type refusals struct {
	mu sync.Mutex
	m  map[topicPartition]*refusal
	// n is len(m), for Ready without the lock.
	n atomic.Int32
}

func newRefusals() *refusals {
	return &refusals{m: make(map[topicPartition]*refusal)}
}

func (r *refusals) len() int { return int(r.n.Load()) }

func (r *refusals) has(tp topicPartition) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[tp]
	return ok
}

// wait returns how long the poll loop may wait before a refused partition
// is due, at most limit.
func (r *refusals) wait(limit time.Duration) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.m {
		limit = min(limit, max(time.Until(f.retryAt), time.Millisecond))
	}
	return limit
}

// due returns the partitions whose retry is due, and their refusals.
func (r *refusals) due(now time.Time) map[topicPartition]refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[topicPartition]refusal)
	for tp, f := range r.m {
		if !now.Before(f.retryAt) {
			out[tp] = *f
		}
	}
	return out
}

// clear forgets every refusal, when the member's Kafka client (and with it
// its pauses) is replaced.
func (r *refusals) clear(obs Observer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.m)
	r.n.Store(0)
	obs.RefusedPartitions(0)
}

// refuse pauses a partition Valkey refused, keeping the records it refused
// to apply them again later.
func (c *Consumer) refuse(cl *kgo.Client, tp topicPartition, topicID string, records []*kgo.Record, err error) {
	c.refused.mu.Lock()
	f := c.refused.m[tp]
	if f == nil {
		f = &refusal{}
		c.refused.m[tp] = f
	}
	f.records, f.topicID = records, topicID
	f.attempts++
	backoff := min(firstRefusedRetry<<min(f.attempts-1, 10), maxRefusedRetry)
	f.retryAt = time.Now().Add(backoff)
	attempts, n := f.attempts, len(c.refused.m)
	c.refused.n.Store(int32(n))
	c.refused.mu.Unlock()

	cl.PauseFetchPartitions(map[string][]int32{tp.topic: {tp.partition}})
	attrs := []any{"topic", tp.topic, "partition", tp.partition, "attempt", attempts, "retry_in", backoff, "err", err}
	if len(records) > 0 {
		attrs = append(attrs, "from", records[0].Offset, "to", records[len(records)-1].Offset)
	}
	c.log.Error("valkey refuses this partition: it is paused and retried while the other partitions go on; "+
		"fix the value the error names, or move the partition's offset past the batch to skip it", attrs...)
	c.cfg.Observer.Refused(tp.partition)
	c.cfg.Observer.RefusedPartitions(n)
}

// accepted ends a partition's refusal, if any, and resumes it: its batch
// was applied, it was moved (its refused records no longer line up with
// its fetch position), or it was released.
func (c *Consumer) accepted(cl *kgo.Client, tp topicPartition) {
	c.refused.mu.Lock()
	f, ok := c.refused.m[tp]
	if ok {
		delete(c.refused.m, tp)
	}
	n := len(c.refused.m)
	c.refused.n.Store(int32(n))
	c.refused.mu.Unlock()
	if !ok {
		return
	}
	cl.ResumeFetchPartitions(map[string][]int32{tp.topic: {tp.partition}})
	c.log.Info("partition no longer refused; resuming it", "topic", tp.topic, "partition", tp.partition, "attempts", f.attempts)
	c.cfg.Observer.RefusedPartitions(n)
}

// retryRefused tries the refused partitions whose retry is due: their
// batch again, or reading their stored offset again.
func (c *Consumer) retryRefused(ctx context.Context, cl *kgo.Client) error {
	due := c.refused.due(time.Now())
	for _, tp := range slices.SortedFunc(maps.Keys(due), func(a, b topicPartition) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	}) {
		f := due[tp]
		if f.records != nil {
			if _, err := c.processOrRefuse(ctx, cl, tp, f.topicID, f.records); err != nil {
				return err
			}
			continue
		}
		// One attempt: a failure here is retried on the refusal's backoff.
		stored, err := c.store.LoadPositions(ctx, tp.topic, []int32{tp.partition})
		if err == nil {
			err = stored[tp.partition].Err
		}
		if err != nil {
			c.refuse(cl, tp, "", nil, err)
			continue
		}
		c.seek(cl, tp, positionOf(stored[tp.partition].Position))
	}
	return nil
}
