package kafka

import (
	"context"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded serves franz-go's kfake, an in-memory Kafka, on 127.0.0.1:port
// until ctx ends, with topics seeded with partitions each and any other
// topic created on first use. ready is called with the bootstrap address
// once it listens. Everything it holds is lost when it stops.
func Embedded(ctx context.Context, port int, partitions int32, topics []string, ready func(addr string)) error {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.SeedTopics(partitions, topics...),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return fmt.Errorf("start the embedded Kafka (kfake) on port %d: %w", port, err)
	}
	defer c.Close()
	ready(strings.Join(c.ListenAddrs(), ","))
	<-ctx.Done()
	return nil
}
