// Package load drives one protocol client in open loop (a constant arrival
// rate, latencies measured from when each call was due) or closed loop (N
// callers, each sending its next call when the last one answered), and
// measures throughput, latency percentiles, errors by code, bytes on the
// wire and CPU time per call.
package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/loadgen/histogram"
	"blackfriday.local/tooling/loadgen/internal/pacing"
	"blackfriday.local/tooling/loadgen/internal/progress"
	"blackfriday.local/tooling/loadgen/internal/sales"
	"blackfriday.local/tooling/loadgen/internal/truth"
	"blackfriday.local/tooling/loadgen/procfs"
	"blackfriday.local/tooling/loadgen/protocol"
	"blackfriday.local/tooling/loadgen/wire"
)

// Options configure a run.
type Options struct {
	// Client sends the calls; its batch size sets the sales per call.
	Client *protocol.Client
	// Sales makes the sales; FirstSale is the index of the run's first.
	Sales     *sales.Generator
	FirstSale uint64
	// Rate is the open-loop arrival rate in calls per second; 0 runs
	// closed loop.
	Rate float64
	// Concurrency is the number of closed-loop callers, or in open loop
	// the most calls in flight (callers beyond it wait, and the wait
	// counts in their latency).
	Concurrency int
	// Warmup runs before the measured window, Duration is the window.
	Warmup, Duration time.Duration
	// Timeout bounds each call.
	Timeout time.Duration
	// Truth, when set, receives every sale acknowledged during the whole
	// run, warm-up included.
	Truth *truth.Writer
	// ServerPID is the api's process, for its CPU time and peak RSS; 0
	// skips them.
	ServerPID int
	// Watch names other processes whose CPU time per call to report (the
	// Kafka broker, for instance).
	Watch map[string]int
	// Label and Target are copied into the result.
	Label, Target string
	// Progress, when set, shows a progress bar.
	Progress *progress.Bar
	// Proc reads /proc; the zero value reads the real one.
	Proc procfs.FS
}

// snapshot is the state of the counters at one instant.
type snapshot struct {
	at     time.Time
	wire   wire.Totals
	client time.Duration
	server time.Duration
	watch  map[string]time.Duration
	// machine is the busy time of every CPU.
	machine time.Duration
}

func (o *Options) snapshot() snapshot {
	s := snapshot{at: time.Now(), wire: o.Client.Wire().Totals(), watch: map[string]time.Duration{}}
	s.client, _ = o.Proc.CPUTotal(0)
	s.machine, _ = o.Proc.MachineBusy()
	if o.ServerPID > 0 {
		s.server, _ = o.Proc.CPUTotal(o.ServerPID)
	}
	for name, pid := range o.Watch {
		s.watch[name], _ = o.Proc.CPUTotal(pid)
	}
	return s
}

// runner holds a run's shared state.
type runner struct {
	o       Options
	t0, t1  time.Time
	next    atomic.Uint64
	hist    *histogram.Histogram
	secs    []second     // the window, second by second
	calls   atomic.Int64 // completed in the window
	okCalls atomic.Int64
	acked   atomic.Int64 // sales acknowledged in the window
	due     atomic.Int64
	late    atomic.Int64
	maxLag  atomic.Int64
	total   atomic.Int64 // calls completed over the whole run

	mu         sync.Mutex
	errors     map[string]int64
	saleErrors map[string]int64
	lastErr    error
}

// Run runs the load and returns its result. It stops early, with what it
// measured, when ctx is done.
func Run(ctx context.Context, o Options) (*Result, error) {
	switch {
	case o.Client == nil || o.Sales == nil:
		return nil, errors.New("load: a client and a sales generator are required")
	case o.Duration <= 0:
		return nil, errors.New("load: the duration must be positive")
	case o.Concurrency < 1:
		return nil, errors.New("load: the concurrency must be at least 1")
	case o.Rate < 0:
		return nil, errors.New("load: the rate must not be negative")
	}
	if o.Proc == (procfs.FS{}) {
		o.Proc = procfs.Default
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	start := time.Now()
	r := &runner{
		o:          o,
		t0:         start.Add(o.Warmup),
		t1:         start.Add(o.Warmup + o.Duration),
		hist:       histogram.New(),
		secs:       newSeconds(o.Duration),
		errors:     map[string]int64{},
		saleErrors: map[string]int64{},
	}
	r.next.Store(o.FirstSale)

	// The window's snapshots are taken on time by their own goroutine.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var before, after snapshot
	peakReset := false
	windowDone := make(chan struct{})
	go func() {
		defer close(windowDone)
		pacing.Wait(ctx, r.t0)
		if o.ServerPID > 0 {
			peakReset = o.Proc.ResetPeakRSS(o.ServerPID) == nil
		}
		before = o.snapshot()
		pacing.Wait(ctx, r.t1)
		after = o.snapshot()
	}()
	stopBar := r.showProgress(ctx, start)

	var wg sync.WaitGroup
	if o.Rate > 0 {
		sched := pacing.New(start, o.Rate)
		for range o.Concurrency {
			wg.Go(func() { r.openLoop(ctx, sched) })
		}
	} else {
		for range o.Concurrency {
			wg.Go(func() { r.closedLoop(ctx) })
		}
	}
	wg.Wait()
	cancel()
	<-windowDone
	stopBar()

	var peak int64
	if o.ServerPID > 0 {
		peak, _ = o.Proc.PeakRSS(o.ServerPID)
	}
	if r.total.Load() == 0 && r.lastErr != nil {
		return nil, fmt.Errorf("load: no call completed: %w", r.lastErr)
	}
	return r.result(start, before, after, peak, peakReset), nil
}

// closedLoop sends calls back to back until the window ends.
func (r *runner) closedLoop(ctx context.Context) {
	batch := make([]*salesv1.Sale, r.o.Client.Batch())
	for ctx.Err() == nil {
		sent := time.Now()
		if !sent.Before(r.t1) {
			return
		}
		end, ok := r.call(ctx, batch)
		if !end.Before(r.t0) && end.Before(r.t1) {
			r.hist.RecordDuration(end.Sub(sent))
			r.calls.Add(1)
			r.perSecond(end, end.Sub(sent), ok)
		}
	}
}

// openLoop takes the schedule's calls in turn until the window ends; a call
// that starts late (every caller was busy) is charged from when it was due.
func (r *runner) openLoop(ctx context.Context, sched *pacing.Schedule) {
	batch := make([]*salesv1.Sale, r.o.Client.Batch())
	for ctx.Err() == nil {
		_, due := sched.Next()
		if !due.Before(r.t1) || !pacing.Wait(ctx, due) {
			return
		}
		lag := time.Since(due)
		end, ok := r.call(ctx, batch)
		if due.Before(r.t0) {
			continue
		}
		r.due.Add(1)
		if lag > time.Millisecond {
			r.late.Add(1)
		}
		for {
			cur := r.maxLag.Load()
			if int64(lag) <= cur || r.maxLag.CompareAndSwap(cur, int64(lag)) {
				break
			}
		}
		r.hist.RecordDuration(end.Sub(due))
		r.calls.Add(1)
		r.perSecond(due, end.Sub(due), ok)
	}
}

// call sends one call of fresh sales, records its outcome and returns when
// it ended and whether it succeeded.
func (r *runner) call(ctx context.Context, batch []*salesv1.Sale) (time.Time, bool) {
	n := uint64(len(batch))
	r.o.Sales.Sales(batch, r.next.Add(n)-n)
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Timeout)
	reply := r.o.Client.Send(callCtx, batch)
	cancel()
	end := time.Now()
	r.total.Add(1)
	inWindow := !end.Before(r.t0) && end.Before(r.t1)

	code := func(i int) string {
		if reply.Code != "ok" || reply.ItemCodes == nil {
			return reply.Code
		}
		return reply.ItemCodes[i]
	}
	if r.o.Truth != nil {
		r.o.Truth.Add(batch, reply.Acked, func(i int) bool { return !protocol.NotWritten(code(i)) })
	}
	if reply.Code == "ok" {
		acked := int64(len(batch))
		if reply.ItemCodes != nil {
			r.mu.Lock()
			for _, c := range reply.ItemCodes {
				if c != "" {
					acked--
					if inWindow {
						r.saleErrors[c]++
					}
				}
			}
			r.mu.Unlock()
		}
		if inWindow {
			r.okCalls.Add(1)
			r.acked.Add(acked)
		}
		return end, true
	}
	r.mu.Lock()
	if inWindow {
		r.errors[reply.Code]++
	}
	r.lastErr = reply.Err
	r.mu.Unlock()
	return end, false
}

func (r *runner) result(start time.Time, before, after snapshot, peak int64, peakReset bool) *Result {
	o := r.o
	// A run stopped early measures up to where it stopped.
	if after.at.IsZero() {
		after = o.snapshot()
	}
	if before.at.IsZero() {
		before = after
	}
	window := after.at.Sub(before.at).Seconds()
	res := &Result{
		Label:         o.Label,
		Protocol:      string(o.Client.Name()),
		Describe:      o.Client.Name().Describe(),
		Batch:         o.Client.Batch(),
		Mode:          "closed",
		Concurrency:   o.Concurrency,
		Target:        o.Target,
		Seed:          o.Sales.Seed(),
		Started:       start.UTC().Format(time.RFC3339),
		WarmupS:       o.Warmup.Seconds(),
		DurationS:     window,
		Calls:         r.calls.Load(),
		OKCalls:       r.okCalls.Load(),
		Sales:         r.acked.Load(),
		Errors:        r.errors,
		ServerPeakRSS: peak,
		PeakRSSReset:  peakReset,
	}
	if len(r.saleErrors) > 0 {
		res.SaleErrors = r.saleErrors
	}
	if o.Rate > 0 {
		res.Mode, res.Rate = "open", o.Rate
		res.Open = &Open{Due: r.due.Load(), LateCalls: r.late.Load(), MaxStartLagMS: ms(r.maxLag.Load())}
	}
	if window > 0 {
		res.CallsPerS = float64(res.OKCalls) / window
		res.SalesPerS = float64(res.Sales) / window
	}
	h := r.hist
	res.Latency = Latency{
		P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: h.Mean() / float64(time.Millisecond),
	}
	res.Histogram = h
	res.Seconds = seconds(r.secs)
	if calls := float64(res.Calls); calls > 0 {
		w := after.wire.Sub(before.wire)
		res.Wire = Wire{
			RequestBytesPerCall:  float64(w.Sent) / calls,
			ResponseBytesPerCall: float64(w.Received) / calls,
			Conns:                w.Conns,
		}
		perCall := func(d time.Duration) float64 { return float64(d.Microseconds()) / calls }
		res.CPU.ClientUSPerCall = perCall(after.client - before.client)
		if o.ServerPID > 0 {
			res.CPU.ServerPID = o.ServerPID
			res.CPU.ServerUSPerCall = perCall(after.server - before.server)
		}
		for name := range o.Watch {
			if res.CPU.Extra == nil {
				res.CPU.Extra = map[string]float64{}
			}
			res.CPU.Extra[name] = perCall(after.watch[name] - before.watch[name])
		}
	}
	if window > 0 {
		res.CPU.ClientCores = (after.client - before.client).Seconds() / window
		if o.ServerPID > 0 {
			res.CPU.ServerCores = (after.server - before.server).Seconds() / window
		}
		res.CPU.MachineCores = (after.machine - before.machine).Seconds() / window
		ours := after.client - before.client + after.server - before.server
		for name := range o.Watch {
			ours += after.watch[name] - before.watch[name]
		}
		res.CPU.OtherCores = max(0, (after.machine-before.machine-ours).Seconds()/window)
	}
	if o.Truth != nil {
		res.TruthAcked, res.TruthUnknown = o.Truth.Counts()
	}
	return res
}

// showProgress draws the progress bar until the returned function is
// called.
func (r *runner) showProgress(ctx context.Context, start time.Time) (stop func()) {
	bar := r.o.Progress
	if bar == nil {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	total := r.o.Warmup + r.o.Duration
	go func() {
		defer close(stopped)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		lastCalls, lastAt := int64(0), start
		for {
			select {
			case <-done:
				bar.Done()
				return
			case <-ctx.Done():
				bar.Done()
				return
			case now := <-tick.C:
				calls := r.total.Load()
				rate := float64(calls-lastCalls) / now.Sub(lastAt).Seconds()
				lastCalls, lastAt = calls, now
				r.mu.Lock()
				var errs int64
				for _, n := range r.errors {
					errs += n
				}
				r.mu.Unlock()
				phase := "warm-up"
				if !now.Before(r.t0) {
					phase = "measure"
				}
				bar.Draw(float64(now.Sub(start))/float64(total), fmt.Sprintf("%s %s %7.0f calls/s  p99 %6.2f ms  errors %d",
					r.o.Client.Name(), phase, rate, ms(r.hist.Quantile(0.99)), errs))
			}
		}
	}()
	return func() { close(done); <-stopped }
}
