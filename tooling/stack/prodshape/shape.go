// Package prodshape runs the production shape on one machine: the Kafka
// cluster, topics, Valkey and processes that the rendered prod overlay
// (`kustomize build kustomize/overlays/prod`, with the pinned kustomize of
// deploy.mk) declares, with the settings it declares, as local processes
// started by the stack launcher:
//
//   - a real Apache Kafka cluster of as many KRaft nodes as the
//     KafkaNodePool has, with the Kafka resource's spec.kafka.config as
//     broker settings, every KafkaTopic created with its partitions,
//     replicas and config, and the KafkaUsers' SCRAM users and ACLs
//     (authorization on) on a SCRAM listener of each node, over TLS with
//     a test CA when the manifest's listener has TLS (the CA is the local
//     value of Strimzi's cluster CA Secret, which the processes mount);
//   - a real Valkey with the StatefulSet's settings and ACL users,
//     rendered by the manifest's own init script from local passwords;
//   - the api and the aggregator, the real binaries, several replicas of
//     each, each with the env of its Deployment (env, envFrom ConfigMaps,
//     Secrets with local values, the downward API), Service DNS names
//     mapped to the local addresses and each container port moved to a
//     local port of its own.
//
// What prod has that one machine does not yet: the network policies, the Gateway, Grafana and Prometheus,
// resource limits and the brokers' JVM sizing. Summary lists it for a
// running shape. Config.PlainKafka leaves SCRAM and ACLs off as well.
//
// Check compares the running processes with the manifest: every probe
// answers as declared, and every container port and Service target port
// is a port the process listens on.
//
// The shape lives in the stack's directory (package stack), under
// prodshape/: shape.json (the pods, their ports and notes), rendered.yaml
// (what was read), secrets/ (the local values of the Secrets), and a
// directory per pod with its pid file, log and volumes.
package prodshape

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/process"
	"blackfriday.local/tooling/stack/valkey"
)

// DefaultReplicas are the processes started per Deployment when Config
// names no count: two api processes, so that a test writes through more
// than one, and three aggregators, so that the consumer group shares its
// partitions among several members. The overlay's autoscalers own the
// count in prod (no spec.replicas); Summary shows their minimums.
var DefaultReplicas = map[string]int{stack.API: 2, stack.Aggregator: 3}

// Config is how a shape runs.
type Config struct {
	// Dir is the stack's directory (see package stack).
	Dir string
	// Root is the repository, which holds kustomize/ and deploy.mk;
	// empty means the one at or above the working directory. Only Up
	// needs it.
	Root string
	// Overlay is the overlay to render (default "prod").
	Overlay string
	// Bin holds the api and aggregator binaries; empty means Dir/bin,
	// where they are built when missing.
	Bin string
	// KafkaNodes overrides the KafkaNodePool's replicas when not 0.
	KafkaNodes int
	// Replicas is the number of processes per Deployment, by name; a
	// Deployment it does not name gets DefaultReplicas, else 1.
	Replicas map[string]int
	// Kafka is how the nodes run (heap, JVM options, more properties,
	// which come after the manifest's); its Nodes and Users are the
	// shape's.
	Kafka kafka.Config
	// PlainKafka runs Kafka without the KafkaUsers' SCRAM users and
	// ACLs, and leaves the processes' KAFKA_SASL_* settings off too.
	PlainKafka bool
	// Log receives what the shape does, a line at a time; nil discards.
	Log io.Writer
}

// State is a running shape, as kept in shape.json.
type State struct {
	Overlay   string `json:"overlay"`
	Namespace string `json:"namespace"`
	// Kafka is the bootstrap list of the PLAINTEXT listeners (the
	// launcher's), KafkaSASL that of the SCRAM ones (the processes'),
	// empty when the shape runs plain; Valkey is the server's address.
	Kafka     string `json:"kafka"`
	KafkaSASL string `json:"kafka_sasl,omitempty"`
	// KafkaCA is the test CA that signs the SCRAM listeners' certificate,
	// empty when they are not on TLS.
	KafkaCA string `json:"kafka_ca,omitempty"`
	Valkey  string `json:"valkey"`
	// Nodes is the number of Kafka nodes; Broker the settings they took
	// from the Kafka resource.
	Nodes  int      `json:"nodes"`
	Broker []string `json:"broker"`
	// KafkaProperties are the server.properties lines the nodes run with
	// beyond the launcher's own: a node restarted (StartKafkaNode) gets
	// them again.
	KafkaProperties string       `json:"kafka_properties,omitempty"`
	Topics          []TopicState `json:"topics"`
	// ACLs are the KafkaUsers' ACLs the cluster was given.
	ACLs []string `json:"acls,omitempty"`
	// Pods are the processes, in start order; the first is Valkey's.
	Pods []Pod `json:"pods"`
	// Missing says what of prod the shape does not have.
	Missing []string `json:"missing"`
}

// Shape is the production shape in a stack's directory.
type Shape struct {
	cfg   Config
	st    State
	stack *stack.Stack
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("prodshape: no directory")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = dir
	c.Overlay = cmp.Or(c.Overlay, "prod")
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

func stateDir(dir string) string { return filepath.Join(dir, "prodshape") }

// Exists reports whether a shape was brought up in the stack directory dir.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(stateDir(dir), "shape.json"))
	return err == nil
}

// Open returns the shape brought up in cfg.Dir before.
func Open(cfg Config) (*Shape, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir(cfg.Dir), "shape.json"))
	if err != nil {
		return nil, fmt.Errorf("prodshape: no shape in %s: %w", cfg.Dir, err)
	}
	sh := &Shape{cfg: cfg}
	if err := json.Unmarshal(b, &sh.st); err != nil {
		return nil, err
	}
	kcfg := cfg.Kafka
	kcfg.ExtraProperties = sh.st.KafkaProperties
	sh.stack, err = stack.New(stack.Config{Dir: cfg.Dir, Kafka: kcfg, Log: cfg.Log})
	return sh, err
}

// State returns what runs.
func (sh *Shape) State() State { return sh.st }

// Pods returns the pods of the workload named name ("api").
func (sh *Shape) Pods(name string) []Pod {
	var out []Pod
	for _, p := range sh.st.Pods {
		if p.Workload == name {
			out = append(out, p)
		}
	}
	return out
}

// Secret returns the local value of key in Secret name, which the shape
// made: a test's bearer token, say.
func (sh *Shape) Secret(name, key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir(sh.cfg.Dir), "secrets", name, key))
	if err != nil {
		return "", fmt.Errorf("prodshape: no local Secret %s key %s: %w", name, key, err)
	}
	return string(b), nil
}

// Manifest returns the manifests the shape was made from.
func (sh *Shape) Manifest() (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(stateDir(sh.cfg.Dir), "rendered.yaml"))
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Up renders the overlay and brings its shape up in cfg.Dir: Valkey and
// the Kafka cluster (through the stack launcher), the topics, then the
// processes, aggregators first, each awaited until its startup and
// readiness probes pass. On failure what started is stopped.
func Up(ctx context.Context, cfg Config) (sh *Shape, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.Root == "" {
		if cfg.Root, err = stack.RepoRoot(); err != nil {
			return nil, err
		}
	}
	if Exists(cfg.Dir) || kafka.Exists(filepath.Join(cfg.Dir, stack.Kafka)) || valkey.Exists(filepath.Join(cfg.Dir, stack.Valkey)) {
		return nil, fmt.Errorf("prodshape: %s holds a stack already: stop it first (stack -dir %s down)", cfg.Dir, cfg.Dir)
	}
	rendered, err := Render(ctx, cfg.Root, cfg.Overlay, cfg.Log)
	if err != nil {
		return nil, err
	}
	m, err := Parse(rendered)
	if err != nil {
		return nil, err
	}
	if len(m.Kafkas) != 1 {
		return nil, fmt.Errorf("prodshape: overlay %s has %d Kafka resources, want one", cfg.Overlay, len(m.Kafkas))
	}
	k := m.Kafkas[0]
	sh = &Shape{cfg: cfg, st: State{Overlay: cfg.Overlay, Namespace: k.Metadata.Namespace}}
	sd := stateDir(cfg.Dir)
	if err := os.MkdirAll(sd, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(sd, "rendered.yaml"), rendered, 0o644); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if downErr := sh.Down(); downErr != nil {
				fmt.Fprintln(cfg.Log, "prodshape:", downErr)
			}
			sh = nil
		}
	}()
	sec := secrets{dir: filepath.Join(sd, "secrets")}

	// Kafka: the node pool's size and the Kafka resource's settings.
	sh.st.Nodes = cmp.Or(cfg.KafkaNodes, m.KafkaNodes(), 1)
	for _, t := range m.Topics {
		if int(t.Spec.Replicas) > sh.st.Nodes {
			return sh, fmt.Errorf("prodshape: topic %s has %d replicas, more than the %d Kafka nodes asked for", t.Name(), t.Spec.Replicas, sh.st.Nodes)
		}
	}
	var skipped []string
	sh.st.Broker, skipped = BrokerConfig(k)
	kcfg := cfg.Kafka
	kcfg.Nodes, kcfg.Users, kcfg.ACL = sh.st.Nodes, nil, false
	if !cfg.PlainKafka {
		// SCRAM users and ACLs as the KafkaUsers declare them, on a
		// listener with TLS when prod's has it: prod's authentication,
		// authorization and encryption.
		if kcfg.Users, err = scramUsers(m, sec); err != nil {
			return sh, err
		}
		kcfg.TLS = listenerTLS(k)
		kcfg.ACL = k.Spec.Kafka.Authorization != nil && k.Spec.Kafka.Authorization.Type == "simple"
		if len(kcfg.Users) > 0 || kcfg.ACL {
			sh.missing("Kafka: the local cluster also has a PLAINTEXT listener for the launcher (User:ANONYMOUS, a super user), which prod does not")
		}
	}
	kcfg.ExtraProperties = "# From the Kafka resource " + k.Metadata.Name + "'s spec.kafka.config (" + cfg.Overlay + " overlay)\n" +
		strings.Join(sh.st.Broker, "\n") + "\n" + prodTiming + cfg.Kafka.ExtraProperties
	sh.st.KafkaProperties = kcfg.ExtraProperties
	for _, key := range skipped {
		sh.missing("broker setting %s: the local node sets it itself", key)
	}
	for _, s := range securedListeners(k, cfg.PlainKafka) {
		sh.missing("Kafka %s", s)
	}
	for _, p := range m.NodePools {
		if len(p.Spec.JVMOptions) > 0 {
			sh.missing("KafkaNodePool %s jvmOptions %v: the local nodes keep the launcher's heap", p.Metadata.Name, p.Spec.JVMOptions)
		}
	}

	// Valkey: the StatefulSet's settings and users.
	vpod, vcfg, err := sh.valkey(ctx, m, sec)
	if err != nil {
		return sh, err
	}
	sh.stack, err = stack.New(stack.Config{Dir: cfg.Dir, Bin: cfg.Bin, Kafka: kcfg, Valkey: vcfg, Log: cfg.Log})
	if err != nil {
		return sh, err
	}
	if err := sh.stack.Up(ctx, stack.Valkey, stack.Kafka); err != nil {
		return sh, err
	}
	srv, err := sh.stack.Server()
	if err != nil {
		return sh, err
	}
	sh.st.Valkey = srv.Addr()
	vpod.Ports[0].Local, _ = strconv.Atoi(strings.TrimPrefix(srv.Addr(), "127.0.0.1:"))
	vpod.PidFile = filepath.Join(srv.Dir(), "valkey.pid")
	sh.st.Pods = append(sh.st.Pods, *vpod)
	c, err := sh.stack.Cluster()
	if err != nil {
		return sh, err
	}
	sh.st.Kafka, sh.st.KafkaSASL, sh.st.KafkaCA = c.Bootstrap(), c.SASLBootstrap(), c.CAFile()
	if sh.st.KafkaCA != "" {
		// What the processes mount as Strimzi's cluster CA certificate.
		ca, err := os.ReadFile(sh.st.KafkaCA)
		if err != nil {
			return sh, err
		}
		if err := sec.put(k.Metadata.Name+"-cluster-ca-cert", "ca.crt", string(ca)); err != nil {
			return sh, err
		}
	}
	if sh.st.KafkaSASL != "" {
		if sh.st.ACLs, err = createACLs(ctx, sh.st.Kafka, m.KafkaUsers); err != nil {
			return sh, err
		}
	}
	if sh.st.Topics, err = createTopics(ctx, sh.st.Kafka, m.Topics); err != nil {
		return sh, err
	}
	if err := checkTopics(m.Topics, sh.st.Topics); err != nil {
		return sh, err
	}
	for _, t := range sh.st.Topics {
		fmt.Fprintf(cfg.Log, "prodshape: topic %s\n", t)
	}

	plan, err := sh.plan(m, k, sec)
	if err != nil {
		return sh, err
	}
	bins, err := sh.binaries(ctx)
	if err != nil {
		return sh, err
	}
	for _, p := range plan {
		sh.st.Pods = append(sh.st.Pods, *p.pod)
		if err := sh.save(); err != nil {
			return sh, err
		}
		if err := sh.launch(ctx, *p.pod, p.c, filepath.Join(bins, p.bin), p.env); err != nil {
			return sh, err
		}
	}
	for _, d := range m.Deployments {
		if h, ok := m.HPAFor(d.Metadata.Name); ok && len(sh.Pods(d.Metadata.Name)) > 0 {
			sh.missing("Deployment %s: %d local processes; its autoscaler runs %d to %d in %s", d.Metadata.Name, len(sh.Pods(d.Metadata.Name)), h.Spec.MinReplicas, h.Spec.MaxReplicas, cfg.Overlay)
		}
	}
	return sh, sh.save()
}

// planned is a pod to start: its workload, its container, the binary
// the container's image runs and its resolved env.
type planned struct {
	pod *Pod
	w   Workload
	c   Container
	bin string
	env []string
}

// plan makes the pods of every Deployment whose container runs one of the
// repository's binaries, as many as Config.Replicas says, in start order:
// their local ports first, so that every Service has its local address
// before any env is resolved, then their env. It needs Valkey's pod
// (st.Pods[0]) and the Kafka bootstrap (st.Kafka), and writes each pod's
// env file and volumes; it starts nothing.
func (sh *Shape) plan(m *Manifest, k Kafka, sec secrets) ([]planned, error) {
	var plan []planned
	taken := map[int]bool{}
	for _, w := range m.Deployments {
		ci := slices.IndexFunc(w.Spec.Template.Spec.Containers, func(c Container) bool { return binaryOf(c.Image, stack.Binaries) != "" })
		if ci < 0 {
			sh.missing("Deployment %s: runs a third-party image, not run locally", w.Metadata.Name)
			continue
		}
		c := w.Spec.Template.Spec.Containers[ci]
		n := cmp.Or(sh.cfg.Replicas[w.Metadata.Name], DefaultReplicas[w.Metadata.Name], 1)
		for i := range n {
			pod := &Pod{Name: fmt.Sprintf("%s-%d", w.Metadata.Name, i), Workload: w.Metadata.Name, Kind: "Deployment", Container: c.Name, GracePeriod: 30}
			if g := w.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				pod.GracePeriod = *g
			}
			for _, p := range c.Ports {
				l, err := freePort(taken)
				if err != nil {
					return nil, err
				}
				pod.Ports = append(pod.Ports, Port{Name: p.Name, ContainerPort: p.ContainerPort, Local: l})
			}
			plan = append(plan, planned{pod: pod, w: w, c: c, bin: binaryOf(c.Image, stack.Binaries)})
		}
	}
	// Aggregators before the api, as the launcher starts them.
	slices.SortStableFunc(plan, func(a, b planned) int {
		return cmp.Compare(startRank(a.bin), startRank(b.bin))
	})
	pods := slices.Clone(sh.st.Pods)
	for _, p := range plan {
		pods = append(pods, *p.pod)
	}
	services := sh.services(m, k, pods)
	sd := stateDir(sh.cfg.Dir)
	for i, p := range plan {
		dir := filepath.Join(sd, p.pod.Name)
		e := &podEnv{m: m, w: p.w, c: p.c, pod: p.pod, ns: sh.st.Namespace, secrets: sec, services: services, volumes: filepath.Join(dir, "volumes")}
		switch {
		case sh.st.KafkaSASL == "":
			e.drop = securityEnv
		case sh.st.KafkaCA == "":
			e.drop = tlsEnv
		}
		env, err := e.resolve()
		if err != nil {
			return nil, err
		}
		plan[i].env = env
		if strings.HasSuffix(p.pod.Name, "-0") {
			for _, vm := range p.c.VolumeMounts {
				if _, err := os.Stat(filepath.Join(e.volumes, vm.Name)); err != nil {
					sh.missing("Deployment %s: volume %s at %s: no local copy, no setting left on reads it", p.w.Metadata.Name, vm.Name, vm.MountPath)
				}
			}
		}
		p.pod.PidFile = filepath.Join(dir, p.pod.Name+".pid")
		p.pod.Log = filepath.Join(dir, p.pod.Name+".log")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// startRank orders the processes' start: the aggregator before the api,
// so that the consumer group is there when the first sale arrives.
func startRank(bin string) int {
	if bin == stack.Aggregator {
		return 0
	}
	return 1
}

func (sh *Shape) missing(format string, args ...any) {
	sh.st.Missing = append(sh.st.Missing, fmt.Sprintf(format, args...))
}

func (sh *Shape) save() error {
	b, err := json.MarshalIndent(sh.st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stateDir(sh.cfg.Dir), "shape.json"), append(b, '\n'), 0o644)
}

// freePort returns a free local port that taken does not hold yet.
func freePort(taken map[int]bool) (int, error) {
	for {
		p, err := process.FreePort(0)
		if err != nil || !taken[p] {
			taken[p] = true
			return p, err
		}
	}
}

// services maps every in-cluster address the processes may name to the
// local one that stands for it: each Service's ports, to the first local
// pod it selects (one machine has no load balancer: a Service with
// several pods is its first one here), and the Strimzi Kafka's bootstrap
// and brokers Services, on every listener port, to the local cluster.
func (sh *Shape) services(m *Manifest, k Kafka, pods []Pod) map[string]string {
	out := map[string]string{}
	labels := map[string]map[string]string{}
	for _, w := range append(slices.Clone(m.Deployments), m.StatefulSets...) {
		labels[w.Metadata.Name] = w.Spec.Template.Metadata.Labels
	}
	for _, s := range m.Services {
		for _, p := range pods {
			if !selects(s.Spec.Selector, labels[p.Workload]) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if l, ok := p.Local(sp.TargetPort); ok {
					for _, n := range serviceNames(s.Metadata.Name, s.Metadata.Namespace, sp.Port) {
						out[n] = "127.0.0.1:" + strconv.Itoa(l)
					}
				}
			}
			break
		}
	}
	for _, svc := range []string{k.Metadata.Name + "-kafka-bootstrap", k.Metadata.Name + "-kafka-brokers"} {
		for _, port := range listenerPorts(k) {
			addr := sh.st.Kafka
			if listenerAuth(k, port) && sh.st.KafkaSASL != "" {
				addr = sh.st.KafkaSASL
			}
			for _, n := range serviceNames(svc, k.Metadata.Namespace, port) {
				out[n] = addr
			}
		}
	}
	return out
}

// selects reports whether a Service's selector selects pods with labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// binaries returns the directory of the api and aggregator binaries,
// building them into Dir/bin when that is where they are expected and
// they are missing.
func (sh *Shape) binaries(ctx context.Context) (string, error) {
	dir := cmp.Or(sh.cfg.Bin, filepath.Join(sh.cfg.Dir, "bin"))
	missing := false
	for _, b := range stack.Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			missing = true
		}
	}
	if !missing {
		return dir, nil
	}
	if sh.cfg.Bin != "" {
		return "", fmt.Errorf("prodshape: the api and aggregator binaries are not all in %s (make build builds them)", dir)
	}
	fmt.Fprintf(sh.cfg.Log, "prodshape: building the api and the aggregator into %s\n", dir)
	return dir, stack.Build(ctx, sh.cfg.Root, dir)
}

// launch starts one pod's process as a daemon, with exactly the pod's
// environment, and waits until its startup probe, then its readiness
// probe, passes; one that does not is killed.
func (sh *Shape) launch(ctx context.Context, pod Pod, c Container, bin string, env []string) error {
	out, err := process.AppendTo(pod.Log)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(out, "===== %s starting %s (%s) =====\n", time.Now().UTC().Format(time.RFC3339), pod.Name, bin)
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Dir = filepath.Dir(pod.PidFile)
	cmd.Stdout, cmd.Stderr = out, out
	process.Detach(cmd)
	proc, err := process.Start(pod.Name, cmd)
	if err != nil {
		return err
	}
	pf := process.PidFile(pod.PidFile)
	if err := pf.Write(proc.Pid()); err != nil {
		proc.Kill()
		return err
	}
	for _, p := range []struct {
		kind  string
		probe *Probe
	}{{"startup", c.StartupProbe}, {"readiness", c.ReadinessProbe}} {
		if p.probe == nil {
			continue
		}
		// The declared budget (initial delay plus period times failure
		// threshold), at least a minute: one machine runs every pod.
		budget := time.Duration(p.probe.InitialDelaySeconds+p.probe.period()*p.probe.failures()) * time.Second
		var what string
		err := process.WaitUntil(ctx, max(budget, time.Minute), 250*time.Millisecond, proc.Exited, func(ctx context.Context) error {
			var err error
			what, err = probe(ctx, pod, p.probe)
			return err
		}, pod.Name+"'s "+p.kind+" probe")
		if err != nil {
			_ = pf.Kill()
			return fmt.Errorf("%w (%s)%s", err, what, process.Tail(30, pod.Log))
		}
	}
	var addrs []string
	for _, p := range pod.Ports {
		addrs = append(addrs, fmt.Sprintf("%s 127.0.0.1:%d", cmp.Or(p.Name, strconv.Itoa(p.ContainerPort)), p.Local))
	}
	fmt.Fprintf(sh.cfg.Log, "prodshape: %s ready (pid %d): %s; log %s\n", pod.Name, proc.Pid(), strings.Join(addrs, ", "), pod.Log)
	return nil
}

// Down stops the processes, last started first, then the stack (Kafka and
// Valkey), and deletes the directory.
func (sh *Shape) Down() error {
	var errs []error
	// The replicas of a workload stop together, as a Deployment's pods
	// are deleted; the workloads one after the other, the last started
	// first (the api, then the aggregators).
	var workloads []string
	for _, p := range slices.Backward(sh.st.Pods) {
		if !p.Stack && !slices.Contains(workloads, p.Workload) {
			workloads = append(workloads, p.Workload)
		}
	}
	for _, w := range workloads {
		pods := sh.Pods(w)
		stopErrs := make([]error, len(pods))
		var wg sync.WaitGroup
		for i, p := range pods {
			pf := process.PidFile(p.PidFile)
			if pid := pf.Pid(); pid != 0 {
				fmt.Fprintf(sh.cfg.Log, "prodshape: stopping %s (pid %d)\n", p.Name, pid)
			}
			wg.Go(func() { stopErrs[i] = pf.Stop(time.Duration(cmp.Or(p.GracePeriod, 30)) * time.Second) })
		}
		wg.Wait()
		errs = append(errs, stopErrs...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prodshape: down: %w (state kept in %s)", err, sh.cfg.Dir)
	}
	if sh.stack == nil {
		var err error
		if sh.stack, err = stack.New(stack.Config{Dir: sh.cfg.Dir, Log: sh.cfg.Log}); err != nil {
			return err
		}
	}
	if err := sh.stack.Down(); err != nil {
		// A KRaft node stopped together with the others can lose the
		// controller quorum its controlled shutdown waits for, and is
		// killed after the stop timeout; what remains is state, which a
		// second pass deletes.
		fmt.Fprintf(sh.cfg.Log, "prodshape: %v; stopping what is left\n", err)
		if err := sh.stack.Down(); err != nil {
			return err
		}
	}
	return os.RemoveAll(stateDir(sh.cfg.Dir))
}

// Summary describes the running shape for people: what was read from
// the overlay, where everything listens, and what prod has that it lacks.
func (sh *Shape) Summary() string {
	var b strings.Builder
	st := sh.st
	fmt.Fprintf(&b, "production shape of overlay %s in %s\n", st.Overlay, sh.cfg.Dir)
	fmt.Fprintf(&b, "kafka: %d KRaft nodes at %s\n", st.Nodes, st.Kafka)
	if st.KafkaSASL != "" {
		fmt.Fprintf(&b, "  SCRAM listeners, the processes': %s\n", st.KafkaSASL)
	}
	if st.KafkaCA != "" {
		fmt.Fprintf(&b, "  over TLS, signed by the test CA %s\n", st.KafkaCA)
	}
	for _, a := range st.ACLs {
		fmt.Fprintf(&b, "  ACL %s\n", a)
	}
	fmt.Fprintf(&b, "  broker settings from the Kafka resource: %s\n", strings.Join(st.Broker, " "))
	for _, t := range st.Topics {
		fmt.Fprintf(&b, "  topic %s\n", t)
	}
	fmt.Fprintf(&b, "valkey: %s\n", st.Valkey)
	for _, p := range st.Pods {
		if p.Stack {
			continue
		}
		var addrs []string
		for _, port := range p.Ports {
			addrs = append(addrs, fmt.Sprintf("%s %d -> 127.0.0.1:%d", cmp.Or(port.Name, "port"), port.ContainerPort, port.Local))
		}
		fmt.Fprintf(&b, "%s: pid %d, %s; log %s\n", p.Name, process.PidFile(p.PidFile).Pid(), strings.Join(addrs, ", "), p.Log)
	}
	if len(st.Pods) > 0 {
		fmt.Fprintln(&b, "how the pods' settings were made local:")
		seen := map[string]bool{}
		for _, p := range st.Pods {
			for _, n := range p.Notes {
				if key := p.Workload + ": " + n; !seen[key] {
					seen[key] = true
					fmt.Fprintf(&b, "  %s\n", key)
				}
			}
		}
	}
	if len(st.Missing) > 0 {
		fmt.Fprintln(&b, "what prod has that this shape does not:")
		for _, s := range st.Missing {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	return b.String()
}

// Env returns export lines for the shape, NAME=VALUE: the stack's (real
// Kafka and Valkey, contract/testenv) and each pod's address, as
// BF_PROD_<POD>_<PORT> (BF_PROD_API_0_GRPC=127.0.0.1:41234), and the
// SCRAM listeners as BF_PROD_KAFKA_SCRAM.
func (sh *Shape) Env() ([]string, error) {
	env, err := sh.stack.Env()
	if err != nil {
		return nil, err
	}
	if sh.st.KafkaSASL != "" {
		env = append(env, "BF_PROD_KAFKA_SCRAM="+sh.st.KafkaSASL)
	}
	for _, p := range sh.st.Pods {
		for _, port := range p.Ports {
			name := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(p.Name + "_" + cmp.Or(port.Name, strconv.Itoa(port.ContainerPort))))
			env = append(env, fmt.Sprintf("BF_PROD_%s=127.0.0.1:%d", name, port.Local))
		}
	}
	return env, nil
}
