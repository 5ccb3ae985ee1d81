package capacity

import (
	"testing"
)

func TestCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		cores, unit, util float64
		want              int
	}{
		{"none still needs one", 0, 2, 0.6, 1},
		{"exact fit stays one", 1.2, 2, 0.6, 1},
		{"just over rounds up", 1.2001, 2, 0.6, 2},
		{"many", 103.2, 2, 0.6, 86},
		{"no limit known", 5, 0, 0.6, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Count(tt.cores, tt.unit, tt.util); got != tt.want {
				t.Errorf("Count(%v, %v, %v) = %d, want %d", tt.cores, tt.unit, tt.util, got, tt.want)
			}
		})
	}
}

func TestPartitions(t *testing.T) {
	t.Parallel()
	tests := []struct{ min, aggregators, brokers, want int }{
		{12, 1, 3, 12},
		{12, 13, 3, 15}, // one per aggregator, then a multiple of 3
		{12, 2, 5, 15},  // 12 rounded up to a multiple of 5
		{12, 40, 20, 40},
		{0, 0, 0, 1},
	}
	for _, tt := range tests {
		got := Partitions(tt.min, tt.aggregators, tt.brokers)
		if got != tt.want {
			t.Errorf("Partitions(%d, %d, %d) = %d, want %d", tt.min, tt.aggregators, tt.brokers, got, tt.want)
		}
	}
}

// TestSizeInvariants plans over a range of rates and costs and checks what
// every plan must hold, whatever the numbers.
func TestSizeInvariants(t *testing.T) {
	t.Parallel()
	costs := []Costs{
		{APIUSPerSale: 112, BrokerUSPerRecord: 15.5, AggregatorUSPerSale: 2.6, ValkeyUSPerSale: 1.2},
		{APIUSPerSale: 1, BrokerUSPerRecord: 1, AggregatorUSPerSale: 500, ValkeyUSPerSale: 0.1},
	}
	for _, c := range costs {
		prev := Plan{}
		for _, rate := range []float64{1, 10, 1e3, 1e4, 1e5, 1e6, 1e7} {
			p, err := Size(rate, c, Prod)
			if err != nil {
				t.Fatal(err)
			}
			if p.Partitions < p.Aggregators {
				t.Errorf("Size(%v) = %d partitions for %d aggregators, want at least one each", rate, p.Partitions, p.Aggregators)
			}
			if p.Partitions%p.Brokers != 0 || p.Partitions < Prod.MinPartitions {
				t.Errorf("Size(%v) = %d partitions over %d brokers, want a multiple, at least %d", rate, p.Partitions, p.Brokers, Prod.MinPartitions)
			}
			if p.Brokers < Prod.Replication {
				t.Errorf("Size(%v) = %d brokers, want at least the replication factor %d", rate, p.Brokers, Prod.Replication)
			}
			for part, n := range map[string]struct {
				count       int
				cores, unit float64
			}{
				"api":        {p.APIPods, p.APICores, Prod.APICPU},
				"brokers":    {p.Brokers, p.BrokerCores, Prod.BrokerCPU},
				"aggregator": {p.Aggregators, p.AggregatorCores, Prod.AggregatorCPU},
				"valkey":     {p.ValkeyPrimaries, p.ValkeyCores, Prod.ValkeyCPU},
			} {
				if float64(n.count)*n.unit*Prod.Utilisation < n.cores-1e-9 {
					t.Errorf("Size(%v): %d %s hold %.2f cores at %.0f%%, want ≥ %.2f", rate, n.count, part, float64(n.count)*n.unit*Prod.Utilisation, Prod.Utilisation*100, n.cores)
				}
			}
			if p.APIPods < prev.APIPods || p.Brokers < prev.Brokers || p.Partitions < prev.Partitions || p.Aggregators < prev.Aggregators {
				t.Errorf("Size(%v) = %+v, fewer of something than at a lower rate %+v", rate, p, prev)
			}
			prev = p
		}
	}
}

func TestSizeArithmetic(t *testing.T) {
	t.Parallel()
	c := Costs{APIUSPerSale: 100, BrokerUSPerRecord: 10, AggregatorUSPerSale: 3, ValkeyUSPerSale: 1}
	p, err := Size(1e6, c, Prod)
	if err != nil {
		t.Fatal(err)
	}
	// api: 1e6 × 100 µs = 100 cores; ÷ (2 × 0.6) = 83.3 → 84 pods.
	// broker: 1e6 × 10 µs × 3 replicas = 30 cores; ÷ 2.4 = 12.5 → 13.
	// aggregator: 3 cores ÷ 1.2 = 2.5 → 3; Valkey: 1 core ÷ 0.6 → 2.
	// partitions: max(12, 3, 13) = 13, already a multiple of 13.
	want := Plan{Rate: 1e6, APICores: 100, BrokerCores: 30, AggregatorCores: 3, ValkeyCores: 1,
		APIPods: 84, Brokers: 13, Partitions: 13, Aggregators: 3, ValkeyPrimaries: 2}
	if p != want {
		t.Errorf("Size(1e6) = %+v, want %+v", p, want)
	}
	for _, bad := range []float64{0, -1} {
		if _, err := Size(bad, c, Prod); err == nil {
			t.Errorf("Size(%v) succeeded, want an error", bad)
		}
	}
	a := Prod
	a.Utilisation = 1.5
	if _, err := Size(1, c, a); err == nil {
		t.Errorf("Size with utilisation 1.5 succeeded, want an error")
	}
}
