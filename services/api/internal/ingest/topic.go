package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// EnsureTopic creates the sales topic with the configured partition count and
// the broker's default replication factor. A topic that already exists is
// left as it is, whatever its partition count.
func (p *Producer) EnsureTopic(ctx context.Context) error {
	_, err := kadm.NewClient(p.client).CreateTopic(ctx, p.partitions, -1, nil, p.topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", p.topic, err)
	}
	return nil
}
