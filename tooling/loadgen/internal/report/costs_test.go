package report

import (
	"math"
	"testing"
)

func TestFitTwo(t *testing.T) {
	t.Parallel()
	// y = 300·batches + 0.4·sales, at batch sizes far apart.
	batches := []float64{10, 200, 1000, 5}
	sales := []float64{400000, 4000, 2000, 300000}
	var y []float64
	for i := range batches {
		y = append(y, 300*batches[i]+0.4*sales[i])
	}
	a, b, ok := FitTwo(batches, sales, y)
	if !ok || math.Abs(a-300) > 1e-6 || math.Abs(b-0.4) > 1e-9 {
		t.Errorf("FitTwo = %v, %v, %v, want 300, 0.4, true", a, b, ok)
	}
	// Proportional points determine neither.
	if _, _, ok := FitTwo([]float64{1, 2}, []float64{10, 20}, []float64{5, 10}); ok {
		t.Errorf("FitTwo of proportional points ok, want not")
	}
	// A negative coefficient is noise, not a cost.
	if _, _, ok := FitTwo([]float64{1, 0}, []float64{0, 1}, []float64{-1, 1}); ok {
		t.Errorf("FitTwo with a negative coefficient ok, want not")
	}
}

func TestFitUSPerSaleAt(t *testing.T) {
	t.Parallel()
	f := Fit{USPerBatch: 300, USPerSale: 0.4, OK: true}
	if got := f.USPerSaleAt(100); math.Abs(got-3.4) > 1e-9 {
		t.Errorf("USPerSaleAt(100) = %v, want 3.4", got)
	}
	if got := f.USPerSaleAt(0); got != 0.4 {
		t.Errorf("USPerSaleAt(0) = %v, want 0.4", got)
	}
}

func TestPerUnit(t *testing.T) {
	t.Parallel()
	p := ProtocolCost{Usage: Usage{SalesPerS: 10000, ProduceBatchesPerS: 2500, AppliedPerS: 10000, ApplyBatchesPerS: 100,
		APICores: 1, BrokerCores: 0.15, AggregatorCores: 0.05, ValkeyCores: 0.04}}
	p.PerUnit()
	if p.APIUSPerSale != 100 || math.Abs(p.BrokerUSPerRecord-15) > 1e-9 || math.Abs(p.BrokerUSPerBatch-60) > 1e-9 ||
		p.RecordsPerBatch != 4 || math.Abs(p.ValkeyUSPerBatch-400) > 1e-9 || p.SalesPerApplyBatch != 100 {
		t.Errorf("PerUnit = %+v", p)
	}
}
