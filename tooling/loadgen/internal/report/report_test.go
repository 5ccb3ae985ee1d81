package report

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blackfriday.local/tooling/loadgen/internal/load"
)

func TestStatOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want Stat
	}{
		{[]float64{3, 1, 2}, Stat{2, 1, 3, 3}},
		{[]float64{4, 1, 2, 3}, Stat{2.5, 1, 4, 4}},
		{[]float64{5}, Stat{5, 5, 5, 1}},
		{[]float64{math.NaN(), 7, math.Inf(1)}, Stat{7, 7, 7, 1}},
	}
	for _, tt := range tests {
		if got := StatOf(tt.in); got != tt.want {
			t.Errorf("StatOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if StatOf(nil).Valid() {
		t.Error("StatOf(nil).Valid() = true, want false")
	}
}

const benchOutput = `goos: linux
BenchmarkRecordSale/grpc/kafka-2         	    2000	    468889 ns/op	   28741 B/op	     292 allocs/op
BenchmarkRecordSale/grpc/broker-2        	    2000	    900000 ns/op	   20000 B/op	     250 allocs/op
BenchmarkRecordSale/grpc/noop-2          	    2000	    306868 ns/op	   23641 B/op	     224 allocs/op
BenchmarkRecordSale/grpc/noop-2          	    2000	    300000 ns/op	   23641 B/op	     226 allocs/op
BenchmarkRecordSale/connect-json/kafka-2 	    2000	    400000 ns/op	   28741 B/op	     300 allocs/op
BenchmarkRecordSale/connect-json/noop-2  	    2000	    200000 ns/op	   23641 B/op	     250 allocs/op
BenchmarkRecordSales/grpc/kafka-2        	     100	  10000000 ns/op	       500.0 sales/op	 1000000 B/op	   20000 allocs/op
PASS
`

func TestBench(t *testing.T) {
	t.Parallel()
	lines := ParseBench(benchOutput)
	if len(lines) != 7 {
		t.Fatalf("ParseBench found %d lines, want 7", len(lines))
	}
	if l := lines[6]; l.Metrics["sales/op"] != 500 || l.AllocsPerOp != 20000 || l.NsPerOp != 1e7 {
		t.Errorf("batch line = %+v", l)
	}
	allocs := BenchAllocs(lines)
	if len(allocs) != 2 {
		t.Fatalf("BenchAllocs = %+v, want grpc and connect-json", allocs)
	}
	// gRPC had a real broker: it wins over kfake.
	if a := allocs[0]; a.Protocol != "grpc" || a.Backend != "broker" || a.Diff.Median != 25 {
		t.Errorf("grpc = %+v, want broker 250 - noop 225 = 25", a)
	}
	if a := allocs[1]; a.Backend != "kafka" || a.Diff.Median != 50 {
		t.Errorf("connect-json = %+v, want kafka 300 - noop 250 = 50", a)
	}
}

// fixture is a small comparison: two repetitions of three protocols.
func fixture() *Results {
	r := &Results{
		Version: 1,
		Meta:    Meta{Date: "2026-01-01 00:00 UTC", Command: "make compare", CPU: "test CPU", Cores: 2, Go: "go1.26", Kafka: "4.3.1"},
		Settings: Settings{Reps: 2, DurationS: 1, Concurrency: 8, Batch: 500, OpenRate: 100, EfficiencyLoad: 0.8,
			Protocols: []string{"connect-json", "grpc", "batch"}, Sweep: []int{4}},
		Drain:        &Drain{Records: 1000, Seconds: 1, RatePerS: 90000, MinPerS: 80000, MaxPerS: 100000},
		Freshness:    &Freshness{Protocol: "grpc", LoadRate: 50, SaturationRate: 100, Samples: 100, PollMS: 5, P50MS: 10, P99MS: 40, MaxMS: 60},
		Verification: Verification{OK: true, Sales: 1000},
		Bench:        ParseBench(benchOutput),
	}
	add := func(rep int, phase, sink, proto string, batch int, sales, p99 float64) {
		res := &load.Result{Protocol: proto, Batch: batch, SalesPerS: sales, CallsPerS: sales / float64(batch), Concurrency: 8,
			Latency: load.Latency{P50: p99 / 4, P90: p99 / 2, P99: p99, P999: p99 * 2},
			Wire:    load.Wire{RequestBytesPerCall: 100 * float64(batch), ResponseBytesPerCall: 50},
			CPU:     load.CPU{ServerUSPerCall: 100, Extra: map[string]float64{"kafka": 30}}, Errors: map[string]int64{}}
		if proto == "grpc" {
			res.Wire.RequestBytesPerCall = 50
		}
		if sink == "kafka" && proto == "connect-json" {
			res.CPU.ServerUSPerCall = 130 // 1.3× the no-op's at saturation
			switch phase {
			case "efficiency":
				res.CPU.ServerUSPerCall = 120 // 1.2× near saturation, at one rate
			case "open":
				res.CPU.ServerUSPerCall = 140 // 1.4× at a light load
			}
		}
		r.Runs = append(r.Runs, Run{Rep: rep, Phase: phase, Sink: sink, Result: res})
	}
	for rep := 1; rep <= 2; rep++ {
		k := float64(rep)
		add(rep, "closed", "kafka", "connect-json", 1, 1000*k, 0)
		add(rep, "closed", "discard", "connect-json", 1, 2000*k, 0)
		add(rep, "closed", "kafka", "grpc", 1, 1500*k, 0)
		add(rep, "closed", "discard", "grpc", 1, 1600*k, 0)
		add(rep, "closed", "kafka", "batch", 500, 45000*k, 0)
		add(rep, "closed", "discard", "batch", 500, 50000*k, 0)
		add(rep, "open", "kafka", "connect-json", 1, 100, 8*k)
		add(rep, "open", "kafka", "grpc", 1, 100, 4*k)
		add(rep, "efficiency", "kafka", "connect-json", 1, 800*k, 0)
		add(rep, "efficiency", "discard", "connect-json", 1, 800*k, 0)
		add(rep, "efficiency", "kafka", "grpc", 1, 1200*k, 0)
		add(rep, "efficiency", "discard", "grpc", 1, 1200*k, 0)
		add(rep, "open", "discard", "connect-json", 1, 100, 2*k)
		add(rep, "open", "discard", "grpc", 1, 100, 1*k)
	}
	add(0, "sweep", "kafka", "grpc", 1, 700, 0)
	add(0, "sweep", "discard", "grpc", 1, 900, 0)
	for _, run := range r.Runs[len(r.Runs)-2:] {
		run.Result.Concurrency = 4
	}
	return r
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	s := Summarize(fixture())
	if len(s.Protocols) != 3 {
		t.Fatalf("%d protocols, want 3", len(s.Protocols))
	}
	cj := s.Protocols[0]
	if cj.Real != (Stat{1500, 1000, 2000, 2}) || cj.Efficiency != (Stat{0.5, 0.5, 0.5, 2}) || cj.P99 != (Stat{12, 8, 16, 2}) ||
		cj.CPURatioEff != (Stat{1.2, 1.2, 1.2, 2}) || cj.CPURatioOpen != (Stat{1.4, 1.4, 1.4, 2}) || cj.CPURatio != (Stat{1.3, 1.3, 1.3, 2}) {
		t.Errorf("connect-json = %+v", cj)
	}
	var grpcVsJSON *Ratio
	for i := range s.Ratios {
		if s.Ratios[i].A == "grpc" && s.Ratios[i].B == "connect-json" {
			grpcVsJSON = &s.Ratios[i]
		}
	}
	if grpcVsJSON == nil || grpcVsJSON.Throughput.Median != 1.5 || grpcVsJSON.P99.Median != 0.5 || grpcVsJSON.ReqBytes.Median != 0.5 {
		t.Errorf("gRPC ÷ Connect JSON = %+v, want throughput 1.5, p99 0.5, request bytes 0.5", grpcVsJSON)
	}
	pass := map[string]bool{}
	for _, tg := range s.Targets {
		if tg.Pass != nil {
			pass[tg.Name] = *tg.Pass
		}
	}
	for name, want := range map[string]bool{
		"Durable api CPU per call ÷ no-op, connect-json": true, // 1.2× at one rate
		"Durable api CPU per call ÷ no-op, grpc":         true, // 1×
		"Durable ingest efficiency, connect-json":        false,
		"Durable ingest efficiency, grpc":                true,
		"Batch ingest, RecordSales ÷ unary gRPC":         true, // 30×
		"Aggregation keeps up, drain ÷ best ingest":      false,
		"Freshness p99, ack → visible in GetSummary":     true,
		"Overhead, allocations per RecordSale − no-op":   false, // connect-json 50
	} {
		if got, ok := pass[name]; !ok || got != want {
			t.Errorf("target %q passed = %v (measured %v), want %v", name, got, ok, want)
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(fixture(), dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make compare", "test CPU", "## Targets", "**missed**", "gRPC ÷ Connect JSON (HTTP/1.1)",
		"1,500 [1,000–2,000]", "throughput.svg", "latency.svg", "bytes.svg", "## In-process benchmarks", "| 4 | 700 | 900 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("%s does not contain %q", MarkdownFile, want)
		}
	}
	for _, name := range []string{ThroughputFile, LatencyFile, BytesFile} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(f)
		rects := 0
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s is not well-formed XML: %v", name, err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
				rects++
			}
		}
		f.Close()
		if rects < 5 {
			t.Errorf("%s has %d rects, want bars", name, rects)
		}
	}
	back, err := Load(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != len(fixture().Runs) || back.Meta.Command != "make compare" {
		t.Errorf("results.json round trip lost data: %d runs", len(back.Runs))
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{1234567: "1,234,567", 123.4: "123", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123", 0: "0", -2500: "-2,500"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtStat(Stat{2, 1, 3, 3}); got != "2.00 [1.00–3.00]" {
		t.Errorf("fmtStat = %q", got)
	}
}
