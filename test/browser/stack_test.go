// Package browser opens the api's live dashboard in headless Chromium
// (Debian's chromium, driven by chromedp) against the real stack: the api
// and aggregator binaries, a real Kafka broker and a real Valkey/Redis. It
// sends known sales and checks the numbers on the page against GetSummary
// and the known truth, and measures how soon an acknowledged sale shows.
//
// It needs BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR (`make
// browser-test` starts the services); without them it skips, except under
// CI=true, where it fails.
package browser

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the api and aggregator binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "bf-browser-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Each service module builds alone, inside or outside the workspace.
	for _, svc := range []string{"api", "aggregator"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, svc), ".")
		build.Dir = filepath.Join(root, "services", svc)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "browser: build %s: %v\n", svc, err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

// repoRoot is the directory holding go.work above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}

// services returns the real Kafka and Valkey the test uses.
func services(t *testing.T) (kafka, valkey string) {
	t.Helper()
	kafka, valkey = os.Getenv("BF_TEST_KAFKA_BROKERS"), os.Getenv("BF_TEST_VALKEY_ADDR")
	if kafka != "" && valkey != "" {
		return kafka, valkey
	}
	msg := "BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR must name a real Kafka and Valkey (make browser-test starts them)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

// stack is one isolated pipeline: its own topic, group and key prefix on
// the shared broker and server, and its own api and aggregator processes.
type stack struct {
	t       *testing.T
	apiPort int
	env     []string
	procs   []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

func newStack(t *testing.T) *stack {
	t.Helper()
	kafka, valkey := services(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	s := &stack{t: t, apiPort: freePort(t)}
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
	t.Cleanup(s.stop)
	s.start("aggregator", "HTTP_ADDR=127.0.0.1:"+strconv.Itoa(freePort(t)))
	s.start("api", "PORT="+strconv.Itoa(s.apiPort), "WATCH_HEARTBEAT=1s")
	return s
}

// url is the api's base URL.
func (s *stack) url() string { return "http://127.0.0.1:" + strconv.Itoa(s.apiPort) }

// start runs a binary and, for the api, waits until it answers.
func (s *stack) start(name string, env ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append(append(os.Environ(), s.env...), env...)
	p := &proc{name: name, cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.procs = append(s.procs, p)
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("---- %s output ----\n%s", name, p.log.String())
		}
	})
	if name != "api" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			s.t.Fatalf("api exited during start")
		default:
		}
		if resp, err := http.Get(s.url() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatal("api not ready within 30s")
}

// stop ends every process with SIGTERM, as an orchestrator would.
func (s *stack) stop() {
	for _, p := range s.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s.procs {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			s.t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
