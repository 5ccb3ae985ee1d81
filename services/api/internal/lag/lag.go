// Package lag reads the sales topic's offsets from Kafka: the far end of the
// aggregator's lag, whose near end is the offsets the aggregator stores with
// the aggregates in Valkey.
package lag

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/services/api/internal/analytics"
)

// Kafka reads one topic's offsets.
type Kafka struct {
	client *kgo.Client
	admin  *kadm.Client
	topic  string
}

// New returns a Kafka for topic. It does not contact Kafka: the api must
// start while Kafka is down.
func New(brokers []string, topic string, opts ...kgo.Opt) (*Kafka, error) {
	client, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &Kafka{client: client, admin: kadm.NewClient(client), topic: topic}, nil
}

// Offsets returns the log start and end offsets of every partition of the
// topic.
func (k *Kafka) Offsets(ctx context.Context) (map[int32]analytics.PartitionOffsets, error) {
	ends, err := k.admin.ListEndOffsets(ctx, k.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", k.topic, err)
	}
	starts, err := k.admin.ListStartOffsets(ctx, k.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", k.topic, err)
	}
	out := map[int32]analytics.PartitionOffsets{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		out[o.Partition] = analytics.PartitionOffsets{Start: s.Offset, End: o.Offset}
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", k.topic)
	}
	return out, nil
}

// Close closes the Kafka client.
func (k *Kafka) Close() { k.client.Close() }
