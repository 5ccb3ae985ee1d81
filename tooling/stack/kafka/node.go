package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/tooling/stack/process"
)

// launch is a node started and not yet known to be ready.
type launch struct {
	node Node
	proc *process.Proc
	// logOffset is the size of kafka.log when the node was launched: only
	// what it logs after that says this run started.
	logOffset int64
}

func (c *Cluster) nodeDir(id int) string { return filepath.Join(c.dir, "node-"+strconv.Itoa(id)) }

func (c *Cluster) pidFile(id int) process.PidFile {
	return process.PidFile(filepath.Join(c.nodeDir(id), "kafka.pid"))
}

// launch starts node n as a daemon, formatting its storage first if it is
// new. It returns nil when the node already runs.
func (c *Cluster) launch(ctx context.Context, libs string, n Node) (*launch, error) {
	if pid := c.Pid(n.ID); pid != 0 {
		fmt.Fprintf(c.cfg.Log, "kafka: node %d already running (pid %d) at %s\n", n.ID, pid, n.Addr())
		return nil, nil
	}
	for _, p := range []int{n.Port, n.ControllerPort, n.SASLPort} {
		if p != 0 && process.PortOpen("127.0.0.1:"+strconv.Itoa(p)) {
			return nil, fmt.Errorf("kafka: node %d: port %d on 127.0.0.1 is in use by another process", n.ID, p)
		}
	}
	dir := c.nodeDir(n.ID)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	props := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(props, []byte(c.properties(n)), 0o644); err != nil {
		return nil, err
	}
	jvm := c.jvm(dir)
	if _, err := os.Stat(filepath.Join(dir, "data", "meta.properties")); errors.Is(err, os.ErrNotExist) {
		if err := c.format(ctx, libs, jvm, n, props); err != nil {
			return nil, err
		}
	}
	logFile := filepath.Join(dir, "kafka.log")
	var offset int64
	if st, err := os.Stat(logFile); err == nil {
		offset = st.Size()
	}
	out, err := process.AppendTo(filepath.Join(dir, "kafka.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	fmt.Fprintf(out, "===== %s starting Apache Kafka %s node %d on %s =====\n",
		time.Now().UTC().Format(time.RFC3339), c.layout.Version, n.ID, n.Addr())
	cmd := exec.Command("java", append(jvm, "-cp", filepath.Join(libs, "*"), "kafka.Kafka", props)...)
	cmd.Stdout, cmd.Stderr = out, out
	process.Detach(cmd)
	p, err := process.Start(fmt.Sprintf("kafka node %d", n.ID), cmd)
	if err != nil {
		return nil, err
	}
	if err := c.pidFile(n.ID).Write(p.Pid()); err != nil {
		p.Kill()
		return nil, err
	}
	fmt.Fprintf(c.cfg.Log, "kafka: started Apache Kafka %s node %d (pid %d), waiting for %s\n", c.layout.Version, n.ID, p.Pid(), n.Addr())
	return &launch{node: n, proc: p, logOffset: offset}, nil
}

// waitReady waits until the launched node listens and has logged that it
// started; a node that is not ready in time is killed.
func (c *Cluster) waitReady(ctx context.Context, l *launch) error {
	dir := c.nodeDir(l.node.ID)
	logFile := filepath.Join(dir, "kafka.log")
	err := process.WaitUntil(ctx, c.cfg.StartTimeout, 200*time.Millisecond, l.proc.Exited, func(context.Context) error {
		if !process.PortOpen(l.node.Addr()) {
			return errors.New("not listening")
		}
		if !logged(logFile, l.logOffset, "Kafka Server started") {
			return errors.New("has not logged that it started")
		}
		return nil
	}, fmt.Sprintf("kafka node %d at %s", l.node.ID, l.node.Addr()))
	if err != nil {
		_ = c.pidFile(l.node.ID).Kill()
		return fmt.Errorf("%w%s", err, process.Tail(40, filepath.Join(dir, "format.log"), filepath.Join(dir, "kafka.out"), logFile))
	}
	extra := ""
	if a := l.node.SASLAddr(); a != "" {
		extra += ", SCRAM (" + c.saslProtocol() + ") at " + a
	}
	if c.layout.ACL {
		extra += ", ACLs enforced"
	}
	fmt.Fprintf(c.cfg.Log, "kafka: ready: Apache Kafka %s (KRaft) node %d at %s%s; state in %s\n", c.layout.Version, l.node.ID, l.node.Addr(), extra, dir)
	return nil
}

// format formats node n's storage: the cluster id, the initial controller
// set (every node, each with its directory id) and the SCRAM users'
// credentials, which live in the cluster metadata.
func (c *Cluster) format(ctx context.Context, libs string, jvm []string, n Node, props string) error {
	voters := make([]string, len(c.layout.Nodes))
	for i, v := range c.layout.Nodes {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d:%s", v.ID, v.ControllerPort, v.DirectoryID)
	}
	args := append(jvm, "-cp", filepath.Join(libs, "*"), "kafka.tools.StorageTool", "format",
		"--config", props, "--cluster-id", c.layout.ClusterID,
		"--initial-controllers", strings.Join(voters, ","), "--ignore-formatted")
	var names []string
	for _, u := range c.cfg.Users {
		names = append(names, u.Name)
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
			args = append(args, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", mech, u.Name, u.Password))
		}
	}
	msg := fmt.Sprintf("kafka: formatting node %d's KRaft storage (cluster id %s)", n.ID, c.layout.ClusterID)
	if len(names) > 0 {
		msg += "; SCRAM users: " + strings.Join(names, " ")
	}
	fmt.Fprintln(c.cfg.Log, msg)
	logFile := filepath.Join(c.nodeDir(n.ID), "format.log")
	out, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, "java", args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kafka: format node %d's storage: %w%s", n.ID, err, process.Tail(40, logFile))
	}
	return nil
}

// jvm returns the JVM options of a node living in dir.
func (c *Cluster) jvm(dir string) []string {
	opts := strings.Fields(c.cfg.Heap)
	opts = append(opts,
		"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
		"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile="+filepath.Join(c.dir, "log4j2.xml"), "-Dkafka.logs.dir="+dir,
		// The launcher stops a node with SIGTERM; log4j2's own hook
		// would close the log before the broker's last lines.
		"-Dlog4j2.shutdownHookEnabled=false")
	return append(opts, strings.Fields(c.cfg.JVMOptions)...)
}

// saslProtocol is the security protocol of the SCRAM listener.
func (c *Cluster) saslProtocol() string {
	if c.layout.TLS {
		return "SASL_SSL"
	}
	return "SASL_PLAINTEXT"
}

// properties returns node n's server.properties.
func (c *Cluster) properties(n Node) string {
	nodes := len(c.layout.Nodes)
	// Replicated as far as the cluster allows, up to 3, and an
	// acknowledged write survives the loss of one replica.
	rf := min(nodes, 3)
	minISR := max(rf-1, 1)
	var controllers []string
	for _, v := range c.layout.Nodes {
		controllers = append(controllers, fmt.Sprintf("127.0.0.1:%d", v.ControllerPort))
	}
	listeners := fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", n.Port)
	protocols := "PLAINTEXT:PLAINTEXT"
	sasl := c.saslProtocol()
	if n.SASLPort != 0 {
		listeners += fmt.Sprintf(",%s://127.0.0.1:%d", sasl, n.SASLPort)
		protocols += fmt.Sprintf(",%s:%s", sasl, sasl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the stack launcher (tooling/stack/kafka) on every start.
process.roles=broker,controller
node.id=%[1]d
controller.quorum.bootstrap.servers=%[2]s
listeners=%[3]s,CONTROLLER://127.0.0.1:%[4]d
advertised.listeners=%[3]s
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=%[5]s,CONTROLLER:PLAINTEXT
log.dirs=%[6]s

# %[7]d node(s) on one small machine, for tests and development.
num.partitions=6
default.replication.factor=%[8]d
min.insync.replicas=%[9]d
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=%[8]d
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=%[8]d
transaction.state.log.min.isr=%[9]d
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=%[8]d
share.coordinator.state.topic.min.isr=%[9]d
share.coordinator.state.topic.num.partitions=6
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted node must wait for its old incarnation's
# session to expire before it can register (default 9 s): keep that short.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
`, n.ID, strings.Join(controllers, ","), listeners, n.ControllerPort, protocols,
		filepath.Join(c.nodeDir(n.ID), "data"), nodes, rf, minISR)
	if n.SASLPort != 0 {
		l := strings.ToLower(sasl)
		fmt.Fprintf(&b, `
# SCRAM on the %[1]s listener; the users' credentials live in the
# cluster metadata (written when the storage was formatted).
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.%[2]s.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.%[2]s.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
`, sasl, l)
		if c.layout.TLS {
			fmt.Fprintf(&b, `# TLS with the cluster's test CA (tls/): the node's key and chain as a
# PEM key store; clients are not asked for certificates.
listener.name.%[1]s.ssl.keystore.type=PEM
listener.name.%[1]s.ssl.keystore.location=%[2]s
ssl.client.auth=none
`, l, filepath.Join(c.dir, "tls", nodeFile))
		}
	}
	if c.layout.ACL {
		b.WriteString(`
# ACLs enforced; the PLAINTEXT and controller listeners (no authentication,
# so User:ANONYMOUS) keep full access for the harness.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
`)
	}
	if c.cfg.ExtraProperties != "" {
		fmt.Fprintf(&b, "\n# Extra properties\n%s\n", c.cfg.ExtraProperties)
	}
	return b.String()
}

// logged reports whether the file at path holds text past offset.
func logged(path string, offset int64, text string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	b, err := io.ReadAll(f)
	return err == nil && strings.Contains(string(b), text)
}
