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
	"github.com/twmb/franz-go/pkg/kmsg"

	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/process"
)

// prodTiming undoes the launcher's short broker session, kept for quick
// restarts in development: Strimzi forbids every broker.* setting in
// spec.kafka.config, so a prod cluster fences a dead broker, and moves its
// partitions' leaders, only after Kafka's default session of 9 s.
const prodTiming = `# Kafka's defaults, which a Strimzi cluster cannot change (broker.* is forbidden)
broker.heartbeat.interval.ms=2000
broker.session.timeout.ms=9000
`

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
	// A topic just made may not be in every broker's metadata yet.
	var out []TopicState
	err = process.WaitUntil(ctx, 30*time.Second, 500*time.Millisecond, func() bool { return false }, func(ctx context.Context) error {
		var err error
		out, err = describeTopics(ctx, adm, topics)
		return err
	}, "describe the topics")
	return out, err
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
		if !ok {
			return nil, fmt.Errorf("describe topic %s: not in the metadata", t.Name())
		}
		if d.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", t.Name(), d.Err)
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

// securedListeners describes what of the Kafka resource's listeners the
// local cluster lacks: TLS always; SASL authentication and authorization
// when it runs plain.
func securedListeners(k Kafka, plain bool) []string {
	var out []string
	for _, l := range k.Spec.Kafka.Listeners {
		var what []string
		// The local cluster has TLS only on its SCRAM listener.
		if l.TLS && (plain || l.Authentication == nil) {
			what = append(what, "TLS")
		}
		if l.Authentication != nil && plain {
			what = append(what, l.Authentication.Type)
		}
		if len(what) > 0 {
			out = append(out, fmt.Sprintf("listener %s (port %s): %s; the local one is plaintext", l.Name, strconv.Itoa(l.Port), strings.Join(what, ", ")))
		}
	}
	if k.Spec.Kafka.Authorization != nil && plain {
		out = append(out, "authorization "+k.Spec.Kafka.Authorization.Type+": off locally")
	}
	return out
}

// listenerTLS reports whether a listener with SASL authentication has
// TLS, so that the local SCRAM listener should have it too.
func listenerTLS(k Kafka) bool {
	for _, l := range k.Spec.Kafka.Listeners {
		if l.TLS && l.Authentication != nil {
			return true
		}
	}
	return false
}

// listenerAuth reports whether clients of the listener on port
// authenticate with SASL.
func listenerAuth(k Kafka, port int) bool {
	for _, l := range k.Spec.Kafka.Listeners {
		if l.Port == port {
			return l.Authentication != nil
		}
	}
	return false
}

// scramUsers returns the KafkaUsers that authenticate with SCRAM, as the
// local cluster's users: each with the local value of the Secret that
// Strimzi's User Operator makes for it (named after the user, key
// "password"), which is what the Deployments read.
func scramUsers(m *Manifest, sec secrets) ([]kafka.User, error) {
	var users []kafka.User
	for _, u := range m.KafkaUsers {
		if u.Spec.Authentication == nil || !strings.HasPrefix(u.Spec.Authentication.Type, "scram-sha") {
			continue
		}
		pw, err := sec.get(u.Metadata.Name, "password")
		if err != nil {
			return nil, err
		}
		users = append(users, kafka.User{Name: u.Metadata.Name, Password: pw})
	}
	return users, nil
}

// createACLs creates the KafkaUsers' simple-authorization ACLs, as
// Strimzi's User Operator does, through the launcher's PLAINTEXT listener
// (a super user). It returns one line per ACL, for the summary.
func createACLs(ctx context.Context, bootstrap string, users []KafkaUser) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var made []string
	for _, u := range users {
		if u.Spec.Authorization == nil || u.Spec.Authorization.Type != "simple" {
			continue
		}
		principal := "User:" + u.Metadata.Name
		for _, a := range u.Spec.Authorization.ACLs {
			b := kadm.NewACLs()
			host := cmpStr(a.Host, "*")
			if a.Type == "deny" {
				b.Deny(principal).DenyHosts(host)
			} else {
				b.Allow(principal).AllowHosts(host)
			}
			switch a.Resource.Type {
			case "topic":
				b.Topics(a.Resource.Name)
			case "group":
				b.Groups(a.Resource.Name)
			case "transactionalId":
				b.TransactionalIDs(a.Resource.Name)
			case "cluster":
				b.Clusters()
			default:
				return nil, fmt.Errorf("KafkaUser %s: ACL resource type %q is not known to the launcher", u.Metadata.Name, a.Resource.Type)
			}
			if a.Resource.PatternType == "prefix" {
				b.ResourcePatternType(kadm.ACLPatternPrefixed)
			} else {
				b.ResourcePatternType(kadm.ACLPatternLiteral)
			}
			var ops []kadm.ACLOperation
			for _, o := range a.Operations {
				op, err := kmsg.ParseACLOperation(o)
				if err != nil {
					return nil, fmt.Errorf("KafkaUser %s: operation %q: %w", u.Metadata.Name, o, err)
				}
				ops = append(ops, op)
			}
			b.Operations(ops...)
			results, err := adm.CreateACLs(ctx, b)
			if err != nil {
				return nil, fmt.Errorf("KafkaUser %s: create ACLs: %w", u.Metadata.Name, err)
			}
			for _, r := range results {
				if r.Err != nil {
					return nil, fmt.Errorf("KafkaUser %s: create ACL on %s %s: %w", u.Metadata.Name, a.Resource.Type, a.Resource.Name, r.Err)
				}
			}
			made = append(made, fmt.Sprintf("%s %s %s %s%s: %s", principal, cmpStr(a.Type, "allow"), a.Resource.Type, a.Resource.Name,
				map[bool]string{true: " (prefix)"}[a.Resource.PatternType == "prefix"], strings.Join(a.Operations, ",")))
		}
	}
	return made, nil
}
