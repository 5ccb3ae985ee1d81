package ingest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeKafka is an in-process Kafka (kfake) on a virtual network: the cluster
// listens on it, and the producer and the tests' own clients dial through
// it, over in-memory pipes. Inside a synctest bubble the cluster, the
// clients and the test then share virtual time: deadlines, timeouts and
// cool-downs pass at once and exactly, and synctest.Wait returns once every
// request has been answered. Outside a bubble it runs in real time.
type fakeKafka struct {
	*kfake.Cluster
	net  *kfake.VirtualNetwork
	opts []kfake.Opt
}

// newCluster starts a one-broker cluster with the sales topic.
func newCluster(t *testing.T, opts ...kfake.Opt) *fakeKafka {
	t.Helper()
	k := &fakeKafka{net: new(kfake.VirtualNetwork)}
	// A virtual network has no port 0 to pick a free port from, and needs
	// none: each cluster has a network of its own.
	k.opts = append([]kfake.Opt{
		kfake.NumBrokers(1), kfake.SeedTopics(6, topic), kfake.Ports(9092), kfake.ListenFn(k.net.Listen),
	}, opts...)
	k.restart(t)
	return k
}

// restart starts the cluster again on the same address, once Close has
// stopped it; with kfake.DataDir, it keeps what it held.
func (k *fakeKafka) restart(t *testing.T) {
	t.Helper()
	c, err := kfake.NewCluster(k.opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k.Cluster = c
}

// dial makes a client connect through the cluster's network.
func (k *fakeKafka) dial() kgo.Opt { return kgo.Dialer(k.net.DialContext) }

// client returns a client of the cluster; the caller closes it.
func (k *fakeKafka) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.ListenAddrs()...), k.dial()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}
