package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// valkeyRunner is the Valkey the pipeline uses: the server at VALKEY_ADDR, or
// one devstack started (and stops again).
type valkeyRunner struct {
	Addr        string
	Description string
	cmd         *exec.Cmd
	done        chan struct{}
}

func startValkey(ctx context.Context, cfg config, log *slog.Logger) (*valkeyRunner, error) {
	if cfg.ValkeyAddr != "" {
		if err := ping(cfg.ValkeyAddr); err != nil {
			return nil, fmt.Errorf("VALKEY_ADDR=%s does not answer PING: %w", cfg.ValkeyAddr, err)
		}
		log.Info("using the Valkey in VALKEY_ADDR", "addr", cfg.ValkeyAddr)
		return &valkeyRunner{Addr: cfg.ValkeyAddr, Description: "VALKEY_ADDR=" + cfg.ValkeyAddr}, nil
	}
	bin, err := findServer(ctx, log)
	if err != nil {
		return nil, err
	}
	port, err := choosePort(cfg.ValkeyPort)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(cfg.StateDir, "valkey"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logFile := filepath.Join(dir, "server.log")
	// An in-memory server: the embedded Kafka is in memory too, so both start
	// empty and agree on offsets.
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", logFile,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &valkeyRunner{Addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for ping(addr) != nil {
		select {
		case <-r.done:
			return nil, fmt.Errorf("%s exited at start; see %s", bin, logFile)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("%s did not answer PING at %s within 10s; see %s", bin, addr, logFile)
		}
	}
	r.Description = fmt.Sprintf("started %s (%s) at %s, in memory; log %s", filepath.Base(bin), serverVersion(bin), addr, logFile)
	log.Info("started a local Valkey-compatible server", "binary", bin, "addr", addr)
	return r, nil
}

// Stop shuts down the server devstack started, if any.
func (r *valkeyRunner) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// findServer returns valkey-server or redis-server from PATH, installing
// Debian's redis-server when neither is there and we are root.
func findServer(ctx context.Context, log *slog.Logger) (string, error) {
	for _, name := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if os.Geteuid() != 0 {
		return "", errors.New("neither valkey-server nor redis-server is installed: install one (Debian: apt-get install redis-server) or set VALKEY_ADDR")
	}
	log.Warn("neither valkey-server nor redis-server found; installing Debian's redis-server with apt-get")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "redis-server"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	// The package starts a system service on 6379; devstack runs its own.
	_ = exec.Command("service", "redis-server", "stop").Run()
	return exec.LookPath("redis-server")
}

// choosePort returns the preferred port when it is free, or any free port.
func choosePort(preferred int) (int, error) {
	for _, p := range []int{preferred, 0} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		return port, nil
	}
	return 0, errors.New("no free port on 127.0.0.1")
}

// ping sends a RESP PING and expects PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
	}
	return nil
}

func serverVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown version"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "v" + v
		}
	}
	return strings.TrimSpace(string(out))
}
