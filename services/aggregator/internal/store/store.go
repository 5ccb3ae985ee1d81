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
		// read-only commands (the offsets HMGET) until
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
	client   rueidis.Client
	keys     Keys
	script   *rueidis.Lua
	loadSeen *rueidis.Lua
	rateTTL  int64
}

// New returns a Store writing keys under prefix through client. Rate hashes
// expire rateTTL after their last write. The caller keeps ownership of
// client.
func New(client rueidis.Client, prefix string, rateTTL time.Duration) *Store {
	return &Store{
		client:   client,
		keys:     NewKeys(prefix),
		script:   rueidis.NewLuaScript(applySource),
		loadSeen: rueidis.NewLuaScript(loadSeenSource),
		rateTTL:  max(int64(rateTTL/time.Second), 1),
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

// loadSeenSource reads a partition's offset and its dedup set in one atomic
// step, so that the set is exactly the one that offset reflects.
const loadSeenSource = `
local offset = redis.call('HGET', KEYS[1], ARGV[1])
return {offset or '-1', redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')}
`

// LoadSeen returns a partition's stored offset (-1 for none) and the dedup
// set that goes with it, read together in one script call.
func (s *Store) LoadSeen(ctx context.Context, topic string, partition int32) (int64, *aggregate.SeenSet, error) {
	key := s.keys.Seen(topic, partition)
	field := OffsetField(topic, partition)
	reply, err := s.loadSeen.Exec(ctx, s.client, []string{s.keys.Offsets(), key}, []string{field}).ToArray()
	if err != nil {
		if strings.Contains(err.Error(), "WRONGTYPE") {
			return 0, nil, fmt.Errorf("read %s: %w: %w", key, ErrGuard, err)
		}
		return 0, nil, fmt.Errorf("read seen sale ids of %s: %w", field, err)
	}
	if len(reply) != 2 {
		return 0, nil, fmt.Errorf("read seen sale ids of %s: reply has %d elements, want 2", field, len(reply))
	}
	text, err := reply[0].ToString()
	if err != nil {
		return 0, nil, fmt.Errorf("read offset %s: %w", field, err)
	}
	offset, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("read offset %s: %q: %w", field, text, err)
	}
	flat, err := reply[1].ToArray()
	if err != nil || len(flat)%2 != 0 {
		return 0, nil, fmt.Errorf("read seen sale ids of %s: %d elements, %v", field, len(flat), err)
	}
	members := make([]string, len(flat)/2)
	scores := make([]int64, len(flat)/2)
	for i := range members {
		if members[i], err = flat[2*i].ToString(); err != nil {
			return 0, nil, fmt.Errorf("read seen sale ids of %s: member %d: %w", field, i, err)
		}
		score, err := flat[2*i+1].ToString()
		if err != nil {
			return 0, nil, fmt.Errorf("read seen sale ids of %s: score %d: %w", field, i, err)
		}
		// Scores are integers below 2^53, exact as doubles.
		ms, err := strconv.ParseFloat(score, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("read seen sale ids of %s: score %q: %w", field, score, err)
		}
		scores[i] = int64(ms)
	}
	set, err := aggregate.ParseSeenSet(members, scores)
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w: %w", key, ErrGuard, err)
	}
	return offset, set, nil
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
