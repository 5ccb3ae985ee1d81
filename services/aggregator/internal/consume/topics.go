package consume

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics creates the topics that do not exist yet, with the broker's
// default replication factor, through a client made with opts (seed brokers,
// SASL, TLS). A topic that already exists, whatever its partition count, is
// left alone.
func EnsureTopics(ctx context.Context, opts []kgo.Opt, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Ask first: where topics are managed (Strimzi KafkaTopic) the
	// aggregator's Kafka user may describe its topics but not create
	// them, and should not be refused for nothing at every start.
	existing, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describe topics %v: %w", topics, err)
	}
	var missing []string
	for _, t := range topics {
		if d, ok := existing[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, missing...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", missing, err)
	}
	var errs []error
	for _, t := range resp.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Topic, t.Err))
		}
	}
	return errors.Join(errs...)
}
