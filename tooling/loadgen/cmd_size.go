package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"blackfriday.local/tooling/loadgen/internal/capacity"
	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/protocol"
)

// defaultCostsFile holds the committed costs make capacity plans from.
const defaultCostsFile = "docs/results/capacity/results.json"

func runSize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen size", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	in := fs.String("in", defaultCostsFile, "`FILE`: results.json of a loadgen compare run with its cost phase")
	rates := fs.String("rate", "10000,100000,1000000", "comma-separated sales/s to plan for")
	proto := fs.String("protocol", "", "the protocol whose api and broker costs to plan with (default: the unary protocol that cost the api most)")
	check := fs.Bool("check", false, "also compare the cores the costs predict with those the run's check window used")
	a := capacity.Prod
	fs.Float64Var(&a.Utilisation, "utilisation", a.Utilisation, "share of each pod's CPU limit to fill")
	fs.Float64Var(&a.APICPU, "api-cpu", a.APICPU, "CPU limit of one api pod")
	fs.Float64Var(&a.AggregatorCPU, "aggregator-cpu", a.AggregatorCPU, "CPU limit of one aggregator pod")
	fs.Float64Var(&a.BrokerCPU, "broker-cpu", a.BrokerCPU, "CPU limit of one Kafka node")
	fs.Float64Var(&a.ValkeyCPU, "valkey-cpu", a.ValkeyCPU, "cores one Valkey primary can use (one command thread)")
	fs.IntVar(&a.Replication, "replication", a.Replication, "the topic's replication factor")
	fs.IntVar(&a.MinBrokers, "min-brokers", a.MinBrokers, "fewest Kafka nodes")
	fs.IntVar(&a.MinPartitions, "min-partitions", a.MinPartitions, "fewest partitions of the sales topic")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var rs []float64
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("-rate %q: want positive sales/s, comma-separated", *rates)
		}
		rs = append(rs, v)
	}
	res, err := report.Load(*in)
	if err != nil {
		return err
	}
	c := res.Costs
	if c == nil || len(c.Protocols) == 0 {
		return fmt.Errorf("%s has no costs: run loadgen compare with its cost phase (make capacity-measure)", *in)
	}
	name := *proto
	if name == "" {
		name = costliest(c)
	} else if _, err := protocol.Parse(name); err != nil {
		return err
	}
	pc, ok := c.Protocol(name)
	if !ok {
		return fmt.Errorf("%s has no costs for protocol %q", *in, name)
	}
	batchAt := func(rate float64) float64 { return salesPerBatch(c, pc, rate) }
	costs := planCosts(c, pc, pc.RecordsPerBatch, 0)

	w := stdout
	fmt.Fprintf(w, "Capacity plan from %s: measured %s by %s, %d cores, load average %s at the start and %s at the end;\n",
		*in, res.Meta.Date, res.Meta.Command, res.Meta.Cores, res.Meta.LoadStart, res.Meta.LoadEnd)
	fmt.Fprintf(w, "pinning: %s.\n", c.Pinning)
	fmt.Fprintf(w, "Protocol %s%s; %d-s windows of the whole pipeline at saturation (%.0f sales/s).\n",
		name, map[bool]string{true: " (the unary protocol that cost the api most)", false: ""}[*proto == ""], int(c.WindowS+0.5), pc.SalesPerS)
	fmt.Fprintln(w, "\nMeasured, µs of CPU per unit, each protocol closed loop with the aggregator live:")
	fmt.Fprintln(w, "\n| protocol | sales/s | api /sale | broker /record | broker /produce batch | records /produce batch | aggregator /sale | Valkey /sale | sales /applied batch | other processes, cores |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range c.Protocols {
		fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %.0f | %.1f | %.2f | %.2f | %.0f | %.2f |\n", p.Protocol, thousands(p.SalesPerS),
			p.APIUSPerSale, p.BrokerUSPerRecord, p.BrokerUSPerBatch, p.RecordsPerBatch, p.AggregatorUSPerSale, p.ValkeyUSPerSale, p.SalesPerApplyBatch, p.Other())
	}
	fmt.Fprintln(w)
	brokerFit := "no fit (the windows did not determine one)"
	if c.BrokerFit.OK {
		brokerFit = fmt.Sprintf("%.1f/produce batch + %.2f/record", c.BrokerFit.USPerBatch, c.BrokerFit.USPerSale)
	}
	fmt.Fprintf(w, "Costs, µs of CPU: api %.1f/sale; broker %s, at %s's %.1f records/batch:\n",
		costs.APIUSPerSale, brokerFit, name, pc.RecordsPerBatch)
	fmt.Fprintf(w, "  broker %.1f/record (window alone: %.1f), ×%d replicas;\n", costs.BrokerUSPerRecord, pc.BrokerUSPerRecord, a.Replication)
	fmt.Fprintf(w, "  aggregator %.1f/applied batch + %.2f/sale (draining: %s sales per core-second), Valkey %.1f/applied batch + %.2f/sale;\n",
		c.AggregatorFit.USPerBatch, c.AggregatorFit.USPerSale, thousands(c.AggregatorSalesPerCoreS), c.ValkeyFit.USPerBatch, c.ValkeyFit.USPerSale)
	fmt.Fprintf(w, "  applied batches hold the window's %.1f sales × rate ÷ %s sales/s (its %.0f batches/s kept), at most the drain's %.0f.\n",
		pc.SalesPerApplyBatch, thousands(pc.AppliedPerS), pc.ApplyBatchesPerS, c.DrainSalesPerBatch)
	fmt.Fprintf(w, "Limits of kustomize/overlays/prod (a test checks them against its files): api pod %g CPU, aggregator pod %g, Kafka node %g,\n", a.APICPU, a.AggregatorCPU, a.BrokerCPU)
	fmt.Fprintf(w, "  Valkey primary %g (one command thread); filled to %.0f%%; ≥%d brokers, ≥%d partitions.\n", a.ValkeyCPU, a.Utilisation*100, a.MinBrokers, a.MinPartitions)
	fmt.Fprintf(w, "Each count is ⌈cores ÷ (limit × %.2f)⌉, at least 1; partitions ≥ aggregators, a multiple of the brokers.\n\n", a.Utilisation)
	fmt.Fprintln(w, "| sales/s | api cores | api pods | broker cores | brokers | partitions | sales /applied batch | aggregator cores | aggregators | Valkey cores | Valkey primaries |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		p, err := capacity.Size(r, planCosts(c, pc, pc.RecordsPerBatch, batchAt(r)), a)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| %s | %.2f | %d | %.2f | %d | %d | %.0f | %.2f | %d | %.2f | %d |\n", thousands(r),
			p.APICores, p.APIPods, p.BrokerCores, p.Brokers, p.Partitions, batchAt(r), p.AggregatorCores, p.Aggregators, p.ValkeyCores, p.ValkeyPrimaries)
	}
	if *check {
		return printCheck(w, c)
	}
	return nil
}

// salesPerBatch is the sales per applied batch the plan assumes at rate:
// the aggregator applying batches as often as in the protocol's window (so
// they grow with the rate), but never larger than when it drained a
// backlog flat out.
func salesPerBatch(c *report.Costs, p report.ProtocolCost, rate float64) float64 {
	s := c.DrainSalesPerBatch
	if p.AppliedPerS > 0 && p.SalesPerApplyBatch > 0 {
		s = p.SalesPerApplyBatch * rate / p.AppliedPerS
		if c.DrainSalesPerBatch > 0 {
			s = min(s, c.DrainSalesPerBatch)
		}
	}
	return max(s, 1)
}

// costliest is the unary protocol whose sales cost the api most.
func costliest(c *report.Costs) string {
	name, worst := "", -1.0
	for _, p := range c.Protocols {
		if p.Protocol != string(protocol.Batch) && p.APIUSPerSale > worst {
			name, worst = p.Protocol, p.APIUSPerSale
		}
	}
	if name == "" {
		name = c.Protocols[0].Protocol
	}
	return name
}

// planCosts takes the api's cost from the protocol's window, the broker's
// from its fit at produce batches of recordsPerBatch records (the window's
// own figure when the fit failed), and the aggregator's and Valkey's from
// their fits at batches of salesPerBatch sales.
func planCosts(c *report.Costs, p report.ProtocolCost, recordsPerBatch, salesPerBatch float64) capacity.Costs {
	agg := c.AggregatorFit.USPerSaleAt(salesPerBatch)
	if !c.AggregatorFit.OK && agg == 0 {
		agg = c.AggregatorUSPerSale
	}
	broker := p.BrokerUSPerRecord
	if c.BrokerFit.OK && recordsPerBatch > 0 {
		broker = c.BrokerFit.USPerSaleAt(recordsPerBatch)
	}
	return capacity.Costs{
		APIUSPerSale:        p.APIUSPerSale,
		BrokerUSPerRecord:   broker,
		AggregatorUSPerSale: agg,
		ValkeyUSPerSale:     c.ValkeyFit.USPerSaleAt(salesPerBatch),
	}
}

// printCheck compares the cores the costs predict at the check window's
// rate (its own protocol, one replica as measured, its own batch size)
// with the cores it used.
func printCheck(w io.Writer, c *report.Costs) error {
	u := c.Check
	if u == nil {
		return errors.New("-check: the results have no check window")
	}
	pc, ok := c.Protocol(u.Protocol)
	if !ok {
		return fmt.Errorf("-check: no costs for the check window's protocol %q", u.Protocol)
	}
	batch := 0.0
	if u.ApplyBatchesPerS > 0 {
		batch = u.AppliedPerS / u.ApplyBatchesPerS
	}
	records := 0.0
	if u.ProduceBatchesPerS > 0 {
		records = u.SalesPerS / u.ProduceBatchesPerS
	}
	api, broker, agg, valkey := capacity.Needs(u.SalesPerS, planCosts(c, pc, records, batch), 1)
	fmt.Fprintf(w, "\nCheck: %s open loop at %.0f calls/s sustained %.0f sales/s for %.0f s (%.1f records/produce batch, %.0f sales/batch applied);\n",
		u.Protocol, u.Rate, u.SalesPerS, u.WindowS, records, batch)
	fmt.Fprintln(w, "the costs above (one replica, as run) predict, against the cores measured:")
	pred := []float64{api, broker, agg, valkey, api + broker + agg + valkey}
	meas := []float64{u.APICores, u.BrokerCores, u.AggregatorCores, u.ValkeyCores, u.Cores()}
	fmt.Fprintln(w, "\n| cores | api | broker | aggregator | Valkey | total |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, row := range []struct {
		name string
		cell func(i int) string
	}{
		{"predicted", func(i int) string { return fmt.Sprintf("%.3f", pred[i]) }},
		{"measured", func(i int) string { return fmt.Sprintf("%.3f", meas[i]) }},
		{"predicted ÷ measured", func(i int) string {
			if meas[i] <= 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f", pred[i]/meas[i])
		}},
	} {
		cells := make([]string, len(pred))
		for i := range pred {
			cells[i] = row.cell(i)
		}
		fmt.Fprintf(w, "| %s | %s |\n", row.name, strings.Join(cells, " | "))
	}
	return nil
}

// thousands formats a whole number with comma separators.
func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
