package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/process"
	"blackfriday.local/tooling/stack/valkey"
)

// stopTimeout is how long the api and the aggregator get to drain after
// SIGTERM before they are killed.
const stopTimeout = 20 * time.Second

// program is a daemon of the stack that runs one of the repository's own
// binaries: the api, the aggregator, or kfake, which the stack command
// serves itself. Its directory keeps its pid file, its log and its port.
type program struct {
	name string
	dir  string
}

func (s *Stack) program(name string) program {
	return program{name: name, dir: filepath.Join(s.cfg.Dir, name)}
}

func (p program) pidFile() process.PidFile {
	return process.PidFile(filepath.Join(p.dir, p.name+".pid"))
}

func (p program) logFile() string { return filepath.Join(p.dir, p.name+".log") }

// port returns the port the program kept from its first start, or 0.
func (p program) port() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "port"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// choosePort returns the kept port, or at the first start preferred when
// it is free; taken, it fails when strict and takes a free one otherwise.
func (p program) choosePort(preferred int, strict bool) (int, error) {
	if n := p.port(); n != 0 {
		return n, nil
	}
	n, err := process.FreePort(preferred)
	if err != nil {
		return 0, err
	}
	if strict && n != preferred {
		return 0, fmt.Errorf("%s: port %d on 127.0.0.1 is in use by another process", p.name, preferred)
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return 0, err
	}
	return n, os.WriteFile(filepath.Join(p.dir, "port"), []byte(strconv.Itoa(n)+"\n"), 0o644)
}

func (p program) stop(log io.Writer) error {
	if pid := p.pidFile().Pid(); pid != 0 {
		fmt.Fprintf(log, "%s: stopping (pid %d)\n", p.name, pid)
	}
	return p.pidFile().Stop(stopTimeout)
}

func (p program) kill(log io.Writer) error {
	if pid := p.pidFile().Pid(); pid != 0 {
		fmt.Fprintf(log, "%s: killing (pid %d) with SIGKILL\n", p.name, pid)
	}
	return p.pidFile().Kill()
}

// launch starts cmd as the program's daemon, its output appended to its
// log, and waits until ready succeeds; a program not ready in time is
// killed.
func (p program) launch(ctx context.Context, log io.Writer, cmd *exec.Cmd, timeout time.Duration, ready func(context.Context) error, addr string) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	out, err := process.AppendTo(p.logFile())
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(out, "===== %s starting %s on %s =====\n", time.Now().UTC().Format(time.RFC3339), p.name, addr)
	cmd.Stdout, cmd.Stderr = out, out
	process.Detach(cmd)
	proc, err := process.Start(p.name, cmd)
	if err != nil {
		return err
	}
	if err := p.pidFile().Write(proc.Pid()); err != nil {
		proc.Kill()
		return err
	}
	if err := process.WaitUntil(ctx, timeout, 100*time.Millisecond, proc.Exited, ready, p.name+" at "+addr); err != nil {
		_ = p.pidFile().Kill()
		return fmt.Errorf("%w%s", err, process.Tail(30, p.logFile()))
	}
	fmt.Fprintf(log, "%s: ready (pid %d) at %s; log %s\n", p.name, proc.Pid(), addr, p.logFile())
	return nil
}

// startProgram starts the api, the aggregator or kfake, unless it runs.
func (s *Stack) startProgram(ctx context.Context, name string) error {
	p := s.program(name)
	if pid := p.pidFile().Pid(); pid != 0 {
		fmt.Fprintf(s.cfg.Log, "%s: already running (pid %d)\n", name, pid)
		return nil
	}
	switch name {
	case Kfake:
		if s.cfg.Exe == "" {
			return errors.New("kfake: the stack command serves it, and this stack has none (Config.Exe)")
		}
		port, err := p.choosePort(s.cfg.KfakePort, false)
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(s.cfg.Exe, "kfake", "-port", strconv.Itoa(port), "-partitions", strconv.Itoa(s.cfg.Partitions))
		return p.launch(ctx, s.cfg.Log, cmd, 10*time.Second, func(context.Context) error {
			if !process.PortOpen(addr) {
				return errors.New("not listening")
			}
			return nil
		}, addr)
	case Aggregator:
		env, err := s.backends()
		if err != nil {
			return fmt.Errorf("aggregator: %w", err)
		}
		bin, err := s.binary(ctx, name)
		if err != nil {
			return err
		}
		port, err := p.choosePort(s.cfg.AggregatorPort, false)
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), append(env, "HTTP_ADDR="+addr)...)
		return p.launch(ctx, s.cfg.Log, cmd, 60*time.Second, func(ctx context.Context) error {
			return process.GetOK(ctx, "http://"+addr+"/healthz")
		}, "http://"+addr)
	default: // API
		env, err := s.backends()
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		bin, err := s.binary(ctx, name)
		if err != nil {
			return err
		}
		port, err := p.choosePort(s.cfg.APIPort, true)
		if err != nil {
			return err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), append(env, "PORT="+strconv.Itoa(port))...)
		// Ready means Kafka and Valkey are reachable: a sale sent now is
		// recorded.
		return p.launch(ctx, s.cfg.Log, cmd, 60*time.Second, func(ctx context.Context) error {
			return process.GetOK(ctx, url+"/readyz")
		}, url)
	}
}

// backends returns the environment that points the api and the aggregator
// at the stack's Kafka and Valkey: the ones the caller named, else the
// stack's own.
func (s *Stack) backends() ([]string, error) {
	brokers, valkeyAddr := s.cfg.KafkaBrokers, s.cfg.ValkeyAddr
	if brokers == "" {
		if kafka.Exists(filepath.Join(s.cfg.Dir, Kafka)) {
			c, err := s.Cluster()
			if err != nil {
				return nil, err
			}
			brokers = c.Bootstrap()
		} else if port := s.program(Kfake).port(); port != 0 {
			brokers = "127.0.0.1:" + strconv.Itoa(port)
		}
	}
	if valkeyAddr == "" && valkey.Exists(filepath.Join(s.cfg.Dir, Valkey)) {
		v, err := s.Server()
		if err != nil {
			return nil, err
		}
		valkeyAddr = v.Addr()
	}
	switch {
	case brokers == "":
		return nil, errors.New("no Kafka: start kafka or kfake in this stack, or name one (KAFKA_BROKERS)")
	case valkeyAddr == "":
		return nil, errors.New("no Valkey: start valkey in this stack, or name one (VALKEY_ADDR)")
	}
	return []string{"KAFKA_BROKERS=" + brokers, "VALKEY_ADDR=" + valkeyAddr}, nil
}

// binary returns the path of the api's or the aggregator's binary, building
// both into Dir/bin when that is where they are expected and they are not
// there yet.
func (s *Stack) binary(ctx context.Context, name string) (string, error) {
	path := filepath.Join(s.cfg.Bin, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if s.cfg.Bin != filepath.Join(s.cfg.Dir, "bin") {
		return "", fmt.Errorf("%s: no binary %s (make build builds it)", name, path)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(s.cfg.Log, "stack: building the api and the aggregator into %s\n", s.cfg.Bin)
	if err := Build(ctx, root, s.cfg.Bin); err != nil {
		return "", err
	}
	return path, nil
}
