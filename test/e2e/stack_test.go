package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"blackfriday.local/test/pipelinetest"
)

// stack is one isolated pipeline: its own topic, consumer group and Valkey
// key prefix on the shared broker and server, and its own api and aggregator
// processes.
type stack struct {
	t       *testing.T
	kafka   string
	valkey  string
	topic   string
	prefix  string
	apiPort int
	// metricsPort serves the api's /metrics.
	metricsPort int
	env         []string

	mu   sync.Mutex
	api  *pipelinetest.Proc
	aggs map[string]*pipelinetest.Proc
	// aggAddrs holds each aggregator's health and metrics address.
	aggAddrs map[string]string
	// valkeyUser and valkeyPassword authenticate the tests' own Valkey
	// reads when the server has ACLs on; empty for the default user.
	valkeyUser, valkeyPassword string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	kafka, valkey := services(t)
	id := randomID()
	s := &stack{
		t:       t,
		kafka:   kafka,
		valkey:  valkey,
		topic:   "e2e-" + id,
		prefix:  "e2e:" + id + ":",
		apiPort: pipelinetest.FreePort(t),
		aggs:    map[string]*pipelinetest.Proc{},
	}
	s.aggAddrs = map[string]string{}
	s.metricsPort = pipelinetest.FreePort(t)
	s.env = []string{
		"KAFKA_BROKERS=" + kafka,
		"KAFKA_TOPIC=" + s.topic,
		"KAFKA_DLQ_TOPIC=" + s.topic + ".dlq",
		"KAFKA_GROUP=" + s.topic + "-aggregator",
		"KAFKA_SESSION_TIMEOUT=10s",
		"KAFKA_TOPIC_PARTITIONS=6",
		"VALKEY_ADDR=" + valkey,
		"VALKEY_KEY_PREFIX=" + s.prefix,
		"LOG_LEVEL=debug",
	}
	t.Cleanup(s.stop)
	return s
}

// url is the api's base URL.
func (s *stack) url() string { return "http://127.0.0.1:" + strconv.Itoa(s.apiPort) }

// startAPI starts the api and waits until it answers /healthz.
func (s *stack) startAPI(extraEnv ...string) {
	s.t.Helper()
	env := append(append([]string{
		"PORT=" + strconv.Itoa(s.apiPort),
		"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(s.metricsPort),
	}, s.env...), extraEnv...)
	p := s.spawn("api", env)
	s.mu.Lock()
	s.api = p
	s.mu.Unlock()
	p.WaitOK(s.t, s.url()+"/healthz", 30*time.Second)
}

// startAggregator starts an aggregator called name and waits for its health
// endpoint.
func (s *stack) startAggregator(name string) {
	s.t.Helper()
	s.startAggregatorEnv(name)
}

// startAggregatorEnv starts an aggregator called name with extraEnv added
// last (so it overrides the stack's), and waits for its health endpoint.
func (s *stack) startAggregatorEnv(name string, extraEnv ...string) {
	s.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(pipelinetest.FreePort(s.t))
	// Each named aggregator is a static group member, as a StatefulSet pod
	// would be: a restart after SIGKILL takes its partitions back without
	// waiting for the session to time out.
	env := append(append([]string{"HTTP_ADDR=" + addr, "KAFKA_INSTANCE_ID=" + name}, s.env...), extraEnv...)
	p := s.spawn(name, env)
	s.mu.Lock()
	s.aggs[name] = p
	s.aggAddrs[name] = addr
	s.mu.Unlock()
	p.WaitOK(s.t, "http://"+addr+"/healthz", 30*time.Second)
}

// killAggregator sends SIGKILL to the aggregator called name and reaps it.
func (s *stack) killAggregator(name string) {
	s.t.Helper()
	s.mu.Lock()
	p := s.aggs[name]
	delete(s.aggs, name)
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("no aggregator %q running", name)
	}
	p.Kill()
}

// spawn starts the api (name "api") or an aggregator called name.
func (s *stack) spawn(name string, env []string) *pipelinetest.Proc {
	s.t.Helper()
	bin := "aggregator"
	if name == "api" {
		bin = "api"
	}
	return pipelinetest.Start(s.t, name, filepath.Join(binDir, bin), env...)
}

// aggregatorLog returns what the running aggregator called name has logged
// so far.
func (s *stack) aggregatorLog(name string) string {
	s.t.Helper()
	s.mu.Lock()
	p := s.aggs[name]
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("no aggregator %q running", name)
	}
	return p.Output()
}

// stop shuts everything down gracefully with SIGTERM.
func (s *stack) stop() {
	s.mu.Lock()
	procs := []*pipelinetest.Proc{}
	if s.api != nil {
		procs = append(procs, s.api)
	}
	for _, p := range s.aggs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	pipelinetest.Stop(s.t, procs...)
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// kafkaCtl runs scripts/kafka.sh with the given subcommand against the test
// broker.
func kafkaCtl(ctx context.Context, t *testing.T, sub string) {
	t.Helper()
	ctl := os.Getenv("BF_TEST_KAFKA_CTL")
	if ctl == "" {
		t.Fatal("BF_TEST_KAFKA_CTL is not set (scripts/test.sh sets it)")
	}
	out, err := exec.CommandContext(ctx, ctl, sub).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", ctl, sub, err, out)
	}
	t.Logf("kafka %s: %s", sub, bytes.TrimSpace(lastLine(out)))
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}
