package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/kafkasecurity/kafkasecuritytest"
	"blackfriday.local/contract/testenv"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runAPI runs the api in this process, as main does, with env as its whole
// environment (plus a free port, no metrics listener and an unreachable
// Valkey), until the test ends. It returns the api's base URL.
func runAPI(t *testing.T, env map[string]string) string {
	t.Helper()
	port := freePort(t)
	all := map[string]string{
		"PORT": strconv.Itoa(port), "METRICS_ADDR": "off", "VALKEY_ADDR": "127.0.0.1:1",
		"LOG_LEVEL": "error", "PRODUCE_TIMEOUT": "2s", "SHUTDOWN_TIMEOUT": "3s",
	}
	for k, v := range env {
		all[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return all[k] }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run() = %v, want nil after a clean shutdown", err)
		}
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-done:
			t.Fatalf("run() = %v before serving", err)
		default:
		}
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatal("the api did not answer /healthz within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordOne records one sale over Connect JSON.
func recordOne(url string) error {
	c := salesv1connect.NewSalesServiceClient(http.DefaultClient, url, connect.WithProtoJSON())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: &salesv1.Sale{
		Category: salesv1.Category_CATEGORY_HOME, ProductId: "H1", PriceCents: 2500, Quantity: 1,
	}})
	return err
}

// endOffsets sums the end offsets of topic: the records ever written.
func endOffsets(t *testing.T, topic string, opts ...kgo.Opt) int64 {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets(%s) = %v", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// TestRunKafkaSecurity runs the whole api against an in-process Kafka that
// requires TLS and SCRAM-SHA-512: with the right password over a verified
// TLS connection a sale is written; with a wrong one, an untrusted
// certificate or no TLS, the call fails with unavailable and nothing is
// written. The producer, the topic creation (the topic does not exist
// beforehand) and the lag reader all connect through the same settings.
func TestRunKafkaSecurity(t *testing.T) {
	t.Parallel()
	ca := kafkasecuritytest.NewCA(t)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "api", "s3cret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.Server}, MinVersion: tls.VersionTLS12}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	otherCA := kafkasecuritytest.NewCA(t)
	admin := func(caFile string) []kgo.Opt {
		env := map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api",
			"KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": caFile}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		opts, err := cfg.Kafka.Options()
		if err != nil {
			t.Fatal(err)
		}
		return append(opts, kgo.SeedBrokers(cluster.ListenAddrs()...))
	}

	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{name: "SCRAM-SHA-512 over TLS", env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File,
		}},
		{name: "wrong password", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": "guess",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File,
		}},
		{name: "untrusted certificate", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": otherCA.File,
		}},
		{name: "no TLS", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": "s3cret",
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topic := "sales-" + strconv.Itoa(i)
			env := map[string]string{"KAFKA_BROKERS": brokers, "KAFKA_TOPIC": topic}
			for k, v := range tt.env {
				env[k] = v
			}
			url := runAPI(t, env)
			err := recordOne(url)
			if tt.wantErr {
				if connect.CodeOf(err) != connect.CodeUnavailable {
					t.Errorf("RecordSale() with %s = %v, want unavailable", tt.name, err)
				}
				// The topic may not even exist: the api could not
				// create it.
				cl, err := kgo.NewClient(admin(ca.File)...)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				topics, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
				if err != nil {
					t.Fatal(err)
				}
				if topics.Has(topic) {
					if n := endOffsets(t, topic, admin(ca.File)...); n != 0 {
						t.Errorf("topic %s holds %d records after a refused connection, want 0", topic, n)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("RecordSale() with %s = %v, want it recorded", tt.name, err)
			}
			if n := endOffsets(t, topic, admin(ca.File)...); n != 1 {
				t.Errorf("topic %s holds %d records, want 1", topic, n)
			}
		})
	}
}

// TestRunRealKafkaSCRAM runs the api against a real Apache Kafka broker with
// a SCRAM listener (a broker of its own, which BF_TEST_KAFKA_CTL starts with
// KAFKA_SCRAM_USERS): the right password records a sale; a wrong one is
// refused by the broker, the call fails with unavailable, and nothing is
// written. Without BF_TEST_KAFKA_CTL (the stack launcher sets it) it skips,
// and fails under CI=true.
func TestRunRealKafkaSCRAM(t *testing.T) {
	t.Parallel()
	ctl := testenv.Need(t, testenv.KafkaCtl, testenv.Start)
	const password = "api-scram-password"
	broker := startKafka(t, ctl, "KAFKA_SCRAM_USERS=api:"+password)
	sasl := broker.run(t, "sasl-addr")
	plain := []kgo.Opt{kgo.SeedBrokers(broker.addr)}

	tests := []struct {
		name     string
		password string
		wantErr  bool
	}{
		{"right password", password, false},
		{"wrong password", "not-" + password, true},
	}
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256"} {
		for _, tt := range tests {
			t.Run(mech+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				topic := "scram-" + strings.ToLower(strings.ReplaceAll(mech+"-"+tt.name, " ", "-"))
				url := runAPI(t, map[string]string{
					"KAFKA_BROKERS": sasl, "KAFKA_TOPIC": topic, "KAFKA_TOPIC_PARTITIONS": "1",
					"KAFKA_SASL_MECHANISM": mech, "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": tt.password,
				})
				err := recordOne(url)
				switch {
				case tt.wantErr && connect.CodeOf(err) != connect.CodeUnavailable:
					t.Errorf("RecordSale() with a wrong %s password = %v, want unavailable", mech, err)
				case !tt.wantErr && err != nil:
					t.Errorf("RecordSale() with the right %s password = %v, want it recorded", mech, err)
				}
				// Read through the broker's plaintext listener, outside
				// SCRAM: the topic exists only if the api got in.
				cl, err := kgo.NewClient(plain...)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				topics, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
				if err != nil {
					t.Fatal(err)
				}
				want := int64(1)
				if tt.wantErr {
					want = 0
				}
				var got int64
				if topics.Has(topic) {
					got = endOffsets(t, topic, plain...)
				}
				if got != want {
					t.Errorf("topic %s holds %d records, want %d", topic, got, want)
				}
			})
		}
	}
}

// kafka is a broker of the test's own, started by BF_TEST_KAFKA_CTL in a
// private state directory (BF_RUN_DIR) and destroyed when the test ends.
type kafka struct {
	ctl  string
	env  []string
	addr string
}

func startKafka(t *testing.T, ctl string, env ...string) *kafka {
	t.Helper()
	k := &kafka{ctl: ctl, env: append([]string{testenv.RunDir + "=" + t.TempDir()}, env...)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := k.command(ctx, "destroy").CombinedOutput(); err != nil {
			t.Errorf("%s destroy: %v\n%s", testenv.KafkaCtl, err, out)
		}
	})
	k.addr = k.run(t, "start")
	return k
}

func (k *kafka) command(ctx context.Context, sub string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.ctl, sub)
	cmd.Env = append(os.Environ(), k.env...)
	return cmd
}

// run runs a BF_TEST_KAFKA_CTL subcommand and returns the last line it
// printed.
func (k *kafka) run(t *testing.T, sub string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := k.command(ctx, sub)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", testenv.KafkaCtl, sub, err, out, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
