package report

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"blackfriday.local/contract/record"
	"blackfriday.local/tooling/loadgen/histogram"
	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/protocol"
)

// dataResults is a small comparison: two protocols closed loop on both
// sinks over two repetitions, gRPC open loop and in the sweep, each run with
// a latency histogram and three seconds.
func dataResults() *Results {
	r := &Results{Version: 1}
	add := func(rep int, phase, sink string, p protocol.Name, callers int, base int64) {
		h := histogram.New()
		for v := int64(1); v <= 1000; v++ {
			h.Record(base + v*1000)
		}
		x := &load.Result{Protocol: string(p), Mode: "closed", Concurrency: callers, Calls: 1000, OKCalls: 998,
			CallsPerS: float64(callers) * 10, Errors: map[string]int64{"unavailable": 2}, Histogram: h,
			Latency: load.Latency{P50: 0.5, P99: 0.99}, Wire: load.Wire{RequestBytesPerCall: 53, ResponseBytesPerCall: 76},
			CPU: load.CPU{ClientUSPerCall: 70, ServerUSPerCall: 110, ServerPID: 1, Extra: map[string]float64{"kafka": 30}}}
		if phase == "open" {
			x.Mode, x.Rate = "open", 500
		}
		for s := range 3 {
			x.Seconds = append(x.Seconds, load.Second{Second: s, Calls: 333, Errors: int64(s), P50: 0.5, P99: 0.9, Max: 1})
		}
		r.Runs = append(r.Runs, Run{Rep: rep, Phase: phase, Sink: sink, Result: x})
	}
	for rep := 1; rep <= 2; rep++ {
		for _, p := range []protocol.Name{protocol.ConnectJSON, protocol.GRPC} {
			for _, sink := range []string{"discard", "kafka"} {
				add(rep, "closed", sink, p, 128, int64(rep)*1000)
			}
			add(rep, "open", "kafka", p, 512, 0)
		}
	}
	for _, c := range []int{32, 512} {
		for _, sink := range []string{"discard", "kafka"} {
			add(1, "sweep", sink, protocol.GRPC, c, 0)
		}
	}
	return r
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	return rows
}

func TestCSV(t *testing.T) {
	t.Parallel()
	r := dataResults()
	rows := readCSV(t, CSV(r))
	if got := strings.Join(rows[0], ","); got != strings.Join(CSVHeader, ",") {
		t.Fatalf("header = %s, want %s", got, strings.Join(CSVHeader, ","))
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	for _, c := range []string{"protocol", "sink", "phase", "callers", "repetition", "metric", "value", "unit"} {
		if _, ok := col[c]; !ok {
			t.Errorf("no %s column", c)
		}
	}
	// Every metric (all apply here) and one row per error code, per run.
	if want := 1 + len(r.Runs)*(len(metrics)+1); len(rows) != want {
		t.Errorf("%d rows, want %d", len(rows), want)
	}
	seen := map[string]bool{}
	for _, row := range rows[1:] {
		if len(row) != len(CSVHeader) {
			t.Fatalf("row %v: %d columns, want %d", row, len(row), len(CSVHeader))
		}
		if _, err := protocol.Parse(row[col["protocol"]]); err != nil {
			t.Errorf("protocol %q is no loadgen protocol", row[col["protocol"]])
		}
		if ip := row[col["ingest_protocol"]]; record.ParseProtocol([]byte(ip)) == record.ProtocolUnknown {
			t.Errorf("ingest_protocol %q is no record header value", ip)
		}
		if srv, p := row[col["server"]], row[col["protocol"]]; srv != protocol.Name(p).Server() || (srv != "grpc-go" && srv != "connect-go") {
			t.Errorf("server %q for protocol %s", srv, p)
		}
		if _, err := strconv.ParseFloat(row[col["value"]], 64); err != nil {
			t.Errorf("value %q: %v", row[col["value"]], err)
		}
		seen[row[col["metric"]]+" "+row[col["unit"]]] = true
	}
	for _, m := range []string{"throughput calls/s", "latency_p99 ms", "request_bytes_per_call B", "response_bytes_per_call B",
		"cpu_api_per_call us", "cpu_broker_per_call us", "cpu_client_per_call us", "errors calls", "errors_unavailable calls"} {
		if !seen[m] {
			t.Errorf("no %s rows", m)
		}
	}
}

func TestSeries(t *testing.T) {
	t.Parallel()
	r := dataResults()
	rows := readCSV(t, Series(r))
	if got := strings.Join(rows[0], ","); got != strings.Join(SeriesHeader, ",") {
		t.Fatalf("header = %s, want %s", got, strings.Join(SeriesHeader, ","))
	}
	if want := 1 + 3*len(r.Runs); len(rows) != want {
		t.Errorf("%d rows, want %d (3 seconds per run)", len(rows), want)
	}
	for _, row := range rows[1:] {
		if len(row) != len(SeriesHeader) {
			t.Fatalf("row %v: %d columns, want %d", row, len(row), len(SeriesHeader))
		}
	}
	if rows[3][5] != "2" || rows[3][6] != "333" || rows[3][7] != "2" {
		t.Errorf("third second = %v, want second 2, 333 calls, 2 errors", rows[3])
	}
}

// validSVG checks that a file is a non-empty, well-formed SVG document.
func validSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	var root string
	elements := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			elements++
		}
	}
	if root != "svg" || elements < 10 {
		t.Errorf("%s: root <%s>, %d elements, want an <svg> that draws something", path, root, elements)
	}
}

// TestWriteFiles writes a comparison and checks every file: the plots are
// valid SVG, and each distribution has its .hgrm.
func TestWriteFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(dataResults(), dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CDFFile, CallersFile, CPUStackFile, ThroughputFile, LatencyFile, BytesFile} {
		validSVG(t, filepath.Join(dir, name))
	}
	for _, name := range []string{JSONFile, MarkdownFile, CSVFile, SeriesFile,
		"latency-closed-grpc-kafka.hgrm", "latency-closed-connect-json-discard.hgrm", "latency-open-grpc-kafka.hgrm", "latency-sweep-grpc-kafka-512c.hgrm"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	hgrms, _ := filepath.Glob(filepath.Join(dir, "*.hgrm"))
	// closed: 2 protocols × 2 sinks, open: 2, sweep: 2 callers × 2 sinks.
	if len(hgrms) != 10 {
		t.Errorf("%d .hgrm files, want 10: %v", len(hgrms), hgrms)
	}
	// results.json keeps the histograms, so report draws the same again.
	r, err := Load(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Runs[0].Result.Histogram; h == nil || h.Count() != 1000 {
		t.Errorf("reloaded histogram = %v, want 1000 values", h)
	}
}
