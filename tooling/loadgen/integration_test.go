package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/loadgen/internal/load"
	"blackfriday.local/tooling/loadgen/internal/report"
	"blackfriday.local/tooling/loadgen/protocol"
	"blackfriday.local/tooling/stack/stacktest"
)

// The integration tests run the real api and aggregator binaries against the
// real Kafka broker and Valkey server that the stack launcher starts and
// names in the environment (contract/testenv). Without them they skip,
// except under CI=true, where they fail.

func services(t *testing.T) (kafka, valkey string) {
	t.Helper()
	return testenv.Kafka(t), testenv.Valkey(t)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the api and the aggregator once for the package's tests,
// on first use, so that the tests which need no services build nothing.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { binDir, buildErr = stacktest.Build() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// stack is an api and an aggregator on their own topic and key prefix.
type stack struct {
	url    string
	apiPID int
}

func startStack(t *testing.T) *stack {
	t.Helper()
	kafka, valkey := services(t)
	bin := binaries(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	env := []string{
		"KAFKA_BROKERS=" + kafka, "KAFKA_TOPIC=loadgen-" + id, "KAFKA_DLQ_TOPIC=loadgen-" + id + ".dlq",
		"KAFKA_GROUP=loadgen-" + id, "VALKEY_ADDR=" + valkey, "VALKEY_KEY_PREFIX=loadgen:" + id + ":",
		"METRICS_ADDR=off", "LOG_LEVEL=warn",
	}
	apiPort, aggPort := stacktest.FreePort(t), stacktest.FreePort(t)
	s := &stack{url: "http://127.0.0.1:" + strconv.Itoa(apiPort)}
	start := func(name, extra string) *stacktest.Proc {
		p := stacktest.Start(t, name, filepath.Join(bin, name), append(slices.Clip(env), extra)...)
		t.Cleanup(func() { stacktest.Stop(t, p) })
		return p
	}
	api := start("api", "PORT="+strconv.Itoa(apiPort))
	agg := start("aggregator", "HTTP_ADDR=127.0.0.1:"+strconv.Itoa(aggPort))
	s.apiPID = api.Pid()
	api.WaitOK(t, s.url+"/readyz", 60*time.Second)
	agg.WaitOK(t, "http://127.0.0.1:"+strconv.Itoa(aggPort)+"/healthz", 60*time.Second)
	return s
}

// TestLoadgenAgainstRealStack runs the load generator briefly over every
// protocol, closed and open loop, against the real api writing to the real
// broker, then checks that the aggregates equal the ground-truth files
// exactly.
func TestLoadgenAgainstRealStack(t *testing.T) {
	s := startStack(t)
	dir := t.TempDir()
	ctx := context.Background()
	var truths []string
	// A broker that has just started needs a moment for the topic's
	// leaders and the producer id; one untimed run takes that cost, so
	// the measured runs below each have calls in their window. Its sales
	// count like any other.
	warm := filepath.Join(dir, "warmup")
	var warmOut, warmErr bytes.Buffer
	if err := run(ctx, []string{"-target", s.url, "-protocol", string(protocol.Names()[0]), "-duration", "2s",
		"-warmup", "0s", "-seed", "99", "-truth", warm + ".csv", "-out", warm + ".json", "-concurrency", "4",
		"-progress", "off"}, &warmOut, &warmErr); err != nil {
		t.Fatalf("loadgen warm-up: %v\n%s", err, warmErr.String())
	}
	truths = append(truths, warm+".csv")
	for i, name := range protocol.Names() {
		if name == protocol.GRPCConnectGo {
			continue // compare's anchor: run refuses it
		}
		for _, mode := range []string{"closed", "open"} {
			if mode == "open" && name == protocol.Batch {
				continue
			}
			base := filepath.Join(dir, fmt.Sprintf("%s-%s", name, mode))
			args := []string{"-target", s.url, "-protocol", string(name), "-duration", "1s", "-warmup", "200ms",
				"-seed", strconv.Itoa(i + 1), "-truth", base + ".csv", "-out", base + ".json",
				"-server-pid", strconv.Itoa(s.apiPID), "-progress", "off"}
			if mode == "open" {
				args = append(args, "-rate", "200", "-concurrency", "50")
			} else {
				args = append(args, "-concurrency", "4")
			}
			if name == protocol.Batch {
				args = append(args, "-batch", "100")
			}
			var stdout, stderr bytes.Buffer
			if err := run(ctx, args, &stdout, &stderr); err != nil {
				t.Fatalf("loadgen %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			truths = append(truths, base+".csv")
			b, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var res load.Result
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			if res.Calls == 0 || len(res.Errors) > 0 || res.TruthAcked == 0 || res.TruthUnknown != 0 {
				t.Errorf("%s %s: %d calls, errors %v, truth %d acknowledged and %d unknown; want calls, no errors, all acknowledged",
					name, mode, res.Calls, res.Errors, res.TruthAcked, res.TruthUnknown)
			}
			if res.CPU.ServerUSPerCall <= 0 || res.ServerPeakRSS <= 0 || res.Wire.RequestBytesPerCall <= 0 {
				t.Errorf("%s %s: server CPU %v µs/call, peak RSS %d, request %v B/call; want all measured",
					name, mode, res.CPU.ServerUSPerCall, res.ServerPeakRSS, res.Wire.RequestBytesPerCall)
			}
			t.Logf("%s %s: %.0f sales/s, p99 %.2f ms, %.0f+%.0f B/call", name, mode, res.SalesPerS, res.Latency.P99,
				res.Wire.RequestBytesPerCall, res.Wire.ResponseBytesPerCall)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"verify", "-target", s.url, "-truth", strings.Join(truths, ","), "-timeout", "90s"}, &stdout, &stderr); err != nil {
		t.Fatalf("loadgen verify: %v", err)
	}
	t.Log(strings.TrimSpace(stdout.String()))
}

// TestCompareSmall runs `loadgen compare` end to end at a small scale: both
// apis, every phase, the aggregator's drain, the freshness probe, the exact
// check and the report.
func TestCompareSmall(t *testing.T) {
	kafka, valkey := services(t)
	bin := binaries(t)
	out, work := t.TempDir(), t.TempDir()
	args := []string{"compare",
		"-api-bin", filepath.Join(bin, "api"), "-aggregator-bin", filepath.Join(bin, "aggregator"),
		"-kafka", kafka, "-valkey", valkey, "-protocols", "connect-json,grpc,grpc-connect-go,batch",
		"-reps", "2", "-duration", "1s", "-warmup", "200ms", "-concurrency", "8", "-batch", "50",
		"-sweep", "2", "-freshness", "3s", "-broker-warmup", "400ms", "-work", work, "-out", out, "-progress", "off", "-command", "go test"}
	committed := snapshotDir(t, filepath.Join("..", "..", "docs", "results"))
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("loadgen compare: %v\n%s", err, stderr.String())
	}
	if after := snapshotDir(t, filepath.Join("..", "..", "docs", "results")); after != committed {
		t.Errorf("compare -out %s changed docs/results", out)
	}
	res, err := report.Load(filepath.Join(out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verification.OK || res.Verification.Sales == 0 {
		t.Errorf("verification = %+v, want the aggregates to match", res.Verification)
	}
	if res.Drain == nil || res.Drain.RatePerS <= 0 || res.Freshness == nil || res.Freshness.Samples == 0 {
		t.Errorf("drain %+v, freshness %+v, want both measured", res.Drain, res.Freshness)
	}
	// 2 reps × 4 protocols × 2 sinks closed, the same in the efficiency
	// phase and 3 unary ones open, + sweep 2 + freshness 1.
	if want := 2*(4*2+4*2+3*2) + 2 + 1; len(res.Runs) != want {
		t.Errorf("%d runs, want %d", len(res.Runs), want)
	}
	summary := report.Summarize(res)
	for _, p := range summary.Protocols {
		if !p.CPURatioEff.Valid() || !p.EffRate.Valid() || p.EffRate.Median <= 0 {
			t.Errorf("%s: no durable ÷ no-op api CPU at one rate (ratio %+v at %+v calls/s)", p.Name, p.CPURatioEff, p.EffRate)
		}
	}
	// The anchor, gRPC to the apis that serve it with connect-go
	// (GRPC_SERVER=connect), is compared with gRPC on grpc-go.
	found := false
	for _, r := range summary.Ratios {
		if r.A == "grpc" && r.B == "grpc-connect-go" {
			found = r.Throughput.Valid() && r.ServerCPU.Valid()
		}
	}
	if !found {
		t.Errorf("no gRPC grpc-go ÷ connect-go ratio with throughput and api CPU in the summary")
	}
	for _, name := range []string{report.MarkdownFile, report.ThroughputFile, report.LatencyFile, report.BytesFile,
		report.CSVFile, report.SeriesFile, report.CDFFile, report.CallersFile, report.CPUStackFile,
		"latency-closed-grpc-kafka.hgrm", "latency-closed-batch-discard.hgrm", "latency-open-connect-json-kafka.hgrm", "latency-efficiency-grpc-discard.hgrm", "latency-sweep-grpc-kafka-2c.hgrm"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	t.Log(stdout.String())
}

// snapshotDir lists a directory's files with their sizes and times, to
// tell whether anything wrote to it.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", path, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
