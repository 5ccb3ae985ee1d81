package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"blackfriday.local/contract/testenv"
	launcher "blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/stacktest"
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
	api  *stacktest.Proc
	aggs map[string]*stacktest.Proc
	// aggAddrs holds each aggregator's health and metrics address.
	aggAddrs map[string]string
	// valkeyUser and valkeyPassword authenticate the tests' own Valkey
	// reads when the server has ACLs on; empty for the default user.
	valkeyUser, valkeyPassword string
	// token is the bearer token writes carry, when the api wants one
	// (the production shape's); apiPorts are the api replicas' ports
	// when there are several, the first being apiPort.
	token    string
	apiPorts []int
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
		apiPort: stacktest.FreePort(t),
		aggs:    map[string]*stacktest.Proc{},
	}
	s.aggAddrs = map[string]string{}
	s.metricsPort = stacktest.FreePort(t)
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
	addr := "127.0.0.1:" + strconv.Itoa(stacktest.FreePort(s.t))
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
func (s *stack) spawn(name string, env []string) *stacktest.Proc {
	s.t.Helper()
	bin := "aggregator"
	if name == "api" {
		bin = "api"
	}
	return stacktest.Start(s.t, name, filepath.Join(binDir, bin), env...)
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
	procs := []*stacktest.Proc{}
	if s.api != nil {
		procs = append(procs, s.api)
	}
	for _, p := range s.aggs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	stacktest.Stop(s.t, procs...)
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// kafkaCtl starts, stops or kills (sub) the shared Kafka: the one of the
// stack that the launcher started for the tests (testenv.RunDir).
func kafkaCtl(ctx context.Context, t *testing.T, sub string) {
	t.Helper()
	s, err := launcher.New(launcher.Config{Dir: testenv.Need(t, testenv.RunDir, testenv.Start), Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	switch sub {
	case "start":
		err = s.Start(ctx, launcher.Kafka)
	case "stop":
		err = s.Stop(launcher.Kafka)
	case "kill":
		err = s.Kill(launcher.Kafka)
	default:
		t.Fatalf("kafkaCtl(%q): want start, stop or kill", sub)
	}
	if err != nil {
		t.Fatalf("kafka %s: %v", sub, err)
	}
}
