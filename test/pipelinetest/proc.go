package pipelinetest

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopTimeout is how long Stop gives a process to exit after SIGTERM.
const stopTimeout = 20 * time.Second

// Proc is a running service binary whose output is kept.
type Proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	// done is closed once the process has exited and been reaped.
	done chan struct{}
}

// Start runs the binary at path, called name in messages, with env added
// to this process's environment. If t fails, its output is logged when t's
// cleanups run. Stopping it is the caller's: see Stop and Kill.
func Start(t testing.TB, name, path string, env ...string) *Proc {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	p := &Proc{name: name, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitOK polls url until it answers 200. It fails t if the process exits
// first or timeout passes.
func (p *Proc) WaitOK(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited during start", p.name)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s with 200 within %v", p.name, url, timeout)
}

// Stop sends SIGTERM to every process, as an orchestrator would, and
// waits for each. One still running 20s later fails t and is killed.
func Stop(t testing.TB, procs ...*Proc) {
	t.Helper()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("%s did not stop within %v of SIGTERM", p.name, stopTimeout)
			p.Kill()
		}
	}
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
