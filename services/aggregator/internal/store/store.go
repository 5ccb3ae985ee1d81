// Package store keeps the aggregates and the partition offsets in Valkey.
// It is the only writer of the keys in docs/valkey-keys.md.
package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

//go:embed apply.lua
var applySource string

// ErrGuard is returned when apply.lua refused a batch because a stored value
// is not what the aggregator writes (a wrong type, a non-integer) or a
// counter would overflow. Nothing was written. Retrying will not help until
// an operator fixes the data.
var ErrGuard = errors.New("valkey refused the batch")

// Options configures a connection to Valkey.
type Options struct {
	Addr     string
	Username string
	Password string
}

// Dial connects to Valkey and checks the connection with a PING.
func Dial(ctx context.Context, o Options) (rueidis.Client, error) {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{o.Addr},
		Username:    o.Username,
		Password:    o.Password,
		// The aggregator never reads through the client-side cache, and
		// some Valkey-compatible servers lack the tracking it needs.
		DisableCache: true,
		// No silent retries inside the client: rueidis would retry
		// read-only commands (the dedup ZMSCORE, the offsets HMGET) until
		// Valkey came back, hiding an outage from the consumer's own
		// retry loop, which logs it and turns /readyz unready.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to valkey at %s: %w", o.Addr, err)
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, fmt.Errorf("ping valkey at %s: %w", o.Addr, err)
	}
	return client, nil
}

// Store applies folded batches to Valkey. It is safe for concurrent use.
type Store struct {
	client  rueidis.Client
	keys    Keys
	script  *rueidis.Lua
	rateTTL int64
}

// New returns a Store writing keys under prefix through client. Rate hashes
// expire rateTTL after their last write. The caller keeps ownership of
// client.
func New(client rueidis.Client, prefix string, rateTTL time.Duration) *Store {
	return &Store{
		client:  client,
		keys:    NewKeys(prefix),
		script:  rueidis.NewLuaScript(applySource),
		rateTTL: max(int64(rateTTL/time.Second), 1),
	}
}

// Keys returns the names of the keys the Store writes.
func (s *Store) Keys() Keys { return s.keys }

// Outcome is the result of one Apply.
type Outcome struct {
	// Applied is true when the batch was counted by this call.
	Applied bool
	// Stored is the partition's offset in Valkey after the call: the
	// batch's Next when applied, otherwise the offset that did not match
	// base (-1 when Valkey has none).
	Stored int64
}

// Apply counts a finished Delta and moves the partition's stored offset from
// base (-1 for none) to d.Next, in one atomic script call. When the stored
// offset is not base, it writes nothing and reports the stored offset.
func (s *Store) Apply(ctx context.Context, d *aggregate.Delta, base int64) (Outcome, error) {
	c, err := encode(s.keys, d, base, s.rateTTL)
	if err != nil {
		return Outcome{}, err
	}
	reply, err := s.script.Exec(ctx, s.client, c.keys, c.args).ToArray()
	if err != nil {
		if strings.HasPrefix(err.Error(), "BFGUARD") {
			return Outcome{}, fmt.Errorf("apply %s: %w: %w", OffsetField(d.Topic, d.Partition), ErrGuard, err)
		}
		return Outcome{}, fmt.Errorf("apply %s: %w", OffsetField(d.Topic, d.Partition), err)
	}
	if len(reply) != 2 {
		return Outcome{}, fmt.Errorf("apply %s: reply has %d elements, want 2", OffsetField(d.Topic, d.Partition), len(reply))
	}
	status, err := reply[0].AsInt64()
	if err != nil {
		return Outcome{}, fmt.Errorf("apply %s: status: %w", OffsetField(d.Topic, d.Partition), err)
	}
	offset, err := reply[1].ToString()
	if err != nil {
		return Outcome{}, fmt.Errorf("apply %s: offset: %w", OffsetField(d.Topic, d.Partition), err)
	}
	stored, err := strconv.ParseInt(offset, 10, 64)
	if err != nil {
		return Outcome{}, fmt.Errorf("apply %s: stored offset %q: %w", OffsetField(d.Topic, d.Partition), offset, err)
	}
	return Outcome{Applied: status == 1, Stored: stored}, nil
}

// Seen looks up which of keys a partition counted recently, with one
// ZMSCORE, and returns their record timestamps (Unix ms). The answer holds
// for a batch applied from the offset the caller believes is stored: Apply's
// compare-and-set fails if anything touched the partition in between.
func (s *Store) Seen(ctx context.Context, topic string, partition int32, keys []aggregate.SaleKey) (map[aggregate.SaleKey]int64, error) {
	out := make(map[aggregate.SaleKey]int64)
	if len(keys) == 0 {
		return out, nil
	}
	members := make([]string, len(keys))
	for i, k := range keys {
		members[i] = string(k[:])
	}
	key := s.keys.Seen(topic, partition)
	scores, err := s.client.Do(ctx, s.client.B().Zmscore().Key(key).Member(members...).Build()).ToArray()
	if err != nil {
		if strings.HasPrefix(err.Error(), "WRONGTYPE") {
			return nil, fmt.Errorf("read %s: %w: %w", key, ErrGuard, err)
		}
		return nil, fmt.Errorf("read seen sale ids of %s: %w", OffsetField(topic, partition), err)
	}
	if len(scores) != len(keys) {
		return nil, fmt.Errorf("read seen sale ids of %s: %d scores for %d keys", OffsetField(topic, partition), len(scores), len(keys))
	}
	for i, v := range scores {
		// Scores are integers below 2^53, exact as doubles.
		ms, err := v.AsFloat64()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read seen sale ids of %s: score %d: %w", OffsetField(topic, partition), i, err)
		}
		out[keys[i]] = int64(ms)
	}
	return out, nil
}

// LoadOffsets returns the stored next offset of each partition, -1 for a
// partition Valkey has none for.
func (s *Store) LoadOffsets(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	out := make(map[int32]int64, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	fields := make([]string, len(partitions))
	for i, p := range partitions {
		fields[i] = OffsetField(topic, p)
	}
	values, err := s.client.Do(ctx, s.client.B().Hmget().Key(s.keys.Offsets()).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("load offsets of %s: %w", topic, err)
	}
	for i, v := range values {
		text, err := v.ToString()
		if rueidis.IsRedisNil(err) {
			out[partitions[i]] = -1
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load offset %s: %w", fields[i], err)
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("load offset %s: %q: %w", fields[i], text, err)
		}
		out[partitions[i]] = n
	}
	return out, nil
}
