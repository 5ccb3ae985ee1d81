package kafka

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseUsers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []User
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "api:secret", want: []User{{"api", "secret"}}},
		{in: " api:a  aggregator:b:c ", want: []User{{"api", "a"}, {"aggregator", "b:c"}}},
		{in: "api", wantErr: true},
		{in: "api:", wantErr: true},
		{in: ":pw", wantErr: true},
		{in: "api:a,b", wantErr: true},
		{in: "api:x=y", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseUsers(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseUsers(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !equalUsers(got, tt.want) {
			t.Errorf("ParseUsers(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func equalUsers(a, b []User) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestProperties holds the layout of a cluster to its server.properties:
// every node knows every controller, listens on its own ports, and topics
// are replicated as far as the cluster allows.
func TestProperties(t *testing.T) {
	t.Parallel()
	tests := []struct {
		nodes      int
		users      []User
		acl, tls   bool
		rf, minISR string
	}{
		{nodes: 1, rf: "1", minISR: "1"},
		{nodes: 2, rf: "2", minISR: "1"},
		{nodes: 3, rf: "3", minISR: "2", users: []User{{"api", "pw"}}, acl: true},
		{nodes: 3, rf: "3", minISR: "2", users: []User{{"api", "pw"}}, acl: true, tls: true},
		{nodes: 1, rf: "1", minISR: "1", tls: true}, // TLS needs users: none
		{nodes: 5, rf: "3", minISR: "2"},
	}
	for _, tt := range tests {
		c, err := Open(t.TempDir(), Config{Nodes: tt.nodes, Users: tt.users, ACL: tt.acl, TLS: tt.tls})
		if err != nil {
			t.Fatal(err)
		}
		nodes := c.Nodes()
		if len(nodes) != tt.nodes {
			t.Fatalf("Open(Nodes: %d) has %d nodes", tt.nodes, len(nodes))
		}
		var controllers []string
		for _, n := range nodes {
			controllers = append(controllers, "127.0.0.1:"+itoa(n.ControllerPort))
		}
		if got, want := len(strings.Split(c.Bootstrap(), ",")), tt.nodes; got != want {
			t.Errorf("%d nodes: Bootstrap() = %q, want %d addresses", tt.nodes, c.Bootstrap(), want)
		}
		for _, n := range nodes {
			props := parseProperties(c.properties(n))
			want := map[string]string{
				"node.id":                             itoa(n.ID),
				"controller.quorum.bootstrap.servers": strings.Join(controllers, ","),
				"default.replication.factor":          tt.rf,
				"offsets.topic.replication.factor":    tt.rf,
				"min.insync.replicas":                 tt.minISR,
				"transaction.state.log.min.isr":       tt.minISR,
			}
			if len(tt.users) > 0 {
				want["sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
			}
			if len(tt.users) > 0 && tt.tls {
				want["listener.security.protocol.map"] = "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
				want["listener.name.sasl_ssl.ssl.keystore.type"] = "PEM"
			}
			if tt.acl {
				want["allow.everyone.if.no.acl.found"] = "false"
			}
			for k, v := range want {
				if props[k] != v {
					t.Errorf("%d nodes, node %d: %s = %q, want %q", tt.nodes, n.ID, k, props[k], v)
				}
			}
			if l := props["listeners"]; !strings.Contains(l, n.Addr()) || !strings.Contains(l, "CONTROLLER://127.0.0.1:"+itoa(n.ControllerPort)) ||
				(len(tt.users) > 0) != strings.Contains(l, c.saslProtocol()+"://"+n.SASLAddr()) {
				t.Errorf("%d nodes, node %d: listeners = %q, want its own ports", tt.nodes, n.ID, l)
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func parseProperties(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// needJava skips a test that runs real brokers where there is no Java, or
// fails it under CI=true, where the launcher installs it.
func needJava(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real Kafka nodes")
	}
	if _, err := exec.LookPath("java"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("no java on PATH to run Kafka")
	}
}

// TestClusterOfThree starts three KRaft nodes, writes with acks=all to a
// topic replicated on all three, kills one node and writes again (two
// replicas stay in sync), starts it again, and reads every record back.
func TestClusterOfThree(t *testing.T) {
	needJava(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Open(t.TempDir(), Config{Nodes: 3, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Error(err)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.Bootstrap(), ",")...), kgo.DefaultProduceTopic("replicated"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, "replicated"); err != nil {
		t.Fatalf("CreateTopic(replicated) = %v", err)
	}
	topics, err := adm.ListTopics(ctx, "replicated")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range topics["replicated"].Partitions {
		if len(p.Replicas) != 3 {
			t.Errorf("partition %d has replicas %v, want 3 (default.replication.factor)", p.Partition, p.Replicas)
		}
	}
	produce := func(n int) {
		t.Helper()
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("sale")}).FirstErr(); err != nil {
				t.Fatalf("ProduceSync() = %v", err)
			}
		}
	}
	produce(10)
	if err := c.KillNode(2); err != nil {
		t.Fatal(err)
	}
	if c.Pid(2) != 0 {
		t.Fatal("node 2 still runs after KillNode(2)")
	}
	produce(10)
	if err := c.StartNode(ctx, 2); err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "replicated")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 20 {
		t.Errorf("the topic holds %d records, want 20", total)
	}
}
