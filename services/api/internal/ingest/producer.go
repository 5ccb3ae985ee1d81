// Package ingest writes sales to the Kafka sales topic and answers only once
// Kafka has acknowledged them.
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Config configures a Producer.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic is the sales topic.
	Topic string
	// Partitions is the partition count used when the topic is created.
	Partitions int32
	// ProduceTimeout is the longest a call waits for Kafka's acknowledgement.
	ProduceTimeout time.Duration
	// MaxBufferedRecords bounds the records held in memory awaiting an
	// acknowledgement; beyond it calls fail with ErrBufferFull.
	MaxBufferedRecords int
	// Linger is how long a partition waits for more records before sending
	// a batch. Every call waits for its acknowledgement, so linger adds to
	// latency; in exchange the broker gets fewer, fuller batches, which on a
	// busy broker costs it half the CPU per sale (docs/results).
	Linger time.Duration
	// Compression is the codec batches are compressed with (see
	// ParseCompression); nil leaves franz-go's default, snappy.
	Compression *kgo.CompressionCodec

	// BreakerThreshold is the number of consecutive delivery failures that
	// opens the circuit breaker (5 when zero).
	BreakerThreshold int
	// BreakerWindow is how long without any success the failures must span
	// (1s when zero).
	BreakerWindow time.Duration
	// BreakerCoolDown is how long the open breaker rejects calls before one
	// may probe Kafka again (1s when zero).
	BreakerCoolDown time.Duration

	// Hooks observe the Kafka client, for metrics.
	Hooks []kgo.Hook
	// BatchHooks observe the batch client (see Producer), when there is
	// one: a hook such as kprom's registers its metrics once per client.
	BatchHooks []kgo.Hook
	// ClientOpts are more franz-go options, such as SASL and TLS. They
	// apply to every connection of the client, topic creation's included.
	ClientOpts []kgo.Opt
	// Traced makes each record carry its caller's span context, and
	// nothing else of the caller's, so that a tracing hook among Hooks
	// (kotel) starts the record's span in the call's trace and writes it
	// to the record's headers. Off, a record carries nothing of the
	// caller's at all.
	Traced bool
}

// Producer writes sales to the sales topic: idempotently, with acks=all,
// keyed by product id, each call waiting for its own acknowledgement.
//
// With a linger, single sales and batches go through two franz-go clients:
// single sales linger so that concurrent calls share fuller batches, while a
// batch call brings its own batch, which lingering would only delay (and
// franz-go's linger timers cost CPU per record). Each client is idempotent
// on its own; sales of different calls have no order to keep.
type Producer struct {
	client *kgo.Client // single sales
	batch  *kgo.Client // batches: client itself when there is no linger
	// clients are the distinct clients: client, and batch if it is another.
	clients     []*kgo.Client
	maxBuffered int
	topic       string
	partitions  int32
	timeout     time.Duration
	breaker     *breaker
	closed      atomic.Bool
	// purging is set while the topic is being purged from the clients
	// (see forgetRecreatedTopic).
	purging atomic.Bool
	log     *slog.Logger
	traced  bool
	// waiters are reusable single-sale calls (see Record).
	waiters sync.Pool

	// headers are each protocol's record headers, shared read-only by
	// every record: franz-go only reads them, and a tracing hook that adds
	// one appends it, to a copy, since each slice is full (len == cap).
	headers map[record.Protocol][]kgo.RecordHeader
}

// New returns a Producer. It does not contact Kafka: the server must start
// and answer even while Kafka is down.
func New(cfg Config, log *slog.Logger) (*Producer, error) {
	if cfg.ProduceTimeout <= 0 {
		return nil, errors.New("produce timeout must be positive")
	}
	threshold := cmp.Or(cfg.BreakerThreshold, 5)
	window := cmp.Or(cfg.BreakerWindow, time.Second)
	coolDown := cmp.Or(cfg.BreakerCoolDown, time.Second)

	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		// acks=all is franz-go's default, as is idempotence (which
		// requires it); spelled out because the delivery guarantee rests
		// on it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
	}
	if cfg.Compression != nil {
		opts = append(opts, kgo.ProducerBatchCompression(*cfg.Compression))
	}
	opts = append(opts,
		// The broker may take this long to gather acks; beyond it a call
		// has long given up.
		kgo.ProduceRequestTimeout(max(cfg.ProduceTimeout, 100*time.Millisecond)),
		// A backstop: every record also carries its call's deadline, but
		// nothing may sit in the buffer for long whatever happens. (franz-go
		// allows no less than a second.)
		kgo.RecordDeliveryTimeout(max(2*cfg.ProduceTimeout, time.Second)),
		// After an outage, partitions wait for fresh metadata before they
		// produce again; the default 5s between refreshes would keep
		// failing calls that long after Kafka is back.
		kgo.MetadataMinAge(500*time.Millisecond),
		// franz-go logs per request only at debug, so the api's log at
		// info gets its connection and metadata events, not its traffic.
		kgo.WithLogger(kslog.New(log.With("component", "kafka"))),
	)
	opts = append(opts, cfg.ClientOpts...)
	client, err := kgo.NewClient(append(slices.Clone(opts), kgo.ProducerLinger(cfg.Linger), kgo.WithHooks(cfg.Hooks...))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	clients := []*kgo.Client{client}
	if cfg.Linger > 0 {
		batch, err := kgo.NewClient(append(opts, kgo.ProducerLinger(0), kgo.WithHooks(cfg.BatchHooks...))...)
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("kafka batch client: %w", err)
		}
		clients = append(clients, batch)
	}
	p := &Producer{
		client:      client,
		batch:       clients[len(clients)-1],
		clients:     clients,
		maxBuffered: cfg.MaxBufferedRecords,
		topic:       cfg.Topic,
		partitions:  cfg.Partitions,
		timeout:     cfg.ProduceTimeout,
		headers:     map[record.Protocol][]kgo.RecordHeader{},
		log:         log,
		traced:      cfg.Traced,
	}
	p.waiters.New = func() any {
		w := &waiter{done: make(chan error, 1)}
		w.promise = w.deliver
		return w
	}
	schema := []byte(record.Schema())
	for _, proto := range append(record.Protocols(), record.ProtocolUnknown) {
		p.headers[proto] = slices.Clip([]kgo.RecordHeader{
			{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
			{Key: record.HeaderSchema, Value: schema},
			{Key: record.HeaderIngestProtocol, Value: []byte(proto)},
		})
	}
	p.breaker = newBreaker(threshold, window, coolDown, func(from, to breakerState) {
		log.Warn("sales log circuit breaker", "from", from.String(), "to", to.String())
	})
	return p, nil
}

// ParseCompression returns the batch codec a name stands for: none, snappy,
// lz4, zstd or gzip.
func ParseCompression(name string) (*kgo.CompressionCodec, error) {
	var c kgo.CompressionCodec
	switch strings.ToLower(name) {
	case "none":
		c = kgo.NoCompression()
	case "snappy":
		c = kgo.SnappyCompression()
	case "lz4":
		c = kgo.Lz4Compression()
	case "zstd":
		c = kgo.ZstdCompression()
	case "gzip":
		c = kgo.GzipCompression()
	default:
		return nil, fmt.Errorf("unknown compression %q: want none, snappy, lz4, zstd or gzip", name)
	}
	return &c, nil
}

// Record writes one sale and returns once Kafka has acknowledged it. The sale
// must be complete (see Stamp) and valid. Errors are a *SaleError, which
// says whether the sale was certainly not written, wrapping ErrBufferFull,
// ErrNotWritten, ErrUnconfirmed, ErrSalesLogDown, ErrClosed or the caller's
// context error.
//
// It is RecordAll for one sale, on the path every unary call takes: the
// record, its buffer and the call's result channel are reused from call to
// call.
func (p *Producer) Record(ctx context.Context, sale *salesv1.Sale) error {
	if err := p.admit(ctx); err != nil {
		return unwritten(sale, err)
	}
	probe, err := p.breaker.allow()
	if err != nil {
		return unwritten(sale, err)
	}
	w := p.waiters.Get().(*waiter)
	if err := p.fill(w, sale, p.recordHeaders(ProtocolFrom(ctx))); err != nil {
		p.waiters.Put(w)
		p.breaker.done(probe, outcomeNeutral)
		return unwritten(sale, err)
	}
	var recordCtx context.Context
	recordCtx, w.release = p.recordContext(ctx)
	p.client.TryProduce(recordCtx, &w.rec, w.promise)

	learned := outcomeNeutral
	var failed *SaleError
	delivered := func(err error) {
		// franz-go is done with the record: the waiter is free again.
		w.rec = kgo.Record{}
		p.waiters.Put(w)
		failed = p.classify(sale, err)
		learned = learn(learned, failed)
	}
	unconfirmed := func() {
		// franz-go failed the record at its deadline if it was unsent,
		// so it was sent: it may yet be written. The waiter stays with
		// the record; its promise still has room to deliver.
		failed, learned = maybeWritten(sale, ErrUnconfirmed), outcomeFailure
	}
	callerLeft := func() {
		// The caller left; its record did not (see recordContext).
		failed = maybeWritten(sale, ctx.Err())
	}
	select {
	case err := <-w.done:
		delivered(err)
	case <-recordCtx.Done():
		// The record's deadline passed (or franz-go has just delivered
		// it: deliver releases the context once the result is sent).
		// The call waits out the rest of ProduceTimeout for an
		// acknowledgement; only this slow path needs a timer of its own.
		if recordCtx.Err() == context.Canceled {
			delivered(<-w.done)
			break
		}
		rest := time.NewTimer(p.timeout / 20)
		select {
		case err := <-w.done:
			delivered(err)
		case <-rest.C:
			unconfirmed()
		case <-ctx.Done():
			callerLeft()
		}
		rest.Stop()
	case <-ctx.Done():
		callerLeft()
	}
	p.breaker.done(probe, learned)
	if failed != nil {
		return failed
	}
	return nil
}

// admit refuses a call before anything is produced: the producer is
// closing, or the caller has already gone.
func (p *Producer) admit(ctx context.Context) error {
	if p.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// waiter is one single-sale call: the record it produces, the buffer that
// holds its key and value, where its promise delivers, and what releases
// the record's context.
type waiter struct {
	rec     kgo.Record
	buf     []byte
	done    chan error
	promise func(*kgo.Record, error)
	release context.CancelFunc
}

// deliver hands the call its result, then releases the record's context:
// in that order, so that the call is woken by the result, not by the
// release. It takes the release first, as the call may reuse w at once.
func (w *waiter) deliver(_ *kgo.Record, err error) {
	release := w.release
	w.done <- err
	release()
}

// maxReusedBuffer bounds the buffer a waiter keeps between calls.
const maxReusedBuffer = 4 << 10

// fill makes w's record the sale's, with headers.
func (p *Producer) fill(w *waiter, sale *salesv1.Sale, headers []kgo.RecordHeader) error {
	if cap(w.buf) > maxReusedBuffer {
		w.buf = nil
	}
	buf, key, value, err := appendSale(w.buf[:0], sale)
	if err != nil {
		return err
	}
	w.buf = buf
	w.rec = kgo.Record{Topic: p.topic, Key: key, Value: value, Headers: headers}
	return nil
}

// appendSale appends the record key (the product id) and value (the sale,
// protobuf) the aggregator expects to buf, and returns them. A buffer that
// grows leaves what it held in the old array, which stays as good.
func appendSale(buf []byte, sale *salesv1.Sale) (out, key, value []byte, err error) {
	start := len(buf)
	buf = append(buf, sale.GetProductId()...)
	mid := len(buf)
	out, err = proto.MarshalOptions{}.MarshalAppend(buf, sale)
	if err != nil {
		return buf[:start], nil, nil, fmt.Errorf("encode sale: %w", err)
	}
	return out, out[start:mid:mid], out[mid:len(out):len(out)], nil
}

// recordContext returns the context the records of a call from caller
// starting now carry, and what releases it: to be called once franz-go has delivered
// every one of them, since a record whose context ends while it is
// buffered fails. A call waits ProduceTimeout for its acknowledgements; its
// records' deadline is the server's own too, from ProduceTimeout.
//
// Records never carry anything of the caller's, neither its deadline nor
// its cancellation: franz-go fails every record buffered on a partition
// behind one whose context is done, so one client's tiny deadline or
// hang-up would fail other clients' sales. A caller that leaves only loses
// its answer; its record is written if it can be, and its sale_id makes
// that visible.
//
// franz-go fails the records it has not sent once their deadline passes;
// a deadline a twentieth of ProduceTimeout before the call stops waiting
// lets those sales be reported as certainly not written, rather than as
// unconfirmed.
//
// Traced, the records carry the caller's span context, a value that
// neither ends nor cancels anything.
func (p *Producer) recordContext(caller context.Context) (context.Context, context.CancelFunc) {
	parent := context.Background()
	if p.traced {
		parent = trace.ContextWithSpanContext(parent, trace.SpanContextFromContext(caller))
	}
	return context.WithTimeout(parent, p.timeout-p.timeout/20)
}

// RecordAll writes sales in order and waits for each acknowledgement, all
// within one deadline. It returns one error per sale, nil for those Kafka
// acknowledged; each error is a *SaleError, as Record's.
func (p *Producer) RecordAll(ctx context.Context, sales []*salesv1.Sale) []error {
	if len(sales) == 0 {
		return nil
	}
	errs := make([]error, len(sales))
	fail := func(err error) []error {
		for i, s := range sales {
			errs[i] = unwritten(s, err)
		}
		return errs
	}
	if err := p.admit(ctx); err != nil {
		return fail(err)
	}
	probe, err := p.breaker.allow()
	if err != nil {
		return fail(err)
	}

	headers := p.recordHeaders(ProtocolFrom(ctx))
	answered := make([]bool, len(sales))
	waiting := 0
	// One allocation each for the call's records and for their keys and
	// values (about 64 bytes a sale, grown if need be).
	recs := make([]kgo.Record, len(sales))
	buf := make([]byte, 0, 64*len(sales))
	for i, sale := range sales {
		var key, value []byte
		var err error
		if buf, key, value, err = appendSale(buf, sale); err != nil {
			errs[i], answered[i] = unwritten(sale, err), true
			continue
		}
		recs[i] = kgo.Record{Topic: p.topic, Key: key, Value: value, Headers: headers}
		waiting++
	}

	// The last promise releases the records' context; a full buffer
	// delivers at once, so every record is counted before any is produced.
	giveUp := time.NewTimer(p.timeout)
	defer giveUp.Stop()
	recordCtx, release := p.recordContext(ctx)
	var undelivered atomic.Int64
	undelivered.Store(int64(waiting))
	if waiting == 0 {
		release()
	}
	results := make(chan result, waiting)
	for i := range recs {
		if answered[i] {
			continue
		}
		p.batch.TryProduce(recordCtx, &recs[i], func(_ *kgo.Record, err error) {
			if undelivered.Add(-1) == 0 {
				release()
			}
			// The channel has room for every result, so the promise never
			// blocks franz-go's promise goroutine, even after we returned.
			results <- result{i, err}
		})
	}

	learned := outcomeNeutral
	// unanswered fails every sale still without an answer: they were
	// produced, so they may yet be written.
	unanswered := func(err error) {
		for i, ok := range answered {
			if !ok {
				errs[i] = maybeWritten(sales[i], err)
			}
		}
	}
wait:
	for ; waiting > 0; waiting-- {
		select {
		case r := <-results:
			failed := p.classify(sales[r.index], r.err)
			learned = learn(learned, failed)
			if failed != nil {
				errs[r.index] = failed
			}
			answered[r.index] = true
		case <-giveUp.C:
			// franz-go failed the unsent records a moment ago, so the
			// ones still unanswered were sent: they may yet be written.
			unanswered(ErrUnconfirmed)
			if learned == outcomeNeutral {
				learned = outcomeFailure
			}
			break wait
		case <-ctx.Done():
			// The caller left; its records did not (see recordContext).
			unanswered(ctx.Err())
			break wait
		}
	}
	p.breaker.done(probe, learned)
	return errs
}

// result is one record's promise.
type result struct {
	index int
	err   error
}

// learn folds one record's classified result into what a call has learned
// about Kafka for the breaker: an acknowledgement is a success, a record
// Kafka failed is a failure unless another record of the call succeeded,
// and anything else (a full buffer, the caller leaving) says nothing.
func learn(learned outcome, failed *SaleError) outcome {
	switch {
	case failed == nil:
		return outcomeSuccess
	case errors.Is(failed, ErrNotWritten) && learned == outcomeNeutral:
		return outcomeFailure
	}
	return learned
}

// classify turns a promise's error into the sale's failure, nil for an
// acknowledgement, keeping the cause for logs.
func (p *Producer) classify(sale *salesv1.Sale, err error) *SaleError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kgo.ErrMaxBuffered):
		return unwritten(sale, fmt.Errorf("%w: %w", ErrBufferFull, err))
	case errors.Is(err, kgo.ErrClientClosed):
		// Closing fails the records in flight too: they may have been
		// written.
		return maybeWritten(sale, fmt.Errorf("%w: %w", ErrClosed, err))
	default:
		if errors.Is(err, kerr.UnknownTopicID) {
			p.forgetRecreatedTopic()
		}
		// franz-go fails an idempotent record only when it is safe to:
		// never sent, or answered by the broker. So a failed record was
		// not written, whether by timeout, broker error or retries.
		return unwritten(sale, fmt.Errorf("%w: %w", ErrNotWritten, err))
	}
}

// forgetRecreatedTopic makes the clients produce to the sales topic as it is
// now. franz-go keeps producing to the first instance of a topic it knew:
// once the topic is deleted and recreated, every record fails with
// UNKNOWN_TOPIC_ID, for as long as the client lives. Purging the topic from
// the clients makes the next record load the new instance, with fresh
// partitions and sequence numbers. Records buffered for the old instance
// fail as not written, as they would have anyway.
func (p *Producer) forgetRecreatedTopic() {
	if !p.purging.CompareAndSwap(false, true) {
		return // one purge at a time; the rest of its failures join it
	}
	p.log.Warn("the sales topic was deleted and recreated: producing to its new instance", "topic", p.topic)
	go func() {
		defer p.purging.Store(false)
		for _, cl := range p.clients {
			cl.PurgeTopicsFromProducing(p.topic)
		}
	}()
}

// recordHeaders returns the headers of a record ingested over proto.
func (p *Producer) recordHeaders(proto record.Protocol) []kgo.RecordHeader {
	if h, ok := p.headers[proto]; ok {
		return h
	}
	return p.headers[record.ProtocolUnknown]
}

// Ping reports whether any Kafka broker answers.
func (p *Producer) Ping(ctx context.Context) error {
	return p.client.Ping(ctx)
}

// Buffered returns the number of records awaiting Kafka's acknowledgement.
func (p *Producer) Buffered() int64 {
	var n int64
	for _, cl := range p.clients {
		n += cl.BufferedProduceRecords()
	}
	return n
}

// BufferLimit returns the most records that may await an acknowledgement:
// MaxBufferedRecords for each client.
func (p *Producer) BufferLimit() int { return len(p.clients) * p.maxBuffered }

// Close stops taking sales, waits until ctx is done for the buffered records
// to be acknowledged, and closes the clients, failing whatever is left.
func (p *Producer) Close(ctx context.Context) error {
	p.closed.Store(true)
	var errs []error
	for _, cl := range p.clients {
		if err := cl.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush with %d records unacknowledged: %w", cl.BufferedProduceRecords(), err))
		}
		cl.Close()
	}
	return errors.Join(errs...)
}
