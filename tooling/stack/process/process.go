// Package process runs the programs of a stack: children that their starter
// waits for (Start), and daemons that outlive it (Detach), which another
// command finds again through a pid file (PidFile) to stop or kill them.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a program this one started. A goroutine waits for it from the
// start, so that it is reaped as soon as it exits, whoever stops it; that
// goroutine ends when the program does.
type Proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts cmd, called name in messages. The caller sets cmd's output;
// stopping it is the caller's too (Stop, Kill), or the program runs on
// after this one exits when it was detached (Detach).
func Start(name string, cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Detach makes cmd a daemon: a session of its own, so that a terminal's
// Ctrl-C and the end of its starter do not reach it, and no standard input.
// Its output should go to files: an inherited pipe would keep a reader of
// the starter's output waiting for as long as the daemon runs.
func Detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
}

// Name is what messages call the program.
func (p *Proc) Name() string { return p.name }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the program has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the program has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State describes how the program ended, once it has.
func (p *Proc) State() string {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// Kill sends SIGKILL and waits until the program is reaped.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, as an orchestrator would, and waits for the program
// to exit. One still running after timeout is killed, and Stop says so.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return fmt.Errorf("%s had already exited: %s", p.name, p.State())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed it: %w", p.name, timeout, ErrKilled)
	}
}

// WaitHTTP polls url until it answers 200. It fails when the program exits
// first, when ctx ends or when timeout passes.
func (p *Proc) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return WaitUntil(ctx, timeout, 50*time.Millisecond, p.Exited, func(ctx context.Context) error {
		return GetOK(ctx, url)
	}, p.name+" at "+url)
}

// ErrExited is what WaitUntil returns when the program it waits for exits.
var ErrExited = errors.New("exited during start")

// ErrKilled is wrapped by Stop's error when the process outlived its stop
// timeout and was killed.
var ErrKilled = errors.New("killed after the stop timeout")

// WaitUntil runs ready every interval until it succeeds. It fails with
// ErrExited once exited reports true, with the last error of ready once
// timeout passes, and with ctx's error once ctx ends. what names what is
// awaited, for the error.
func WaitUntil(ctx context.Context, timeout, interval time.Duration, exited func() bool, ready func(context.Context) error, what string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if exited() {
			return fmt.Errorf("%s: %w", what, ErrExited)
		}
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: not ready after %v: %w", what, timeout, err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// GetOK sends GET url and succeeds on 200.
func GetOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
