package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// errStopped reports that a child exited because devstack stopped it.
var errStopped = errors.New("stopped")

// supervisor runs the service binaries as children, prefixes their output
// with their names, and stops them gracefully with SIGTERM.
type supervisor struct {
	binDir   string
	env      []string
	mu       sync.Mutex
	children []*child
	stopping bool
	exited   chan error
}

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func newSupervisor(binDir string, env []string) *supervisor {
	return &supervisor{binDir: binDir, env: env, exited: make(chan error, 8)}
}

// Start runs the binary called name from the bin directory.
func (s *supervisor) Start(name string) error {
	path := filepath.Join(s.binDir, name)
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (run make build first): %w", path, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	go copyPrefixed(os.Stderr, stdout, name)
	go func() {
		err := cmd.Wait()
		close(c.done)
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			err = errStopped
		} else {
			err = fmt.Errorf("%s exited unexpectedly: %v", name, err)
		}
		s.exited <- err
	}()
	return nil
}

// Exited delivers the first child exit.
func (s *supervisor) Exited() <-chan error { return s.exited }

// Stop sends SIGTERM to every child, in reverse start order, and kills any
// that has not exited within timeout.
func (s *supervisor) Stop(timeout time.Duration) {
	s.mu.Lock()
	s.stopping = true
	children := append([]*child(nil), s.children...)
	s.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(timeout):
			fmt.Fprintf(os.Stderr, "devstack: %s did not stop within %s; killing it\n", c.name, timeout)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

func copyPrefixed(w io.Writer, r io.Reader, name string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fmt.Fprintf(w, "%-10s | %s\n", name, sc.Text())
	}
}

// waitHTTP polls url until it answers 200 or the timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
