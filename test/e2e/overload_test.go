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
// figures in docs/reliability-api.md come from OVERLOAD_DURATION=30s).
// OVERLOAD_OUT, when set, names a file that receives the figures as JSON.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// The bounds the overload test holds the api to (docs/reliability-api.md
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
	// PRODUCE_TIMEOUT (3s) and a little.
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

// overloadCaller sends RecordSale through one protocol.
type overloadCaller struct {
	name string // the ingest-protocol header the api records
	send func(ctx context.Context, sale *salesv1.Sale) sent
}

// sent is what became of one call.
type sent struct {
	// code is "" for success, or the Connect code.
	code connect.Code
	ok   bool
	// recorded is the Sale-Recorded metadata of a failure.
	recorded string
	// wrote is when the request was on the wire; zero if it never was.
	wrote time.Time
	// answered is when the answer came off the wire: for gRPC, when the
	// connection's frame reader decoded its status, before the caller's
	// goroutine (one of thousands in this driver) is scheduled again. Zero
	// means when send returned.
	answered time.Time
	err      error
}

// rawJSON sends Connect JSON over a pool of plain HTTP/1.1 keep-alive
// connections, with hand-written requests: a client costs the driver a
// fraction of what connect-go costs, so that on one small machine the
// offered load is not limited by the driver's own CPU.
type rawJSON struct {
	addr string
	// slots bounds the connections open; pool holds the idle ones.
	slots chan struct{}
	pool  chan *rawConn
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newRawJSON(addr string, conns int) *rawJSON {
	return &rawJSON{addr: addr, slots: make(chan struct{}, conns), pool: make(chan *rawConn, conns)}
}

func (r *rawJSON) close() {
	for {
		select {
		case c := <-r.pool:
			c.c.Close()
		default:
			return
		}
	}
}

// conn returns an idle connection, or dials one if fewer than the limit
// are open, or waits for one to be returned.
func (r *rawJSON) conn(ctx context.Context) (*rawConn, error) {
	select {
	case c := <-r.pool:
		return c, nil
	default:
	}
	select {
	case c := <-r.pool:
		return c, nil
	case r.slots <- struct{}{}:
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			<-r.slots
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		return &rawConn{c: conn, br: bufio.NewReader(conn)}, nil
	case <-ctx.Done():
		return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
}

// drop closes a connection and frees its slot.
func (r *rawJSON) drop(c *rawConn) {
	c.c.Close()
	<-r.slots
}

func (r *rawJSON) caller() overloadCaller {
	return overloadCaller{"connect+json", r.send}
}

func (r *rawJSON) send(ctx context.Context, sale *salesv1.Sale) sent {
	c, err := r.conn(ctx)
	if err != nil {
		return sent{code: connect.CodeOf(err), err: err}
	}
	deadline, _ := ctx.Deadline()
	_ = c.c.SetDeadline(deadline)
	body := fmt.Sprintf(`{"sale":{"category":%d,"productId":%q,"priceCents":%d,"quantity":%d,"saleId":%q}}`,
		sale.GetCategory(), sale.GetProductId(), sale.GetPriceCents(), sale.GetQuantity(), sale.GetSaleId())
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		salesv1connect.SalesServiceRecordSaleProcedure, len(body), body)
	if _, err := io.WriteString(c.c, req); err != nil {
		r.drop(c)
		return sent{code: connect.CodeUnavailable, err: err}
	}
	out := sent{wrote: time.Now()}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		r.drop(c)
		out.code, out.err = connect.CodeUnavailable, err
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			out.code = connect.CodeDeadlineExceeded
		}
		return out
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		r.drop(c)
	} else {
		r.pool <- c // never blocks: at most cap(slots) connections exist
	}
	if resp.StatusCode == http.StatusOK {
		out.ok = true
		return out
	}
	var e struct{ Code string }
	_ = json.Unmarshal(b, &e)
	if err := out.code.UnmarshalText([]byte(e.Code)); err != nil {
		out.code = connect.CodeUnknown
	}
	out.recorded = resp.Header.Get("Sale-Recorded")
	out.err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	return out
}

// phase is one stretch of load and what it measured.
type phase struct {
	Name        string        `json:"name"`
	OfferedRate float64       `json:"offered_calls_per_s,omitempty"` // 0: closed loop
	Callers     int           `json:"closed_loop_callers,omitempty"`
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s"`

	mu       sync.Mutex
	accepted []time.Duration
	rejected map[string][]time.Duration
	// acceptedServer and rejectedServer time the same calls from when
	// the request was written.
	acceptedServer []time.Duration
	rejectedServer []time.Duration
	acceptedWoken  []time.Duration
	rejectedWoken  []time.Duration
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
	return &phase{Name: name, OfferedRate: rate, Callers: callers, Duration: d, rejected: map[string][]time.Duration{}}
}

// overload drives the api and keeps the ground truth.
type overload struct {
	t       *testing.T
	s       *stack
	callers []overloadCaller
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
	caller overloadCaller
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
	res := c.send(ctx, sale)
	cancel()
	woke := time.Now()
	end := woke
	if !res.answered.IsZero() {
		end = res.answered
	}
	took := end.Sub(due)
	// server is the api's answer time as the wire saw it; woken, the same
	// until this goroutine ran again, which adds the driver's own
	// scheduling delay (how the first figures were measured).
	server, woken := time.Duration(-1), time.Duration(-1)
	if !res.wrote.IsZero() {
		server, woken = end.Sub(res.wrote), woke.Sub(res.wrote)
	}
	p.mu.Lock()
	p.sent++
	if server < 0 {
		p.unsent++
	}
	p.mu.Unlock()
	if res.ok {
		o.tr.acked(sale, c.name)
		p.mu.Lock()
		p.accepted = append(p.accepted, took)
		p.acceptedServer = append(p.acceptedServer, max(server, 0))
		p.acceptedWoken = append(p.acceptedWoken, max(woken, 0))
		p.mu.Unlock()
		return true
	}
	code := res.code.String()
	switch {
	case res.code == connect.CodeDeadlineExceeded:
		// Hung: written to the api, never answered. A call the driver
		// could not even write is its own backlog (unsent).
		if server >= 0 {
			p.mu.Lock()
			p.hung++
			p.mu.Unlock()
		}
		o.retryLater(c, sale)
	case res.recorded == "no" || res.code == connect.CodeResourceExhausted:
		// Certainly not written: shed before the body was read, or
		// refused by the producer without trying Kafka.
		o.mu.Lock()
		o.notWritten++
		o.mu.Unlock()
	default:
		o.retryLater(c, sale)
	}
	p.mu.Lock()
	p.rejected[code] = append(p.rejected[code], took)
	if server >= 0 {
		p.rejectedServer = append(p.rejectedServer, server)
		p.rejectedWoken = append(p.rejectedWoken, woken)
	}
	p.mu.Unlock()
	return false
}

func (o *overload) retryLater(c overloadCaller, sale *salesv1.Sale) {
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
	apiCPU, driverCPU := procCPU(o.pid), procCPU(os.Getpid())
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			g := o.gauges()
			goroutines := int(g["go_goroutines"])
			rss := procStatusBytes(o.pid, "VmRSS")
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
		p.cpuAPI, p.cpuDriver = procCPU(o.pid)-apiCPU, procCPU(os.Getpid())-driverCPU
		p.mu.Unlock()
	}
}

// procCPU reads a process's user and system CPU time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status, in bytes.
func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// quantiles returns the 50th, 99th percentile and the maximum, in ms.
func quantiles(d []time.Duration) map[string]float64 {
	if len(d) == 0 {
		return nil
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(f float64) float64 {
		i := int(math.Ceil(f*float64(len(s)))) - 1
		return float64(s[max(i, 0)].Microseconds()) / 1000
	}
	return map[string]float64{"p50": q(0.50), "p99": q(0.99), "max": q(1)}
}

func (p *phase) summarize() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.DurationS = p.Duration.Seconds()
	p.SentRate = float64(p.sent) / p.Duration.Seconds()
	p.Accepted = len(p.accepted)
	p.AcceptedRate = float64(len(p.accepted)) / p.Duration.Seconds()
	p.AcceptedMS = quantiles(p.accepted)
	p.Rejected = map[string]int{}
	var all []time.Duration
	for code, ds := range p.rejected {
		p.Rejected[code] = len(ds)
		all = append(all, ds...)
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

	// A fleet of clients, both hand-written so that the driver costs
	// little CPU on a machine it shares with the api: gRPC multiplexes up
	// to 200 streams on each of 8 h2c connections; Connect JSON takes one
	// HTTP/1.1 keep-alive connection per call in flight, up to 512.
	// Together they stay within the api's MAX_CONNECTIONS (1024), which
	// TestMaxConnections covers on its own.
	apiAddr := "127.0.0.1:" + strconv.Itoa(s.apiPort)
	raw := newRawJSON(apiAddr, 512)
	grpcRaw, err := newRawGRPC(apiAddr, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		raw.close()
		grpcRaw.close()
	})
	o := &overload{
		t: t, s: s, gen: newSaleGen(505), tr: newTruth(), run: randomID(), pid: api.Pid(),
	}
	// OVERLOAD_PROTOCOLS narrows the mix, to study one protocol.
	// Three calls in four are gRPC, one Connect JSON.
	for _, c := range []overloadCaller{grpcRaw.caller(), raw.caller(), grpcRaw.caller(), grpcRaw.caller()} {
		if want := os.Getenv("OVERLOAD_PROTOCOLS"); want == "" || slices.Contains(strings.Split(want, ","), c.name) {
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
	hwm := procStatusBytes(o.pid, "VmHWM")

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
			res := r.caller.send(ctx, r.sale)
			cancel()
			err := res.err
			if res.ok {
				o.tr.acked(r.sale, r.caller.name)
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

// A minimal gRPC client over raw HTTP/2 frames, for the overload test's
// driver: many streams on a few connections, one frame reader per
// connection, no per-call goroutine. It costs the driver a fraction of what
// a full client costs, so that on one small machine the load offered is not
// capped by the driver's own CPU. It speaks exactly what the api needs:
// unary calls, the gRPC status in trailers (or a trailers-only answer), flow
// control, SETTINGS, PING and GOAWAY (RFC 9113); only HPACK comes from
// golang.org/x/net.

// h2StreamsPerConn stays below the server's SETTINGS_MAX_CONCURRENT_STREAMS
// (Go's default is 250).
const h2StreamsPerConn = 200

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8
	h2Continuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// rawGRPC sends RecordSale over a fixed set of HTTP/2 connections.
type rawGRPC struct {
	addr  string
	conns []*h2Conn
	next  atomic.Uint64
}

func newRawGRPC(addr string, conns int) (*rawGRPC, error) {
	g := &rawGRPC{addr: addr}
	for range conns {
		c, err := dialH2(addr)
		if err != nil {
			g.close()
			return nil, err
		}
		g.conns = append(g.conns, c)
	}
	return g, nil
}

func (g *rawGRPC) close() {
	for _, c := range g.conns {
		c.c.Close()
	}
}

func (g *rawGRPC) caller() overloadCaller {
	return overloadCaller{"grpc", g.send}
}

func (g *rawGRPC) send(ctx context.Context, sale *salesv1.Sale) sent {
	msg, err := proto.Marshal(&salesv1.RecordSaleRequest{Sale: sale})
	if err != nil {
		return sent{code: connect.CodeInternal, err: err}
	}
	c := g.conns[g.next.Add(1)%uint64(len(g.conns))]
	return c.call(ctx, msg)
}

type h2Conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	// wmu serializes writes and guards the send window and stream ids.
	wmu       sync.Mutex
	window    int64
	windowC   *sync.Cond
	nextID    uint32
	henc      *hpack.Encoder
	hbuf      bytes.Buffer
	slots     chan struct{}
	authority string
	hdec      *hpack.Decoder

	mu      sync.Mutex
	streams map[uint32]*h2Stream
	dead    error
	// unacked counts received DATA bytes not yet given back with a
	// WINDOW_UPDATE.
	unacked int
}

type h2Stream struct {
	done     chan struct{}
	answered time.Time
	status   string
	message  string
	recorded string
	err      error
}

func dialH2(addr string) (*h2Conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{
		c: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10),
		window: 65535, nextID: 1, slots: make(chan struct{}, h2StreamsPerConn),
		authority: addr, streams: map[uint32]*h2Stream{}, hdec: hpack.NewDecoder(4096, nil),
	}
	c.windowC = sync.NewCond(&c.wmu)
	c.henc = hpack.NewEncoder(&c.hbuf)
	// Large receive windows: the answers flow without waiting for us.
	settings := []byte{0, 4, 0, 0x10, 0, 0} // SETTINGS_INITIAL_WINDOW_SIZE = 1 MiB
	_, _ = io.WriteString(c.bw, h2Preface)
	c.writeFrame(h2Settings, 0, 0, settings)
	c.writeFrame(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<24))
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// writeFrame buffers one frame; the caller holds wmu (or owns the
// connection) and flushes.
func (c *h2Conn) writeFrame(typ, flags byte, stream uint32, payload []byte) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	_, _ = c.bw.Write(h[:])
	_, _ = c.bw.Write(payload)
}

// call sends one unary call and waits for its status.
func (c *h2Conn) call(ctx context.Context, msg []byte) sent {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return sent{code: connect.CodeDeadlineExceeded, err: ctx.Err()}
	}
	defer func() { <-c.slots }()
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	s := &h2Stream{done: make(chan struct{})}

	c.wmu.Lock()
	for c.window < int64(len(body)) && c.deadErr() == nil {
		c.windowC.Wait()
	}
	if err := c.deadErr(); err != nil {
		c.wmu.Unlock()
		return sent{code: connect.CodeUnavailable, err: err}
	}
	id := c.nextID
	c.nextID += 2
	c.mu.Lock()
	c.streams[id] = s
	c.mu.Unlock()
	c.hbuf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", c.authority},
		{":path", salesv1connect.SalesServiceRecordSaleProcedure},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.writeFrame(h2Headers, h2FlagEndHeaders, id, c.hbuf.Bytes())
	c.writeFrame(h2Data, h2FlagEndStream, id, body)
	err := c.bw.Flush()
	c.window -= int64(len(body))
	c.wmu.Unlock()
	wrote := time.Now()
	if err != nil {
		c.fail(err)
		return sent{code: connect.CodeUnavailable, err: err, wrote: wrote}
	}

	select {
	case <-s.done:
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.streams, id)
		c.mu.Unlock()
		c.write(h2RSTStream, 0, id, []byte{0, 0, 0, 0x8}) // CANCEL
		return sent{code: connect.CodeDeadlineExceeded, err: ctx.Err(), wrote: wrote}
	}
	out := sent{wrote: wrote, answered: s.answered, recorded: s.recorded}
	switch {
	case s.err != nil:
		out.code, out.err = connect.CodeUnavailable, s.err
	case s.status == "0":
		out.ok = true
	default:
		n, err := strconv.Atoi(s.status)
		if err != nil || n < 1 || n > 16 {
			out.code, out.err = connect.CodeUnknown, fmt.Errorf("grpc-status %q", s.status)
		} else {
			out.code, out.err = connect.Code(n), fmt.Errorf("%s: %s", connect.Code(n), s.message)
		}
	}
	return out
}

func (c *h2Conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// fail ends the connection and every stream on it.
func (c *h2Conn) fail(err error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	streams := c.streams
	c.streams = map[uint32]*h2Stream{}
	c.mu.Unlock()
	for _, s := range streams {
		s.err = err
		close(s.done)
	}
	c.c.Close()
	c.wmu.Lock()
	c.windowC.Broadcast()
	c.wmu.Unlock()
}

// finish completes a stream.
func (c *h2Conn) finish(id uint32, apply func(*h2Stream)) {
	c.mu.Lock()
	s := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if s != nil {
		s.answered = time.Now()
		apply(s)
		close(s.done)
	}
}

// write writes and flushes one frame under the write lock.
func (c *h2Conn) write(typ, flags byte, stream uint32, payload []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeFrame(typ, flags, stream, payload)
	_ = c.bw.Flush()
}

// readFrame reads one frame.
func (c *h2Conn) readFrame() (typ, flags byte, stream uint32, payload []byte, err error) {
	var h [9]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, 0, 0, nil, err
	}
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if n > 1<<20 {
		return 0, 0, 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, 0, 0, nil, err
	}
	return h[3], h[4], binary.BigEndian.Uint32(h[5:]) & 0x7fffffff, payload, nil
}

// unpad strips a frame's padding (and a HEADERS frame's priority).
func unpad(typ, flags byte, p []byte) ([]byte, error) {
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, errors.New("bad padding")
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if typ == h2Headers && flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("bad priority")
		}
		p = p[5:]
	}
	return p, nil
}

func (c *h2Conn) readLoop() {
	var block []byte // a header block being assembled
	var blockStream uint32
	var blockEnds bool
	for {
		typ, flags, stream, p, err := c.readFrame()
		if err != nil {
			c.fail(err)
			return
		}
		switch typ {
		case h2Settings:
			if flags&h2FlagAck == 0 {
				c.write(h2Settings, h2FlagAck, 0, nil)
			}
		case h2Ping:
			if flags&h2FlagAck == 0 {
				c.write(h2Ping, h2FlagAck, 0, p)
			}
		case h2WindowUpdate:
			if stream == 0 && len(p) == 4 {
				c.wmu.Lock()
				c.window += int64(binary.BigEndian.Uint32(p) & 0x7fffffff)
				c.windowC.Broadcast()
				c.wmu.Unlock()
			}
		case h2Headers, h2Continuation:
			if typ == h2Headers {
				if p, err = unpad(typ, flags, p); err != nil {
					c.fail(err)
					return
				}
				block, blockStream, blockEnds = append(block[:0], p...), stream, flags&h2FlagEndStream != 0
			} else {
				block = append(block, p...)
			}
			if flags&h2FlagEndHeaders == 0 {
				continue
			}
			fields, err := c.hdec.DecodeFull(block)
			if err != nil {
				c.fail(err)
				return
			}
			c.headers(blockStream, fields, blockEnds)
		case h2Data:
			// Give the connection's receive window back in batches.
			c.mu.Lock()
			c.unacked += len(p)
			give := 0
			if c.unacked >= 1<<20 {
				give, c.unacked = c.unacked, 0
			}
			c.mu.Unlock()
			if give > 0 {
				c.write(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(give)))
			}
			if flags&h2FlagEndStream != 0 {
				c.finish(stream, func(s *h2Stream) { s.err = errors.New("stream ended without trailers") })
			}
		case h2RSTStream:
			c.finish(stream, func(s *h2Stream) { s.err = fmt.Errorf("stream reset (code %x)", p) })
		case h2GoAway:
			c.fail(errors.New("goaway"))
			return
		}
	}
}

// headers takes a stream's headers or trailers: the gRPC status ends it.
func (c *h2Conn) headers(stream uint32, fields []hpack.HeaderField, ends bool) {
	status, message, recorded := "", "", ""
	for _, h := range fields {
		switch h.Name {
		case "grpc-status":
			status = h.Value
		case "grpc-message":
			message = h.Value
		case "sale-recorded":
			recorded = h.Value
		}
	}
	c.mu.Lock()
	if s := c.streams[stream]; s != nil && recorded != "" {
		s.recorded = recorded
	}
	c.mu.Unlock()
	if !ends {
		return
	}
	c.finish(stream, func(s *h2Stream) {
		s.status, s.message = status, message
		if status == "" {
			s.err = errors.New("stream ended without grpc-status")
		}
	})
}
