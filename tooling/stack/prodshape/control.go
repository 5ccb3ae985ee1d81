package prodshape

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/process"
)

// What a fault test does to a running shape, as Kubernetes or Strimzi
// would do it to prod: kill, stop and start a pod or a Kafka node, scale
// a Deployment's processes, and find which node leads which partition.

// Pod returns the pod named name ("api-1").
func (sh *Shape) Pod(name string) (Pod, error) {
	for _, p := range sh.st.Pods {
		if p.Name == name {
			return p, nil
		}
	}
	return Pod{}, fmt.Errorf("prodshape: no pod %s", name)
}

// controlled returns the pod named name if it is one of the shape's own
// processes: the stack's (Valkey) are the launcher's to stop.
func (sh *Shape) controlled(name string) (Pod, error) {
	p, err := sh.Pod(name)
	if err == nil && p.Stack {
		err = fmt.Errorf("prodshape: pod %s belongs to the stack launcher", name)
	}
	return p, err
}

// Running reports whether the pod named name has a running process.
func (sh *Shape) Running(name string) bool {
	p, err := sh.Pod(name)
	return err == nil && process.PidFile(p.PidFile).Pid() != 0
}

// KillPod kills the pod's process with SIGKILL, as a node's OOM killer or
// a lost node would, and waits until it is gone.
func (sh *Shape) KillPod(name string) error {
	p, err := sh.controlled(name)
	if err != nil {
		return err
	}
	fmt.Fprintf(sh.cfg.Log, "prodshape: killing %s with SIGKILL\n", name)
	return process.PidFile(p.PidFile).Kill()
}

// StopPod stops the pod's process as Kubernetes deletes a pod: SIGTERM,
// then SIGKILL after its terminationGracePeriodSeconds.
func (sh *Shape) StopPod(name string) error {
	p, err := sh.controlled(name)
	if err != nil {
		return err
	}
	fmt.Fprintf(sh.cfg.Log, "prodshape: stopping %s (SIGTERM, grace %ds)\n", name, cmp.Or(p.GracePeriod, 30))
	return process.PidFile(p.PidFile).Stop(time.Duration(cmp.Or(p.GracePeriod, 30)) * time.Second)
}

// StartPod starts a pod that does not run, as Kubernetes restarts a
// container: the same binary with the same env (the pod's env file),
// awaited until its startup and readiness probes pass. A pod that runs
// is left alone.
func (sh *Shape) StartPod(ctx context.Context, name string) error {
	p, err := sh.controlled(name)
	if err != nil {
		return err
	}
	if process.PidFile(p.PidFile).Pid() != 0 {
		return nil
	}
	m, err := sh.Manifest()
	if err != nil {
		return err
	}
	w, ok := m.Deployment(p.Workload)
	if !ok {
		return fmt.Errorf("prodshape: pod %s: no Deployment %s in the manifest", name, p.Workload)
	}
	ci := slices.IndexFunc(w.Spec.Template.Spec.Containers, func(c Container) bool { return c.Name == p.Container })
	if ci < 0 {
		return fmt.Errorf("prodshape: pod %s: no container %s in Deployment %s", name, p.Container, p.Workload)
	}
	c := w.Spec.Template.Spec.Containers[ci]
	env, err := os.ReadFile(filepath.Join(filepath.Dir(p.PidFile), "env"))
	if err != nil {
		return fmt.Errorf("prodshape: pod %s: %w", name, err)
	}
	bin := filepath.Join(cmp.Or(sh.cfg.Bin, filepath.Join(sh.cfg.Dir, "bin")), binaryOf(c.Image, stack.Binaries))
	return sh.launch(ctx, p, c, bin, strings.Split(strings.TrimSuffix(string(env), "\n"), "\n"))
}

// Scale runs the first n pods of the workload, as a Deployment scaled to
// n replicas does: the pods past n are stopped (StopPod, the newest
// first), the missing ones among the first n started (StartPod). n is at
// most the number of pods Up made for it.
func (sh *Shape) Scale(ctx context.Context, workload string, n int) error {
	pods := sh.Pods(workload)
	if n < 0 || n > len(pods) {
		return fmt.Errorf("prodshape: scale %s to %d: it has %d pods", workload, n, len(pods))
	}
	fmt.Fprintf(sh.cfg.Log, "prodshape: scaling %s to %d\n", workload, n)
	var errs []error
	for _, p := range slices.Backward(pods[n:]) {
		errs = append(errs, sh.StopPod(p.Name))
	}
	for _, p := range pods[:n] {
		errs = append(errs, sh.StartPod(ctx, p.Name))
	}
	return errors.Join(errs...)
}

// KafkaNodeIDs returns the ids of the Kafka nodes.
func (sh *Shape) KafkaNodeIDs() ([]int, error) {
	c, err := sh.stack.Cluster()
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, n := range c.Nodes() {
		ids = append(ids, n.ID)
	}
	return ids, nil
}

// KillKafkaNode kills Kafka node id with SIGKILL; its data stays.
func (sh *Shape) KillKafkaNode(id int) error {
	c, err := sh.stack.Cluster()
	if err != nil {
		return err
	}
	return c.KillNode(id)
}

// StopKafkaNode stops Kafka node id with a controlled shutdown (SIGTERM:
// it hands its leaderships over first), as Strimzi rolls a pod.
func (sh *Shape) StopKafkaNode(id int) error {
	c, err := sh.stack.Cluster()
	if err != nil {
		return err
	}
	return c.StopNode(id)
}

// StartKafkaNode starts Kafka node id again, with the broker settings
// it ran with, and waits until it is ready.
func (sh *Shape) StartKafkaNode(ctx context.Context, id int) error {
	c, err := sh.stack.Cluster()
	if err != nil {
		return err
	}
	return c.StartNode(ctx, id)
}

// KafkaNodeRunning reports whether Kafka node id has a running process.
func (sh *Shape) KafkaNodeRunning(id int) bool {
	c, err := sh.stack.Cluster()
	return err == nil && c.Pid(id) != 0
}

// PartitionLeaders returns the leader of each partition of topic, by
// partition, as the cluster's metadata says (-1: none).
func (sh *Shape) PartitionLeaders(ctx context.Context, topic string) (map[int32]int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(sh.st.Kafka, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return nil, err
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return nil, fmt.Errorf("prodshape: topic %s: not in the metadata (%v)", topic, d.Err)
	}
	out := map[int32]int32{}
	for p, pd := range d.Partitions {
		out[p] = pd.Leader
	}
	return out, nil
}

// BusiestLeader returns the node that leads the most partitions in
// leaders (the lowest id on a tie) and how many it leads.
func BusiestLeader(leaders map[int32]int32) (node int32, partitions int) {
	count := map[int32]int{}
	for _, l := range leaders {
		if l >= 0 {
			count[l]++
		}
	}
	node = -1
	for _, n := range slices.Sorted(maps.Keys(count)) {
		if count[n] > partitions {
			node, partitions = n, count[n]
		}
	}
	return node, partitions
}

// UnderReplicated returns how many partitions of topic have fewer
// replicas in sync than assigned.
func (sh *Shape) UnderReplicated(ctx context.Context, topic string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(sh.st.Kafka, ",")...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return 0, fmt.Errorf("prodshape: topic %s: not in the metadata (%v)", topic, d.Err)
	}
	under := 0
	for _, pd := range d.Partitions {
		if len(pd.ISR) < len(pd.Replicas) {
			under++
		}
	}
	return under, nil
}
