package process_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"blackfriday.local/tooling/stack/process"
)

// daemon starts `sleep` detached, as a stack's daemons are, records it and
// makes sure it is gone when the test ends.
func daemon(t *testing.T) (process.PidFile, *process.Proc) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	process.Detach(cmd)
	p, err := process.Start("sleep", cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	f := process.PidFile(filepath.Join(t.TempDir(), "sleep.pid"))
	if err := f.Write(p.Pid()); err != nil {
		t.Fatal(err)
	}
	return f, p
}

func TestPidFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signal func(process.PidFile) error
	}{
		{"stop", func(f process.PidFile) error { return f.Stop(5 * time.Second) }},
		{"kill", process.PidFile.Kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, p := daemon(t)
			if got := f.Pid(); got != p.Pid() {
				t.Fatalf("Pid() = %d, want %d", got, p.Pid())
			}
			if err := tt.signal(f); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			select {
			case <-p.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("the process still runs after %s", tt.name)
			}
			if got := f.Pid(); got != 0 {
				t.Errorf("Pid() after %s = %d, want 0", tt.name, got)
			}
			if _, err := os.Stat(string(f)); !os.IsNotExist(err) {
				t.Errorf("the pid file is still there after %s: %v", tt.name, err)
			}
		})
	}
}

// TestPidFileReusedPid: a pid file whose start time is not the running
// process's names a process that has exited; its pid now belongs to
// another, which must not be taken for it.
func TestPidFileReusedPid(t *testing.T) {
	t.Parallel()
	_, p := daemon(t)
	f := process.PidFile(filepath.Join(t.TempDir(), "old.pid"))
	if err := os.WriteFile(string(f), fmt.Appendf(nil, "%d 1\n", p.Pid()), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := f.Pid(); got != 0 {
		t.Errorf("Pid() = %d for another process's pid, want 0", got)
	}
	if err := f.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Error("Kill() of a stale pid file killed the process that now has the pid")
	}
}

func TestPidFileMissing(t *testing.T) {
	t.Parallel()
	f := process.PidFile(filepath.Join(t.TempDir(), "none.pid"))
	if got := f.Pid(); got != 0 {
		t.Errorf("Pid() = %d without a pid file, want 0", got)
	}
	if err := f.Stop(time.Second); err != nil {
		t.Errorf("Stop() without a pid file = %v, want nil", err)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	p, err := process.FreePort(0)
	if err != nil {
		t.Fatal(err)
	}
	if p < 20000 || p >= 32000 {
		t.Errorf("FreePort(0) = %d, want a port in [20000, 32000), below the ephemeral range", p)
	}

	// A preferred port that is taken gives way to another. Holding it is
	// what makes this certain while other tests take ports of that range.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	if got, err := process.FreePort(taken); err != nil || got == taken {
		t.Errorf("FreePort(%d) = %d, %v with the port held, want another port", taken, got, err)
	}

	// A free preferred port is kept. Another process may take it between
	// finding and asking, so a few tries; a FreePort that ignored the
	// preference would fail all of them.
	for try := range 5 {
		p, err := process.FreePort(0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := process.FreePort(p)
		if err == nil && got == p {
			return
		}
		t.Logf("try %d: FreePort(%d) = %d, %v", try, p, got, err)
	}
	t.Error("FreePort never kept a free preferred port")
}
