// Command stack starts and stops the blackfriday pipeline on this machine,
// for people and for the Makefile's targets: `make run` is `stack run`, and
// `make test`, `make faults` and the other targets that need real services
// run their tests under `stack with`. See usage below, or `stack -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/process"
	"blackfriday.local/tooling/stack/prodshape"
)

const usage = `usage: stack [flags] COMMAND [SERVICE...]

Starts the blackfriday pipeline on this machine: a real Apache Kafka cluster
(KRaft, jars from Maven Central) or the embedded kfake, Valkey/Redis, the api
and the aggregator. Each runs in the background until stopped, with its pid,
log and data in -dir, so that one command starts the stack and others stop,
kill or start one service of it.

Commands:
  run [SERVICE...]   what make run does: start kfake valkey api aggregator
                     (KAFKA_BROKERS or VALKEY_ADDR name ones to use instead),
                     show the api's and the aggregator's logs, stop
                     everything and delete the state on Ctrl-C; with
                     nothing running in -dir (what a stack left there is
                     deleted first)
  up [SERVICE...]    start services (default: kafka valkey api aggregator);
                     print their addresses as export lines
  down               stop every service and delete the state
  start SERVICE      start one service (again); print its address
  stop SERVICE       stop one service gracefully (SIGTERM, SIGKILL after a timeout)
  kill SERVICE       kill one service with SIGKILL
  status             every service: running or stopped, pid, address
  addr SERVICE       print one address (kafka: the bootstrap list;
                     kafka-sasl: the SCRAM listeners')
  env                print export lines: BF_TEST_KAFKA_BROKERS,
                     BF_TEST_VALKEY_ADDR, BF_TEST_KAFKA_CTL, BF_RUN_DIR;
                     for a production shape also BF_PROD_<POD>_<PORT>
  with SERVICE... -- COMMAND [ARG...]
                     start the services, run COMMAND with their export
                     lines in its environment, then down; a service the
                     environment already names (BF_TEST_*) is used instead
  up-prod            the production shape of the rendered overlay
                     (-overlay, default prod; kustomize build with the
                     pinned kustomize): its Kafka cluster, nodes, broker
                     settings and topics, SCRAM users and ACLs of its
                     KafkaUsers, Valkey with its ACL users, and
                     the api and aggregator processes with their
                     Deployments' env (-replicas); print the addresses as
                     export lines, and on stderr what was read and what
                     of prod is not provided locally; down stops it
  check-prod         compare the running production shape with its
                     manifests: every probe answers as declared, every
                     containerPort and Service targetPort is listened on;
                     exit 1 on a mismatch

Services: kafka (every node), kafka-N (node N), kfake, valkey, api, aggregator.

Examples:
  eval "$(bin/stack up kafka valkey)"    # real Kafka and Valkey for go test
  bin/stack kill kafka-1; bin/stack start kafka-1
  bin/stack -dir .run/three -kafka-nodes 3 up kafka
  bin/stack -dir .run/prod up-prod; bin/stack -dir .run/prod check-prod; bin/stack -dir .run/prod down

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		return 1
	}
	cfg := stack.Config{Exe: exe, Log: stderr}
	var users string
	var acl bool
	fs.StringVar(&cfg.Dir, "dir", defaultDir(), "the stack's state directory ($BF_RUN_DIR)")
	fs.StringVar(&cfg.Bin, "bin", defaultBin(exe), "directory of the api and aggregator binaries (empty: built into -dir/bin)")
	fs.IntVar(&cfg.Kafka.Nodes, "kafka-nodes", 1, "KRaft nodes of a new Kafka cluster")
	fs.StringVar(&cfg.Kafka.Version, "kafka-version", os.Getenv("KAFKA_VERSION"), "Apache Kafka version of a new cluster (default "+kafka.DefaultVersion()+")")
	fs.StringVar(&users, "kafka-scram-users", os.Getenv("KAFKA_SCRAM_USERS"), "SCRAM users of a new Kafka cluster, \"NAME:PASSWORD ...\" ($KAFKA_SCRAM_USERS)")
	fs.BoolVar(&acl, "kafka-acl", os.Getenv("KAFKA_AUTHORIZER") == "acl", "enforce ACLs in a new Kafka cluster ($KAFKA_AUTHORIZER=acl)")
	fs.IntVar(&cfg.Valkey.Port, "valkey-port", 6379, "Valkey's port at its first start, if free")
	fs.BoolVar(&cfg.Valkey.AppendOnly, "valkey-appendonly", false, "a new Valkey keeps an append-only file (default: nothing persists)")
	fs.IntVar(&cfg.APIPort, "api-port", intEnv("PORT", 8080), "the api's port ($PORT)")
	fs.IntVar(&cfg.AggregatorPort, "aggregator-port", 8081, "the aggregator's health and metrics port, if free")
	fs.IntVar(&cfg.KfakePort, "kfake-port", 9092, "kfake's port, if free")
	fs.IntVar(&cfg.Partitions, "partitions", intEnv("KAFKA_TOPIC_PARTITIONS", 6), "partitions of kfake's topics")
	var prod prodFlags
	fs.StringVar(&prod.overlay, "overlay", "prod", "up-prod: the overlay of kustomize/overlays to run")
	fs.BoolVar(&prod.plainKafka, "prod-plain-kafka", false, "up-prod: no SCRAM users or ACLs from the KafkaUsers (the processes' KAFKA_SASL_* left off)")
	fs.StringVar(&prod.replicas, "replicas", "", "up-prod: processes per Deployment, \"NAME=N,...\" (default api=2,aggregator=3)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Kafka.Users, err = kafka.ParseUsers(users); err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		return 2
	}
	cfg.Kafka.ACL = acl
	cfg.Kafka.Heap = os.Getenv("KAFKA_HEAP_OPTS")
	cfg.Kafka.JVMOptions = os.Getenv("KAFKA_OPTS")
	cfg.Kafka.ExtraProperties = os.Getenv("KAFKA_EXTRA_PROPERTIES")
	cmd, rest := fs.Arg(0), fs.Args()[min(1, fs.NArg()):]
	if cmd == "up-prod" || cmd == "check-prod" || (cmd == "down" && prodshape.Exists(cfg.Dir)) {
		fs.Visit(func(f *flag.Flag) { prod.nodesSet = prod.nodesSet || f.Name == "kafka-nodes" })
		return prodCommand(ctx, cmd, cfg, prod, stdout, stderr)
	}
	if cmd == "kfake" {
		return serveKfake(ctx, rest, stderr)
	}
	if cmd == "run" {
		return runPipeline(ctx, cfg, rest, stderr)
	}
	if cmd == "with" {
		return with(ctx, cfg, rest, stderr)
	}
	s, err := stack.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := command(ctx, s, cmd, rest, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, errUsage) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("stack: bad usage")

// command runs the commands that act on the stack and return.
func command(ctx context.Context, s *stack.Stack, cmd string, args []string, stdout, stderr io.Writer) error {
	one := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("%w: %s takes one service", errUsage, cmd)
		}
		return args[0], nil
	}
	switch cmd {
	case "up":
		if len(args) == 0 {
			args = []string{stack.Kafka, stack.Valkey, stack.API, stack.Aggregator}
		}
		if err := s.Up(ctx, args...); err != nil {
			return err
		}
		env, err := s.Env()
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, stack.Exports(env))
		fmt.Fprintf(stderr, "stack: up: %s; `stack status` for more, `stack down` stops it\n", strings.Join(args, ", "))
		return nil
	case "start":
		name, err := one()
		if err != nil {
			return err
		}
		if err := s.Start(ctx, name); err != nil {
			return err
		}
		addr, err := s.Addr(name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, addr)
		return nil
	case "stop", "kill":
		name, err := one()
		if err != nil {
			return err
		}
		if cmd == "kill" {
			return s.Kill(name)
		}
		return s.Stop(name)
	case "down":
		if err := s.Down(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "stack: everything in %s stopped, state deleted\n", s.Dir())
		return nil
	case "addr":
		name, err := one()
		if err != nil {
			return err
		}
		addr, err := s.Addr(name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, addr)
		return nil
	case "env":
		env, err := s.Env()
		if err != nil {
			return err
		}
		if prodshape.Exists(s.Dir()) {
			sh, err := prodshape.Open(prodshape.Config{Dir: s.Dir()})
			if err != nil {
				return err
			}
			if env, err = sh.Env(); err != nil {
				return err
			}
		}
		fmt.Fprint(stdout, stack.Exports(env))
		return nil
	case "status":
		return status(s, stdout)
	case "":
		return fmt.Errorf("%w: no command", errUsage)
	default:
		return fmt.Errorf("%w: no command %q", errUsage, cmd)
	}
}

func status(s *stack.Stack, w io.Writer) error {
	st, err := s.Status()
	if err != nil {
		return err
	}
	if len(st) == 0 {
		fmt.Fprintf(w, "no services in %s\n", s.Dir())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, x := range st {
		state := "stopped"
		if x.Pid != 0 {
			state = fmt.Sprintf("running (pid %d)", x.Pid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.Name, state, x.Addr, x.About)
	}
	if prodshape.Exists(s.Dir()) {
		sh, err := prodshape.Open(prodshape.Config{Dir: s.Dir()})
		if err != nil {
			return err
		}
		for _, p := range sh.State().Pods {
			if p.Stack {
				continue
			}
			state := "stopped"
			if pid := process.PidFile(p.PidFile).Pid(); pid != 0 {
				state = fmt.Sprintf("running (pid %d)", pid)
			}
			var addrs []string
			for _, port := range p.Ports {
				addrs = append(addrs, fmt.Sprintf("%s=127.0.0.1:%d", port.Name, port.Local))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, state, strings.Join(addrs, " "), "log "+p.Log)
		}
	}
	return tw.Flush()
}

// defaultDir is $BF_RUN_DIR, else .run/stack in the repository (or in the
// working directory, outside one).
func defaultDir() string {
	if d := os.Getenv("BF_RUN_DIR"); d != "" {
		return d
	}
	if root, err := stack.RepoRoot(); err == nil {
		return filepath.Join(root, ".run", "stack")
	}
	return filepath.Join(".run", "stack")
}

// defaultBin is the directory of this program when the api's binary is
// next to it (bin/, after make build), else empty.
func defaultBin(exe string) string {
	dir := filepath.Dir(exe)
	if _, err := os.Stat(filepath.Join(dir, stack.API)); err == nil {
		return dir
	}
	return ""
}

func intEnv(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(name), &n); err != nil || n <= 0 {
		return def
	}
	return n
}
