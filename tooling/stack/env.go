package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/valkey"
)

// Status is one service of a stack.
type Status struct {
	Name string
	// Pid is the process id, 0 when the service is not running.
	Pid  int
	Addr string
	// About says what the service is, e.g. "Apache Kafka 4.3.1 (KRaft)".
	About string
}

// Status returns every service the stack has started at some point, in
// start order, with what it is doing now.
func (s *Stack) Status() ([]Status, error) {
	var out []Status
	if valkey.Exists(filepath.Join(s.cfg.Dir, Valkey)) {
		v, err := s.Server()
		if err != nil {
			return nil, err
		}
		out = append(out, Status{Name: Valkey, Pid: v.Pid(), Addr: v.Addr(), About: valkey.InstalledVersion()})
	}
	if kafka.Exists(filepath.Join(s.cfg.Dir, Kafka)) {
		c, err := s.Cluster()
		if err != nil {
			return nil, err
		}
		for _, n := range c.Nodes() {
			about := fmt.Sprintf("Apache Kafka %s (KRaft), controller on %d", c.Version(), n.ControllerPort)
			if n.SASLPort != 0 {
				about += ", SCRAM on " + n.SASLAddr()
			}
			out = append(out, Status{Name: fmt.Sprintf("%s-%d", Kafka, n.ID), Pid: c.Pid(n.ID), Addr: n.Addr(), About: about})
		}
	}
	for _, name := range []string{Kfake, Aggregator, API} {
		p := s.program(name)
		port := p.port()
		if port == 0 {
			continue
		}
		st := Status{Name: name, Pid: p.pidFile().Pid(), Addr: "http://127.0.0.1:" + strconv.Itoa(port), About: "log " + p.logFile()}
		if name == Kfake {
			st.Addr, st.About = "127.0.0.1:"+strconv.Itoa(port), "embedded Kafka (franz-go kfake), in memory"
		}
		out = append(out, st)
	}
	return out, nil
}

// Addr returns the address of one service: for kafka the bootstrap list,
// for kafka-sasl that of the SCRAM listeners, for the api and the
// aggregator a URL.
func (s *Stack) Addr(name string) (string, error) {
	if name == KafkaSASL {
		c, err := s.Cluster()
		if err != nil {
			return "", err
		}
		if a := c.SASLBootstrap(); a != "" && kafka.Exists(c.Dir()) {
			return a, nil
		}
		return "", fmt.Errorf("stack: the Kafka of %s has no SCRAM listener", s.cfg.Dir)
	}
	st, err := s.Status()
	if err != nil {
		return "", err
	}
	var addrs []string
	for _, x := range st {
		if x.Name == name || (name == Kafka && strings.HasPrefix(x.Name, Kafka+"-")) {
			addrs = append(addrs, x.Addr)
		}
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("stack: no %s in %s", name, s.cfg.Dir)
	}
	return strings.Join(addrs, ","), nil
}

// Env returns the environment that tells tests (contract/testenv) where
// the stack's services are, as NAME=VALUE: the real Kafka and Valkey, the
// kafka-ctl command, and the stack's directory.
func (s *Stack) Env() ([]string, error) {
	env := []string{testenv.RunDir + "=" + s.cfg.Dir}
	if kafka.Exists(filepath.Join(s.cfg.Dir, Kafka)) {
		c, err := s.Cluster()
		if err != nil {
			return nil, err
		}
		env = append(env, testenv.KafkaBrokers+"="+c.Bootstrap())
		if _, err := os.Stat(s.kafkaCtl()); err == nil {
			env = append(env, testenv.KafkaCtl+"="+s.kafkaCtl())
		}
	}
	if valkey.Exists(filepath.Join(s.cfg.Dir, Valkey)) {
		v, err := s.Server()
		if err != nil {
			return nil, err
		}
		env = append(env, testenv.ValkeyAddr+"="+v.Addr())
	}
	return env, nil
}

// Exports renders NAME=VALUE pairs as shell export lines.
func Exports(env []string) string {
	var b strings.Builder
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", name, strings.ReplaceAll(value, "'", `'\''`))
	}
	return b.String()
}

func (s *Stack) kafkaCtl() string { return filepath.Join(s.cfg.Dir, "kafka-ctl") }

// writeEnv writes stack.env, and the kafka-ctl command when the stack has
// a Kafka cluster and knows its own command.
func (s *Stack) writeEnv() error {
	if s.cfg.Exe != "" && kafka.Exists(filepath.Join(s.cfg.Dir, Kafka)) {
		if err := os.WriteFile(s.kafkaCtl(), []byte(kafkaCtlScript(s.cfg.Exe, s.cfg.Dir)), 0o755); err != nil {
			return err
		}
	}
	env, err := s.Env()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.cfg.Dir, "stack.env"),
		[]byte("# Written by the stack launcher (tooling/stack); source it to reach the stack.\n"+Exports(env)), 0o644)
}

// kafkaCtlScript is the command that testenv.KafkaCtl names: for tests that
// cannot import the launcher (the services' own), the verbs they use, on
// the Kafka of the stack in $BF_RUN_DIR, by default this one.
func kafkaCtlScript(exe, dir string) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	return `#!/bin/sh
# Written by the stack launcher (tooling/stack): BF_TEST_KAFKA_CTL of
# contract/testenv. start|stop|kill|addr|sasl-addr|destroy act on the Kafka
# of the stack in $BF_RUN_DIR, by default ` + dir + `;
# a first start reads KAFKA_SCRAM_USERS and KAFKA_AUTHORIZER.
if [ -z "${BF_RUN_DIR:-}" ]; then BF_RUN_DIR=` + q(dir) + `; fi
export BF_RUN_DIR
case "$1" in
start | stop | kill | addr) exec ` + q(exe) + ` "$1" kafka ;;
sasl-addr) exec ` + q(exe) + ` addr kafka-sasl ;;
destroy) exec ` + q(exe) + ` down ;;
*)
	echo "usage: $0 start|stop|kill|addr|sasl-addr|destroy" >&2
	exit 2
	;;
esac
`
}
