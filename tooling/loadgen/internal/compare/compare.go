// Package compare runs the whole protocol comparison on this machine: it
// starts the real api twice (writing to Kafka, and with SALES_SINK=discard
// as the no-op baseline), runs every protocol closed loop on both and open
// loop at one common rate, repeats, then starts the aggregator on the
// backlog to measure its drain rate, measures freshness under load, and
// checks the aggregates against the ground truth of every acknowledged sale,
// exactly.
package compare

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/internal/progress"
	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/internal/sales"
	"blackfriday.local/tooling/loadgen/internal/truth"
	"blackfriday.local/tooling/loadgen/procfs"
	"blackfriday.local/tooling/loadgen/protocol"
	"blackfriday.local/tooling/stack/process"
)

// Config configures a comparison.
type Config struct {
	// APIBin and AggregatorBin are the binaries to run.
	APIBin, AggregatorBin string
	// Kafka and Valkey are the addresses of the real broker and server.
	Kafka, Valkey string
	// KafkaPID and ValkeyPID, when known, add the broker's CPU per call
	// and Valkey's CPU while draining.
	KafkaPID, ValkeyPID int
	// Protocols to compare (all by default).
	Protocols []protocol.Name
	// Reps is the number of repetitions (3).
	Reps int
	// Warmup and Duration are each run's warm-up and measured window.
	Warmup, Duration time.Duration
	// BrokerWarmup loads the real api before anything is measured: a
	// freshly started broker's JVM runs its produce path several times
	// slower until the JIT compiler has warmed it.
	BrokerWarmup time.Duration
	// Concurrency is the closed-loop callers, the same for every protocol.
	Concurrency int
	// OpenMaxInFlight bounds the calls in flight in open loop.
	OpenMaxInFlight int
	// EfficiencyLoad is the share of a protocol's closed-loop rate on the
	// real api at which the efficiency phase loads both apis, open loop
	// (0.8 when zero; negative skips the phase).
	EfficiencyLoad float64
	// H2Conns is the number of connections an HTTP/2 protocol's calls are
	// spread over (protocol.DefaultH2Conns); an HTTP/1.1 protocol takes
	// one per call in flight.
	H2Conns int
	// Batch is the batch protocol's sales per call (500).
	Batch int
	// Rate is the open-loop rate in calls per second; 0 takes half the
	// slowest unary protocol's saturation in the first repetition.
	Rate float64
	// Sweep lists extra closed-loop concurrencies at which gRPC runs once
	// on each api, to show how the durable ingest efficiency depends on
	// the number of callers.
	Sweep []int
	// MaxOtherLoad is the CPU (in cores) other processes may take during a
	// measured run before it is measured again, up to Retries times; 0
	// never retries.
	MaxOtherLoad float64
	Retries      int
	// Freshness is how long the freshness probe runs (0 skips it).
	Freshness time.Duration
	// PollInterval is how often the freshness probe reads GetSummary.
	PollInterval time.Duration
	// Seed seeds the sales.
	Seed uint64
	// Partitions of the sales topic.
	Partitions int
	// WorkDir holds the ground-truth files and the services' logs.
	WorkDir string
	// Meta carries what the caller knows: the command, versions, revision.
	Meta report.Meta
	// Bench is the in-process benchmark output to include.
	Bench []report.BenchLine
	// Pin runs the broker, Valkey and this process on one CPU and the
	// apis and the aggregator on another (taskset), so that the api's CPU
	// per call is its own; it needs two CPUs and the broker's and
	// Valkey's pids.
	Pin bool
	// CostDuration is the window of each protocol's run in the cost phase
	// (report.Costs); 0 skips the phase. It needs the broker's and
	// Valkey's pids.
	CostDuration time.Duration
	// Log receives one line per run; Progress draws bars on it.
	Log      io.Writer
	Progress *progress.Bar
}

func (c *Config) defaults() {
	if len(c.Protocols) == 0 {
		c.Protocols = protocol.Names()
	}
	c.Reps = max(c.Reps, 1)
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 128
	}
	if c.OpenMaxInFlight <= 0 {
		c.OpenMaxInFlight = 512
	}
	if c.EfficiencyLoad == 0 {
		c.EfficiencyLoad = 0.8
	}
	if c.H2Conns <= 0 {
		c.H2Conns = protocol.DefaultH2Conns
	}
	if c.Batch <= 0 {
		c.Batch = protocol.DefaultBatch
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Millisecond
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sinks.
const (
	sinkKafka   = "kafka"
	sinkDiscard = "discard"
)

// session is one comparison in progress.
type session struct {
	cfg     Config
	res     *report.Results
	targets map[string]string
	pids    map[string]int
	env     []string
	topic   string
	runs    int
	truths  []string
	procs   []*service
	rate    float64
	proc    procfs.FS
	// apiMetrics and aggMetrics are the real api's and the aggregator's
	// Prometheus pages; pinning describes the pinning done so far.
	apiMetrics, aggMetrics string
	pinning                []string

	// mu guards runs, truths and res.Runs: the freshness probe runs
	// beside a load.
	mu sync.Mutex
}

// Run runs the comparison and returns its results. The results are
// returned, as far as they got, with any error.
func Run(ctx context.Context, cfg Config) (*report.Results, error) {
	cfg.defaults()
	if err := cfg.checkPin(); err != nil {
		return nil, err
	}
	began := time.Now()
	// The ground truth of earlier comparisons is of no use, and large.
	truthDir := filepath.Join(cfg.WorkDir, "truth")
	if err := os.RemoveAll(truthDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(truthDir, 0o755); err != nil {
		return nil, err
	}
	meta := machine(cfg.Meta)
	meta.LoadStart = loadAverage()
	var names []string
	for _, n := range cfg.Protocols {
		names = append(names, string(n))
	}
	maxBuffered := max(10000, 2*cfg.Concurrency*cfg.Batch)
	// The api turns away write calls beyond MAX_INFLIGHT_WRITES; the
	// comparison's load is bounded, and must not be: a limit above it.
	maxInflight := cfg.Concurrency
	for _, c := range append([]int{cfg.OpenMaxInFlight}, cfg.Sweep...) {
		maxInflight = max(maxInflight, c)
	}
	maxInflight = max(256, 2*maxInflight+16)
	s := &session{
		cfg: cfg,
		res: &report.Results{
			Version: 1,
			Meta:    meta,
			Settings: report.Settings{
				Reps: cfg.Reps, WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(), BrokerWarmupS: cfg.BrokerWarmup.Seconds(),
				Concurrency: cfg.Concurrency, OpenMaxInFlight: cfg.OpenMaxInFlight, Batch: cfg.Batch,
				OpenRate: cfg.Rate, OpenRateRule: "fixed by -rate", Sweep: cfg.Sweep,
				MaxOtherLoad: cfg.MaxOtherLoad, Retries: cfg.Retries, Pin: cfg.Pin, EfficiencyLoad: max(cfg.EfficiencyLoad, 0),
				Protocols: names, Seed: cfg.Seed, MaxBufferedRecords: maxBuffered, MaxInflightWrites: maxInflight, Partitions: cfg.Partitions,
			},
			Bench: cfg.Bench,
		},
		targets: map[string]string{},
		pids:    map[string]int{},
		rate:    cfg.Rate,
		proc:    procfs.Default,
	}
	id := randomID()
	s.topic = "compare-" + id
	s.env = []string{
		"KAFKA_BROKERS=" + cfg.Kafka,
		"KAFKA_TOPIC=" + s.topic,
		"KAFKA_DLQ_TOPIC=" + s.topic + ".dlq",
		"KAFKA_GROUP=" + s.topic + "-aggregator",
		"KAFKA_TOPIC_PARTITIONS=" + strconv.Itoa(cfg.Partitions),
		"VALKEY_ADDR=" + cfg.Valkey,
		"VALKEY_KEY_PREFIX=cmp:" + id + ":",
		"MAX_BUFFERED_RECORDS=" + strconv.Itoa(maxBuffered),
		"MAX_INFLIGHT_WRITES=" + strconv.Itoa(maxInflight),
		"LOG_LEVEL=warn",
		"METRICS_ADDR=off",
	}
	err := s.run(ctx)
	for i := len(s.procs) - 1; i >= 0; i-- {
		if serr := s.procs[i].stop(20 * time.Second); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	s.res.Meta.LoadEnd = loadAverage()
	s.res.Meta.ElapsedS = math.Round(time.Since(began).Seconds())
	return s.res, err
}

func (s *session) logf(format string, args ...any) {
	s.cfg.Progress.Done()
	fmt.Fprintf(s.cfg.Log, format+"\n", args...)
}

func (s *session) run(ctx context.Context) error {
	cfg := s.cfg
	if err := s.pinOthers(); err != nil {
		return err
	}
	// The anchor: the same two apis again, serving native gRPC with
	// connect-go (GRPC_SERVER=connect), for protocol.GRPCConnectGo.
	servers := []string{""}
	if slices.Contains(cfg.Protocols, protocol.GRPCConnectGo) {
		servers = append(servers, "connect")
	}
	for _, server := range servers {
		for _, sink := range []string{sinkKafka, sinkDiscard} {
			key := sink
			if server != "" {
				key = sink + "-connect-go"
			}
			port, err := process.FreePort(0)
			if err != nil {
				return err
			}
			env := append(slices.Clone(s.env), "PORT="+strconv.Itoa(port), "SALES_SINK="+sink)
			if server != "" {
				env = append(env, "GRPC_SERVER="+server)
			}
			if sink == sinkKafka && server == "" {
				// The real api's producer counters: records and batches
				// the broker acknowledged, for the cost phase.
				mport, err := process.FreePort(0)
				if err != nil {
					return err
				}
				env = append(env, "METRICS_ADDR=127.0.0.1:"+strconv.Itoa(mport))
				s.apiMetrics = "http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics"
			}
			p, err := startService("api-"+key, cfg.APIBin, cfg.WorkDir, env)
			if err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			if err := s.pinTo(cpuOurs, "api-"+key, p.Pid()); err != nil {
				return err
			}
			s.targets[key] = "http://127.0.0.1:" + strconv.Itoa(port)
			s.pids[key] = p.Pid()
			// The real api is ready once Kafka and Valkey answer.
			if err := p.waitHTTP(ctx, s.targets[key]+"/readyz", 60*time.Second); err != nil {
				return err
			}
		}
	}
	s.logf("compare: api (Kafka) at %s pid %d, api (discard) at %s pid %d; topic %s on %s",
		s.targets[sinkKafka], s.pids[sinkKafka], s.targets[sinkDiscard], s.pids[sinkDiscard], s.topic, cfg.Kafka)

	// Warm the broker's JVM with both small and large produce requests.
	if cfg.BrokerWarmup > 0 {
		s.logf("compare: warming the broker up for %v", cfg.BrokerWarmup)
		for _, name := range []protocol.Name{protocol.GRPC, protocol.Batch} {
			if _, err := s.load(ctx, 0, "warmup", sinkKafka, name, 0, cfg.BrokerWarmup/2); err != nil {
				return err
			}
		}
	}
	// One short pass over every protocol: connections, the Go runtime's
	// heap, both apis.
	for _, name := range cfg.Protocols {
		for _, sink := range []string{sinkKafka, sinkDiscard} {
			if _, err := s.load(ctx, 0, "warmup", sink, name, 0, 300*time.Millisecond); err != nil {
				return err
			}
		}
	}

	for rep := 1; rep <= cfg.Reps; rep++ {
		// Rotate the order each repetition, so that drift on a shared
		// machine does not always land on the same protocol.
		order := rotate(cfg.Protocols, rep-1)
		for _, name := range order {
			if err := s.measure(ctx, rep, "closed", name, bothSinks(rep), 0, cfg.Concurrency); err != nil {
				return err
			}
		}
		// What durability costs the api where its CPU is decided: both
		// apis at one rate near the real api's saturation.
		for _, name := range order {
			if cfg.EfficiencyLoad <= 0 {
				break
			}
			if err := s.measure(ctx, rep, "efficiency", name, bothSinks(rep), s.efficiencyRate(rep, name), cfg.OpenMaxInFlight); err != nil {
				return err
			}
		}
		if s.rate == 0 {
			s.pickRate(rep)
		}
		for _, name := range order {
			if name == protocol.Batch {
				continue
			}
			// Both apis here too: what durability costs the api's CPU at
			// a light load (report.Protocol).
			if err := s.measure(ctx, rep, "open", name, bothSinks(rep), s.rate, cfg.OpenMaxInFlight); err != nil {
				return err
			}
		}
	}

	for _, conc := range cfg.Sweep {
		if err := s.measure(ctx, 0, "sweep", protocol.GRPC, []string{sinkDiscard, sinkKafka}, 0, conc); err != nil {
			return err
		}
	}

	if err := s.drain(ctx); err != nil {
		return err
	}
	if err := s.costs(ctx); err != nil {
		return err
	}
	if cfg.Freshness > 0 {
		if err := s.freshness(ctx); err != nil {
			return err
		}
	}
	return s.verify(ctx)
}

// pickRate sets the open-loop rate to half the slowest unary protocol's
// closed-loop rate on the real api, rounded down to two significant digits.
func (s *session) pickRate(rep int) {
	slowest := math.Inf(1)
	for _, run := range s.res.Runs {
		if run.Rep == rep && run.Phase == "closed" && run.Sink == sinkKafka && run.Result.Batch == 1 {
			slowest = math.Min(slowest, run.Result.CallsPerS)
		}
	}
	if math.IsInf(slowest, 1) || slowest <= 0 {
		slowest = 200
	}
	s.rate = roundDown2(slowest / 2)
	s.res.Settings.OpenRate = s.rate
	s.res.Settings.OpenRateRule = fmt.Sprintf("half the slowest unary protocol's closed-loop rate in repetition %d, rounded down", rep)
	s.logf("compare: open-loop rate for every protocol: %.0f calls/s", s.rate)
}

// bothSinks is the order a repetition loads the two apis in: alternated,
// so that drift on a shared machine does not always favour one.
func bothSinks(rep int) []string {
	if rep%2 == 0 {
		return []string{sinkKafka, sinkDiscard}
	}
	return []string{sinkDiscard, sinkKafka}
}

// efficiencyRate is the efficiency phase's rate for a protocol:
// EfficiencyLoad of its closed-loop calls/s on the real api in the
// repetition, rounded down to two significant digits.
func (s *session) efficiencyRate(rep int, name protocol.Name) float64 {
	for _, run := range s.res.Runs {
		if run.Rep == rep && run.Phase == "closed" && run.Sink == sinkKafka && run.Result.Protocol == string(name) {
			return max(roundDown2(run.Result.CallsPerS*s.cfg.EfficiencyLoad), 1)
		}
	}
	return 1
}

// roundDown2 rounds v down to two significant digits.
func roundDown2(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v))-1)
	return math.Floor(v/p) * p
}

func rotate[T any](xs []T, k int) []T {
	if len(xs) == 0 {
		return nil
	}
	k %= len(xs)
	return append(slices.Clone(xs[k:]), xs[:k]...)
}

// measure runs one protocol against each sink in turn and records the
// results. When other processes took more than MaxOtherLoad cores during
// any of the runs, it measures them again, up to Retries times, and keeps
// the attempt least disturbed: the machine is shared, and a measurement
// taken while something else ran measures that too.
func (s *session) measure(ctx context.Context, rep int, phase string, name protocol.Name, sinks []string, rate float64, conc int) error {
	var best []*load.Result
	bestOther := math.Inf(1)
	for attempt := 0; ; attempt++ {
		var results []*load.Result
		other := 0.0
		for _, sink := range sinks {
			res, err := s.loadAt(ctx, rep, phase, sink, name, rate, s.cfg.Duration, conc)
			if err != nil {
				return err
			}
			results = append(results, res)
			other = math.Max(other, res.CPU.OtherCores)
		}
		if other < bestOther {
			best, bestOther = results, other
		}
		if other <= s.cfg.MaxOtherLoad || attempt >= s.cfg.Retries || s.cfg.MaxOtherLoad <= 0 {
			break
		}
		s.res.Settings.Retried++
		s.logf("compare: other processes used %.2f cores during that run; measuring it again", other)
	}
	for i, sink := range sinks {
		s.record(rep, phase, sink, best[i])
	}
	return nil
}

// record keeps a run's result.
func (s *session) record(rep int, phase, sink string, res *load.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.Runs = append(s.res.Runs, report.Run{Rep: rep, Phase: phase, Sink: sink, Result: res})
}

// load runs one protocol against one sink and logs a line.
func (s *session) load(ctx context.Context, rep int, phase, sink string, name protocol.Name, rate float64, duration time.Duration) (*load.Result, error) {
	conc := s.cfg.Concurrency
	if rate > 0 {
		conc = s.cfg.OpenMaxInFlight
	}
	return s.loadAt(ctx, rep, phase, sink, name, rate, duration, conc)
}

// api names the api that serves protocol name for sink: the anchor's
// GRPCConnectGo goes to the apis that serve gRPC with connect-go.
func (s *session) api(sink string, name protocol.Name) string {
	if name == protocol.GRPCConnectGo {
		return sink + "-connect-go"
	}
	return sink
}

// loadAt is load with a given concurrency.
func (s *session) loadAt(ctx context.Context, rep int, phase, sink string, name protocol.Name, rate float64, duration time.Duration, conc int) (*load.Result, error) {
	cfg := s.cfg
	batch := 1
	if name == protocol.Batch {
		batch = cfg.Batch
	}
	client, err := protocol.New(protocol.Config{
		Target: s.targets[s.api(sink, name)], Protocol: name, Batch: batch, Conns: name.Conns(conc, cfg.H2Conns), DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	s.mu.Lock()
	s.runs++
	runNo := s.runs
	s.mu.Unlock()
	var tw *truth.Writer
	if sink == sinkKafka {
		path := filepath.Join(cfg.WorkDir, "truth", fmt.Sprintf("%03d-%s-%s.csv", runNo, phase, name))
		if tw, err = truth.Create(path); err != nil {
			return nil, err
		}
		s.addTruth(path)
	}
	watch := map[string]int{}
	if sink == sinkKafka && cfg.KafkaPID > 0 {
		watch["kafka"] = cfg.KafkaPID
	}
	warmup := cfg.Warmup
	if phase == "warmup" {
		warmup = 0
	}
	res, err := load.Run(ctx, load.Options{
		Client: client, Sales: sales.New(cfg.Seed+uint64(runNo), 200),
		Rate: rate, Concurrency: conc, Warmup: warmup, Duration: duration, Timeout: 10 * time.Second,
		Truth: tw, ServerPID: s.pids[s.api(sink, name)], Watch: watch,
		Label:  fmt.Sprintf("rep %d %s %s", rep, phase, sink),
		Target: s.targets[s.api(sink, name)], Progress: cfg.Progress,
	})
	if tw != nil {
		if cerr := tw.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", phase, name, sink, err)
	}
	var errs int64
	for _, n := range res.Errors {
		errs += n
	}
	s.logf("rep %d  %-9s %-17s %-7s c=%-4d %9.0f sales/s  p50 %7.2f ms  p99 %7.2f ms  %5.0f+%-5.0f B/call  api %6.1f µs/call  other load %.2f cores  errors %d",
		rep, phase, name, sink, conc, res.SalesPerS, res.Latency.P50, res.Latency.P99,
		res.Wire.RequestBytesPerCall, res.Wire.ResponseBytesPerCall, res.CPU.ServerUSPerCall, res.CPU.OtherCores, errs)
	return res, ctx.Err()
}

// addTruth adds a ground-truth file to those the aggregates must match.
func (s *session) addTruth(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truths = append(s.truths, path)
}

// truthFiles returns the ground-truth files so far.
func (s *session) truthFiles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.truths)
}

// verify checks the aggregates against every ground-truth file.
func (s *session) verify(ctx context.Context) error {
	t, err := truth.Load(s.truthFiles()...)
	if err != nil {
		return err
	}
	v := report.Verification{Unknown: t.Unknown}
	withUnknowns, err := truth.Verify(ctx, truth.Client(httpClient(), s.targets[sinkKafka]), t, 90*time.Second)
	if withUnknowns {
		v.UnknownWritten = true
		t = t.WithUnknowns()
	}
	v.Sales, v.Units, v.Revenue = t.Total.Sales, t.Total.Units, t.Total.Revenue
	if err != nil {
		v.Error = err.Error()
	} else {
		v.OK = true
	}
	s.res.Verification = v
	if err != nil {
		return err
	}
	s.logf("compare: the aggregates match the ground truth exactly: %d sales, %d units, %d cents", t.Total.Sales, t.Total.Units, t.Total.Revenue)
	return nil
}

func randomID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
