// Package stack starts and stops the blackfriday pipeline on one machine:
// a real Apache Kafka cluster (package kafka) or the embedded kfake, a
// Valkey or Redis server (package valkey), the api and the aggregator. Each
// runs as a daemon that outlives the program that started it, so that one
// command starts the stack, another kills a service and a third starts it
// again; all of a stack's state, logs and data live in one directory:
//
//	stack.json       what the stack uses that it did not start (a Kafka or Valkey named by the caller)
//	kafka/           the Kafka cluster (see package kafka)
//	valkey/          the Valkey server (see package valkey)
//	kfake/, api/, aggregator/
//	                 NAME.pid, NAME.log and the port each keeps across restarts
//	stack.env        export lines for a shell or a test (Env)
//	kafka-ctl        the BF_TEST_KAFKA_CTL command (contract/testenv), when the CLI wrote it
//	prodshape/       the production shape's processes, when `stack up-prod` made them (package prodshape)
//
// `make run`, `make test`, `make compare`, the fault and overload targets,
// and the e2e, browser and load generator suites all start their services
// here, and cmd/stack is its command line.
package stack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/valkey"
)

// The services of a stack, by the names the command line and Up take. A
// single Kafka node is "kafka-N".
const (
	Kafka      = "kafka"
	Kfake      = "kfake"
	Valkey     = "valkey"
	API        = "api"
	Aggregator = "aggregator"
)

// KafkaSASL names the Kafka cluster's SCRAM listeners, for Addr.
const KafkaSASL = "kafka-sasl"

// order is the order services start in; they stop in reverse. The
// aggregator starts before the api, so that the consumer group is ready
// when the first sale arrives.
var order = []string{Valkey, Kafka, Kfake, Aggregator, API}

// Config is how a stack runs.
type Config struct {
	// Dir holds the stack's state.
	Dir string
	// Bin is the directory holding the api and aggregator binaries; empty
	// means Dir/bin, where they are built (Build) when first needed.
	Bin string
	// Exe is the stack command's own binary, which serves kfake and which
	// the kafka-ctl script runs; empty means the stack has neither.
	Exe string
	// Kafka and Valkey configure the cluster and the server, for their
	// first start (see their packages).
	Kafka  kafka.Config
	Valkey valkey.Config
	// KafkaBrokers and ValkeyAddr name a Kafka and a Valkey that the api
	// and the aggregator use instead of the stack's own. The stack keeps
	// them (stack.json), so that a later command starting the api again
	// uses them too.
	KafkaBrokers string
	ValkeyAddr   string
	// APIPort is the api's port (default 8080); it must be free.
	// AggregatorPort (default 8081) and KfakePort (default 9092) are
	// preferred: taken, a free port is used instead.
	APIPort, AggregatorPort, KfakePort int
	// Partitions is the number of partitions of the topics kfake seeds
	// (KAFKA_TOPIC and KAFKA_DLQ_TOPIC, default sales and sales.dlq);
	// default 6.
	Partitions int
	// Log receives what the stack does, a line at a time; nil discards.
	Log io.Writer
}

// Stack is the pipeline in a directory.
type Stack struct {
	cfg Config
	mu  sync.Mutex // serializes changes made through this value
}

// New returns the stack in cfg.Dir, with what an earlier command kept
// there (stack.json) filling in what cfg leaves empty.
func New(cfg Config) (*Stack, error) {
	if cfg.Dir == "" {
		return nil, errors.New("stack: no directory")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Kafka.Log == nil {
		cfg.Kafka.Log = cfg.Log
	}
	if cfg.Valkey.Log == nil {
		cfg.Valkey.Log = cfg.Log
	}
	var k kept
	if b, err := os.ReadFile(filepath.Join(dir, "stack.json")); err == nil {
		if err := json.Unmarshal(b, &k); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "stack.json"), err)
		}
	}
	cfg.KafkaBrokers = cmp.Or(cfg.KafkaBrokers, k.KafkaBrokers)
	cfg.ValkeyAddr = cmp.Or(cfg.ValkeyAddr, k.ValkeyAddr)
	cfg.Bin = cmp.Or(cfg.Bin, filepath.Join(dir, "bin"))
	if cfg.APIPort == 0 {
		cfg.APIPort = 8080
	}
	if cfg.AggregatorPort == 0 {
		cfg.AggregatorPort = 8081
	}
	if cfg.KfakePort == 0 {
		cfg.KfakePort = 9092
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 6
	}
	return &Stack{cfg: cfg}, nil
}

// kept is what stack.json keeps.
type kept struct {
	KafkaBrokers string `json:"kafka_brokers,omitempty"`
	ValkeyAddr   string `json:"valkey_addr,omitempty"`
}

// Dir is the stack's directory.
func (s *Stack) Dir() string { return s.cfg.Dir }

// Cluster returns the stack's Kafka cluster, made or not.
func (s *Stack) Cluster() (*kafka.Cluster, error) {
	return kafka.Open(filepath.Join(s.cfg.Dir, Kafka), s.cfg.Kafka)
}

// Server returns the stack's Valkey server, started or not.
func (s *Stack) Server() (*valkey.Server, error) {
	return valkey.Open(filepath.Join(s.cfg.Dir, Valkey), s.cfg.Valkey)
}

// Up starts the named services that do not run yet, in dependency order,
// and waits until each is ready; then it rewrites stack.env.
func (s *Stack) Up(ctx context.Context, names ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range names {
		if _, _, err := parse(name); err != nil {
			return err
		}
	}
	if err := s.keep(); err != nil {
		return err
	}
	for _, svc := range order {
		for _, name := range names {
			if base, node, _ := parse(name); base == svc {
				if err := s.start(ctx, base, node); err != nil {
					return err
				}
			}
		}
	}
	return s.writeEnv()
}

// Start starts one service, or one Kafka node ("kafka-2"), unless it runs.
func (s *Stack) Start(ctx context.Context, name string) error { return s.Up(ctx, name) }

// parse splits a service name into its service and, for "kafka-N", the
// node (0 for every node).
func parse(name string) (svc string, node int, err error) {
	if n, ok := strings.CutPrefix(name, Kafka+"-"); ok {
		id, err := strconv.Atoi(n)
		if err != nil || id < 1 {
			return "", 0, fmt.Errorf("stack: no service %q (a Kafka node is kafka-N, N from 1)", name)
		}
		return Kafka, id, nil
	}
	if slices.Contains(order, name) {
		return name, 0, nil
	}
	return "", 0, fmt.Errorf("stack: no service %q (want kafka, kafka-N, kfake, valkey, api or aggregator)", name)
}

func (s *Stack) start(ctx context.Context, svc string, node int) error {
	switch svc {
	case Kafka:
		c, err := s.Cluster()
		if err != nil {
			return err
		}
		if node != 0 {
			return c.StartNode(ctx, node)
		}
		return c.Start(ctx)
	case Valkey:
		v, err := s.Server()
		if err != nil {
			return err
		}
		return v.Start(ctx)
	default:
		return s.startProgram(ctx, svc)
	}
}

// Stop stops one service, or one Kafka node, gracefully (SIGTERM, then
// SIGKILL after a timeout). Its state stays, so Start starts it again as
// it was.
func (s *Stack) Stop(name string) error { return s.signal(name, false) }

// Kill kills one service, or one Kafka node, with SIGKILL. Its state stays.
func (s *Stack) Kill(name string) error { return s.signal(name, true) }

func (s *Stack) signal(name string, kill bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, node, err := parse(name)
	if err != nil {
		return err
	}
	switch svc {
	case Kafka:
		c, err := s.Cluster()
		if err != nil {
			return err
		}
		switch {
		case node != 0 && kill:
			return c.KillNode(node)
		case node != 0:
			return c.StopNode(node)
		case kill:
			var errs []error
			for _, n := range c.Nodes() {
				errs = append(errs, c.KillNode(n.ID))
			}
			return errors.Join(errs...)
		default:
			return c.Stop()
		}
	case Valkey:
		v, err := s.Server()
		if err != nil {
			return err
		}
		if kill {
			return v.Kill()
		}
		return v.Stop()
	default:
		p := s.program(svc)
		if kill {
			return p.kill(s.cfg.Log)
		}
		return p.stop(s.cfg.Log)
	}
}

// Down stops every service of the stack, in reverse order, and deletes the
// stack's directory.
func (s *Stack) Down() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, svc := range slices.Backward(order) {
		switch svc {
		case Kafka:
			if kafka.Exists(filepath.Join(s.cfg.Dir, Kafka)) {
				c, err := s.Cluster()
				if err == nil {
					err = c.Stop()
				}
				errs = append(errs, err)
			}
		case Valkey:
			if valkey.Exists(filepath.Join(s.cfg.Dir, Valkey)) {
				v, err := s.Server()
				if err == nil {
					err = v.Stop()
				}
				errs = append(errs, err)
			}
		default:
			errs = append(errs, s.program(svc).stop(s.cfg.Log))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stack: down: %w (state kept in %s)", err, s.cfg.Dir)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "stack.json")); err != nil {
		// Not a stack's directory, or gone already: nothing to delete.
		return nil
	}
	return os.RemoveAll(s.cfg.Dir)
}

// keep writes stack.json: it marks the directory as a stack's, which Down
// deletes, and keeps what the caller named for later commands.
func (s *Stack) keep() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(kept{s.cfg.KafkaBrokers, s.cfg.ValkeyAddr}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.cfg.Dir, "stack.json"), append(b, '\n'), 0o644)
}

// lock holds the directory's lock, so that two commands changing one stack
// (two starts choosing ports, say) take turns.
func (s *Stack) lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.cfg.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
