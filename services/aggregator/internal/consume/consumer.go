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
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.opentelemetry.io/otel/trace"

	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
)

// Store is what the consumer needs from Valkey.
type Store interface {
	// Apply counts d and moves its partition's position from base to next
	// atomically, or does nothing and reports the stored position.
	Apply(ctx context.Context, d *aggregate.Delta, base, next store.Position) (store.Outcome, error)
	// Reset moves a partition's position from base to next without
	// counting anything, or does nothing and reports the stored position.
	Reset(ctx context.Context, topic string, partition int32, base, next store.Position) (store.Outcome, error)
	// LoadPositions returns the stored position of each partition, with
	// offset -1 for none, and Err set where it is unreadable.
	LoadPositions(ctx context.Context, topic string, partitions []int32) (map[int32]store.StoredPosition, error)
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
	// Zero means 50,000.
	MaxPollRecords int
	// ReconcileInterval is how often the consumer compares every owned
	// partition's base with Valkey, and with the partition's log, to
	// notice data loss on partitions that get no traffic, even when no
	// partition gets any. Zero means 30 seconds.
	ReconcileInterval time.Duration
	// DedupWindow is how far apart two records of one sale id may be
	// written and still count once (see aggregate.Dedup). Zero turns
	// dedup off.
	DedupWindow time.Duration
	// LogResetUnready is how long Ready reports false after the consumer
	// found a partition's log gone back under the offset Valkey stores
	// (a recreated topic, a truncated log). Zero means 5 minutes.
	LogResetUnready time.Duration
	// ClientOptions are extra franz-go options, appended last; tests use
	// them for short timeouts and static membership.
	ClientOptions []kgo.Opt
	// Observer is told about batches, conflicts and lag; nil ignores them.
	Observer Observer
	// Tracer, when set, traces each apply (startApply says how) and makes
	// each dead letter's span continue its sale's trace; ClientOptions
	// then hold the Kafka client's tracing hook (kotel). Nil traces
	// nothing.
	Tracer trace.Tracer
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
	// LogReset reports a partition whose log went back under the offset
	// Valkey stores, for reason "recreated" or "truncated", and how many
	// offsets the stored one moved back.
	LogReset(partition int32, reason string, rewound int64)
	// Refused reports a batch of the partition that Valkey refused
	// (store.ErrGuard), or a stored position it cannot read.
	Refused(partition int32)
	// RefusedPartitions reports how many partitions the member holds
	// paused because Valkey refuses them.
	RefusedPartitions(n int)
}

// noObserver ignores everything.
type noObserver struct{}

func (noObserver) Applied(int32, int, int64, int64, int64, time.Duration) {}
func (noObserver) Conflict(int32)                                         {}
func (noObserver) Lag(int32, int64)                                       {}
func (noObserver) Released([]int32)                                       {}
func (noObserver) LogReset(int32, string, int64)                          {}
func (noObserver) Refused(int32)                                          {}
func (noObserver) RefusedPartitions(int)                                  {}

// Consumer is one member of the aggregator's consumer group.
type Consumer struct {
	cfg     Config
	store   Store
	dec     *aggregate.Decoder
	log     *slog.Logger
	parts   *partitions
	refused *refusals

	// client is the running Kafka client, for startOffsets; tests reach
	// it to rewind.
	client atomic.Pointer[kgo.Client]
	// failing counts the retry loops whose last attempt failed, while
	// Valkey or the dead-letter topic keeps failing. Partitions apply in
	// parallel, so one partition's success says nothing of another's
	// failure: the consumer is ready only while none is failing.
	failing atomic.Int32
	// unreadyUntil is when, in Unix nanoseconds, the consumer may be ready
	// again after it found a partition's log gone back under its stored
	// offset.
	unreadyUntil atomic.Int64
	// topicMoved is set when a batch or Valkey names another incarnation
	// of the topic than the one this member holds: its Kafka client must
	// be replaced, because franz-go never adopts a recreated topic.
	topicMoved atomic.Bool
	// topicChecked is when the poll loop last asked Kafka whether the
	// topic it reads still exists: franz-go reports an unknown topic ID
	// on every fetch, and one question a second is enough.
	topicChecked time.Time
	// running is true between the start and the end of Run.
	running atomic.Bool
	// joined is true while the consumer is a member of the group, with or
	// without partitions.
	joined atomic.Bool
}

// New returns a Consumer. Run starts it.
func New(cfg Config, st Store, dec *aggregate.Decoder, log *slog.Logger) *Consumer {
	cfg.ReconcileInterval = cmp.Or(cfg.ReconcileInterval, 30*time.Second)
	cfg.MaxPollRecords = cmp.Or(cfg.MaxPollRecords, 50000)
	cfg.LogResetUnready = cmp.Or(cfg.LogResetUnready, 5*time.Minute)
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Consumer{cfg: cfg, store: st, dec: dec, log: log, parts: newPartitions(), refused: newRefusals()}
}

// Ready reports whether the consumer has joined its group, its last writes
// succeeded, Valkey refuses none of its partitions, and it has not lately
// found a partition's log gone back under the offset Valkey stores.
func (c *Consumer) Ready() bool {
	return c.running.Load() && c.joined.Load() && c.failing.Load() == 0 &&
		c.refused.len() == 0 && time.Now().UnixNano() >= c.unreadyUntil.Load()
}

// errTopicMoved ends a client session whose topic was deleted and created
// again: franz-go refuses to read the new incarnation with the client that
// read the old one, so Run starts a new client, whose assignment finds the
// new topic ID and moves Valkey's positions to it.
var errTopicMoved = errors.New("the topic was recreated")

// Run consumes until ctx is done, then leaves the group. A batch in flight at
// shutdown is either applied whole or abandoned whole: the Valkey script is
// atomic, and whoever owns the partition next resumes from Valkey. Run
// returns an error only when it cannot go on at all.
func (c *Consumer) Run(ctx context.Context) error {
	c.running.Store(true)
	defer c.running.Store(false)
	for {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errTopicMoved) {
			return err
		}
		c.log.Warn("starting a new kafka client to read the topic's new incarnation", "topic", c.cfg.Topic)
		// A pause, so that a topic recreated again and again does not
		// spin the group.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// session runs one Kafka client, a member of the group, until ctx is done,
// the topic is recreated, or it cannot go on.
func (c *Consumer) session(ctx context.Context) error {
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
		// Where franz-go cannot tell how far back a log diverged from
		// what was consumed, it resumes at the log start and reports
		// kgo.ErrDataLoss: every record still there may be one nobody
		// counted. (A partition that fell below the log start resumes
		// there too, silently: those records are gone for everyone.)
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// franz-go logs nothing at info while all is well: only the
		// group's joins and leaves and the errors that trigger metadata
		// refreshes, which belong next to the consumer's own lines.
		kgo.WithLogger(kslog.New(c.log)),
	}
	cl, err := kgo.NewClient(append(opts, c.cfg.ClientOptions...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	c.parts.clear()
	c.refused.clear(c.cfg.Observer)
	c.topicMoved.Store(false)
	c.client.Store(cl)
	defer func() {
		c.joined.Store(false)
		c.log.Info("leaving the consumer group", "group", c.cfg.Group)
		cl.CloseAllowingRebalance()
	}()

	lastReconcile := time.Now()
	for {
		// The poll gives up after the reconcile interval, so that an idle
		// member still notices lost data, and in time to retry a refused
		// partition. A poll that gave up still blocks rebalances until
		// AllowRebalance.
		pollCtx, cancelPoll := context.WithTimeout(ctx, c.refused.wait(c.cfg.ReconcileInterval))
		fetches := cl.PollRecords(pollCtx, c.cfg.MaxPollRecords)
		cancelPoll()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Whatever this poll returned is abandoned: nothing of it
			// was applied.
			return nil
		}
		// Only while a poll blocks rebalances may the consumer seek or
		// pause partitions; an empty Fetches means it did not block them.
		if len(fetches) > 0 {
			err = c.step(ctx, cl, fetches, &lastReconcile)
		}
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// step handles one poll, then whatever is due: refused partitions to retry,
// a reconcile with Valkey and Kafka.
func (c *Consumer) step(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, lastReconcile *time.Time) error {
	var lost []*kgo.ErrDataLoss
	suspect := false
	fetches.EachError(func(topic string, partition int32, err error) {
		var dl *kgo.ErrDataLoss
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			// An idle poll.
		case errors.As(err, &dl):
			lost = append(lost, dl)
		case errors.Is(err, kerr.UnknownTopicID):
			// Briefly normal for a topic just created; otherwise the
			// topic this client reads was deleted.
			suspect = true
			c.log.Warn("fetch failed: kafka does not know the topic id this client reads", "topic", topic, "partition", partition, "err", err)
		default:
			c.log.Warn("fetch failed", "topic", topic, "partition", partition, "err", err)
		}
	})
	skip, err := c.dataLoss(ctx, cl, lost)
	if err != nil {
		return err
	}
	reconcile, err := c.handle(ctx, cl, fetches, skip)
	if err != nil {
		return err
	}
	if suspect && !c.topicMoved.Load() && time.Since(c.topicChecked) >= time.Second {
		c.topicChecked = time.Now()
		c.topicMoved.Store(c.topicGone(ctx, cl))
	}
	if c.topicMoved.Load() {
		return errTopicMoved
	}
	if err := c.retryRefused(ctx, cl); err != nil {
		return err
	}
	if reconcile || time.Since(*lastReconcile) >= c.cfg.ReconcileInterval {
		*lastReconcile = time.Now()
		return c.reconcile(ctx, cl)
	}
	return nil
}

// batch is one partition's share of a poll.
type batch struct {
	tp   topicPartition
	base position
	// topicID is the topic ID the records were read under ("" when the
	// broker sends none).
	topicID string
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

// fetched is one partition's share of a poll.
type fetched struct {
	topicID string
	records []*kgo.Record
}

// handle processes one poll: each partition's records are decoded, folded,
// dead-lettered and applied by a goroutine of their own, so that decoding
// uses every core and one partition's Valkey round trips overlap another's
// decoding. A partition's records stay in one goroutine, in offset order,
// and each apply is its own compare-and-set, so partitions need no
// coordination. A partition Valkey refuses is paused without stopping the
// others. Records of the partitions in skip are dropped: franz-go moved
// them. It reports whether a conflict, or a log ending below a stored
// offset, suggests checking every owned partition against Valkey and
// Kafka.
func (c *Consumer) handle(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, skip map[topicPartition]bool) (bool, error) {
	// A partition normally appears once per poll; merging keeps offset
	// order even if it appears twice.
	var order []topicPartition
	byPartition := make(map[topicPartition]*fetched)
	highWater := make(map[topicPartition]int64)
	reconcile := false
	fetches.EachTopic(func(t kgo.FetchTopic) {
		id := topicIDString(t.TopicID)
		t.EachPartition(func(p kgo.FetchPartition) {
			tp := topicPartition{topic: t.Topic, partition: p.Partition}
			if p.Err != nil || skip[tp] {
				return
			}
			highWater[tp] = max(highWater[tp], p.HighWatermark)
			if len(p.Records) == 0 {
				return
			}
			if pos, ok := c.parts.position(tp); ok && pos.topicID != "" && id != "" && id != pos.topicID {
				// Records of another incarnation of the topic than the
				// one Valkey's offsets belong to: counting them against
				// those offsets would skip or repeat records.
				c.log.Warn("records of another incarnation of the topic than valkey's offsets; discarding them",
					"topic", t.Topic, "partition", p.Partition, "topic_id", id, "stored_topic_id", pos.topicID)
				c.topicMoved.Store(true)
				return
			}
			f := byPartition[tp]
			if f == nil {
				f = &fetched{topicID: id}
				byPartition[tp] = f
				order = append(order, tp)
			}
			f.records = append(f.records, p.Records...)
		})
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
			f := byPartition[tp]
			conflict, err := c.processOrRefuse(ctx, cl, tp, f.topicID, f.records)
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
		pos, ok := c.parts.position(tp)
		if !ok || pos.offset < 0 {
			continue
		}
		c.cfg.Observer.Lag(tp.partition, max(hw-pos.offset, 0))
		if hw < pos.offset {
			// The log ends below what was counted: it lost records, or
			// the topic was recreated. Check now rather than at the next
			// reconcile.
			reconcile = true
		}
	}
	return reconcile || slices.Contains(conflicts, true), nil
}

// processOrRefuse processes one partition's records. When Valkey refuses
// them (store.ErrGuard), the partition is paused and retried later, and the
// other partitions go on.
func (c *Consumer) processOrRefuse(ctx context.Context, cl *kgo.Client, tp topicPartition, topicID string, records []*kgo.Record) (bool, error) {
	conflict, err := c.process(ctx, cl, tp, topicID, records)
	if errors.Is(err, store.ErrGuard) {
		c.refuse(cl, tp, topicID, records, err)
		return false, nil
	}
	if err == nil {
		c.accepted(cl, tp)
	}
	return conflict, err
}

// process folds one partition's records, dead-letters those it cannot
// count and applies the rest. It reports a conflict.
func (c *Consumer) process(ctx context.Context, cl *kgo.Client, tp topicPartition, topicID string, records []*kgo.Record) (bool, error) {
	b, err := c.prepare(ctx, cl, tp, topicID, records)
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
			if c.cfg.Tracer != nil {
				dead[i].Context = deadLetterContext(ctx, dl.Record)
			}
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
func (c *Consumer) prepare(ctx context.Context, cl *kgo.Client, tp topicPartition, topicID string, records []*kgo.Record) (*batch, error) {
	topic, partition := tp.topic, tp.partition
	pos, ok := c.parts.position(tp)
	if !ok {
		// Offsets are loaded on assignment, so records for a partition
		// without a base should not happen. Counting them could skip or
		// repeat records; instead, ask Valkey and read again from there.
		stored, err := c.loadPositions(ctx, topic, []int32{partition})
		if err != nil {
			return nil, err
		}
		sp := stored[partition]
		if sp.Err != nil {
			return nil, sp.Err
		}
		c.log.Warn("records for a partition without a base; re-reading from valkey's offset",
			"topic", topic, "partition", partition, "stored", sp.Offset, "discarded_from", records[0].Offset)
		c.seek(cl, tp, positionOf(sp.Position))
		return nil, nil
	}
	base := pos.offset
	// Records below base are already counted: a fetch that raced a seek,
	// or a replay. Counting them again is exactly what must not happen.
	// (A log that went back under base is not this: franz-go reports it,
	// or the log's end falls below base, and the partition is moved
	// before its records come here.)
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
				c.conflict(cl, tp, pos, store.Position{Offset: stored, TopicID: pos.topicID},
					fmt.Sprintf("batch [%d, %d]", records[0].Offset, records[len(records)-1].Offset))
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
	return &batch{tp: tp, base: pos, topicID: cmp.Or(topicID, pos.topicID), records: records, delta: d, dead: decoded.Dead, seen: seen}, nil
}

// apply writes one batch with compare-and-set and moves the partition on. It
// reports a conflict.
func (c *Consumer) apply(ctx context.Context, cl *kgo.Client, b *batch) (conflict bool, err error) {
	// outcome says, in the apply's span, what became of the batch.
	outcome := "conflict"
	if c.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = startApply(ctx, c.cfg.Tracer, b)
		defer func() { endApply(span, outcome, err) }()
	}
	last := b.records[len(b.records)-1]
	base := store.Position{Offset: b.base.offset, TopicID: b.base.topicID}
	next := store.Position{Offset: b.delta.Next, TopicID: b.topicID, Epoch: last.LeaderEpoch}
	var out store.Outcome
	var took time.Duration
	err = c.retry(ctx, "apply batch", func() error {
		start := time.Now()
		var err error
		out, err = c.store.Apply(ctx, b.delta, base, next)
		took = time.Since(start)
		return err
	})
	if err != nil {
		return false, err
	}
	if out.Applied || out.Stored == next.Offset && out.StoredTopicID == next.TopicID {
		// Stored == next without Applied: an earlier attempt of this very
		// batch was applied and its reply lost, or another member counted
		// the same records. Either way they are counted once.
		outcome = "counted already"
		if out.Applied {
			outcome = "applied"
		}
		c.parts.setPosition(b.tp, position{offset: next.Offset, topicID: out.StoredTopicID})
		if b.seen != nil && out.Applied {
			// Keep the copy of the dedup set in step with Valkey's.
			b.seen.Add(b.delta.SeenBlob())
			b.seen.Forget(b.delta.SeenTrimBefore)
			c.parts.setSeen(b.tp, next.Offset, b.seen)
		}
		cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
			b.tp.topic: {b.tp.partition: {Epoch: last.LeaderEpoch, Offset: next.Offset}},
		})
		if out.Applied {
			c.cfg.Observer.Applied(b.tp.partition, len(b.records), b.delta.Totals.Sales, b.delta.DeadLetters, b.delta.Duplicates, took)
		}
		c.log.Debug("applied batch", "topic", b.tp.topic, "partition", b.tp.partition,
			"from", b.base.offset, "to", next.Offset, "sales", b.delta.Totals.Sales, "dead_letters", b.delta.DeadLetters,
			"duplicates", b.delta.Duplicates)
		if b.delta.Duplicates > 0 {
			c.log.Info("dropped duplicate sales", "topic", b.tp.topic, "partition", b.tp.partition,
				"duplicates", b.delta.Duplicates, "window", c.cfg.DedupWindow.String())
		}
		return false, nil
	}
	c.cfg.Observer.Conflict(b.tp.partition)
	c.conflict(cl, b.tp, b.base, store.Position{Offset: out.Stored, TopicID: out.StoredTopicID},
		fmt.Sprintf("batch [%d, %d)", b.records[0].Offset, next.Offset))
	return true, nil
}

// conflict moves a partition to what Valkey holds and says why.
func (c *Consumer) conflict(cl *kgo.Client, tp topicPartition, held position, stored store.Position, what string) {
	attrs := []any{"topic", tp.topic, "partition", tp.partition, "base", held.offset, "stored", stored.Offset, "discarded", what}
	switch {
	case stored.TopicID != held.topicID && stored.TopicID != "" && held.topicID != "":
		// Another member moved the partition to a new incarnation of
		// the topic: this member's client still reads the old one.
		c.log.Warn("valkey's offset belongs to another incarnation of the topic; starting a new kafka client",
			append(attrs, "topic_id", held.topicID, "stored_topic_id", stored.TopicID)...)
		c.topicMoved.Store(true)
		return
	case stored.Offset < 0:
		c.log.Warn("valkey has no offset for this partition: its data was lost; rebuilding from the start of the topic", attrs...)
	case stored.Offset < held.offset:
		c.log.Warn("valkey's offset went backwards (restored from an older snapshot?); re-reading from it", attrs...)
	default:
		c.log.Warn("another consumer already counted these records; skipping to valkey's offset", attrs...)
	}
	c.seek(cl, tp, positionOf(stored))
}

// seek sets a partition's position and its fetch position together: the
// stored offset, or the start of the log for none. Records a refused
// partition held no longer line up with its fetch position, so its refusal
// ends: it is read again from there.
func (c *Consumer) seek(cl *kgo.Client, tp topicPartition, pos position) {
	c.parts.setPosition(tp, pos)
	// SetOffsets ignores negative offsets; 0 below the log start resumes
	// at the log start.
	cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		tp.topic: {tp.partition: {Epoch: -1, Offset: max(pos.offset, 0)}},
	})
	c.accepted(cl, tp)
}

// startOffsets resumes newly assigned partitions from Valkey, the source of
// truth, instead of Kafka's committed offsets, once their stored positions
// are settled against their logs (see settle). The stored leader epoch goes
// with each offset, so that franz-go checks (KIP-320) that the log still
// holds what was counted up to it.
func (c *Consumer) startOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	cl := c.client.Load()
	for topic, parts := range offsets {
		ids := slices.Sorted(maps.Keys(parts))
		settled, err := c.settle(ctx, cl, topic, ids)
		if err != nil {
			return nil, err
		}
		starts := make(map[int32]string, len(ids))
		for _, p := range ids {
			tp := topicPartition{topic: topic, partition: p}
			sp := settled[p]
			if sp.Err != nil {
				// Nobody can tell where this partition stands: it is
				// paused, and read again once its offset can be read.
				c.refuse(cl, tp, "", nil, sp.Err)
				parts[p] = kgo.NewOffset().AtStart()
				starts[p] = "refused"
				continue
			}
			c.parts.setPosition(tp, positionOf(sp.Position))
			switch {
			case sp.Offset < 0:
				parts[p] = kgo.NewOffset().AtStart()
			default:
				parts[p] = kgo.NewOffset().At(sp.Offset).WithEpoch(sp.Epoch)
			}
			starts[p] = fmt.Sprintf("%d (epoch %d)", sp.Offset, sp.Epoch)
		}
		c.log.Info("partitions assigned", "topic", topic, "offsets", starts)
	}
	return offsets, nil
}

// assigned marks the consumer as a group member. Offsets are set up in
// startOffsets, which runs after it and reads the client it keeps: the
// group can assign partitions before kgo.NewClient has returned the client
// to session, and startOffsets would then find the previous session's
// client, closed, or none.
func (c *Consumer) assigned(_ context.Context, cl *kgo.Client, _ map[string][]int32) {
	c.client.Store(cl)
	c.joined.Store(true)
}

func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	// Best effort: Kafka's offsets only feed lag monitoring.
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.log.Warn("commit offsets to kafka on revoke failed", "err", err)
	}
	c.release(cl, revoked)
	for topic, parts := range revoked {
		if len(parts) > 0 {
			c.log.Info("partitions revoked", "topic", topic, "partitions", parts)
		}
	}
}

func (c *Consumer) lost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	// Lost means the member was fenced or the group errored; it is not a
	// member until the next assignment.
	c.joined.Store(false)
	c.release(cl, lost)
	for topic, parts := range lost {
		c.log.Warn("partitions lost", "topic", topic, "partitions", parts)
	}
}

// release forgets partitions this member no longer owns. A refused one is
// resumed, since pauses outlive assignments: their next owner tries again.
func (c *Consumer) release(cl *kgo.Client, gone map[string][]int32) {
	for topic, parts := range gone {
		c.parts.drop(topic, parts)
		for _, p := range parts {
			c.accepted(cl, topicPartition{topic: topic, partition: p})
		}
		c.cfg.Observer.Released(parts)
	}
}

func (c *Consumer) loadPositions(ctx context.Context, topic string, parts []int32) (map[int32]store.StoredPosition, error) {
	var stored map[int32]store.StoredPosition
	err := c.retry(ctx, "load offsets", func() error {
		var err error
		stored, err = c.store.LoadPositions(ctx, topic, parts)
		return err
	})
	return stored, err
}

// retry runs op until it succeeds or ctx is done, backing off between
// attempts. Every op it runs is safe to repeat: applies are compare-and-set
// and dead letters may be duplicated. While it fails, the consumer is not
// ready. A refusal by Valkey (store.ErrGuard) is returned at once: it
// repeats until someone fixes the data, and its partition must not hold up
// the others.
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
		if errors.Is(err, store.ErrGuard) {
			return err
		}
		if !failed {
			failed = true
			c.failing.Add(1)
		}
		c.log.Warn(what+" failed; retrying", "attempt", attempt, "backoff", backoff, "err", err)
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
