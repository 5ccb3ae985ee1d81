// Package pipelinetest runs the real api and aggregator binaries against a
// real Kafka broker and a real Valkey server, for the suites that test the
// pipeline whole (test/e2e, test/browser, services/loadgen).
//
// It builds the binaries, reads where the broker and the server are, and
// starts, waits for and stops the processes. What a suite does with them
// (topics, key prefixes, which processes, when to kill one) stays in the
// suite.
package pipelinetest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.work at or above the working
// directory.
func RepoRoot() (string, error) {
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
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// Build builds the api and aggregator binaries into a new temporary
// directory and returns it; the caller removes it. Each service builds in
// its own module, so the build works inside the workspace or outside it
// (GOWORK=off).
func Build() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "bf-pipelinetest-bin-")
	if err != nil {
		return "", err
	}
	for _, svc := range []string{"api", "aggregator"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, svc), ".")
		cmd.Dir = filepath.Join(root, "services", svc)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("build %s: %w\n%s", svc, err, out)
		}
	}
	return dir, nil
}

// Main is for TestMain: it builds the binaries, sets *binDir to their
// directory, runs the tests and removes the binaries. It returns the code
// for os.Exit.
//
//	func TestMain(m *testing.M) { os.Exit(pipelinetest.Main(m, &binDir)) }
func Main(m *testing.M, binDir *string) int {
	dir, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipelinetest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*binDir = dir
	return m.Run()
}

// Services returns the addresses of the real Kafka broker and Valkey
// server, from BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR. When either
// is unset it skips t, or fails it under CI=true; starter names what starts
// them, for that message.
func Services(t testing.TB, starter string) (kafka, valkey string) {
	t.Helper()
	kafka, valkey = os.Getenv("BF_TEST_KAFKA_BROKERS"), os.Getenv("BF_TEST_VALKEY_ADDR")
	if kafka != "" && valkey != "" {
		return kafka, valkey
	}
	msg := "BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR must name a real Kafka and Valkey (" + starter + " starts them)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
