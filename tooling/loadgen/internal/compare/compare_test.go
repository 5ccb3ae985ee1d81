package compare

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	page := `# HELP bf_aggregator_sales_applied_total Sales counted.
# TYPE bf_aggregator_sales_applied_total counter
bf_aggregator_sales_applied_total 12345
bf_aggregator_lag_records{partition="0"} 10
bf_aggregator_lag_records{partition="1"} 5
go_gc_duration_seconds{quantile="0.5"} 1.5e-05
`
	m, err := parseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if m["bf_aggregator_sales_applied_total"] != 12345 || m["bf_aggregator_lag_records"] != 15 || m["go_gc_duration_seconds"] != 1.5e-05 {
		t.Errorf("parseMetrics = %v", m)
	}
}

func TestRoundDown2(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]float64{1748: 1700, 99.9: 99, 5: 5, 123456: 120000, 0: 0} {
		if got := roundDown2(v); got != want {
			t.Errorf("roundDown2(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	xs := []string{"a", "b", "c"}
	for k, want := range map[int][]string{0: {"a", "b", "c"}, 1: {"b", "c", "a"}, 4: {"b", "c", "a"}} {
		if got := rotate(xs, k); !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", xs, k, got, want)
		}
	}
}

func TestPerSecond(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	samples := []sample{{at(0), 0}, {at(0.5), 500}, {at(1), 1000}, {at(2), 3000}, {at(3), 4000}}
	lo, hi := perSecond(samples, 1333)
	if lo != 1000 || hi != 2000 {
		t.Errorf("perSecond = %v, %v, want 1000, 2000", lo, hi)
	}
	if lo, hi := perSecond(samples[:3], 1000); lo != 1000 || hi != 1000 {
		t.Errorf("perSecond(one window) = %v, %v, want the overall 1000", lo, hi)
	}
}

func TestCheckPin(t *testing.T) {
	t.Parallel()
	if err := (&Config{}).checkPin(); err != nil {
		t.Errorf("checkPin without -pin = %v, want nil", err)
	}
	// Without the broker's and Valkey's pids there is nothing to pin
	// (on a one-CPU machine the CPU count is refused first).
	err := (&Config{Pin: true}).checkPin()
	if err == nil || !strings.Contains(err.Error(), "-pin") {
		t.Errorf("checkPin without pids = %v, want a -pin error", err)
	}
}
