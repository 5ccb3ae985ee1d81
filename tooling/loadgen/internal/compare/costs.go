package compare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/protocol"
)

// CPUs of the pinning: the broker, Valkey and the load generator on the
// first, what we measure as our own (the apis, the aggregator) on the
// second.
const (
	cpuOthers = 0
	cpuOurs   = 1
)

// costWarmup is the cost phase's warm-up, in windows.
const costWarmup = 4

// checkPin refuses pinning that cannot be done here.
func (c *Config) checkPin() error {
	if !c.Pin {
		return nil
	}
	if n := runtime.NumCPU(); n < 2 {
		return fmt.Errorf("compare -pin: this process may run on %d CPU; pinning puts the broker, Valkey and the load generator on one CPU and the api on another, so it needs 2", n)
	}
	if c.KafkaPID <= 0 || c.ValkeyPID <= 0 {
		return errors.New("compare -pin: the broker's and Valkey's pids are needed (-kafka-pid and -valkey-pid, or let compare start them)")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("compare -pin: %w (util-linux)", err)
	}
	return nil
}

// pinTo pins every thread of pid to cpu when pinning is on, and notes it.
func (s *session) pinTo(cpu int, name string, pid int) error {
	if !s.cfg.Pin {
		return nil
	}
	out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pin %s (pid %d) to CPU %d: %w: %s", name, pid, cpu, err, strings.TrimSpace(string(out)))
	}
	s.pinning = append(s.pinning, fmt.Sprintf("%s on CPU %d", name, cpu))
	return nil
}

// spread lets every thread of pid run on both CPUs again when pinning is
// on, and notes it.
func (s *session) spread(name string, pid int, why string) error {
	if !s.cfg.Pin {
		return nil
	}
	cpus := fmt.Sprintf("%d,%d", cpuOthers, cpuOurs)
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("spread %s (pid %d) over CPUs %s: %w: %s", name, pid, cpus, err, strings.TrimSpace(string(out)))
	}
	s.pinning = append(s.pinning, fmt.Sprintf("%s on CPUs %s %s", name, cpus, why))
	return nil
}

// pinOthers pins the broker, Valkey and this process to the other CPU.
func (s *session) pinOthers() error {
	for _, p := range []struct {
		name string
		pid  int
	}{{"broker", s.cfg.KafkaPID}, {"valkey", s.cfg.ValkeyPID}, {"loadgen", os.Getpid()}} {
		if err := s.pinTo(cpuOthers, p.name, p.pid); err != nil {
			return err
		}
	}
	return nil
}

// usageSnapshot is the counters of every part at one instant.
type usageSnapshot struct {
	at                                  time.Time
	api, broker, agg, valkey, self, all time.Duration
	records, batches                    float64
	applied, applyBatches               float64
}

func (s *session) snapshotUsage(ctx context.Context) (usageSnapshot, error) {
	u := usageSnapshot{at: time.Now()}
	u.api, _ = s.proc.CPUTotal(s.pids[sinkKafka])
	u.broker, _ = s.proc.CPUTotal(s.cfg.KafkaPID)
	u.agg, _ = s.proc.CPUTotal(s.pids["aggregator"])
	u.valkey, _ = s.proc.CPUTotal(s.cfg.ValkeyPID)
	u.self, _ = s.proc.CPUTotal(0)
	u.all, _ = s.proc.MachineBusy()
	api, err := scrape(ctx, s.apiMetrics)
	if err != nil {
		return u, fmt.Errorf("the api's metrics: %w", err)
	}
	// The api has a second client for RecordSales (subsystem batch).
	u.records = api["bf_api_produce_records_total"] + api["bf_api_batch_produce_records_total"]
	u.batches = api["bf_api_produce_batches_total"] + api["bf_api_batch_produce_batches_total"]
	agg, err := scrape(ctx, s.aggMetrics)
	if err != nil {
		return u, fmt.Errorf("the aggregator's metrics: %w", err)
	}
	u.applied = agg["bf_aggregator_sales_applied_total"]
	u.applyBatches = agg["bf_aggregator_batch_records_count"]
	return u, nil
}

// usageBetween turns two snapshots into a Usage.
func usageBetween(a, b usageSnapshot) report.Usage {
	w := b.at.Sub(a.at).Seconds()
	cores := func(x, y time.Duration) float64 { return (y - x).Seconds() / w }
	return report.Usage{
		WindowS:            w,
		SalesPerS:          (b.records - a.records) / w,
		ProduceBatchesPerS: (b.batches - a.batches) / w,
		AppliedPerS:        (b.applied - a.applied) / w,
		ApplyBatchesPerS:   (b.applyBatches - a.applyBatches) / w,
		APICores:           cores(a.api, b.api),
		BrokerCores:        cores(a.broker, b.broker),
		AggregatorCores:    cores(a.agg, b.agg),
		ValkeyCores:        cores(a.valkey, b.valkey),
		LoadgenCores:       cores(a.self, b.self),
		MachineCores:       cores(a.all, b.all),
	}
}

// window loads the real api with one protocol (closed loop when rate is
// 0) while the aggregator runs, and measures every part over the middle
// of the load's measured window.
func (s *session) window(ctx context.Context, name protocol.Name, rate float64) (report.Usage, error) {
	d := s.cfg.CostDuration
	done := make(chan error, 1)
	go func() {
		res, err := s.loadAt(ctx, 0, "cost", sinkKafka, name, rate, d+time.Second, s.cfg.Concurrency)
		if err == nil {
			s.record(0, "cost", sinkKafka, res)
		}
		done <- err
	}()
	var u report.Usage
	var a usageSnapshot
	err := func() error {
		if err := sleep(ctx, s.cfg.Warmup+500*time.Millisecond); err != nil {
			return err
		}
		var err error
		if a, err = s.snapshotUsage(ctx); err != nil {
			return err
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
		b, err := s.snapshotUsage(ctx)
		if err != nil {
			return err
		}
		u = usageBetween(a, b)
		return nil
	}()
	err = errors.Join(err, <-done)
	u.Protocol, u.Mode, u.Rate = string(name), "closed", rate
	if rate > 0 {
		u.Mode = "open"
	}
	return u, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// costs measures each protocol's costs per unit with the whole pipeline
// running, then one open-loop run at half the saturation of the unary
// protocol that costs the api most, against which the plan is checked.
func (s *session) costs(ctx context.Context) error {
	cfg := s.cfg
	if cfg.CostDuration <= 0 {
		return nil
	}
	if cfg.KafkaPID <= 0 || cfg.ValkeyPID <= 0 {
		s.logf("compare: no cost phase: the broker's and Valkey's pids are unknown")
		return nil
	}
	c := &report.Costs{Pinning: "none", WindowS: cfg.CostDuration.Seconds()}
	if cfg.Pin {
		c.Pinning = strings.Join(s.pinning, ", ")
	}
	if d := s.res.Drain; d != nil && d.Cores > 0 && d.RatePerS > 0 {
		c.AggregatorSalesPerCoreS = d.RatePerS / d.Cores
		c.AggregatorUSPerSale = 1e6 / c.AggregatorSalesPerCoreS
	}
	// Points for the fits: CPU µs against batches and sales (per second
	// of each window, or over the whole drain).
	var batches, sales, aggUS, valkeyUS []float64
	if d := s.res.Drain; d != nil && d.Batches > 0 && d.Seconds > 0 {
		c.DrainSalesPerBatch = float64(d.Records) / float64(d.Batches)
		batches, sales = append(batches, float64(d.Batches)), append(sales, float64(d.Records))
		aggUS, valkeyUS = append(aggUS, d.Cores*d.Seconds*1e6), append(valkeyUS, d.ValkeyCores*d.Seconds*1e6)
	}
	var produceBatches, records, brokerUS []float64
	worst := ""
	worstUS := 0.0
	// Load first, not measured: the aggregator has just drained, and the
	// broker's produce and fetch paths with a live consumer keep getting
	// cheaper for a while (JIT). With a single window of warm-up, the
	// broker's CPU per record still fell about threefold over the
	// protocols measured after it.
	warm := costWarmup * cfg.CostDuration
	s.logf("compare: cost phase: warming up for %v with the aggregator live", warm)
	for _, name := range []protocol.Name{protocol.GRPC, protocol.LegacyREST} {
		if _, err := s.loadAt(ctx, 0, "warmup", sinkKafka, name, 0, warm/2, cfg.Concurrency); err != nil {
			return fmt.Errorf("cost phase, warm-up: %w", err)
		}
	}
	for _, name := range cfg.Protocols {
		if name == protocol.GRPCConnectGo {
			continue // the anchor's own apis: not the product's costs
		}
		u, err := s.window(ctx, name, 0)
		if err != nil {
			return fmt.Errorf("cost phase, %s: %w", name, err)
		}
		p := report.ProtocolCost{Usage: u}
		p.PerUnit()
		c.Protocols = append(c.Protocols, p)
		batches, sales = append(batches, u.ApplyBatchesPerS), append(sales, u.AppliedPerS)
		aggUS, valkeyUS = append(aggUS, u.AggregatorCores*1e6), append(valkeyUS, u.ValkeyCores*1e6)
		produceBatches, records, brokerUS = append(produceBatches, u.ProduceBatchesPerS), append(records, u.SalesPerS), append(brokerUS, u.BrokerCores*1e6)
		s.logf("cost %-17s %8.0f sales/s  api %6.1f µs/sale  broker %5.1f µs/record %6.1f µs/batch (%.1f records/batch)  aggregator %5.2f µs/sale  valkey %5.2f µs/sale %6.1f µs/batch  loadgen %.2f cores",
			name, u.SalesPerS, p.APIUSPerSale, p.BrokerUSPerRecord, p.BrokerUSPerBatch, p.RecordsPerBatch, p.AggregatorUSPerSale, p.ValkeyUSPerSale, p.ValkeyUSPerBatch, u.LoadgenCores)
		if name != protocol.Batch && p.APIUSPerSale > worstUS {
			worst, worstUS = string(name), p.APIUSPerSale
		}
	}
	c.AggregatorFit = fit(batches, sales, aggUS, c.AggregatorUSPerSale)
	var valkeyDrain float64
	if d := s.res.Drain; d != nil && d.Records > 0 {
		valkeyDrain = d.ValkeyCores * d.Seconds * 1e6 / float64(d.Records)
	}
	c.ValkeyFit = fit(batches, sales, valkeyUS, valkeyDrain)
	c.BrokerFit = fit(produceBatches, records, brokerUS, 0)
	s.logf("cost fits: broker %.1f µs/produce batch + %.2f µs/record; aggregator %.1f µs/batch + %.2f µs/sale, valkey %.1f µs/batch + %.2f µs/sale; the drain's batches held %.0f sales",
		c.BrokerFit.USPerBatch, c.BrokerFit.USPerSale, c.AggregatorFit.USPerBatch, c.AggregatorFit.USPerSale, c.ValkeyFit.USPerBatch, c.ValkeyFit.USPerSale, c.DrainSalesPerBatch)
	if worst != "" {
		p, _ := c.Protocol(worst)
		rate := roundDown2(p.SalesPerS / 2)
		u, err := s.window(ctx, protocol.Name(worst), rate)
		if err != nil {
			return fmt.Errorf("cost phase, check run: %w", err)
		}
		c.Check = &u
		s.logf("cost check: %s open loop at %.0f calls/s: %.0f sales/s on %.2f cores (api %.2f, broker %.2f, aggregator %.2f, valkey %.2f)",
			worst, rate, u.SalesPerS, u.Cores(), u.APICores, u.BrokerCores, u.AggregatorCores, u.ValkeyCores)
	}
	s.res.Costs = c
	return nil
}

// fit fits CPU µs as a·batches + b·sales, falling back to perSale per sale
// when the points do not determine both.
func fit(batches, sales, us []float64, perSale float64) report.Fit {
	if a, b, ok := report.FitTwo(batches, sales, us); ok {
		return report.Fit{USPerBatch: a, USPerSale: b, OK: true}
	}
	return report.Fit{USPerSale: perSale}
}
