// Package browser opens the api's live dashboard in headless Chromium
// (Debian's chromium, driven by chromedp) against the real stack: the api
// and aggregator binaries, a real Kafka broker and a real Valkey/Redis. It
// sends known sales and checks the numbers on the page against GetSummary
// and the known truth, and measures how soon an acknowledged sale shows.
//
// It needs the real Kafka and Valkey that the stack launcher names in the
// environment of contract/testenv (`make browser-test` starts them);
// without them it skips, except under CI=true, where it fails.
package browser

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack/stacktest"
)

// binDir holds the api and aggregator binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(stacktest.Main(m, &binDir))
}

// stack is one isolated pipeline: its own topic, group and key prefix on
// the shared broker and server, and its own api and aggregator processes.
type stack struct {
	t       *testing.T
	apiPort int
	env     []string
	procs   []*stacktest.Proc
}

func newStack(t *testing.T) *stack {
	t.Helper()
	kafka, valkey := testenv.Kafka(t), testenv.Valkey(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	s := &stack{t: t, apiPort: stacktest.FreePort(t)}
	topic := "browser-" + id
	s.env = []string{
		"KAFKA_BROKERS=" + kafka,
		"KAFKA_TOPIC=" + topic,
		"KAFKA_DLQ_TOPIC=" + topic + ".dlq",
		"KAFKA_GROUP=" + topic + "-aggregator",
		"KAFKA_TOPIC_PARTITIONS=6",
		"VALKEY_ADDR=" + valkey,
		"VALKEY_KEY_PREFIX=browser:" + id + ":",
		"METRICS_ADDR=off",
		"LOG_LEVEL=info",
	}
	t.Cleanup(func() { stacktest.Stop(t, s.procs...) })
	s.start("aggregator", "HTTP_ADDR=127.0.0.1:"+strconv.Itoa(stacktest.FreePort(t)))
	s.start("api", "PORT="+strconv.Itoa(s.apiPort), "WATCH_HEARTBEAT=1s")
	return s
}

// url is the api's base URL.
func (s *stack) url() string { return "http://127.0.0.1:" + strconv.Itoa(s.apiPort) }

// start runs a binary and, for the api, waits until it is ready.
func (s *stack) start(name string, env ...string) {
	s.t.Helper()
	p := stacktest.Start(s.t, name, filepath.Join(binDir, name), slices.Concat(s.env, env)...)
	s.procs = append(s.procs, p)
	if name == "api" {
		p.WaitOK(s.t, s.url()+"/readyz", 30*time.Second)
	}
}
