package report

// Costs are CPU costs per unit of work, measured in a steady phase of a
// comparison in which every part runs at once: the real api loaded closed
// loop with one protocol, the broker taking its records and serving the
// aggregator's fetches, the aggregator folding them live into Valkey. CPU
// time comes from /proc/PID/stat over the window; units come from the api's
// producer counters (records and batches acknowledged by the broker) and
// the aggregator's (sales applied, partition batches applied to Valkey).
type Costs struct {
	// Pinning says which processes ran on which CPU, or "none".
	Pinning string `json:"pinning"`
	// WindowS is each measured window, in seconds.
	WindowS float64 `json:"window_s"`
	// Protocols holds one closed-loop run per protocol.
	Protocols []ProtocolCost `json:"protocols"`
	// AggregatorSalesPerCoreS is the aggregator's sales applied per second
	// of its CPU while draining the backlog (big batches), and
	// AggregatorUSPerSale its inverse in µs.
	AggregatorSalesPerCoreS float64 `json:"aggregator_sales_per_core_s"`
	AggregatorUSPerSale     float64 `json:"aggregator_us_per_sale"`
	// DrainSalesPerBatch is the sales per partition batch the aggregator
	// applied while draining: the batch size it reaches when busy.
	DrainSalesPerBatch float64 `json:"drain_sales_per_batch"`
	// AggregatorFit and ValkeyFit fit each one's CPU as
	// a·batches + b·sales by least squares over every window above and
	// the drain, whose batch sizes differ widely.
	AggregatorFit Fit `json:"aggregator_fit"`
	ValkeyFit     Fit `json:"valkey_fit"`
	// BrokerFit fits the broker's CPU as a·produce batches + b·records
	// over the windows: unary protocols give batches of a few records,
	// RecordSales batches of hundreds.
	BrokerFit Fit `json:"broker_fit"`
	// Check is a run at about half of one protocol's saturation, open
	// loop: the rate the plan's prediction is checked against.
	Check *Usage `json:"check,omitempty"`
}

// Fit is a CPU cost per partition batch applied plus one per sale, in µs.
// OK is false when the points did not determine both; then USPerSale is
// the drain's CPU per sale and USPerBatch 0.
type Fit struct {
	USPerBatch float64 `json:"us_per_batch"`
	USPerSale  float64 `json:"us_per_sale"`
	OK         bool    `json:"ok"`
}

// USPerSaleAt is the cost per sale when batches hold salesPerBatch sales.
func (f Fit) USPerSaleAt(salesPerBatch float64) float64 {
	if salesPerBatch <= 0 {
		return f.USPerSale
	}
	return f.USPerSale + f.USPerBatch/salesPerBatch
}

// Usage is what one window measured: rates and the cores each process used.
type Usage struct {
	Protocol string `json:"protocol"`
	// Mode is "closed" or "open"; Rate the open-loop calls/s.
	Mode    string  `json:"mode"`
	Rate    float64 `json:"rate_calls_per_s,omitempty"`
	WindowS float64 `json:"window_s"`
	// SalesPerS counts the records the api's producer had acknowledged,
	// and ProduceBatchesPerS the batches they went in.
	SalesPerS          float64 `json:"sales_per_s"`
	ProduceBatchesPerS float64 `json:"produce_batches_per_s"`
	// AppliedPerS and ApplyBatchesPerS are the aggregator's sales and
	// partition batches applied to Valkey.
	AppliedPerS      float64 `json:"applied_per_s"`
	ApplyBatchesPerS float64 `json:"apply_batches_per_s"`
	APICores         float64 `json:"api_cores"`
	BrokerCores      float64 `json:"broker_cores"`
	AggregatorCores  float64 `json:"aggregator_cores"`
	ValkeyCores      float64 `json:"valkey_cores"`
	LoadgenCores     float64 `json:"loadgen_cores"`
	MachineCores     float64 `json:"machine_cores"`
}

// Cores is what the pipeline's four parts used together.
func (u Usage) Cores() float64 {
	return u.APICores + u.BrokerCores + u.AggregatorCores + u.ValkeyCores
}

// Other is the cores the rest of the machine used: on a shared machine,
// the load that skews the window.
func (u Usage) Other() float64 {
	return max(0, u.MachineCores-u.Cores()-u.LoadgenCores)
}

// ProtocolCost is one protocol's window and the costs per unit it gives.
type ProtocolCost struct {
	Usage
	APIUSPerSale        float64 `json:"api_us_per_sale"`
	BrokerUSPerRecord   float64 `json:"broker_us_per_record"`
	BrokerUSPerBatch    float64 `json:"broker_us_per_batch"`
	RecordsPerBatch     float64 `json:"records_per_produce_batch"`
	AggregatorUSPerSale float64 `json:"aggregator_us_per_sale"`
	ValkeyUSPerSale     float64 `json:"valkey_us_per_sale"`
	ValkeyUSPerBatch    float64 `json:"valkey_us_per_batch"`
	SalesPerApplyBatch  float64 `json:"sales_per_apply_batch"`
}

// PerUnit fills in the costs per unit from the usage.
func (p *ProtocolCost) PerUnit() {
	per := func(cores, perS float64) float64 {
		if perS <= 0 {
			return 0
		}
		return cores / perS * 1e6
	}
	p.APIUSPerSale = per(p.APICores, p.SalesPerS)
	p.BrokerUSPerRecord = per(p.BrokerCores, p.SalesPerS)
	p.BrokerUSPerBatch = per(p.BrokerCores, p.ProduceBatchesPerS)
	p.AggregatorUSPerSale = per(p.AggregatorCores, p.AppliedPerS)
	p.ValkeyUSPerSale = per(p.ValkeyCores, p.AppliedPerS)
	p.ValkeyUSPerBatch = per(p.ValkeyCores, p.ApplyBatchesPerS)
	if p.ProduceBatchesPerS > 0 {
		p.RecordsPerBatch = p.SalesPerS / p.ProduceBatchesPerS
	}
	if p.ApplyBatchesPerS > 0 {
		p.SalesPerApplyBatch = p.AppliedPerS / p.ApplyBatchesPerS
	}
}

// Protocol returns the cost of the protocol named, if measured.
func (c *Costs) Protocol(name string) (ProtocolCost, bool) {
	for _, p := range c.Protocols {
		if p.Protocol == name {
			return p, true
		}
	}
	return ProtocolCost{}, false
}

// FitTwo fits y ≈ a·x1 + b·x2 by least squares (no intercept). It returns
// ok false when the points do not determine both, or when either comes out
// negative (noise larger than the effect).
func FitTwo(x1, x2, y []float64) (a, b float64, ok bool) {
	var s11, s12, s22, s1y, s2y float64
	for i := range y {
		s11 += x1[i] * x1[i]
		s12 += x1[i] * x2[i]
		s22 += x2[i] * x2[i]
		s1y += x1[i] * y[i]
		s2y += x2[i] * y[i]
	}
	det := s11*s22 - s12*s12
	if det <= 1e-12*s11*s22 || det == 0 {
		return 0, 0, false
	}
	a = (s1y*s22 - s2y*s12) / det
	b = (s2y*s11 - s1y*s12) / det
	return a, b, a >= 0 && b >= 0
}
