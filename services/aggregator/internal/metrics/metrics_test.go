package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := New()
	m.Applied(0, 1000, 985, 10, 5, 3*time.Millisecond)
	m.Applied(1, 500, 500, 0, 0, time.Millisecond)
	m.Conflict(1)
	m.Lag(0, 42)
	m.Lag(1, 7)
	m.Released([]int32{1})
	m.LogReset(2, "truncated", 40)
	m.LogReset(3, "truncated", 2)
	m.Refused(4)
	m.Refused(4)
	m.RefusedPartitions(1)

	body := scrape(t, m)
	for _, want := range []string{
		`bf_aggregator_sales_applied_total 1485`,
		`bf_aggregator_duplicates_total 5`,
		`bf_aggregator_dead_letters_total 10`,
		`bf_aggregator_apply_conflicts_total 1`,
		`bf_aggregator_batch_records_count 2`,
		`bf_aggregator_batch_records_sum 1500`,
		`bf_aggregator_apply_duration_seconds_count 2`,
		`bf_aggregator_lag_records{partition="0"} 42`,
		`bf_aggregator_log_resets_total{reason="truncated"} 2`,
		`bf_aggregator_log_resets_total{reason="recreated"} 0`,
		`bf_aggregator_log_reset_offsets_total{reason="truncated"} 42`,
		`bf_aggregator_refused_batches_total 2`,
		`bf_aggregator_refused_partitions 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, `bf_aggregator_lag_records{partition="1"}`) {
		t.Errorf("scrape still reports the lag of released partition 1")
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestHealth(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ready, valkeyUp bool
		want            []string
	}{
		{true, true, []string{"bf_aggregator_ready 1", "bf_aggregator_valkey_up 1"}},
		{false, true, []string{"bf_aggregator_ready 0", "bf_aggregator_valkey_up 1"}},
		{true, false, []string{"bf_aggregator_ready 1", "bf_aggregator_valkey_up 0"}},
		{false, false, []string{"bf_aggregator_ready 0", "bf_aggregator_valkey_up 0"}},
	} {
		t.Run(fmt.Sprintf("ready=%t,valkey=%t", tt.ready, tt.valkeyUp), func(t *testing.T) {
			t.Parallel()
			m := New()
			m.Health(func() bool { return tt.ready }, func() bool { return tt.valkeyUp })
			body := scrape(t, m)
			for _, want := range tt.want {
				if !strings.Contains(body, want+"\n") {
					t.Errorf("scrape lacks %q", want)
				}
			}
		})
	}
}
