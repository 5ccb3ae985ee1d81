package analytics

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// ErrTooManyWatchers means the server already serves as many WatchSummary
// streams as it allows.
var ErrTooManyWatchers = errors.New("too many summary watchers")

// The defaults of the watch settings in Config.
const (
	defaultWatchInterval  = 250 * time.Millisecond
	defaultWatchHeartbeat = 5 * time.Second
	defaultMaxWatchers    = 1000
	// defaultLagEvery is how often the sales topic's offsets are read from
	// Kafka while someone watches.
	defaultLagEvery = time.Second
)

// WatchSummary streams snapshots of the aggregates as they change, and
// heartbeats while they do not. Every stream is fed by the one hub of the
// Service; a slow stream skips snapshots instead of queueing them.
func (s *Service) WatchSummary(ctx context.Context, _ *salesv1.WatchSummaryRequest, stream *connect.ServerStream[salesv1.WatchSummaryResponse]) error {
	return s.Watch(ctx, stream.Send)
}

// Watch is WatchSummary for any server: it sends snapshots and heartbeats
// through send until ctx is done or send fails.
func (s *Service) Watch(ctx context.Context, send func(*salesv1.WatchSummaryResponse) error) error {
	return s.hub.watch(ctx, send)
}

// hub is the one poller and broadcaster behind every WatchSummary stream of
// a Service. It runs while someone watches: the first watcher starts it and
// it stops once the last has left, so an unwatched api costs Valkey nothing.
//
// Each tick it reads a cheap fingerprint of the aggregates (the offsets and
// totals hashes, which the aggregator's script rewrites with every batch) and
// reads a whole snapshot only when the fingerprint or the Kafka offsets
// changed. It publishes a snapshot by swapping an immutable state and closing
// the previous state's channel, so any number of watchers wake up, each takes
// the latest state, and none holds a queue.
type hub struct {
	svc       *Service
	interval  time.Duration
	heartbeat time.Duration
	lagEvery  time.Duration
	max       int
	topic     string
	offsets   TopicOffsets

	wg sync.WaitGroup // the run goroutines

	mu       sync.Mutex
	watchers int
	running  bool
	closed   bool
	cancel   context.CancelFunc // stops the current run
	version  uint64             // of the last snapshot published, ever
	state    *hubState
}

// hubState is what the hub last published. It never changes once published:
// a newer state replaces it and closes changed.
type hubState struct {
	// snapshot is the latest snapshot, nil until the first one was read.
	snapshot *salesv1.SummarySnapshot
	// err is why the last read failed, nil when it succeeded.
	err error
	// changed is closed when a newer state is published.
	changed chan struct{}
}

func newHub(svc *Service, cfg Config) *hub {
	return &hub{
		svc:       svc,
		interval:  cmp.Or(cfg.WatchInterval, defaultWatchInterval),
		heartbeat: cmp.Or(cfg.WatchHeartbeat, defaultWatchHeartbeat),
		lagEvery:  defaultLagEvery,
		max:       cmp.Or(cfg.MaxWatchers, defaultMaxWatchers),
		topic:     cfg.Topic,
		offsets:   cfg.Offsets,
		state:     &hubState{changed: make(chan struct{})},
	}
}

// join counts a new watcher, starting the poller if it is the first.
func (h *hub) join() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrUnavailable
	}
	if h.watchers >= h.max {
		return ErrTooManyWatchers
	}
	h.watchers++
	if !h.running {
		h.running = true
		// A fresh run reads a fresh snapshot before anyone is answered.
		h.state = &hubState{changed: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		h.wg.Go(func() {
			defer cancel()
			h.run(ctx)
		})
	}
	return nil
}

// leave uncounts a watcher. The poller notices the last one leaving at its
// next tick.
func (h *hub) leave() {
	h.mu.Lock()
	h.watchers--
	h.mu.Unlock()
}

// keepRunning reports whether the poller should go on, marking it stopped
// when nobody watches.
func (h *hub) keepRunning() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchers == 0 || h.closed {
		h.running = false
		return false
	}
	return true
}

// close stops the poller and waits for it. Watchers still streaming keep
// their last state until their own contexts end.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	if h.cancel != nil {
		h.cancel()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// current returns the latest published state.
func (h *hub) current() *hubState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// publish replaces the state with a new snapshot, or with a failure that
// keeps the last snapshot, and wakes every watcher.
func (h *hub) publish(snap *salesv1.SummarySnapshot, err error) {
	h.mu.Lock()
	old := h.state
	next := &hubState{snapshot: old.snapshot, err: err, changed: make(chan struct{})}
	if snap != nil {
		h.version++
		snap.Version = h.version
		next.snapshot = snap
	}
	h.state = next
	h.mu.Unlock()
	close(old.changed)
}

// run polls until ctx is done or nobody watches.
func (h *hub) run(ctx context.Context) {
	kafka := &kafkaWatch{}
	if h.offsets != nil {
		lagCtx, stopLag := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { kafka.poll(lagCtx, h.offsets, h.lagEvery, h.svc.timeout) })
		defer func() {
			stopLag()
			wg.Wait()
		}()
	}
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	var last fingerprint
	for {
		last = h.poll(ctx, kafka, last)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !h.keepRunning() {
			return
		}
	}
}

// poll reads the fingerprint and, when it differs from last or the last
// read failed, a whole snapshot, publishing what it finds. It returns the
// fingerprint of what is now published.
func (h *hub) poll(ctx context.Context, kafka *kafkaWatch, last fingerprint) fingerprint {
	k := kafka.latest()
	offsets, fp, err := h.svc.fingerprint(ctx, k.seq)
	if ctx.Err() != nil {
		return last
	}
	st := h.current()
	if err != nil {
		if st.err == nil { // watchers learn of a failure once, not every tick
			h.publish(nil, err)
		}
		return last
	}
	if st.snapshot != nil && st.err == nil && fp == last {
		return last
	}
	snap, err := h.svc.snapshot(ctx, h.topic, offsets, k)
	if ctx.Err() != nil {
		return last
	}
	if err != nil {
		if st.err == nil {
			h.publish(nil, err)
		}
		return last
	}
	h.publish(snap, nil)
	return fp
}

// watch feeds one stream through send until ctx is done or a send fails:
// the latest snapshot whenever it changes, and a heartbeat when nothing was
// sent for the heartbeat interval or the store's health changed. It fails
// with the store's error when there is no snapshot to send.
func (h *hub) watch(ctx context.Context, send func(*salesv1.WatchSummaryResponse) error) error {
	if err := h.join(); err != nil {
		return err
	}
	defer h.leave()
	heartbeat := time.NewTimer(h.heartbeat)
	defer heartbeat.Stop()
	var (
		sent      uint64 // version of the last snapshot sent
		sentStale bool   // staleness last told
	)
	beat := func(stale bool) error {
		sentStale = stale
		heartbeat.Reset(h.heartbeat)
		return send(&salesv1.WatchSummaryResponse{Event: &salesv1.WatchSummaryResponse_Heartbeat{
			Heartbeat: &salesv1.WatchHeartbeat{SentAt: timestampOf(h.svc.now()), Version: sent, Stale: stale},
		}})
	}
	for {
		st := h.current()
		stale := st.err != nil
		switch {
		case st.snapshot == nil && st.err != nil:
			return st.err
		case st.snapshot != nil && st.snapshot.GetVersion() != sent:
			sent, sentStale = st.snapshot.GetVersion(), stale
			heartbeat.Reset(h.heartbeat)
			// The snapshot is shared by every stream and never changed
			// after publication; marshaling only reads it.
			err := send(&salesv1.WatchSummaryResponse{Event: &salesv1.WatchSummaryResponse_Snapshot{Snapshot: st.snapshot}})
			if err != nil {
				return err
			}
		case st.snapshot != nil && stale != sentStale:
			if err := beat(stale); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-st.changed:
		case <-heartbeat.C:
			if st.snapshot == nil {
				heartbeat.Reset(h.heartbeat)
				continue
			}
			if err := beat(h.current().err != nil); err != nil {
				return err
			}
		}
	}
}
