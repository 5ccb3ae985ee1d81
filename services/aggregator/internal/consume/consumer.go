// Package consume runs the aggregator's Kafka consumer group: it polls sales,
// dead-letters the records it cannot count, drops copies of sales it counted
// recently (same sale_id, within the dedup window), folds each partition's
// batch and applies it to Valkey exactly once, with the partition's offset.
//
// Valkey, not Kafka, is the source of truth for where each partition
// resumes. Kafka's committed offsets are still written, after each apply, so
// that lag monitoring works, but they are never read.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
)

// Store is what the consumer needs from Valkey.
type Store interface {
	// Apply counts d and moves its partition's offset from base to d.Next
	// atomically, or does nothing and reports the stored offset.
	Apply(ctx context.Context, d *aggregate.Delta, base int64) (store.Outcome, error)
	// LoadOffsets returns the stored offset of each partition, -1 for none.
	LoadOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	// LoadSeen returns a partition's stored offset (-1 for none) and the
	// dedup set that goes with it, read together atomically.
	LoadSeen(ctx context.Context, topic string, partition int32) (int64, *aggregate.SeenSet, error)
}

// Config configures a Consumer.
type Config struct {
	Brokers  []string
	Topic    string
	DLQTopic string
	Group    string
	// MaxPollRecords bounds one poll, and so one batch per partition.
	MaxPollRecords int
	// ReconcileInterval is how often the consumer compares every owned
	// partition's base with Valkey, to notice data loss on partitions
	// that get no traffic, even when no partition gets any. Zero means 30
	// seconds.
	ReconcileInterval time.Duration
	// DedupWindow is how far apart two records of one sale id may be
	// written and still count once (see aggregate.Dedup). Zero turns
	// dedup off.
	DedupWindow time.Duration
	// ClientOptions are extra franz-go options, appended last; tests use
	// them for short timeouts and static membership.
	ClientOptions []kgo.Opt
	// Observer is told about batches, conflicts and lag; nil ignores them.
	Observer Observer
}

// Observer watches the consumer, for metrics. Its methods must be cheap and
// safe for concurrent use.
type Observer interface {
	// Applied reports a batch counted: its records, the sales, dead
	// letters and duplicates among them, and how long the Valkey apply
	// took.
	Applied(partition int32, records int, sales, deadLetters, duplicates int64, took time.Duration)
	// Conflict reports a batch discarded because Valkey's offset differed.
	Conflict(partition int32)
	// Lag reports the records of a partition not yet counted.
	Lag(partition int32, records int64)
	// Released reports partitions this member no longer owns.
	Released(partitions []int32)
}

// noObserver ignores everything.
type noObserver struct{}

func (noObserver) Applied(int32, int, int64, int64, int64, time.Duration) {}
func (noObserver) Conflict(int32)                                         {}
func (noObserver) Lag(int32, int64)                                       {}
func (noObserver) Released([]int32)                                       {}

// Consumer is one member of the aggregator's consumer group.
type Consumer struct {
	cfg   Config
	store Store
	dec   *aggregate.Decoder
	log   *slog.Logger
	parts *partitions

	// client is the running Kafka client; tests reach it to rewind.
	client atomic.Pointer[kgo.Client]
	// failing counts the retry loops whose last attempt failed, while
	// Valkey or the dead-letter topic keeps failing. Partitions apply in
	// parallel, so one partition's success says nothing of another's
	// failure: the consumer is ready only while none is failing.
	failing atomic.Int32
	// running is true between the start and the end of Run.
	running atomic.Bool
	// joined is true while the consumer is a member of the group, with or
	// without partitions.
	joined atomic.Bool
}

// New returns a Consumer. Run starts it.
func New(cfg Config, st Store, dec *aggregate.Decoder, log *slog.Logger) *Consumer {
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 30 * time.Second
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 50000
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Consumer{cfg: cfg, store: st, dec: dec, log: log, parts: newPartitions()}
}

// Ready reports whether the consumer has joined its group and its last
// writes succeeded.
func (c *Consumer) Ready() bool {
	return c.running.Load() && c.joined.Load() && c.failing.Load() == 0
}

// Run consumes until ctx is done, then leaves the group. A batch in flight at
// shutdown is either applied whole or abandoned whole: the Valkey script is
// atomic, and whoever owns the partition next resumes from Valkey. Run
// returns an error only when it cannot go on at all.
func (c *Consumer) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topic),
		// Callbacks run only between polls, so a partition cannot be
		// revoked while its batch is being applied.
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(c.startOffsets),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		// Commits to Kafka only follow applies to Valkey, for lag
		// monitoring.
		kgo.AutoCommitMarks(),
		// A partition whose stored offset has fallen off the log start
		// resumes at the start: those records are gone and cannot be
		// counted by anyone.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.WithLogger(kgoLogger{log: c.log}),
	}
	cl, err := kgo.NewClient(append(opts, c.cfg.ClientOptions...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	c.client.Store(cl)
	c.running.Store(true)
	defer func() {
		c.running.Store(false)
		c.joined.Store(false)
		c.log.Info("leaving the consumer group", "group", c.cfg.Group)
		cl.CloseAllowingRebalance()
	}()

	lastReconcile := time.Now()
	for {
		// The poll gives up after the reconcile interval, so that an idle
		// member still notices lost data. A poll that gave up still
		// blocks rebalances until AllowRebalance.
		pollCtx, cancelPoll := context.WithTimeout(ctx, c.cfg.ReconcileInterval)
		fetches := cl.PollRecords(pollCtx, c.cfg.MaxPollRecords)
		cancelPoll()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Whatever this poll returned is abandoned: nothing of it
			// was applied.
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return // an idle poll
			}
			c.log.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
		})
		reconcile, err := c.handle(ctx, cl, fetches)
		// Only while a poll blocks rebalances may the consumer seek
		// partitions it is not processing; an empty Fetches means it did
		// not block them.
		if err == nil && (reconcile || time.Since(lastReconcile) >= c.cfg.ReconcileInterval) && len(fetches) > 0 {
			err = c.reconcile(ctx, cl)
			lastReconcile = time.Now()
		}
		cl.AllowRebalance()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// batch is one partition's share of a poll.
type batch struct {
	tp      topicPartition
	base    int64
	records []*kgo.Record
	delta   *aggregate.Delta
	dead    []aggregate.DeadLetter
	// seen is the partition's dedup set as of base, nil with dedup off.
	seen *aggregate.SeenSet
}

// errConflict says that Valkey's offset for a partition was not the
// expected one; the partition was moved to it.
var errConflict = errors.New("valkey's offset differs")

// maxParallelPartitions bounds how many partitions of one poll are
// processed at once.
const maxParallelPartitions = 32

// handle processes one poll: each partition's records are decoded, folded,
// dead-lettered and applied by a goroutine of their own, so that decoding
// uses every core and one partition's Valkey round trips overlap another's
// decoding. A partition's records stay in one goroutine, in offset order,
// and each apply is its own compare-and-set, so partitions need no
// coordination. It reports whether a conflict suggests checking every
// owned partition against Valkey.
func (c *Consumer) handle(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) (bool, error) {
	// A partition normally appears once per poll; merging keeps offset
	// order even if it appears twice.
	var order []topicPartition
	byPartition := make(map[topicPartition][]*kgo.Record)
	highWater := make(map[topicPartition]int64)
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := topicPartition{topic: p.Topic, partition: p.Partition}
		highWater[tp] = max(highWater[tp], p.HighWatermark)
		if len(p.Records) == 0 {
			return
		}
		if _, ok := byPartition[tp]; !ok {
			order = append(order, tp)
		}
		byPartition[tp] = append(byPartition[tp], p.Records...)
	})

	// The first failure stops the other partitions' retries; whatever they
	// applied before stays applied, atomically with its offset.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	conflicts := make([]bool, len(order))
	sem := make(chan struct{}, maxParallelPartitions)
	var wg sync.WaitGroup
	for i, tp := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conflict, err := c.process(ctx, cl, tp, byPartition[tp])
			if err != nil {
				cancel(err)
				return
			}
			conflicts[i] = conflict
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return false, err
	}
	for tp, hw := range highWater {
		if base, ok := c.parts.base(tp); ok && base >= 0 {
			c.cfg.Observer.Lag(tp.partition, max(hw-base, 0))
		}
	}
	return slices.Contains(conflicts, true), nil
}

// process folds one partition's records, dead-letters those it cannot
// count and applies the rest. It reports a conflict.
func (c *Consumer) process(ctx context.Context, cl *kgo.Client, tp topicPartition, records []*kgo.Record) (bool, error) {
	b, err := c.prepare(ctx, cl, tp, records)
	if errors.Is(err, errConflict) {
		return true, nil
	}
	if err != nil || b == nil {
		return false, err
	}
	if len(b.dead) > 0 {
		dead := make([]*kgo.Record, len(b.dead))
		for i, dl := range b.dead {
			dead[i] = deadLetterRecord(c.cfg.DLQTopic, dl)
		}
		// The dead letters are durable before their batch is counted, so
		// a crash in between re-sends (duplicates in the dead-letter
		// topic) rather than loses them.
		if err := c.retry(ctx, "produce dead letters", func() error {
			return cl.ProduceSync(ctx, dead...).FirstErr()
		}); err != nil {
			return false, err
		}
		c.log.Warn("dead-lettered records", "count", len(dead), "topic", c.cfg.DLQTopic,
			"partition", tp.partition, "first_reason", b.dead[0].Err.Error())
	}
	return c.apply(ctx, cl, b)
}

// prepare folds a partition's records from its base on. It returns nil when
// every record was counted already.
func (c *Consumer) prepare(ctx context.Context, cl *kgo.Client, tp topicPartition, records []*kgo.Record) (*batch, error) {
	topic, partition := tp.topic, tp.partition
	base, ok := c.parts.base(tp)
	if !ok {
		// Offsets are loaded on assignment, so records for a partition
		// without a base should not happen. Counting them could skip or
		// repeat records; instead, ask Valkey and read again from there.
		stored, err := c.loadOffsets(ctx, topic, []int32{partition})
		if err != nil {
			return nil, err
		}
		c.log.Warn("records for a partition without a base; re-reading from valkey's offset",
			"topic", topic, "partition", partition, "stored", stored[partition], "discarded_from", records[0].Offset)
		c.seek(cl, tp, stored[partition])
		return nil, nil
	}
	// Records below base are already counted: a fetch that raced a seek,
	// or a replay. Counting them again is exactly what must not happen.
	first := 0
	for first < len(records) && records[first].Offset < base {
		first++
	}
	if first > 0 {
		c.log.Debug("skipping records already counted", "topic", topic, "partition", partition,
			"from", records[0].Offset, "to", records[first-1].Offset, "base", base)
	}
	records = records[first:]
	if len(records) == 0 {
		return nil, nil
	}
	if base >= 0 && records[0].Offset > base {
		// Offsets are dense on the sales topic except where retention
		// deleted the log start; nothing can count those records now.
		c.log.Warn("records missing between the stored offset and the first fetched record",
			"topic", topic, "partition", partition, "base", base, "first", records[0].Offset)
	}
	decoded, err := c.dec.DecodeBatch(topic, partition, records)
	if err != nil {
		return nil, fmt.Errorf("decode %s/%d at %d: %w", topic, partition, records[0].Offset, err)
	}
	dedup := aggregate.Dedup{Window: c.cfg.DedupWindow}
	var seen *aggregate.SeenSet
	if dedup.Window > 0 {
		seen = c.parts.seen(tp, base)
		if seen == nil {
			// This member's copy of the dedup set is missing or was kept
			// for another base: read it again, with the offset it goes
			// with, in one atomic step.
			var stored int64
			err := c.retry(ctx, "read seen sale ids", func() error {
				var err error
				stored, seen, err = c.store.LoadSeen(ctx, topic, partition)
				return err
			})
			if err != nil {
				return nil, err
			}
			if stored != base {
				c.cfg.Observer.Conflict(partition)
				c.conflict(cl, tp, base, stored, fmt.Sprintf("batch [%d, %d]", records[0].Offset, records[len(records)-1].Offset))
				return nil, errConflict
			}
			c.parts.setSeen(tp, base, seen)
		}
		// The set is exactly Valkey's as of base, and the apply's
		// compare-and-set on the offset proves nobody touched the
		// partition, and so its dedup set, in between.
		dedup.Seen = seen.Seen()
	}
	d, err := decoded.Fold(dedup)
	if err != nil {
		// Validated sales cannot overflow a batch's int64 sums, so this is
		// a bug or hostile input; stopping is louder than stalling.
		return nil, fmt.Errorf("fold %s/%d at %d: %w", topic, partition, records[0].Offset, err)
	}
	return &batch{tp: tp, base: base, records: records, delta: d, dead: decoded.Dead, seen: seen}, nil
}

// apply writes one batch with compare-and-set and moves the partition on. It
// reports a conflict.
func (c *Consumer) apply(ctx context.Context, cl *kgo.Client, b *batch) (bool, error) {
	var out store.Outcome
	var took time.Duration
	err := c.retry(ctx, "apply batch", func() error {
		start := time.Now()
		var err error
		out, err = c.store.Apply(ctx, b.delta, b.base)
		took = time.Since(start)
		return err
	})
	if err != nil {
		return false, err
	}
	next := b.delta.Next
	last := b.records[len(b.records)-1]
	if out.Applied || out.Stored == next {
		// Stored == next without Applied: an earlier attempt of this very
		// batch was applied and its reply lost, or another member counted
		// the same records. Either way they are counted once.
		c.parts.set(b.tp, next)
		if b.seen != nil && out.Applied {
			// Keep the copy of the dedup set in step with Valkey's.
			b.seen.Add(b.delta.SeenBlob())
			b.seen.Forget(b.delta.SeenTrimBefore)
			c.parts.setSeen(b.tp, next, b.seen)
		}
		cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
			b.tp.topic: {b.tp.partition: {Epoch: last.LeaderEpoch, Offset: next}},
		})
		if out.Applied {
			c.cfg.Observer.Applied(b.tp.partition, len(b.records), b.delta.Totals.Sales, b.delta.DeadLetters, b.delta.Duplicates, took)
		}
		c.log.Debug("applied batch", "topic", b.tp.topic, "partition", b.tp.partition,
			"from", b.base, "to", next, "sales", b.delta.Totals.Sales, "dead_letters", b.delta.DeadLetters,
			"duplicates", b.delta.Duplicates)
		if b.delta.Duplicates > 0 {
			c.log.Info("dropped duplicate sales", "topic", b.tp.topic, "partition", b.tp.partition,
				"duplicates", b.delta.Duplicates, "window", c.cfg.DedupWindow.String())
		}
		return false, nil
	}
	c.cfg.Observer.Conflict(b.tp.partition)
	c.conflict(cl, b.tp, b.base, out.Stored, fmt.Sprintf("batch [%d, %d)", b.records[0].Offset, next))
	return true, nil
}

// conflict moves a partition to what Valkey holds and says why.
func (c *Consumer) conflict(cl *kgo.Client, tp topicPartition, base, stored int64, what string) {
	attrs := []any{"topic", tp.topic, "partition", tp.partition, "base", base, "stored", stored, "discarded", what}
	switch {
	case stored < 0:
		c.log.Warn("valkey has no offset for this partition: its data was lost; rebuilding from the start of the topic", attrs...)
	case stored < base:
		c.log.Warn("valkey's offset went backwards (restored from an older snapshot?); re-reading from it", attrs...)
	default:
		c.log.Warn("another consumer already counted these records; skipping to valkey's offset", attrs...)
	}
	c.seek(cl, tp, stored)
}

// seek sets a partition's base and fetch position together to the stored
// offset, or to the start of the log for none.
func (c *Consumer) seek(cl *kgo.Client, tp topicPartition, stored int64) {
	c.parts.set(tp, stored)
	// SetOffsets ignores negative offsets; 0 below the log start resumes
	// at the log start.
	cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		tp.topic: {tp.partition: {Epoch: -1, Offset: max(stored, 0)}},
	})
}

// reconcile compares every owned partition's base with Valkey and seeks the
// ones that differ. A conflict on one partition usually means Valkey lost or
// rewound everything, and partitions without traffic would otherwise never
// notice.
func (c *Consumer) reconcile(ctx context.Context, cl *kgo.Client) error {
	for topic, parts := range c.parts.owned() {
		slices.Sort(parts)
		stored, err := c.loadOffsets(ctx, topic, parts)
		if err != nil {
			return err
		}
		for _, p := range slices.Sorted(maps.Keys(stored)) {
			tp := topicPartition{topic: topic, partition: p}
			base, ok := c.parts.base(tp)
			if ok && base != stored[p] {
				c.conflict(cl, tp, base, stored[p], "nothing; found by reconciling")
			}
		}
	}
	return nil
}

// startOffsets resumes newly assigned partitions from Valkey, the source of
// truth, instead of Kafka's committed offsets.
func (c *Consumer) startOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		ids := slices.Sorted(maps.Keys(parts))
		stored, err := c.loadOffsets(ctx, topic, ids)
		if err != nil {
			return nil, err
		}
		for _, p := range ids {
			base := stored[p]
			c.parts.set(topicPartition{topic: topic, partition: p}, base)
			if base < 0 {
				parts[p] = kgo.NewOffset().AtStart()
			} else {
				parts[p] = kgo.NewOffset().At(base)
			}
		}
		c.log.Info("partitions assigned", "topic", topic, "offsets", stored)
	}
	return offsets, nil
}

// assigned marks the consumer as a group member. Offsets are set up in
// startOffsets, which runs after it.
func (c *Consumer) assigned(context.Context, *kgo.Client, map[string][]int32) {
	c.joined.Store(true)
}

func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	// Best effort: Kafka's offsets only feed lag monitoring.
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.log.Warn("commit offsets to kafka on revoke failed", "err", err)
	}
	for topic, parts := range revoked {
		c.parts.drop(topic, parts)
		c.cfg.Observer.Released(parts)
		if len(parts) > 0 {
			c.log.Info("partitions revoked", "topic", topic, "partitions", parts)
		}
	}
}

func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Lost means the member was fenced or the group errored; it is not a
	// member until the next assignment.
	c.joined.Store(false)
	for topic, parts := range lost {
		c.parts.drop(topic, parts)
		c.cfg.Observer.Released(parts)
		c.log.Warn("partitions lost", "topic", topic, "partitions", parts)
	}
}

func (c *Consumer) loadOffsets(ctx context.Context, topic string, parts []int32) (map[int32]int64, error) {
	var stored map[int32]int64
	err := c.retry(ctx, "load offsets", func() error {
		var err error
		stored, err = c.store.LoadOffsets(ctx, topic, parts)
		return err
	})
	return stored, err
}

// retry runs op until it succeeds or ctx is done, backing off between
// attempts. Every op it runs is safe to repeat: applies are compare-and-set
// and dead letters may be duplicated. While it fails, the consumer is not
// ready.
func (c *Consumer) retry(ctx context.Context, what string, op func() error) error {
	const maxBackoff = 10 * time.Second
	backoff := 100 * time.Millisecond
	failed := false
	defer func() {
		if failed {
			c.failing.Add(-1)
		}
	}()
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			if attempt > 1 {
				c.log.Info(what+" succeeded after retrying", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !failed {
			failed = true
			c.failing.Add(1)
		}
		level := slog.LevelWarn
		if errors.Is(err, store.ErrGuard) {
			level = slog.LevelError
		}
		c.log.Log(ctx, level, what+" failed; retrying", "attempt", attempt, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
