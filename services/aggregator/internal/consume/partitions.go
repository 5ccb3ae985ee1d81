package consume

import (
	"sync"

	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/store"
)

type topicPartition struct {
	topic     string
	partition int32
}

// position is where a partition stands in Valkey, as far as this member
// knows: the stored offset (its base, -1 for none) and the topic ID stored
// with it ("" for none).
type position struct {
	offset  int64
	topicID string
}

// positionOf returns what a member keeps of a stored position.
func positionOf(p store.Position) position {
	return position{offset: p.Offset, topicID: p.TopicID}
}

// partitions holds the position of each partition this member owns. The
// poll loop reads and writes it while rebalances are blocked; the group
// callbacks add and drop partitions. The mutex makes the hand-over explicit
// rather than relying on the client's gating alone.
type partitions struct {
	mu    sync.Mutex
	bases map[topicPartition]position
	// dedup holds this member's copy of each partition's dedup set and
	// the base it reflects.
	dedup map[topicPartition]seenCopy
}

type seenCopy struct {
	base int64
	set  *aggregate.SeenSet
}

func newPartitions() *partitions {
	return &partitions{bases: make(map[topicPartition]position), dedup: make(map[topicPartition]seenCopy)}
}

// seen returns the copy of a partition's dedup set if it reflects base,
// otherwise nil.
func (p *partitions) seen(tp topicPartition, base int64) *aggregate.SeenSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.dedup[tp]; ok && c.base == base {
		return c.set
	}
	return nil
}

// setSeen records the copy of a partition's dedup set as of base.
func (p *partitions) setSeen(tp topicPartition, base int64, set *aggregate.SeenSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dedup[tp] = seenCopy{base: base, set: set}
}

func (p *partitions) position(tp topicPartition) (position, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pos, ok := p.bases[tp]
	return pos, ok
}

func (p *partitions) setPosition(tp topicPartition, pos position) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bases[tp] = pos
}

// clear forgets every partition, when the member's Kafka client is
// replaced.
func (p *partitions) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.bases)
	clear(p.dedup)
}

func (p *partitions) drop(topic string, parts []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range parts {
		delete(p.bases, topicPartition{topic: topic, partition: part})
		delete(p.dedup, topicPartition{topic: topic, partition: part})
	}
}

// owned returns the owned partitions of each topic.
func (p *partitions) owned() map[string][]int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]int32)
	for tp := range p.bases {
		out[tp.topic] = append(out[tp.topic], tp.partition)
	}
	return out
}
