package histogram

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
)

// hgrmRow is one line of a percentile distribution.
type hgrmRow struct {
	value, percentile float64
	count             int64
}

// parseHgrm reads the rows and the footer's total count and max back.
func parseHgrm(t *testing.T, text string) (rows []hgrmRow, total int64, maxV float64) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "" || f[0] == "Value":
		case strings.HasPrefix(line, "#[Max"):
			// #[Max     =      100.000, Total count    =       100000]
			parts := strings.Split(strings.Trim(line, "#[]"), ",")
			m, err1 := strconv.ParseFloat(strings.TrimSpace(strings.Split(parts[0], "=")[1]), 64)
			n, err2 := strconv.ParseInt(strings.TrimSpace(strings.Split(parts[1], "=")[1]), 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("footer %q: %v %v", line, err1, err2)
			}
			maxV, total = m, n
		case strings.HasPrefix(line, "#"):
		default:
			if len(f) != 3 && len(f) != 4 {
				t.Fatalf("row %q: %d columns, want 3 or 4", line, len(f))
			}
			v, err1 := strconv.ParseFloat(f[0], 64)
			p, err2 := strconv.ParseFloat(f[1], 64)
			c, err3 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("row %q: %v %v %v", line, err1, err2, err3)
			}
			if len(f) == 4 {
				inv, err := strconv.ParseFloat(f[3], 64)
				if err != nil || math.Abs(inv-1/(1-p)) > 0.01*inv+0.01 {
					t.Errorf("row %q: 1/(1-Percentile) = %v, want %v", line, inv, 1/(1-p))
				}
			}
			rows = append(rows, hgrmRow{v, p, c})
		}
	}
	return rows, total, maxV
}

// TestWritePercentiles writes the uniform distribution 1…100000 µs and
// reads it back: every row's value is the true value at its percentile,
// within the histogram's precision, counts and percentiles never go back,
// and the last row is the 100% line with the maximum.
func TestWritePercentiles(t *testing.T) {
	t.Parallel()
	const n = 100000
	h := New()
	for v := int64(1); v <= n; v++ {
		h.Record(v * 1000) // 1 µs … 100 ms, in ns
	}
	var b bytes.Buffer
	if err := h.WritePercentiles(&b, 1e6); err != nil {
		t.Fatal(err)
	}
	rows, total, maxV := parseHgrm(t, b.String())
	if total != n || maxV != 100 {
		t.Errorf("footer total %d, max %v, want %d, 100", total, maxV, n)
	}
	if len(rows) < 30 {
		t.Fatalf("%d rows, want HdrHistogram's ~5 per halving of the tail", len(rows))
	}
	for i, r := range rows {
		// The true value in ms at this percentile of 1…n µs.
		want := math.Max(math.Ceil(r.percentile*n), 1) / 1000
		if r.value < want*(1-1.0/128)-0.001 || r.value > want*(1+1.0/128)+0.001 {
			t.Errorf("row %d: value at %.6f = %v ms, want %v within 1/128", i, r.percentile, r.value, want)
		}
		if i > 0 && (r.value < rows[i-1].value || r.percentile < rows[i-1].percentile || r.count < rows[i-1].count) {
			t.Errorf("row %d %+v goes back from %+v", i, r, rows[i-1])
		}
	}
	if last := rows[len(rows)-1]; last.percentile != 1 || last.count != n || last.value != 100 {
		t.Errorf("last row %+v, want 100 ms at 1.0 with every value", last)
	}
	if !strings.Contains(b.String(), "#[Mean    =       50.") {
		t.Errorf("footer does not give a mean of about 50 ms:\n%s", b.String()[b.Len()-200:])
	}
}

func TestWritePercentilesEmpty(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := New().WritePercentiles(&b, 1); err != nil {
		t.Fatal(err)
	}
	if rows, total, _ := parseHgrm(t, b.String()); len(rows) != 0 || total != 0 {
		t.Errorf("empty histogram: %d rows, total %d, want none", len(rows), total)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	h := New()
	for _, v := range []int64{0, 5, 300, 70000, 70001, 9e9} {
		h.Record(v)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var g Histogram
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, q := range []float64{0.1, 0.5, 0.9, 1} {
		if g.Quantile(q) != h.Quantile(q) {
			t.Errorf("Quantile(%v) after a round trip = %d, want %d", q, g.Quantile(q), h.Quantile(q))
		}
	}
	if g.Count() != h.Count() || g.Min() != h.Min() || g.Max() != h.Max() || g.Mean() != h.Mean() {
		t.Errorf("round trip: count %d min %d max %d mean %v, want %d %d %d %v", g.Count(), g.Min(), g.Max(), g.Mean(), h.Count(), h.Min(), h.Max(), h.Mean())
	}
}

func TestCDF(t *testing.T) {
	t.Parallel()
	h := New()
	for v := int64(1); v <= 1000; v++ {
		h.Record(v)
	}
	vals, fr := h.CDF()
	if len(vals) == 0 || fr[len(fr)-1] != 1 || vals[len(vals)-1] != 1000 {
		t.Fatalf("CDF ends at %v, %v, want 1000, 1", vals[len(vals)-1], fr[len(fr)-1])
	}
	for i := range vals {
		if want := float64(vals[i]) / 1000; math.Abs(fr[i]-want) > 1.0/128 {
			t.Errorf("CDF at %d = %v, want %v", vals[i], fr[i], want)
		}
	}
}
