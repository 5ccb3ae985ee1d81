package process

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PidFile records a daemon: its process id and the time the kernel started
// it (from /proc), so that a pid the kernel has since given to another
// program is never taken for the daemon. Redis rewrites its process title,
// so the command line could not tell.
type PidFile string

// Write records the running process pid.
func (f PidFile) Write(pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return err
	}
	tmp := string(f) + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, string(f))
}

// Pid returns the recorded process id if that process still runs, else 0.
func (f PidFile) Pid() int {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return 0
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return 0
	}
	if got, err := startTime(pid); err != nil || got != start {
		return 0
	}
	return pid
}

// Stop sends SIGTERM to the recorded daemon and waits up to timeout for it
// to exit, then kills it. Stopping a daemon that does not run does nothing.
func (f PidFile) Stop(timeout time.Duration) error {
	pid := f.Pid()
	if pid == 0 {
		return f.forget()
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if WaitGone(pid, timeout) {
		return f.forget()
	}
	if err := f.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("pid %d did not stop within %v of SIGTERM; killed it: %w", pid, timeout, ErrKilled)
}

// Kill sends SIGKILL to the recorded daemon and waits until it is gone.
func (f PidFile) Kill() error {
	pid := f.Pid()
	if pid == 0 {
		return f.forget()
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !WaitGone(pid, 10*time.Second) {
		return fmt.Errorf("pid %d survived SIGKILL", pid)
	}
	return f.forget()
}

func (f PidFile) forget() error {
	if err := os.Remove(string(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// WaitGone waits up to timeout for pid to exit (a zombie counts as gone),
// and reports whether it did.
func WaitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := startTime(pid); err != nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTime returns the start time of a live process, in clock ticks since
// boot (field 22 of /proc/PID/stat), and fails for a process that has
// exited or does not exist. A zombie whose other threads still run counts
// as live: when a multi-threaded process (redis-server, a JVM) is killed,
// its main thread can be a zombie while the others still hold its files,
// listening sockets included; a start on its port would find it taken.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("pid %d: unreadable stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("pid %d: short stat", pid)
	}
	// fields[0] is the state (field 3), fields[17] the number of threads
	// (field 20).
	if threads, _ := strconv.Atoi(fields[17]); (fields[0] == "Z" || fields[0] == "X") && threads <= 1 {
		return 0, fmt.Errorf("pid %d has exited", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// FreePort returns a loopback TCP port that was free a moment ago:
// preferred, when that is not 0 and is free, else one below Linux's
// ephemeral range (32768 and up). A service keeps its port across restarts,
// and while it is down no outgoing connection can take a port from there.
func FreePort(preferred int) (int, error) {
	if preferred != 0 && bindable(preferred) {
		return preferred, nil
	}
	for range 200 {
		if p := 20000 + rand.IntN(12000); bindable(p) {
			return p, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// PortOpen reports whether something accepts connections on addr.
func PortOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
