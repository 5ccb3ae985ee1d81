package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/valkey"
)

// runPipeline is `stack run`, what `make run` starts: the pipeline in the
// background, its logs in the foreground, and everything stopped and its
// state deleted when ctx ends (Ctrl-C).
func runPipeline(ctx context.Context, cfg stack.Config, names []string, stderr io.Writer) (code int) {
	if len(names) == 0 {
		names = []string{stack.Kfake, stack.Valkey, stack.API, stack.Aggregator}
	}
	// A Kafka or Valkey named by the environment is used instead of
	// starting one, as the services themselves would read it.
	if cfg.KafkaBrokers = os.Getenv("KAFKA_BROKERS"); cfg.KafkaBrokers != "" {
		names = slices.DeleteFunc(names, func(n string) bool { return n == stack.Kfake || strings.HasPrefix(n, stack.Kafka) })
	}
	if cfg.ValkeyAddr = os.Getenv("VALKEY_ADDR"); cfg.ValkeyAddr != "" {
		names = slices.DeleteFunc(names, func(n string) bool { return n == stack.Valkey })
		if err := valkey.Ping(ctx, cfg.ValkeyAddr, os.Getenv("VALKEY_USERNAME"), os.Getenv("VALKEY_PASSWORD")); err != nil {
			fmt.Fprintf(stderr, "stack: VALKEY_ADDR=%s does not answer PING: %v\n", cfg.ValkeyAddr, err)
			return 1
		}
	}
	s, err := stack.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if st, err := s.Status(); err != nil || slices.ContainsFunc(st, func(x stack.Status) bool { return x.Pid != 0 }) {
		fmt.Fprintf(stderr, "stack: services of %s are running already (stack status shows them; stack down stops them)\n", s.Dir())
		return 1
	}
	// The state of an earlier run that did not get to clean up: kfake and
	// Valkey keep nothing, so nothing of it is worth keeping.
	if err := s.Down(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// The logs are followed from their start, so that a service's
	// startup lines show too, and until everything has stopped, so that
	// its shutdown lines do.
	var wg sync.WaitGroup
	defer wg.Wait()
	followCtx, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	for _, name := range []string{stack.Aggregator, stack.API} {
		if slices.Contains(names, name) {
			wg.Go(func() { follow(followCtx, filepath.Join(s.Dir(), name, name+".log"), name, stderr) })
		}
	}
	defer func() {
		fmt.Fprintln(stderr, "stack: stopping")
		if err := s.Down(); err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			return
		}
		fmt.Fprintln(stderr, "stack: stopped, state deleted")
	}()

	if err := s.Up(ctx, names...); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	self := selfPath(cfg.Exe)
	if err := banner(s, cfg, self, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	watch(ctx, s, self, stderr)
	return code
}

// selfPath is how a person in the working directory calls this program:
// bin/stack in the repository, else stack.
func selfPath(exe string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return "stack"
}

// banner says what runs where, and how to use it; self is this program.
func banner(s *stack.Stack, cfg stack.Config, self string, w io.Writer) error {
	st, err := s.Status()
	if err != nil {
		return err
	}
	addr := map[string]string{}
	for _, x := range st {
		addr[x.Name] = x.Addr
	}
	kafkaLine := "KAFKA_BROKERS=" + cfg.KafkaBrokers + " (not started here)"
	switch {
	case addr[stack.Kfake] != "":
		kafkaLine = fmt.Sprintf("embedded kfake at %s, in memory (topics %s, %d partitions)", addr[stack.Kfake],
			env("KAFKA_TOPIC", "sales")+" and "+env("KAFKA_DLQ_TOPIC", "sales.dlq"), cfg.Partitions)
	case kafka.Exists(filepath.Join(s.Dir(), stack.Kafka)):
		c, err := s.Cluster()
		if err != nil {
			return err
		}
		kafkaLine = fmt.Sprintf("Apache Kafka %s (KRaft, %d node(s)) at %s", c.Version(), len(c.Nodes()), c.Bootstrap())
	}
	valkeyLine := "VALKEY_ADDR=" + cfg.ValkeyAddr + " (not started here)"
	if a := addr[stack.Valkey]; a != "" {
		valkeyLine = fmt.Sprintf("started %s at %s, in memory", valkey.InstalledVersion(), a)
	}
	api := strings.Replace(addr[stack.API], "127.0.0.1", "localhost", 1)
	fmt.Fprintf(w, `
stack: the pipeline is up (state in %s).
  kafka:      %s
  valkey:     %s
  api:        %s (gRPC, gRPC-Web, Connect, legacy REST)
  aggregator: %s/healthz and /metrics

Try:
  curl -s %[4]s/blackfriday.sales.v1.SalesService/RecordSale -H 'Content-Type: application/json' \
    -d '{"sale":{"category":"CATEGORY_ELECTRONICS","productId":"P1","priceCents":"19999","quantity":2}}'
  curl -s %[4]s/venta -H 'Content-Type: application/json' \
    -d '{"categoria":"Electronica","producto_id":"P7","precio":532.8812345,"cantidad_vendida":13}'
  curl -s --get %[4]s/blackfriday.sales.v1.AnalyticsService/GetSummary \
    --data-urlencode 'encoding=json' --data-urlencode 'message={}'

In another terminal: %[6]s status; %[6]s kill aggregator; %[6]s start aggregator
Press Ctrl-C to stop.

`, s.Dir(), kafkaLine, valkeyLine, api, addr[stack.Aggregator], self)
	return nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// watch reports, until ctx ends, each service of the stack that stops or
// starts again: the stack keeps running when one is killed, as it does
// when someone kills one on purpose to see what happens.
func watch(ctx context.Context, s *stack.Stack, self string, w io.Writer) {
	running := map[string]int{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		st, err := s.Status()
		if err == nil {
			for _, x := range st {
				was, seen := running[x.Name]
				switch {
				case seen && was != 0 && x.Pid == 0:
					fmt.Fprintf(w, "stack: %s (pid %d) is not running; `%s start %s` starts it again\n", x.Name, was, self, x.Name)
				case seen && was == 0 && x.Pid != 0:
					fmt.Fprintf(w, "stack: %s is running again (pid %d)\n", x.Name, x.Pid)
				}
				running[x.Name] = x.Pid
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// follow copies the lines appended to the file at path to w, each
// prefixed with name, until ctx ends; the file need not exist yet.
func follow(ctx context.Context, path, name string, w io.Writer) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var r *bufio.Reader
	var partial string
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if f == nil {
			if opened, err := os.Open(path); err == nil {
				f, r = opened, bufio.NewReader(opened)
			}
		}
		for r != nil {
			line, err := r.ReadString('\n')
			partial += line
			if err != nil {
				break
			}
			fmt.Fprintf(w, "%-10s | %s", name, partial)
			partial = ""
		}
		// One last read after ctx ends: the lines of the stop.
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
