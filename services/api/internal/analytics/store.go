// Package analytics answers AnalyticsService queries from the aggregates the
// aggregator keeps in Valkey (docs/valkey-keys.md). It only reads.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"blackfriday.local/contract/keys"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// The errors the edge maps to client statuses. Their text, and whatever they
// wrap, stays in logs.
var (
	// ErrUnavailable means Valkey could not be reached or did not answer
	// in time.
	ErrUnavailable = errors.New("analytics store is unavailable")
	// ErrCorrupt means Valkey holds a value the key schema does not allow.
	ErrCorrupt = errors.New("analytics store holds an unexpected value")
)

// Config configures a Service.
type Config struct {
	// Addr is Valkey's host:port.
	Addr string
	// Username and Password authenticate when Valkey has ACLs on.
	Username, Password string
	// KeyPrefix starts every key, keys.DefaultPrefix by default.
	KeyPrefix string
	// Timeout bounds each query (2s when zero).
	Timeout time.Duration

	// Topic is the sales topic, whose partitions' offsets the offsets hash
	// holds; WatchSummary reports the aggregator's lag on it.
	Topic string
	// Offsets reads the sales topic's offsets from Kafka for the lag; nil
	// reports the lag as unknown.
	Offsets TopicOffsets
	// WatchInterval is the least time between two WatchSummary snapshots,
	// and how often the aggregates are checked for changes while someone
	// watches (250ms when zero).
	WatchInterval time.Duration
	// WatchHeartbeat is the longest a WatchSummary stream stays silent
	// (5s when zero).
	WatchHeartbeat time.Duration
	// MaxWatchers bounds the WatchSummary streams served at once (1000
	// when zero).
	MaxWatchers int
	// NewClient makes the Valkey client (rueidis.NewClient when nil): a
	// traced one (rueidisotel) when tracing is on.
	NewClient func(rueidis.ClientOption) (rueidis.Client, error)
}

// redialEvery throttles connection attempts while Valkey is down, so that
// queries fail at once instead of each waiting for a dial.
const redialEvery = time.Second

// Service serves AnalyticsService from Valkey.
type Service struct {
	salesv1connect.UnimplementedAnalyticsServiceHandler

	opt       rueidis.ClientOption
	newClient func(rueidis.ClientOption) (rueidis.Client, error)
	keys      keys.Keys
	timeout   time.Duration
	now       func() time.Time

	hub *hub // feeds every WatchSummary stream

	conn     atomic.Pointer[conn]
	mu       sync.Mutex // serializes dialing
	lastDial time.Time
	closed   bool
}

// conn boxes the client so it can sit in an atomic.Pointer.
type conn struct{ rueidis.Client }

// New returns a Service. It connects on first use, not here: rueidis dials
// when a client is made, and the server must start while Valkey is down.
func New(cfg Config) *Service {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	s := &Service{
		opt: rueidis.ClientOption{
			InitAddress: []string{cfg.Addr},
			Username:    cfg.Username,
			Password:    cfg.Password,
			ClientName:  "blackfriday-api",
			// Reads go straight to Valkey: the figures move with every
			// batch, and client tracking would only add invalidations.
			DisableCache:     true,
			Dialer:           net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second},
			ConnWriteTimeout: timeout,
		},
		newClient: cfg.NewClient,
		keys:      keys.New(cfg.KeyPrefix),
		timeout:   timeout,
		now:       time.Now,
	}
	if s.newClient == nil {
		s.newClient = rueidis.NewClient
	}
	s.hub = newHub(s, cfg)
	return s
}

// client returns the Valkey client, dialing it on first use.
func (s *Service) client() (rueidis.Client, error) {
	if c := s.conn.Load(); c != nil {
		return c.Client, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conn.Load(); c != nil {
		return c.Client, nil
	}
	if s.closed {
		return nil, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	now := s.now()
	if now.Sub(s.lastDial) < redialEvery {
		return nil, fmt.Errorf("%w: waiting to redial", ErrUnavailable)
	}
	s.lastDial = now
	c, err := s.newClient(s.opt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.conn.Store(&conn{c})
	return c, nil
}

// Ping reports whether Valkey answers.
func (s *Service) Ping(ctx context.Context) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return storeErr(c.Do(ctx, c.B().Ping().Build()).Error())
}

// Close stops the WatchSummary poller and closes the connection, if any.
func (s *Service) Close() {
	s.hub.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if c := s.conn.Swap(nil); c != nil {
		c.Close()
	}
}

// query runs fn with the client and a context bounded by the query timeout.
func (s *Service) query(ctx context.Context, fn func(ctx context.Context, c rueidis.Client) error) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := fn(qctx, c); err != nil {
		if ctx.Err() != nil {
			// The caller left; its status says so.
			return ctx.Err()
		}
		return err
	}
	return nil
}

// storeErr classifies an error from Valkey.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// int64s reads an HMGET reply: missing fields are zero.
func int64s(r rueidis.RedisResult) ([]int64, error) {
	msgs, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(msgs))
	for i := range msgs {
		if msgs[i].IsNil() {
			continue
		}
		v, err := msgs[i].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		out[i] = v
	}
	return out, nil
}
