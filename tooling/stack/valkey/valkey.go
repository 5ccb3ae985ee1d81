// Package valkey runs a real Valkey or Redis server on 127.0.0.1 for tests
// and development: valkey-server when it is installed, else redis-server,
// else Debian's redis-server, installed when this runs as root.
//
// A Server lives in a directory: server.json (how it was configured at its
// first start, port included, so that a restart keeps its address and its
// settings), data/, valkey.log (the server's log), valkey.out (its output)
// and valkey.pid.
package valkey

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/tooling/stack/apt"
	"blackfriday.local/tooling/stack/process"
)

// Config is how a server runs. It counts at the server's first start; later
// starts keep it.
type Config struct {
	// Port is the port to take if it is free; 0, or a taken one, means a
	// free port.
	Port int `json:"port"`
	// AppendOnly keeps an append-only file in the data directory, synced
	// per AppendFsync (default everysec); without it nothing persists and
	// a restarted server is empty.
	AppendOnly  bool   `json:"appendonly,omitempty"`
	AppendFsync string `json:"appendfsync,omitempty"`
	// ACLFile is an ACL file to load (--aclfile).
	ACLFile string `json:"aclfile,omitempty"`
	// AdminUser and AdminPassword authenticate the launcher's own PING and
	// SHUTDOWN, when the ACL file turns the default user off.
	AdminUser     string `json:"admin_user,omitempty"`
	AdminPassword string `json:"admin_password,omitempty"`
	// ExtraArgs are more server arguments, e.g. --maxmemory 256mb.
	ExtraArgs []string `json:"extra_args,omitempty"`

	// StartTimeout bounds the wait for PONG (default 30s), StopTimeout the
	// wait for a stop before SIGKILL (default 30s).
	StartTimeout time.Duration `json:"-"`
	StopTimeout  time.Duration `json:"-"`
	// Log receives what the server does, a line at a time; nil discards.
	Log io.Writer `json:"-"`
}

// Server is a Valkey or Redis server in a directory.
type Server struct {
	dir string
	cfg Config
}

// Open returns the server in dir: as it was configured at its first start,
// or, when it has not started yet, configured by cfg. cfg's timeouts and log
// count either way.
func Open(dir string, cfg Config) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	b, err := os.ReadFile(s.configFile())
	switch {
	case err == nil:
		var kept Config
		if err := json.Unmarshal(b, &kept); err != nil {
			return nil, fmt.Errorf("%s: %w", s.configFile(), err)
		}
		kept.StartTimeout, kept.StopTimeout, kept.Log = cfg.StartTimeout, cfg.StopTimeout, cfg.Log
		cfg = kept
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.AppendFsync == "" {
		cfg.AppendFsync = "everysec"
	}
	s.cfg = cfg
	return s, nil
}

// Exists reports whether a server has started in dir.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "server.json"))
	return err == nil
}

func (s *Server) configFile() string { return filepath.Join(s.dir, "server.json") }
func (s *Server) pidFile() process.PidFile {
	return process.PidFile(filepath.Join(s.dir, "valkey.pid"))
}
func (s *Server) logFiles() (string, string) {
	return filepath.Join(s.dir, "valkey.out"), filepath.Join(s.dir, "valkey.log")
}

// Dir is the server's directory.
func (s *Server) Dir() string { return s.dir }

// Addr is the server's address, once it has started once.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.cfg.Port) }

// Pid returns the server's process id, or 0 when it is not running.
func (s *Server) Pid() int { return s.pidFile().Pid() }

// Start starts the server unless it runs, and waits until it answers PING.
func (s *Server) Start(ctx context.Context) error {
	if pid := s.Pid(); pid != 0 {
		fmt.Fprintf(s.cfg.Log, "valkey: already running (pid %d) at %s\n", pid, s.Addr())
		return nil
	}
	bin, err := serverBinary(ctx, s.cfg.Log)
	if err != nil {
		return err
	}
	if err := s.keepConfig(); err != nil {
		return err
	}
	if process.PortOpen(s.Addr()) {
		return fmt.Errorf("valkey: port %d on 127.0.0.1 is in use by another process", s.cfg.Port)
	}
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	outFile, logFile := s.logFiles()
	args := []string{"--port", strconv.Itoa(s.cfg.Port), "--bind", "127.0.0.1", "--daemonize", "no",
		"--dir", data, "--logfile", logFile, "--save", ""}
	if s.cfg.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", s.cfg.AppendFsync)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.cfg.ACLFile != "" {
		args = append(args, "--aclfile", s.cfg.ACLFile)
	}
	args = append(args, s.cfg.ExtraArgs...)
	out, err := process.AppendTo(outFile)
	if err != nil {
		return err
	}
	defer out.Close()
	version := Version(bin)
	fmt.Fprintf(out, "===== %s starting %s on %s =====\n", time.Now().UTC().Format(time.RFC3339), version, s.Addr())
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	process.Detach(cmd)
	p, err := process.Start("valkey", cmd)
	if err != nil {
		return err
	}
	if err := s.pidFile().Write(p.Pid()); err != nil {
		p.Kill()
		return err
	}
	err = process.WaitUntil(ctx, s.cfg.StartTimeout, 50*time.Millisecond, p.Exited, func(ctx context.Context) error {
		return Ping(ctx, s.Addr(), s.cfg.AdminUser, s.cfg.AdminPassword)
	}, "valkey at "+s.Addr())
	if err != nil {
		_ = s.pidFile().Kill()
		return fmt.Errorf("%w%s", err, process.Tail(40, outFile, logFile))
	}
	persist := "in memory, nothing persists"
	if s.cfg.AppendOnly {
		persist = "append-only file, fsync " + s.cfg.AppendFsync
	}
	fmt.Fprintf(s.cfg.Log, "valkey: ready: %s (pid %d) at %s, %s; state in %s\n", version, p.Pid(), s.Addr(), persist, s.dir)
	return nil
}

// keepConfig chooses the port at the first start and writes the
// configuration down.
func (s *Server) keepConfig() error {
	if _, err := os.Stat(s.configFile()); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	port, err := process.FreePort(s.cfg.Port)
	if err != nil {
		return err
	}
	s.cfg.Port = port
	b, err := json.MarshalIndent(s.cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.configFile(), append(b, '\n'), 0o600)
}

// Stop shuts the server down (SHUTDOWN NOSAVE: the append-only file, if
// any, is flushed; no snapshot is written), or sends SIGTERM, then SIGKILL,
// when it does not go.
func (s *Server) Stop() error {
	pid := s.Pid()
	if pid == 0 {
		return s.pidFile().Stop(0)
	}
	fmt.Fprintf(s.cfg.Log, "valkey: stopping (pid %d)\n", pid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = command(ctx, s.Addr(), s.cfg.AdminUser, s.cfg.AdminPassword, "SHUTDOWN NOSAVE")
	if process.WaitGone(pid, 2*time.Second) {
		return s.pidFile().Stop(0)
	}
	return s.pidFile().Stop(s.cfg.StopTimeout)
}

// Kill kills the server with SIGKILL.
func (s *Server) Kill() error {
	if pid := s.Pid(); pid != 0 {
		fmt.Fprintf(s.cfg.Log, "valkey: killing (pid %d) with SIGKILL\n", pid)
	}
	return s.pidFile().Kill()
}

// Destroy stops the server and deletes its directory.
func (s *Server) Destroy() error {
	err := s.Stop()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

// serverBinary returns valkey-server or redis-server from PATH, installing
// Debian's redis-server when neither is there and this is root.
func serverBinary(ctx context.Context, log io.Writer) (string, error) {
	for _, name := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	err := apt.Install(ctx, log, "valkey: neither valkey-server nor redis-server is installed", "redis-server")
	if errors.Is(err, apt.ErrNotRoot) {
		return "", errors.New("neither valkey-server nor redis-server is installed: install one (Debian: apt-get install redis-server)")
	}
	if err != nil {
		return "", err
	}
	// The package starts a system server on 6379; the stack runs its own.
	_ = exec.CommandContext(ctx, "service", "redis-server", "stop").Run()
	return exec.LookPath("redis-server")
}

// Version names the server binary and its version, e.g. "redis-server
// 7.0.15".
func Version(bin string) string {
	name := filepath.Base(bin)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return name + " (unknown version)"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return name + " " + v
		}
	}
	return name + " " + strings.TrimSpace(string(out))
}

// InstalledVersion is Version of the server binary Start would run, or ""
// when there is none.
func InstalledVersion() string {
	for _, name := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return Version(p)
		}
	}
	return ""
}

// Ping sends PING to addr, authenticating as user first when user is set,
// and succeeds on PONG.
func Ping(ctx context.Context, addr, user, password string) error {
	reply, err := command(ctx, addr, user, password, "PING")
	if err != nil {
		return err
	}
	if reply != "+PONG" {
		return fmt.Errorf("PING %s: %s", addr, reply)
	}
	return nil
}

// command sends one inline command and returns the first line of its
// reply, after AUTH when user is set.
func command(ctx context.Context, addr, user, password, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if user != "" {
		if _, err := fmt.Fprintf(c, "AUTH %s %s\r\n", user, password); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line = strings.TrimSpace(line); line != "+OK" {
			return "", fmt.Errorf("AUTH %s at %s: %s", user, addr, line)
		}
	}
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return strings.TrimSpace(line), err
}
