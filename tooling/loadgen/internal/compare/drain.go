package compare

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/stack/process"
)

// sample is the aggregator's applied count at one instant.
type sample struct {
	at      time.Time
	applied float64
}

// drain starts the aggregator on the backlog the ingest runs left and
// measures how fast it applies it. The aggregator keeps running for the
// freshness probe.
func (s *session) drain(ctx context.Context) error {
	// Every run on the real api wrote its acknowledged sales, warm-ups
	// included: the backlog is what the files hold.
	acked, unknown, err := s.truthCounts()
	if err != nil {
		return err
	}
	port, err := process.FreePort(0)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	began := time.Now()
	p, err := startService("aggregator", s.cfg.AggregatorBin, s.cfg.WorkDir, append(slices.Clone(s.env), "HTTP_ADDR="+addr))
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.pids["aggregator"] = p.Pid()
	if err := p.waitHTTP(ctx, "http://"+addr+"/healthz", 30*time.Second); err != nil {
		return err
	}
	s.logf("compare: aggregator started (pid %d), draining a backlog of %d acknowledged sales (%d of unknown fate)", p.Pid(), acked, unknown)

	metricsURL := "http://" + addr + "/metrics"
	s.aggMetrics = metricsURL
	if err := s.pinTo(cpuOurs, "aggregator", p.Pid()); err != nil {
		return err
	}
	var samples []sample
	var cpuFirst, cpuLast, valkeyFirst, valkeyLast time.Duration
	var batchesFirst, batchesLast float64
	deadline := time.Now().Add(5 * time.Minute)
	stableSince := time.Time{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drain: the aggregator applied %.0f of %d sales within 5 minutes", last(samples).applied, acked)
		}
		m, err := scrape(ctx, metricsURL)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		now := time.Now()
		cur := sample{at: now, applied: m["bf_aggregator_sales_applied_total"]}
		cpu, _ := s.proc.CPUTotal(p.Pid())
		var vk time.Duration
		if s.cfg.ValkeyPID > 0 {
			vk, _ = s.proc.CPUTotal(s.cfg.ValkeyPID)
		}
		if cur.applied > 0 {
			if len(samples) == 0 || samples[len(samples)-1].applied < cur.applied {
				batches := m["bf_aggregator_batch_records_count"]
				if len(samples) == 0 {
					cpuFirst, valkeyFirst, batchesFirst = cpu, vk, batches
				}
				samples = append(samples, cur)
				cpuLast, valkeyLast, batchesLast = cpu, vk, batches
				stableSince = now
			}
		}
		done := cur.applied >= float64(acked) && (unknown == 0 || now.Sub(stableSince) > 2*time.Second)
		if done && cur.applied > float64(acked+unknown) {
			return fmt.Errorf("drain: the aggregator applied %.0f sales, more than the %d acknowledged and %d unknown", cur.applied, acked, unknown)
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	first, end := samples[0], last(samples)
	elapsed := end.at.Sub(first.at).Seconds()
	d := &report.Drain{
		Records:  int64(end.applied),
		Seconds:  math.Round(elapsed*100) / 100,
		StartupS: math.Round(first.at.Sub(began).Seconds()*100) / 100,
		Batches:  int64(batchesLast - batchesFirst),
	}
	if elapsed > 0 {
		d.RatePerS = (end.applied - first.applied) / elapsed
		d.Cores = (cpuLast - cpuFirst).Seconds() / elapsed
		if s.cfg.ValkeyPID > 0 {
			d.ValkeyCores = (valkeyLast - valkeyFirst).Seconds() / elapsed
		}
	}
	d.MinPerS, d.MaxPerS = perSecond(samples, d.RatePerS)
	s.res.Drain = d
	s.logf("compare: drained %d records in %.2f s after a %.2f s start: %.0f records/s (one-second rates %.0f–%.0f), aggregator %.2f cores",
		d.Records, d.Seconds, d.StartupS, d.RatePerS, d.MinPerS, d.MaxPerS, d.Cores)
	return nil
}

func last(s []sample) sample {
	if len(s) == 0 {
		return sample{}
	}
	return s[len(s)-1]
}

// perSecond returns the slowest and fastest rates over consecutive windows
// of at least a second; with less than two such windows both are overall.
func perSecond(samples []sample, overall float64) (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	windows := 0
	i := 0
	for j := 1; j < len(samples); j++ {
		dt := samples[j].at.Sub(samples[i].at).Seconds()
		if dt < 1 {
			continue
		}
		r := (samples[j].applied - samples[i].applied) / dt
		lo, hi = math.Min(lo, r), math.Max(hi, r)
		windows++
		i = j
	}
	if windows < 2 {
		return overall, overall
	}
	return lo, hi
}

// truthCounts counts the acknowledged and unknown sales in every
// ground-truth file so far.
func (s *session) truthCounts() (acked, unknown int64, err error) {
	t, err := loadTruth(s.truthFiles())
	if err != nil {
		return 0, 0, err
	}
	return t.Total.Sales, t.Unknown, nil
}
