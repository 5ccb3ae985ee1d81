package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/tooling/stack/prodshape"
)

// prodFaultsEnv opts in to TestProdFaults: it brings up the production
// shape (three KRaft nodes, two api and three aggregator processes) once
// and runs every scenario on it, several minutes of two cores, so `make
// prod-faults` runs it on its own.
const prodFaultsEnv = "BF_TEST_PRODFAULTS"

// prodRow is a scenario's row of the prod-faults table: what its own
// load had acknowledged and the aggregates counted, its failed calls, and
// its recovery (what that measures is the scenario's).
type prodRow struct {
	Name            string  `json:"name"`
	Acknowledged    int64   `json:"acknowledged"`
	Counted         int64   `json:"counted"`
	FailedCalls     int     `json:"failed_calls"`
	RecoverySeconds float64 `json:"recovery_seconds"`
}

// podEnv reads a shape pod's env file into a map.
func podEnv(t *testing.T, p prodshape.Pod) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(filepath.Dir(p.PidFile), "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// prodStack is the e2e harness's view of a running production shape:
// calls go to every api replica with the write token, the audits read
// the topic through the launcher's listener and Valkey as the
// aggregator's user.
func prodStack(t *testing.T, sh *prodshape.Shape) *stack {
	t.Helper()
	apis, aggs := sh.Pods("api"), sh.Pods("aggregator")
	if len(apis) < 2 || len(aggs) < 3 {
		t.Fatalf("the shape runs %d api and %d aggregator processes, want 2 and 3", len(apis), len(aggs))
	}
	tokens, err := sh.Secret("api-write-tokens", "tokens")
	if err != nil {
		t.Fatal(err)
	}
	aggEnv := podEnv(t, aggs[0])
	s := &stack{t: t, kafka: sh.State().Kafka, valkey: aggEnv["VALKEY_ADDR"], topic: aggEnv["KAFKA_TOPIC"],
		prefix: aggEnv["VALKEY_KEY_PREFIX"], valkeyUser: aggEnv["VALKEY_USERNAME"], valkeyPassword: aggEnv["VALKEY_PASSWORD"],
		token: strings.TrimSpace(strings.Split(tokens, "\n")[0])}
	for _, p := range apis {
		port, _ := p.Local(prodshape.PortRef{Name: "grpc"})
		s.apiPorts = append(s.apiPorts, port)
	}
	s.apiPort = s.apiPorts[0]
	return s
}

// TestProdFaults runs the fault scenarios on the production shape, one
// after the other on one shape, each under its own mixed-protocol load
// through both api replicas, and audits each exactly against the ground
// truth of every sale acknowledged so far (load.audit). PROD_FAULTS_DURATION
// (10s) is each scenario's load; PROD_FAULTS_JSON names a file for the
// table.
func TestProdFaults(t *testing.T) {
	if testing.Short() || os.Getenv(prodFaultsEnv) == "" {
		t.Skipf("brings up the production shape and breaks it for minutes: %s=1 (make prod-faults) runs it", prodFaultsEnv)
	}
	d := 10 * time.Second
	if v := os.Getenv("PROD_FAULTS_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 3*time.Second {
			t.Fatalf("PROD_FAULTS_DURATION=%q: want a duration of at least 3s", v)
		}
	}
	ctx := context.Background()
	start := time.Now()
	sh, err := prodshape.Up(ctx, prodshape.Config{Dir: filepath.Join(t.TempDir(), "shape"), Bin: binDir, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sh.Down(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("shape up in %v", time.Since(start).Round(time.Second))
	s := prodStack(t, sh)
	p := &prodRun{t: t, sh: sh, s: s, d: d}
	for _, sc := range []struct {
		name string
		run  func(l *load) float64
	}{
		{"broker-leader-kill", p.brokerLeaderKill},
		{"broker-rolling-restart", p.brokerRollingRestart},
		{"aggregator-scale", p.aggregatorScale},
		{"api-replica-stop", p.apiReplicaStop},
		{"aggregator-crash-restart", p.aggregatorCrashRestart},
		{"min-isr-lost", p.minISRLost},
	} {
		t.Run(sc.name, func(t *testing.T) { p.scenario(t, sc.name, sc.run) })
	}
	var b strings.Builder
	b.WriteString("| scenario | acknowledged | counted | failed calls | recovery s |\n|---|---|---|---|---|\n")
	for _, r := range p.rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.1f |\n", r.Name, r.Acknowledged, r.Counted, r.FailedCalls, r.RecoverySeconds)
	}
	t.Logf("prod faults, %v of load each, %v in all:\n%s", d, time.Since(start).Round(time.Second), b.String())
	if path := os.Getenv("PROD_FAULTS_JSON"); path != "" {
		out, _ := json.MarshalIndent(map[string]any{"scenarios": p.rows}, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// prodRun is the state the scenarios share: the shape, the harness's
// view of it, the last load (whose ledger the next one carries on) and
// the rows so far.
type prodRun struct {
	t    *testing.T
	sh   *prodshape.Shape
	s    *stack
	d    time.Duration
	last *load
	rows []prodRow
}

// scenario runs one: a load through both replicas, the fault (run, which
// returns its recovery in seconds, and stops the load itself when it
// needs the end of the load to measure), then the audit.
func (p *prodRun) scenario(t *testing.T, name string, run func(l *load) float64) {
	s := prodStack(t, p.sh)
	ctx := context.Background()
	var ackedBefore, countedBefore int64
	if p.last != nil {
		ackedBefore = p.last.tr.count()
		countedBefore = getSummaryJSON(ctx, t, s).GetSales()
	}
	cs := callers(s)
	l := startLoad(t, s, uint64(len(p.rows)+1)*7919, loadOptions{clients: len(cs), clientIDs: len(cs), tolerate: true, from: p.last,
		failover: func(c caller) caller {
			// The same protocol on the other replica.
			return cs[(c.replica*3+3+protocolIndex(c.name))%len(cs)]
		}})
	p.last = l
	rec := run(l)
	l.audit(ctx, name, "prod shape")
	l.mu.Lock()
	failed := 0
	for _, n := range l.failedCodes {
		failed += n
	}
	l.mu.Unlock()
	row := prodRow{Name: name, Acknowledged: l.tr.count() - ackedBefore, Counted: getSummaryJSON(ctx, t, s).GetSales() - countedBefore,
		FailedCalls: failed, RecoverySeconds: float64(int64(rec*10+0.5)) / 10}
	p.rows = append(p.rows, row)
	t.Logf("PRODRESULT | %s | %d | %d | %d | %.1f |", row.Name, row.Acknowledged, row.Counted, row.FailedCalls, row.RecoverySeconds)
}

func protocolIndex(name string) int {
	switch name {
	case "grpc":
		return 0
	case "connect+proto":
		return 1
	}
	return 2
}

// noFailedCalls fails the scenario when any call failed.
func noFailedCalls(t *testing.T, l *load) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failedCodes) > 0 {
		t.Errorf("failed calls %v (%d refused, %d uncertain, slowest %v), want none at the default deadlines", l.failedCodes, len(l.refused), l.uncertain, l.slowestFailure)
	}
}

// waitLeaders waits until every partition of the topic has a leader
// that is not gone, and returns how long that took from since.
func (p *prodRun) waitLeaders(t *testing.T, gone map[int32]bool, since time.Time) float64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		leaders, err := p.sh.PartitionLeaders(context.Background(), p.s.topic)
		ok := err == nil && len(leaders) > 0
		for _, l := range leaders {
			ok = ok && l >= 0 && !gone[l]
		}
		if ok {
			return time.Since(since).Seconds()
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions of %s still without a live leader after 2m: %v %v", p.s.topic, leaders, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// brokerLeaderKill: SIGKILL the node leading the most partitions; the
// recovery is the time until every partition has a live leader again.
func (p *prodRun) brokerLeaderKill(l *load) float64 {
	t := l.t
	leaders, err := p.sh.PartitionLeaders(context.Background(), p.s.topic)
	if err != nil {
		t.Fatal(err)
	}
	node, n := prodshape.BusiestLeader(leaders)
	time.Sleep(p.d / 3)
	t.Logf("killing Kafka node %d, leader of %d of %d partitions", node, n, len(leaders))
	killed := time.Now()
	if err := p.sh.KillKafkaNode(int(node)); err != nil {
		t.Fatal(err)
	}
	rec := p.waitLeaders(t, map[int32]bool{node: true}, killed)
	time.Sleep(max(p.d/3-time.Since(killed), 0))
	if err := p.sh.StartKafkaNode(context.Background(), int(node)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.d / 3)
	l.stop()
	noFailedCalls(t, l)
	return rec
}

// brokerRollingRestart: each node in turn stopped with a controlled
// shutdown and started again, the next only once no partition is under
// replicated, as Strimzi rolls a cluster; the recovery is the roll's
// length.
func (p *prodRun) brokerRollingRestart(l *load) float64 {
	t := l.t
	ids, err := p.sh.KafkaNodeIDs()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.d / 3)
	began := time.Now()
	for _, id := range ids {
		t.Logf("rolling Kafka node %d", id)
		if err := p.sh.StopKafkaNode(id); err != nil {
			t.Fatal(err)
		}
		if err := p.sh.StartKafkaNode(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		p.waitInSync(t)
	}
	rec := time.Since(began).Seconds()
	time.Sleep(p.d / 3)
	l.stop()
	noFailedCalls(t, l)
	return rec
}

// waitInSync waits until every partition of the topic has its full ISR.
func (p *prodRun) waitInSync(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		under, err := p.sh.UnderReplicated(context.Background(), p.s.topic)
		if err == nil && under == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions of %s still under-replicated after 2m (%v)", under, p.s.topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aggregatorScale: aggregators 3 → 1 → 3 under load; the recovery is
// the catch-up, from the end of the load until the aggregates are exact.
func (p *prodRun) aggregatorScale(l *load) float64 {
	t := l.t
	n := len(p.sh.Pods("aggregator"))
	time.Sleep(p.d / 3)
	if err := p.sh.Scale(context.Background(), "aggregator", 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.d / 3)
	if err := p.sh.Scale(context.Background(), "aggregator", n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.d / 3)
	l.stop()
	ended := time.Now()
	waitSummary(context.Background(), t, l.s, l.tr, 2*time.Minute)
	return time.Since(ended).Seconds()
}

// apiReplicaStop: SIGTERM api-1 while clients use both replicas; a
// client whose call fails retries it on api-0 with the same sale_id.
// Every failed call an api answered must say Sale-Recorded (the load
// fails otherwise); a call no api answered is tolerated only as a
// refused connection to the stopped replica. The recovery is the
// replica's graceful stop.
func (p *prodRun) apiReplicaStop(l *load) float64 {
	t := l.t
	pods := p.sh.Pods("api")
	time.Sleep(p.d / 3)
	began := time.Now()
	if err := p.sh.StopPod(pods[1].Name); err != nil {
		t.Error(err)
	}
	rec := time.Since(began).Seconds()
	time.Sleep(p.d / 3)
	l.stop()
	if err := p.sh.StartPod(context.Background(), pods[1].Name); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	t.Logf("failed calls %v, %d no api answered (refused connections), %d uncertain, %d refused", l.failedCodes, l.unanswered, l.uncertain, len(l.refused))
	l.mu.Unlock()
	return rec
}

// aggregatorCrashRestart: SIGKILL an aggregator and start it again at
// once, as the kubelet restarts a crashed container; the recovery is the
// time until the group is stable again with every partition assigned,
// which must not exceed the session timeout.
func (p *prodRun) aggregatorCrashRestart(l *load) float64 {
	t := l.t
	pods := p.sh.Pods("aggregator")
	env := podEnv(t, pods[1])
	session := 15 * time.Second // the aggregator's default
	if v := env["KAFKA_SESSION_TIMEOUT"]; v != "" {
		session, _ = time.ParseDuration(v)
	}
	time.Sleep(p.d / 3)
	killed := time.Now()
	if err := p.sh.KillPod(pods[1].Name); err != nil {
		t.Fatal(err)
	}
	if err := p.sh.StartPod(context.Background(), pods[1].Name); err != nil {
		t.Fatal(err)
	}
	rec := p.waitGroupAssigned(t, env["KAFKA_GROUP"], len(pods), killed)
	if rec > session.Seconds() {
		t.Errorf("the restarted aggregator's partitions were consumed again after %.1fs, want within the session timeout %v", rec, session)
	}
	time.Sleep(max(2*p.d/3-time.Since(killed), 0))
	l.stop()
	return rec
}

// waitGroupAssigned waits until the consumer group is stable with
// members members, every partition of the topic assigned, and returns
// the seconds since since.
func (p *prodRun) waitGroupAssigned(t *testing.T, group string, members int, since time.Time) float64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(p.s.kafka, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(context.Background(), p.s.topic)
	if err != nil || topics.Error() != nil {
		t.Fatalf("describe topic %s: %v %v", p.s.topic, err, topics.Error())
	}
	partitions := len(topics[p.s.topic].Partitions)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		groups, err := adm.DescribeGroups(context.Background(), group)
		if err == nil {
			g := groups[group]
			assigned := 0
			for _, m := range g.Members {
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range a.Topics {
						if tp.Topic == p.s.topic {
							assigned += len(tp.Partitions)
						}
					}
				}
			}
			if g.State == "Stable" && len(g.Members) == members && assigned == partitions {
				return time.Since(since).Seconds()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s not stable with %d members and all %d partitions assigned after 2m (%v)", group, members, partitions, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// minISRLost: two of the three nodes killed, then started again. While
// they are down every write fails unavailable, and once the first wave
// has taught the breaker, at once and Sale-Recorded: no (judgeOutage);
// the recovery is the time from restarting them until a sale is
// acknowledged again.
func (p *prodRun) minISRLost(l *load) float64 {
	t := l.t
	ids, err := p.sh.KafkaNodeIDs()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(p.d / 3)
	down := ids[1:]
	var wg sync.WaitGroup
	for _, id := range down {
		wg.Go(func() {
			if err := p.sh.KillKafkaNode(id); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	killed := time.Now()
	t.Logf("Kafka nodes %v killed", down)
	l.mu.Lock()
	ackedAtKill := len(l.counted)
	l.mu.Unlock()
	// Down for two waves of PRODUCE_TIMEOUT and more, so that the breaker
	// is seen refusing: a replica's opens after 5 failed deliveries (the
	// producer's threshold), and with its three clients a replica may see
	// only three failures in the first wave.
	time.Sleep(max(p.d/3, 2*p.produceTimeout(t)+5*time.Second))
	restarted := time.Now()
	for _, id := range down {
		wg.Go(func() {
			if err := p.sh.StartKafkaNode(context.Background(), id); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var rec float64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l.mu.Lock()
		n := len(l.counted)
		l.mu.Unlock()
		if n > ackedAtKill+len(down) {
			rec = time.Since(restarted).Seconds()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sale acknowledged within 2m of the nodes' restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Now()
	time.Sleep(p.d / 3)
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for code, n := range l.failedCodes {
		if code != connect.CodeUnavailable {
			t.Errorf("%d calls failed %v, want every failure unavailable", n, code)
		}
	}
	p.judgeOutage(t, l.failures, killed, restarted, recovered)
	return rec
}

// produceTimeout is the api replicas' PRODUCE_TIMEOUT.
func (p *prodRun) produceTimeout(t *testing.T) time.Duration {
	t.Helper()
	v := podEnv(t, p.sh.Pods("api")[0])["PRODUCE_TIMEOUT"]
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("the api's PRODUCE_TIMEOUT=%q: %v", v, err)
	}
	return d
}

// judgeOutage holds the failures of an outage in which no write can
// succeed to what the api can know. Until PRODUCE_TIMEOUT has passed
// since the kill (the first wave) a call cannot tell the outage from a
// leader's move, which takes as long as the broker session: it waits,
// and one that reached a surviving leader is answered unknown, for that
// leader has appended it and may yet commit it. After the first wave the
// breaker knows: every call is refused at once, unavailable and
// Sale-Recorded: no, but for the one probe per api replica that the
// breaker lets through after each cool-down. While the nodes are down a
// probe waits like the first wave did, so each replica probes at most
// once per PRODUCE_TIMEOUT and cool-down; once they are restarting a
// probe can fail as soon as a starting node turns it away, so from then
// until a sale is acknowledged again each replica may probe once per
// cool-down.
func (p *prodRun) judgeOutage(t *testing.T, failures []failure, killed, restarted, recovered time.Time) {
	t.Helper()
	timeout := p.produceTimeout(t)
	firstWave := killed.Add(timeout + 2*time.Second)
	const coolDown = time.Second // the producer's breaker
	replicas := len(p.sh.Pods("api"))
	down := int(max(0, restarted.Sub(firstWave))/(timeout+coolDown)) + 1
	starting := int((recovered.Sub(restarted) + coolDown - 1) / coolDown)
	probes := replicas * (down + starting)
	type slowCall struct {
		at, took time.Duration
		recorded string
	}
	var slows []slowCall
	var early, earlyUnknown, fast, slow int
	var slowest time.Duration
	for _, f := range failures {
		switch {
		case f.start.Before(killed) || !f.start.Before(recovered):
			continue
		case f.start.Before(firstWave):
			early++
			if f.recorded == "unknown" {
				earlyUnknown++
			}
		case f.took < time.Second && f.recorded == "no":
			fast++
			slowest = max(slowest, f.took)
		default:
			slow++
			slows = append(slows, slowCall{f.start.Sub(killed), f.took, f.recorded})
		}
	}
	t.Logf("outage: %d failed calls in the first wave (PRODUCE_TIMEOUT %v after the kill; %d of them Sale-Recorded: unknown), then %d refused fast with no (slowest %v) and %d slow (breaker probes, at most %d)",
		early, timeout, earlyUnknown, fast, slowest.Round(time.Millisecond), slow, probes)
	if fast == 0 {
		t.Error("no call was refused fast after the first wave, want the breaker to refuse writes at once")
	}
	if slow > probes {
		t.Errorf("%d calls after the first wave failed slowly or answered unknown, want at most %d: %d api replicas × (%d probes while the nodes were down + %d while they restarted, %v)",
			slow, probes, replicas, down, starting, recovered.Sub(restarted).Round(time.Millisecond))
		for i, c := range slows[:min(len(slows), 20)] {
			t.Logf("slow %d: started %v after the kill, took %v, Sale-Recorded: %s", i+1, c.at.Round(time.Millisecond), c.took.Round(time.Millisecond), c.recorded)
		}
	}
}
