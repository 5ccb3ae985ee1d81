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

	"blackfriday.local/contract/keys"
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
	// NewClient makes the client (rueidis.NewClient when nil): a traced
	// one (rueidisotel) when tracing is on.
	NewClient func(rueidis.ClientOption) (rueidis.Client, error)
}

// Dial connects to Valkey and checks the connection with a PING.
func Dial(ctx context.Context, o Options) (rueidis.Client, error) {
	newClient := o.NewClient
	if newClient == nil {
		newClient = rueidis.NewClient
	}
	client, err := newClient(rueidis.ClientOption{
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
	keys     keys.Keys
	script   *rueidis.Lua
	loadSeen *rueidis.Lua
	reset    *rueidis.Lua
	rateTTL  int64
}

// New returns a Store writing keys under prefix through client. Rate hashes
// expire rateTTL after their last write. The caller keeps ownership of
// client.
func New(client rueidis.Client, prefix string, rateTTL time.Duration) *Store {
	return &Store{
		client:   client,
		keys:     keys.New(prefix),
		script:   rueidis.NewLuaScript(applySource),
		loadSeen: rueidis.NewLuaScript(loadSeenSource),
		reset:    rueidis.NewLuaScript(resetSource),
		rateTTL:  max(int64(rateTTL/time.Second), 1),
	}
}

// Keys returns the names of the keys the Store writes.
func (s *Store) Keys() keys.Keys { return s.keys }

// Position is where counting stands for one partition, as Valkey holds it.
type Position struct {
	// Offset is the next offset to count, -1 when nothing is stored.
	Offset int64
	// TopicID names the incarnation of the topic Offset belongs to (the
	// Kafka topic ID, base64 URL-encoded as Kafka's tools print it); ""
	// when none is stored: a hash written before topic IDs were, or a
	// broker without them.
	TopicID string
	// Epoch is the leader epoch of the last record counted, -1 when
	// unknown.
	Epoch int32
}

// Outcome is the result of one Apply or Reset.
type Outcome struct {
	// Applied is true when the batch was counted, or the position moved,
	// by this call.
	Applied bool
	// Stored is the partition's offset in Valkey after the call: the new
	// offset when applied, otherwise the offset that did not match base
	// (-1 when Valkey has none).
	Stored int64
	// StoredTopicID is the topic ID stored with it ("" for none).
	StoredTopicID string
}

// Apply counts a finished Delta and moves the partition's stored position
// from base to next, in one atomic script call: next.Offset must be d.Next,
// next.TopicID the topic ID the batch was read under ("" for none) and
// next.Epoch the leader epoch of its last record (-1 for none). When the
// stored offset or topic ID is not base's, it writes nothing and reports
// what is stored.
func (s *Store) Apply(ctx context.Context, d *aggregate.Delta, base, next Position) (Outcome, error) {
	if next.Offset != d.Next {
		return Outcome{}, fmt.Errorf("apply %s: next offset %d is not the delta's %d", keys.OffsetField(d.Topic, d.Partition), next.Offset, d.Next)
	}
	c, err := encode(s.keys, d, base, next, s.rateTTL)
	if err != nil {
		return Outcome{}, err
	}
	out, err := readOutcome(s.script.Exec(ctx, s.client, c.keys, c.args))
	if err != nil {
		return Outcome{}, fmt.Errorf("apply %s: %w", keys.OffsetField(d.Topic, d.Partition), err)
	}
	return out, nil
}

// resetSource moves a partition's position, with the same compare-and-set
// as apply.lua, and nothing else: the aggregates and the dedup set stay as
// they are. KEYS: the offsets hash. ARGV: field id_field epoch_field base
// base_id next next_id next_epoch, as apply.lua's.
const resetSource = `
local cur = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2])
local stored, stored_id = cur[1] or '-1', cur[2] or ''
if stored ~= ARGV[4] or stored_id ~= ARGV[5] then
  return {0, stored, stored_id}
end
local position = {ARGV[1], ARGV[6]}
if ARGV[7] ~= '' then
  position[#position + 1] = ARGV[2]
  position[#position + 1] = ARGV[7]
end
if string.sub(ARGV[8], 1, 1) ~= '-' then
  position[#position + 1] = ARGV[3]
  position[#position + 1] = ARGV[8] .. '@' .. ARGV[6]
end
redis.call('HSET', KEYS[1], unpack(position))
return {1, ARGV[6], ARGV[7] ~= '' and ARGV[7] or stored_id}
`

// Reset moves a partition's stored position from base to next without
// counting anything, when its log went back under the stored offset (a
// recreated topic, a truncated log), or to record the topic ID of a
// position stored without one. It is a compare-and-set like Apply's: when
// the stored offset or topic ID is not base's, it writes nothing and
// reports what is stored. The aggregates and the dedup set are left as
// they are.
func (s *Store) Reset(ctx context.Context, topic string, partition int32, base, next Position) (Outcome, error) {
	field := keys.OffsetField(topic, partition)
	if next.Offset < 0 {
		return Outcome{}, fmt.Errorf("reset %s to offset %d: want an offset", field, next.Offset)
	}
	args := positionArgs(topic, partition, base, next)
	out, err := readOutcome(s.reset.Exec(ctx, s.client, []string{s.keys.Offsets()}, args))
	if err != nil {
		return Outcome{}, fmt.Errorf("reset %s: %w", field, err)
	}
	return out, nil
}

// positionArgs lays out the arguments apply.lua and resetSource start with.
func positionArgs(topic string, partition int32, base, next Position) []string {
	return []string{
		keys.OffsetField(topic, partition), keys.TopicIDField(topic, partition), keys.EpochField(topic, partition),
		strconv.FormatInt(base.Offset, 10), base.TopicID,
		strconv.FormatInt(next.Offset, 10), next.TopicID, strconv.FormatInt(int64(next.Epoch), 10),
	}
}

// readOutcome reads a reply of apply.lua or resetSource: {applied, offset,
// topic id}.
func readOutcome(resp rueidis.RedisResult) (Outcome, error) {
	reply, err := resp.ToArray()
	if err != nil {
		if strings.HasPrefix(err.Error(), "BFGUARD") {
			return Outcome{}, fmt.Errorf("%w: %w", ErrGuard, err)
		}
		return Outcome{}, err
	}
	if len(reply) != 3 {
		return Outcome{}, fmt.Errorf("reply has %d elements, want 3", len(reply))
	}
	status, err := reply[0].AsInt64()
	if err != nil {
		return Outcome{}, fmt.Errorf("status: %w", err)
	}
	offset, err := reply[1].ToString()
	if err != nil {
		return Outcome{}, fmt.Errorf("offset: %w", err)
	}
	stored, err := strconv.ParseInt(offset, 10, 64)
	if err != nil {
		// Only an offset the aggregator did not write can fail here.
		return Outcome{}, fmt.Errorf("%w: stored offset %q: %w", ErrGuard, offset, err)
	}
	id, err := reply[2].ToString()
	if err != nil {
		return Outcome{}, fmt.Errorf("topic id: %w", err)
	}
	return Outcome{Applied: status == 1, Stored: stored, StoredTopicID: id}, nil
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
	field := keys.OffsetField(topic, partition)
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
		return 0, nil, fmt.Errorf("read offset %s: %w: %q: %w", field, ErrGuard, text, err)
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
	positions, err := s.LoadPositions(ctx, topic, partitions)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(positions))
	for p, pos := range positions {
		if pos.Err != nil {
			return nil, pos.Err
		}
		out[p] = pos.Offset
	}
	return out, nil
}

// StoredPosition is a partition's Position as read from Valkey, or why it
// cannot be.
type StoredPosition struct {
	Position
	// Err, when set, wraps ErrGuard: the stored offset is not one the
	// aggregator writes, and nobody can tell where the partition stands
	// until an operator fixes it.
	Err error
}

// LoadPositions returns the stored position of each partition, with
// Offset -1 for a partition Valkey has none for. A partition whose stored
// offset is unreadable has Err set; the others are still returned.
func (s *Store) LoadPositions(ctx context.Context, topic string, partitions []int32) (map[int32]StoredPosition, error) {
	out := make(map[int32]StoredPosition, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	fields := make([]string, 0, 3*len(partitions))
	for _, p := range partitions {
		fields = append(fields, keys.OffsetField(topic, p), keys.TopicIDField(topic, p), keys.EpochField(topic, p))
	}
	values, err := s.client.Do(ctx, s.client.B().Hmget().Key(s.keys.Offsets()).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("load offsets of %s: %w", topic, err)
	}
	if len(values) != len(fields) {
		return nil, fmt.Errorf("load offsets of %s: %d values for %d fields", topic, len(values), len(fields))
	}
	text := func(i int) (string, bool, error) {
		v, err := values[i].ToString()
		if rueidis.IsRedisNil(err) {
			return "", false, nil
		}
		return v, err == nil, err
	}
	for i, p := range partitions {
		pos := StoredPosition{Position: Position{Offset: -1, Epoch: -1}}
		offset, ok, err := text(3 * i)
		if err != nil {
			return nil, fmt.Errorf("load offset %s: %w", fields[3*i], err)
		}
		if ok {
			if pos.Offset, err = strconv.ParseInt(offset, 10, 64); err != nil || pos.Offset < 0 {
				pos.Offset = -1
				pos.Err = fmt.Errorf("load offset %s: %w: %q is not an offset", fields[3*i], ErrGuard, offset)
			}
		}
		if pos.TopicID, _, err = text(3*i + 1); err != nil {
			return nil, fmt.Errorf("load %s: %w", fields[3*i+1], err)
		}
		epoch, ok, err := text(3*i + 2)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", fields[3*i+2], err)
		}
		if ok && pos.Offset >= 0 {
			pos.Epoch = parseEpoch(epoch, pos.Offset)
		}
		out[p] = pos
	}
	return out, nil
}

// parseEpoch reads an epoch field, "{epoch}@{offset}", and returns the
// epoch if it was written with offset, otherwise -1: an epoch stored with
// another offset (moved since by an aggregator that kept no epochs, or by
// hand) says nothing about this one. It is only a hint, for Kafka to
// validate where the log diverged, so a malformed value is no reason to
// stop counting.
func parseEpoch(field string, offset int64) int32 {
	e, at, ok := strings.Cut(field, "@")
	if !ok || at != strconv.FormatInt(offset, 10) {
		return -1
	}
	epoch, err := strconv.ParseInt(e, 10, 32)
	if err != nil || epoch < 0 {
		return -1
	}
	return int32(epoch)
}
