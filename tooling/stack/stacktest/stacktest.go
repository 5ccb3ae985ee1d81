// Package stacktest is what Go tests that run the pipeline whole (test/e2e,
// test/browser, the load generator's) take from the launcher: the api and
// aggregator binaries, built once per test binary, run as the test's own
// children whose output a failing test shows, and free ports for them.
// Where the real Kafka and Valkey are comes from contract/testenv; what a
// suite does with the processes (topics, key prefixes, when to kill one)
// stays in the suite.
package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/process"
)

// stopTimeout is how long Stop gives a process to exit after SIGTERM.
const stopTimeout = 20 * time.Second

// Build builds the api and aggregator binaries into a new temporary
// directory and returns it; the caller removes it.
func Build() (string, error) {
	root, err := stack.RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "bf-stacktest-bin-")
	if err != nil {
		return "", err
	}
	if err := stack.Build(context.Background(), root, dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// Main is for TestMain: it builds the binaries, sets *binDir to their
// directory, runs the tests and removes the binaries. It returns the code
// for os.Exit.
//
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m, &binDir)) }
func Main(m *testing.M, binDir *string) int {
	dir, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stacktest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*binDir = dir
	return m.Run()
}

// Proc is a running service binary whose output is kept.
type Proc struct {
	*process.Proc
	out *lockedBuffer
}

// Start runs the binary at path, called name in messages, with env added
// to this process's environment. If t fails, its output is logged when t's
// cleanups run. Stopping it is the caller's: see Stop and Kill.
func Start(t testing.TB, name, path string, env ...string) *Proc {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p, err := process.Start(name, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, out.String())
		}
	})
	return &Proc{Proc: p, out: out}
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// WaitOK polls url until it answers 200. It fails t if the process exits
// first or timeout passes.
func (p *Proc) WaitOK(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := p.WaitHTTP(context.Background(), url, timeout); err != nil {
		t.Fatal(err)
	}
}

// Stop sends SIGTERM to every process, as an orchestrator would, and waits
// for each. One still running 20s later fails t and is killed.
func Stop(t testing.TB, procs ...*Proc) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range procs {
		// A process that exited on its own is the test's to judge.
		if p.Exited() {
			continue
		}
		wg.Go(func() {
			if err := p.Proc.Stop(stopTimeout); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := process.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lockedBuffer is a bytes.Buffer that a process's output goroutines may
// write while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
