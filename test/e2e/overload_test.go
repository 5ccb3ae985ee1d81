package e2e

// Overload open-loop load at three times the measured saturation
// rate against the real api and a real broker. The api must stay up, keep
// its memory under a documented bound, reject the excess fast with
// resource_exhausted or unavailable (never leave a call hanging until its
// deadline), keep the latency of the calls it accepts bounded, and count
// every sale it acknowledged.
//
// OVERLOAD_FACTOR sets the overload phase's rate (3× by default).
// OVERLOAD_DURATION sets the 3× phase (10s by default, for make test; the
// figures in docs/results/overload.md come from OVERLOAD_DURATION=30s).
// OVERLOAD_OUT, when set, names a file that receives the figures as JSON.
// OVERLOAD_PIN=true pins the api to a core of its own and this driver,
// the broker, Valkey and the aggregator to the others (pinAPIAlone), so
// that the figures show the api's limits, not the driver's.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/loadgen/histogram"
	"blackfriday.local/tooling/loadgen/procfs"
	driver "blackfriday.local/tooling/loadgen/protocol"
)

// The bounds the overload test holds the api to (docs/reliability.md#overload
// explains each).
const (
	// overloadRSSBound is the most resident memory the api may use.
	overloadRSSBound = 256 << 20
	// overloadRejectP99 is the slowest a rejection may be, at the 99th
	// percentile, with OVERLOAD_STRICT=true (a quiet machine): a shed call
	// must learn at once that it should back off.
	overloadRejectP99 = time.Second
	// overloadAcceptP99 is the slowest an accepted call may be, at the
	// 99th percentile, with OVERLOAD_STRICT=true.
	overloadAcceptP99 = 2 * time.Second
	// overloadCallTimeout is each call's deadline. A call that reaches it
	// hung, which must never happen: the api answers every call within
	// PRODUCE_TIMEOUT and a little.
	overloadCallTimeout = 10 * time.Second
	// overloadMaxOutstanding caps the calls the driver keeps open, so a
	// hanging api cannot exhaust the test process.
	overloadMaxOutstanding = 20000
	// overloadClosedLoopBackoff is how long a closed-loop caller waits
	// after a failed call.
	overloadClosedLoopBackoff = 10 * time.Millisecond
)

// overloadAPICores is the api's GOMAXPROCS: OVERLOAD_API_CORES, 1 by
// default.
func overloadAPICores() string {
	if v := os.Getenv("OVERLOAD_API_CORES"); v != "" {
		return v
	}
	return "1"
}

// overloadFactor is the overload phase's rate as a multiple of the
// saturation rate: OVERLOAD_FACTOR, 3 (the issue's) by default.
func overloadFactor(t *testing.T) float64 {
	t.Helper()
	v := os.Getenv("OVERLOAD_FACTOR")
	if v == "" {
		return 3
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 || f > 10 {
		t.Fatalf("OVERLOAD_FACTOR=%q: want a number from 1 to 10", v)
	}
	return f
}

func overloadDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("OVERLOAD_DURATION")
	if v == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 2*time.Second {
		t.Fatalf("OVERLOAD_DURATION=%q: want a duration of at least 2s", v)
	}
	return d
}

// phase is one stretch of load and what it measured.
type phase struct {
	Name        string        `json:"name"`
	OfferedRate float64       `json:"offered_calls_per_s,omitempty"` // 0: closed loop
	Callers     int           `json:"closed_loop_callers,omitempty"`
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s"`

	// accepted and rejected (by code) time the calls from when each was
	// due; acceptedServer and rejectedServer the same calls from when the
	// request was written, and acceptedWoken and rejectedWoken until the
	// caller's goroutine ran again. The histograms take records from every
	// caller at once.
	accepted, acceptedServer, acceptedWoken *histogram.Histogram
	rejectedServer, rejectedWoken           *histogram.Histogram

	mu             sync.Mutex
	rejected       map[string]*histogram.Histogram
	limitSum       float64
	limitSamples   int
	limitMin       float64
	peakInflight   float64
	unsent         int64
	sent           int64
	hung           int64
	overflow       int64
	peakRSS        int64
	peakFDs        int
	peakGoroutines int

	// Summary, filled by summarize.
	SentRate     float64            `json:"sent_calls_per_s"`
	AcceptedRate float64            `json:"accepted_calls_per_s"`
	Accepted     int                `json:"accepted"`
	Rejected     map[string]int     `json:"rejected_by_code"`
	AcceptedMS   map[string]float64 `json:"accepted_latency_ms"`
	RejectedMS   map[string]float64 `json:"rejected_latency_ms,omitempty"`
	// The same from when each request was written: what a client on
	// another machine would see.
	AcceptedWrittenMS map[string]float64 `json:"accepted_latency_from_write_ms"`
	RejectedWrittenMS map[string]float64 `json:"rejected_latency_from_write_ms,omitempty"`
	// The same again, but until the caller's goroutine ran: the driver's
	// own scheduling delay added.
	AcceptedWokenMS map[string]float64 `json:"accepted_latency_from_write_to_caller_ms"`
	RejectedWokenMS map[string]float64 `json:"rejected_latency_from_write_to_caller_ms,omitempty"`
	// LimitMean and LimitMin are the api's write-call limit
	// (bf_api_inflight_writes_limit) over the phase, sampled every 50ms;
	// PeakInflight the most write calls it served at once.
	LimitMean    float64 `json:"write_limit_mean"`
	LimitMin     float64 `json:"write_limit_min"`
	PeakInflight float64 `json:"peak_inflight_writes"`
	// Unsent counts calls the driver never wrote (its own backlog).
	Unsent     int64   `json:"driver_unsent"`
	Hung       int64   `json:"hung"`
	Overflow   int64   `json:"driver_overflow"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakFDs is the most file descriptors the api held: its
	// connections, mostly.
	PeakFDs int `json:"peak_fds"`
	// PeakGoroutines is the most goroutines the api ran (its /metrics).
	PeakGoroutines int `json:"peak_goroutines"`
	// APICores and DriverCores are the CPU the api and this test (the
	// load's clients) used, in cores: on one machine they compete.
	APICores    float64 `json:"api_cores"`
	DriverCores float64 `json:"driver_cores"`
	cpuAPI      time.Duration
	cpuDriver   time.Duration
}

func newPhase(name string, rate float64, callers int, d time.Duration) *phase {
	return &phase{Name: name, OfferedRate: rate, Callers: callers, Duration: d,
		accepted: histogram.New(), acceptedServer: histogram.New(), acceptedWoken: histogram.New(),
		rejectedServer: histogram.New(), rejectedWoken: histogram.New(), rejected: map[string]*histogram.Histogram{}}
}

// overload drives the api and keeps the ground truth.
type overload struct {
	t *testing.T
	s *stack
	// callers are the load generator's lean clients, in the mix's
	// proportions.
	callers []*driver.Client
	gen     *saleGen
	tr      *truth
	run     string
	n       atomic.Int64
	open    atomic.Int64
	pid     int

	mu sync.Mutex
	// uncertain holds sales whose outcome the client could not know
	// (unavailable with Sale-Recorded: unknown, or a broken transport):
	// they are retried with the same sale_id after the load.
	uncertain []overloadRetry
	// notWritten counts calls the api said were certainly not written.
	notWritten int
}

type overloadRetry struct {
	caller *driver.Client
	sale   *salesv1.Sale
}

// call sends one sale; due is when it was meant to start, which is where
// its latency counts from (so that a late start is charged, open loop). It
// reports whether the sale was acknowledged.
func (o *overload) call(p *phase, due time.Time) bool {
	n := o.n.Add(1)
	c := o.callers[int(n)%len(o.callers)]
	sale := o.gen.next()
	sale.SaleId = fmt.Sprintf("ovl-%s-%d", o.run, n)
	// Latency from due includes the driver's own delays (a CPU shared
	// with the api, a connection to wait for); latency from when the
	// request was written is the api's answer time as a client on another
	// machine would see it.
	ctx, cancel := context.WithTimeout(context.Background(), overloadCallTimeout)
	res := c.Send(ctx, []*salesv1.Sale{sale})
	cancel()
	woke := time.Now()
	end := woke
	if !res.Answered.IsZero() {
		end = res.Answered
	}
	took := end.Sub(due)
	// server is the api's answer time as the wire saw it; woken, the same
	// until this goroutine ran again, which adds the driver's own
	// scheduling delay (how the first figures were measured).
	server, woken := time.Duration(-1), time.Duration(-1)
	if !res.Wrote.IsZero() {
		server, woken = end.Sub(res.Wrote), woke.Sub(res.Wrote)
	}
	p.mu.Lock()
	p.sent++
	if server < 0 {
		p.unsent++
	}
	p.mu.Unlock()
	if res.Code == "ok" {
		o.tr.acked(sale, string(c.Name().Ingest()))
		p.accepted.RecordDuration(took)
		p.acceptedServer.RecordDuration(max(server, 0))
		p.acceptedWoken.RecordDuration(max(woken, 0))
		return true
	}
	switch {
	case res.Code == "deadline_exceeded":
		// Hung: written to the api, never answered. A call the driver
		// could not even write is its own backlog (unsent).
		if server >= 0 {
			p.mu.Lock()
			p.hung++
			p.mu.Unlock()
		}
		o.retryLater(c, sale)
	case res.Recorded == "no" || res.Code == "resource_exhausted":
		// Certainly not written: shed before the body was read, or
		// refused by the producer without trying Kafka.
		o.mu.Lock()
		o.notWritten++
		o.mu.Unlock()
	default:
		o.retryLater(c, sale)
	}
	p.mu.Lock()
	h := p.rejected[res.Code]
	if h == nil {
		h = histogram.New()
		p.rejected[res.Code] = h
	}
	p.mu.Unlock()
	h.RecordDuration(took)
	if server >= 0 {
		p.rejectedServer.RecordDuration(server)
		p.rejectedWoken.RecordDuration(woken)
	}
	return false
}

func (o *overload) retryLater(c *driver.Client, sale *salesv1.Sale) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.uncertain = append(o.uncertain, overloadRetry{c, sale})
}

// closedLoop runs p.Callers callers back to back for p.Duration.
func (o *overload) closedLoop(p *phase) {
	end := time.Now().Add(p.Duration)
	stop := o.watchRSS(p)
	var wg sync.WaitGroup
	for range p.Callers {
		wg.Go(func() {
			for time.Now().Before(end) {
				if !o.call(p, time.Now()) {
					// Refused: back off a little, as a client told
					// resource_exhausted does, instead of spinning on
					// refusals that would take the api's CPU from the
					// calls it serves.
					time.Sleep(overloadClosedLoopBackoff)
				}
			}
		})
	}
	wg.Wait()
	stop()
}

// openLoop starts calls at p.OfferedRate for p.Duration, each on its own
// goroutine, whatever the api's answers: the arrivals do not wait for the
// server, as real users do not.
func (o *overload) openLoop(p *phase) {
	stop := o.watchRSS(p)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / p.OfferedRate * float64(time.Second)))
		if due.Sub(start) >= p.Duration {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if o.open.Load() >= overloadMaxOutstanding {
			p.mu.Lock()
			p.overflow++
			p.mu.Unlock()
			continue
		}
		o.open.Add(1)
		wg.Go(func() {
			defer o.open.Add(-1)
			o.call(p, due)
		})
	}
	wg.Wait()
	stop()
}

// watchRSS samples the api's resident memory every 50ms into p.peakRSS
// until the returned function is called.
func (o *overload) watchRSS(p *phase) (stop func()) {
	apiCPU, driverCPU := cpu(o.pid), cpu(os.Getpid())
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			g := o.gauges()
			goroutines := int(g["go_goroutines"])
			rss, _ := procfs.Default.RSS(o.pid)
			fds, _ := os.ReadDir("/proc/" + strconv.Itoa(o.pid) + "/fd")
			p.mu.Lock()
			if limit, ok := g["bf_api_inflight_writes_limit"]; ok {
				if p.limitSamples == 0 || limit < p.limitMin {
					p.limitMin = limit
				}
				p.limitSum += limit
				p.limitSamples++
			}
			p.peakInflight = max(p.peakInflight, g["bf_api_inflight_writes"])
			p.peakRSS = max(p.peakRSS, rss)
			p.peakFDs = max(p.peakFDs, len(fds))
			p.peakGoroutines = max(p.peakGoroutines, goroutines)
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.mu.Lock()
		p.cpuAPI, p.cpuDriver = cpu(o.pid)-apiCPU, cpu(os.Getpid())-driverCPU
		p.mu.Unlock()
	}
}

// cpu is a process's user and system CPU time so far; 0 if it is gone.
func cpu(pid int) time.Duration {
	d, _ := procfs.Default.CPUTotal(pid)
	return d
}

// quantiles returns the 50th and 99th percentiles and the maximum, in ms,
// or nil when h is empty.
func quantiles(h *histogram.Histogram) map[string]float64 {
	if h.Count() == 0 {
		return nil
	}
	ms := func(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }
	return map[string]float64{"p50": ms(h.Quantile(0.50)), "p99": ms(h.Quantile(0.99)), "max": ms(h.Max())}
}

func (p *phase) summarize() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.DurationS = p.Duration.Seconds()
	p.SentRate = float64(p.sent) / p.Duration.Seconds()
	p.Accepted = int(p.accepted.Count())
	p.AcceptedRate = float64(p.Accepted) / p.Duration.Seconds()
	p.AcceptedMS = quantiles(p.accepted)
	p.Rejected = map[string]int{}
	all := histogram.New()
	for code, h := range p.rejected {
		p.Rejected[code] = int(h.Count())
		all.Merge(h)
	}
	p.RejectedMS = quantiles(all)
	p.AcceptedWrittenMS, p.RejectedWrittenMS = quantiles(p.acceptedServer), quantiles(p.rejectedServer)
	p.AcceptedWokenMS, p.RejectedWokenMS = quantiles(p.acceptedWoken), quantiles(p.rejectedWoken)
	if p.limitSamples > 0 {
		p.LimitMean = p.limitSum / float64(p.limitSamples)
	}
	p.LimitMin, p.PeakInflight = p.limitMin, p.peakInflight
	p.Unsent = p.unsent
	p.Hung, p.Overflow = p.hung, p.overflow
	p.PeakRSSMiB = float64(p.peakRSS) / (1 << 20)
	p.PeakFDs = p.peakFDs
	p.PeakGoroutines = p.peakGoroutines
	p.APICores = p.cpuAPI.Seconds() / p.Duration.Seconds()
	p.DriverCores = p.cpuDriver.Seconds() / p.Duration.Seconds()
}

// overloadGauges are the api's gauges the driver samples.
var overloadGauges = []string{"go_goroutines", "bf_api_inflight_writes_limit", "bf_api_inflight_writes"}

// gauges scrapes overloadGauges from the api's /metrics; a gauge it could
// not read is missing.
func (o *overload) gauges() map[string]float64 {
	out := map[string]float64{}
	c := http.Client{Timeout: 200 * time.Millisecond}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(o.s.metricsPort) + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range overloadGauges {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					out[name] = f
				}
			}
		}
	}
	return out
}

func (p *phase) String() string {
	return fmt.Sprintf("%s: offered %.0f/s, sent %.0f/s (%d never written), accepted %.0f/s (from due p50 %.1f p99 %.1f max %.1f ms; from write p50 %.1f p99 %.1f max %.1f ms; to the caller p99 %.1f ms), "+
		"rejected %v (from due p50 %.1f p99 %.1f max %.1f ms; from write p50 %.1f p99 %.1f max %.1f ms; to the caller p99 %.1f ms), hung %d, "+
		"write limit mean %.0f min %.0f, peak in flight %.0f, peak RSS %.0f MiB, peak fds %d, peak goroutines %d; CPU: api %.2f cores, driver %.2f cores",
		p.Name, p.OfferedRate, p.SentRate, p.Unsent, p.AcceptedRate,
		p.AcceptedMS["p50"], p.AcceptedMS["p99"], p.AcceptedMS["max"], p.AcceptedWrittenMS["p50"], p.AcceptedWrittenMS["p99"], p.AcceptedWrittenMS["max"], p.AcceptedWokenMS["p99"],
		p.Rejected, p.RejectedMS["p50"], p.RejectedMS["p99"], p.RejectedMS["max"], p.RejectedWrittenMS["p50"], p.RejectedWrittenMS["p99"], p.RejectedWrittenMS["max"], p.RejectedWokenMS["p99"],
		p.Hung, p.LimitMean, p.LimitMin, p.PeakInflight, p.PeakRSSMiB, p.PeakFDs, p.PeakGoroutines, p.APICores, p.DriverCores)
}

// TestOverload measures the saturation rate with a closed loop, then offers
// half of it and three times it open loop, and holds the api to its bounds.
func TestOverload(t *testing.T) {
	s := newStack(t)
	s.startAggregator("aggregator")
	// As in production: no per-call debug log (the stack's default is
	// debug, which logs every refused call), and one core, the base
	// Deployment's CPU limit (Go sizes GOMAXPROCS from it in a pod). It
	// also leaves the rest of a small machine to the broker, the
	// aggregator and this driver.
	env := []string{"LOG_LEVEL=info", "GOMAXPROCS=" + overloadAPICores()}
	// OVERLOAD_API_ENV adds settings (space-separated NAME=value), to try
	// other limits: OVERLOAD_API_ENV=MAX_INFLIGHT_WRITES=1024.
	env = append(env, strings.Fields(os.Getenv("OVERLOAD_API_ENV"))...)
	// apiEnv names the settings of this run in its figures.
	apiEnv := strings.Join(env, " ")
	s.startAPI(env...)
	s.mu.Lock()
	api := s.api
	s.mu.Unlock()
	d := overloadDuration(t)
	var pinned *pinning
	if os.Getenv("OVERLOAD_PIN") == "true" {
		p := s.pinAPIAlone(t, api.Pid())
		pinned = &p
		t.Logf("pinned: the api to CPU %s; to CPUs %s: %s", p.API, p.Others, strings.Join(p.Pinned, ", "))
	}

	// A fleet of clients, the load generator's lean drivers, so that the
	// driver costs little CPU on a machine it shares with the api: gRPC
	// multiplexes up to 200 streams on each of 8 h2c connections; Connect
	// JSON takes one HTTP/1.1 keep-alive connection per call in flight, up
	// to 512.
	// Together they stay within the api's MAX_CONNECTIONS (1024), which
	// TestMaxConnections covers on its own.
	lean := func(name driver.Name, conns int) *driver.Client {
		t.Helper()
		c, err := driver.New(driver.Config{Target: s.url(), Protocol: name, Conns: conns, DialTimeout: 5 * time.Second, Lean: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	grpc, connectJSON := lean(driver.GRPC, 8), lean(driver.ConnectJSON, 512)
	o := &overload{
		t: t, s: s, gen: newSaleGen(505), tr: newTruth(), run: randomID(), pid: api.Pid(),
	}
	// OVERLOAD_PROTOCOLS narrows the mix to the ingest protocols it names
	// (grpc, connect+json), to study one.
	// Three calls in four are gRPC, one Connect JSON.
	for _, c := range []*driver.Client{grpc, connectJSON, grpc, grpc} {
		if want := os.Getenv("OVERLOAD_PROTOCOLS"); want == "" || slices.Contains(strings.Split(want, ","), string(c.Name().Ingest())) {
			o.callers = append(o.callers, c)
		}
	}

	warm := newPhase("warm-up", 0, 32, 2*time.Second)
	o.closedLoop(warm)
	// Closed loop with enough callers to keep the api busy, well within
	// its write slots (MAX_INFLIGHT_WRITES, 1024), so none is shed.
	saturation := newPhase("saturation (closed loop, 384 callers)", 0, 384, max(d/2, 4*time.Second))
	o.closedLoop(saturation)
	saturation.summarize()
	rate := saturation.AcceptedRate
	if rate < 50 {
		t.Fatalf("saturation rate %.0f calls/s: the api is not serving (%v)", rate, saturation)
	}
	half := newPhase("50% of saturation (open loop)", rate/2, 0, max(d/2, 4*time.Second))
	o.openLoop(half)
	half.summarize()
	factor := overloadFactor(t)
	triple := newPhase(fmt.Sprintf("%g× saturation (open loop)", factor), factor*rate, 0, d)
	o.openLoop(triple)
	triple.summarize()

	// The api is still up.
	select {
	case <-api.Done():
		t.Fatalf("the api exited under overload")
	default:
	}
	if resp, err := http.Get(s.url() + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz after the overload = %v, %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	hwm, err := procfs.Default.PeakRSS(o.pid)
	if err != nil {
		t.Fatalf("the api's peak RSS: %v", err)
	}

	// Sales whose outcome was unknown are retried with their sale_id
	// until acknowledged; the aggregator's dedup counts each once.
	retried := o.retryUncertain(t)
	waitForTruth(context.Background(), t, s, o.tr)

	for _, p := range []*phase{saturation, half, triple} {
		t.Log(p)
		if p.Hung > 0 {
			t.Errorf("%s: %d calls written to the api were never answered before their %v deadline, want none", p.Name, p.Hung, overloadCallTimeout)
		}
		if p.Overflow > 0 || p.Unsent > 0 {
			t.Logf("%s: the driver could not keep up: %d calls over its %d outstanding, %d never written (its own backlog, not the api's)",
				p.Name, p.Overflow, overloadMaxOutstanding, p.Unsent)
		}
	}
	for code := range triple.Rejected {
		if code != "resource_exhausted" && code != "unavailable" {
			t.Errorf("3×: %d calls failed with %s, want only resource_exhausted or unavailable", triple.Rejected[code], code)
		}
	}
	// Latencies from when each request was written, as the api answers
	// them; from due they also hold the driver's own delays on this
	// machine (both are logged and reported).
	rejectBound, acceptBound := overloadRejectP99, overloadAcceptP99
	if os.Getenv("OVERLOAD_STRICT") != "true" {
		// make test runs on shared machines: there the bounds are the
		// api's contract (a refusal never waits for Kafka, an accepted
		// call is answered within PRODUCE_TIMEOUT and a little), and the
		// tight ones hold for the quiet-machine run (make overload-api).
		rejectBound, acceptBound = 3*time.Second, 4*time.Second
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	if len(triple.Rejected) == 0 {
		t.Logf("3×: the api accepted every call: the saturation rate was underestimated")
	} else if p99 := ms(triple.RejectedWrittenMS["p99"]); p99 > rejectBound {
		t.Errorf("3×: p99 of rejected calls (from write) = %v, want at most %v", p99, rejectBound)
	}
	if p99 := ms(triple.AcceptedWrittenMS["p99"]); p99 > acceptBound {
		t.Errorf("3×: p99 of accepted calls (from write) = %v, want at most %v", p99, acceptBound)
	}
	if hwm > overloadRSSBound {
		t.Errorf("the api's peak RSS (VmHWM) = %.0f MiB, want at most %d MiB", float64(hwm)/(1<<20), overloadRSSBound>>20)
	}
	// The goals, reported and not asserted (speed is not a test's to
	// hold): with the api on a core of its own, at 3× it accepts at least
	// 0.9 of the saturation rate, and the accepted calls' p99 is at most
	// 3× their p99 at 50 %.
	share := triple.AcceptedRate / rate
	p99Ratio := triple.AcceptedWrittenMS["p99"] / half.AcceptedWrittenMS["p99"]
	t.Logf("GOALS | pinned %v | accepted %.2f of saturation (goal ≥ 0.9: %v) | accepted p99 %.2f× the p99 at 50%% (goal ≤ 3: %v) | CPU at %g×: api %.2f cores, driver %.2f cores",
		pinned != nil, share, share >= 0.9, p99Ratio, p99Ratio <= 3, factor, triple.APICores, triple.DriverCores)
	acked := o.tr.count()
	o.mu.Lock()
	notWritten := o.notWritten
	o.mu.Unlock()
	t.Logf("RESULT | overload | %s | %s | accepted %.0f/s (%.0f%% of saturation), p99 %.1f ms at %g× vs %.1f ms at 50%% (from write; from due %.1f vs %.1f ms) | rejected %v, p99 %.1f ms from write (%.1f ms from due) | write limit mean %.0f, min %.0f | peak RSS %.0f MiB (VmHWM) | %d acknowledged (%d after retrying an unknown outcome), all counted; %d certainly not written",
		apiEnv, fmt.Sprintf("saturation %.0f calls/s; %g× = %.0f calls/s offered for %v", rate, factor, factor*rate, d),
		triple.AcceptedRate, 100*triple.AcceptedRate/rate, triple.AcceptedWrittenMS["p99"], factor, half.AcceptedWrittenMS["p99"], triple.AcceptedMS["p99"], half.AcceptedMS["p99"],
		triple.Rejected, triple.RejectedWrittenMS["p99"], triple.RejectedMS["p99"], triple.LimitMean, triple.LimitMin, float64(hwm)/(1<<20), acked, retried, notWritten)

	// The same as a row of docs/reliability.md's tables (waitForTruth has
	// held the aggregates to the ground truth, exactly, before this).
	// The row names the settings OVERLOAD_API_ENV changed, if any.
	settings := ""
	if extra := strings.Fields(os.Getenv("OVERLOAD_API_ENV")); len(extra) > 0 {
		settings = " (" + strings.Join(extra, " ") + ")"
	}
	var shed []string
	for code, n := range triple.Rejected {
		shed = append(shed, fmt.Sprintf("%d shed with %s", n, code))
	}
	slices.Sort(shed)
	t.Logf("ROW | overload %g×%s | saturation %.0f calls/s (closed loop, 384 callers); 50 %%: %.0f calls/s for %v; %g×: %.0f calls/s offered for %v (%.0f/s written), open loop, ¾ gRPC and ¼ Connect JSON | none: the load itself | %d | %d | 0 | 0 | "+
		"accepted %.0f/s at %g× (%.0f %% of saturation), p99 %.0f ms vs %.0f ms at 50 %%; %s, p99 %.0f ms; %d hung; write limit mean %.0f, min %.0f; api peak RSS %.0f MiB (bound %d MiB) |",
		factor, settings, rate, half.OfferedRate, half.Duration, factor, triple.OfferedRate, d, triple.SentRate, acked, acked,
		triple.AcceptedRate, factor, 100*triple.AcceptedRate/rate, triple.AcceptedWrittenMS["p99"], half.AcceptedWrittenMS["p99"],
		strings.Join(shed, ", "), triple.RejectedWrittenMS["p99"], triple.Hung, triple.LimitMean, triple.LimitMin, float64(hwm)/(1<<20), overloadRSSBound>>20)

	if out := os.Getenv("OVERLOAD_OUT"); out != "" {
		b, _ := json.MarshalIndent(map[string]any{
			"api_env": apiEnv, "overload_factor": factor, "duration_s": d.Seconds(), "saturation_calls_per_s": rate, "phases": []*phase{saturation, half, triple},
			"api_vmhwm_mib": float64(hwm) / (1 << 20), "acknowledged": acked, "retried_unknown": retried,
			"certainly_not_written": notWritten, "counted_exactly": !t.Failed(),
			"pinning": pinned, "accepted_share_of_saturation": share, "accepted_p99_ratio_to_half": p99Ratio,
		}, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
}

// retryUncertain sends every sale of unknown outcome again, with its
// sale_id, until the api acknowledges it, and books it then. It returns how
// many there were.
func (o *overload) retryUncertain(t *testing.T) int {
	t.Helper()
	o.mu.Lock()
	pending := o.uncertain
	o.uncertain = nil
	o.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for _, r := range pending {
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), overloadCallTimeout)
			res := r.caller.Send(ctx, []*salesv1.Sale{r.sale})
			cancel()
			err := res.Err
			if res.Code == "ok" {
				o.tr.acked(r.sale, string(r.caller.Name().Ingest()))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sale %s still not acknowledged after retrying for 2 minutes: %v", r.sale.GetSaleId(), err)
			}
			time.Sleep(backoff)
		}
	}
	return len(pending)
}
