package prodshape

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/tooling/stack/process"
)

// ownedByNode are the prefixes of broker settings that the launcher's
// KRaft node sets itself (its listeners, roles, storage and, locally,
// no security): Strimzi forbids most of them in spec.kafka.config too.
// A manifest setting under one of them is reported, not applied.
var ownedByNode = []string{
	"listeners", "advertised.", "listener.", "inter.broker.listener.name",
	"controller.", "process.roles", "node.id", "broker.id", "log.dir",
	"metadata.log.dir", "sasl.", "ssl.", "security.", "authorizer.", "super.users",
}

// BrokerConfig splits the Kafka resource's spec.kafka.config into the
// settings a local KRaft node takes (as server.properties lines, in key
// order) and the keys it leaves to the node itself.
func BrokerConfig(k Kafka) (props []string, skipped []string) {
	for _, key := range sortedKeys(k.Spec.Kafka.Config) {
		owned := false
		for _, p := range ownedByNode {
			if strings.HasPrefix(key, p) {
				owned = true
				break
			}
		}
		if owned {
			skipped = append(skipped, key)
			continue
		}
		props = append(props, key+"="+configString(k.Spec.Kafka.Config[key]))
	}
	return props, skipped
}

// TopicState is a topic as the running cluster has it, for the summary
// and for tests.
type TopicState struct {
	Name       string
	Partitions int
	// Replicas is the replication factor of every partition (the smallest,
	// should they differ).
	Replicas int
	// Config holds the topic's settings that the manifest declares, as
	// the cluster reports them.
	Config map[string]string
}

func (t TopicState) String() string {
	var cfg []string
	for _, k := range sortedKeys(t.Config) {
		cfg = append(cfg, k+"="+t.Config[k])
	}
	return fmt.Sprintf("%s: %d partitions, %d replicas, %s", t.Name, t.Partitions, t.Replicas, strings.Join(cfg, " "))
}

// createTopics creates the manifest's KafkaTopics, each with its
// partitions, replicas and config, and returns them as the cluster then
// describes them. A topic that exists already is kept as it is.
func createTopics(ctx context.Context, bootstrap string, topics []Topic) ([]TopicState, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range topics {
		cfg := map[string]*string{}
		for k, v := range t.Spec.Config {
			s := configString(v)
			cfg[k] = &s
		}
		// Retried for a while: a cluster that has just started may not
		// count every broker yet.
		err := process.WaitUntil(ctx, 30*time.Second, 500*time.Millisecond, func() bool { return false }, func(ctx context.Context) error {
			resp, err := adm.CreateTopic(ctx, t.Spec.Partitions, t.Spec.Replicas, cfg, t.Name())
			if err == nil {
				err = resp.Err
			}
			if errors.Is(err, kerr.TopicAlreadyExists) {
				return nil
			}
			return err
		}, "create topic "+t.Name())
		if err != nil {
			return nil, fmt.Errorf("%w (%d partitions, %d replicas)", err, t.Spec.Partitions, t.Spec.Replicas)
		}
	}
	return describeTopics(ctx, adm, topics)
}

func describeTopics(ctx context.Context, adm *kadm.Client, topics []Topic) ([]TopicState, error) {
	var names []string
	for _, t := range topics {
		names = append(names, t.Name())
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, err
	}
	configs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, err
	}
	var out []TopicState
	for _, t := range topics {
		d, ok := details[t.Name()]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %v", t.Name(), d.Err)
		}
		st := TopicState{Name: t.Name(), Partitions: len(d.Partitions), Config: map[string]string{}}
		for _, p := range d.Partitions {
			if st.Replicas == 0 || len(p.Replicas) < st.Replicas {
				st.Replicas = len(p.Replicas)
			}
		}
		rc, err := configs.On(t.Name(), nil)
		if err != nil {
			return nil, fmt.Errorf("describe topic %s's config: %w", t.Name(), err)
		}
		for _, c := range rc.Configs {
			if _, declared := t.Spec.Config[c.Key]; declared {
				st.Config[c.Key] = c.MaybeValue()
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// checkTopics compares what the cluster has with what the manifest
// declares.
func checkTopics(want []Topic, got []TopicState) error {
	var errs []error
	for i, t := range want {
		g := got[i]
		if g.Partitions != int(t.Spec.Partitions) || g.Replicas != int(t.Spec.Replicas) {
			errs = append(errs, fmt.Errorf("topic %s has %d partitions and %d replicas, the manifest declares %d and %d (it existed before?)",
				g.Name, g.Partitions, g.Replicas, t.Spec.Partitions, t.Spec.Replicas))
		}
		for k, v := range t.Spec.Config {
			if g.Config[k] != configString(v) {
				errs = append(errs, fmt.Errorf("topic %s has %s=%s, the manifest declares %s", g.Name, k, g.Config[k], configString(v)))
			}
		}
	}
	return errors.Join(errs...)
}

// listenerPorts are the ports of the Kafka resource's listeners, which
// clients in the cluster use with its bootstrap Service.
func listenerPorts(k Kafka) []int {
	var ports []int
	for _, l := range k.Spec.Kafka.Listeners {
		ports = append(ports, l.Port)
	}
	return ports
}

// securedListeners describes the listeners with TLS or authentication,
// which the local cluster does not have.
func securedListeners(k Kafka) []string {
	var out []string
	for _, l := range k.Spec.Kafka.Listeners {
		var what []string
		if l.TLS {
			what = append(what, "TLS")
		}
		if l.Authentication != nil {
			what = append(what, l.Authentication.Type)
		}
		if len(what) > 0 {
			out = append(out, fmt.Sprintf("listener %s (port %s): %s", l.Name, strconv.Itoa(l.Port), strings.Join(what, ", ")))
		}
	}
	if k.Spec.Kafka.Authorization != nil {
		out = append(out, "authorization "+k.Spec.Kafka.Authorization.Type)
	}
	return out
}
