package consume

import (
	"sync"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

type topicPartition struct {
	topic     string
	partition int32
}

// partitions holds the base of each partition this member owns: the offset
// Valkey holds for it, as far as this member knows. The poll loop reads and
// writes it while rebalances are blocked; the group callbacks add and drop
// partitions. The mutex makes the hand-over explicit rather than relying on
// the client's gating alone.
type partitions struct {
	mu    sync.Mutex
	bases map[topicPartition]int64
	// dedup holds this member's copy of each partition's dedup set and
	// the base it reflects.
	dedup map[topicPartition]seenCopy
}

type seenCopy struct {
	base int64
	set  *aggregate.SeenSet
}

func newPartitions() *partitions {
	return &partitions{bases: make(map[topicPartition]int64), dedup: make(map[topicPartition]seenCopy)}
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

func (p *partitions) base(tp topicPartition) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.bases[tp]
	return b, ok
}

func (p *partitions) set(tp topicPartition, base int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bases[tp] = base
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
