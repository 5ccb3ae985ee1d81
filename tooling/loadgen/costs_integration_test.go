package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/loadgen/internal/report"
	launcher "blackfriday.local/tooling/stack"
)

// servicePIDs returns the pids of the broker and the Valkey server the
// launcher named in the environment, from its state directory.
func servicePIDs(t *testing.T) (kafka, valkey int) {
	t.Helper()
	dir := os.Getenv(testenv.RunDir)
	if dir == "" {
		t.Skipf("$%s names no launcher state, so the broker's and Valkey's pids are unknown", testenv.RunDir)
	}
	st, err := launcher.New(launcher.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Server()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes()) == 0 || c.Pid(c.Nodes()[0].ID) <= 0 || v.Pid() <= 0 {
		t.Skipf("the launcher in %s runs no broker or Valkey of its own", dir)
	}
	return c.Pid(c.Nodes()[0].ID), v.Pid()
}

// TestCompareCosts runs compare's cost phase on the real broker and Valkey
// (unpinned: they are shared with other tests), then plans from its
// results with loadgen size -check.
func TestCompareCosts(t *testing.T) {
	kafka, valkey := services(t)
	kafkaPID, valkeyPID := servicePIDs(t)
	bin := binaries(t)
	out, work := t.TempDir(), t.TempDir()
	args := []string{"compare",
		"-api-bin", filepath.Join(bin, "api"), "-aggregator-bin", filepath.Join(bin, "aggregator"),
		"-kafka", kafka, "-valkey", valkey, "-kafka-pid", strconv.Itoa(kafkaPID), "-valkey-pid", strconv.Itoa(valkeyPID),
		"-protocols", "grpc,batch", "-reps", "1", "-duration", "500ms", "-warmup", "200ms", "-concurrency", "8", "-batch", "50",
		"-sweep", "", "-freshness", "0", "-broker-warmup", "400ms", "-cost-duration", "1s",
		"-work", work, "-out", out, "-progress", "off", "-command", "go test"}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("loadgen compare: %v\n%s", err, stderr.String())
	}
	res, err := report.Load(filepath.Join(out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	c := res.Costs
	if c == nil || len(c.Protocols) != 2 || c.Check == nil || c.Pinning != "none" {
		t.Fatalf("costs = %+v, want two protocols, a check window and no pinning", c)
	}
	for _, p := range c.Protocols {
		if p.SalesPerS <= 0 || p.ProduceBatchesPerS <= 0 || p.APIUSPerSale <= 0 || p.BrokerUSPerRecord <= 0 || p.AppliedPerS <= 0 {
			t.Errorf("%s: %+v, want sales, produce batches, applied sales and CPU per unit", p.Protocol, p)
		}
	}
	if !res.Verification.OK {
		t.Errorf("verification = %+v, want the aggregates to match, cost windows included", res.Verification)
	}
	var plan bytes.Buffer
	if err := run(context.Background(), []string{"size", "-in", filepath.Join(out, report.JSONFile), "-rate", "1000,50000", "-check"}, &plan, &stderr); err != nil {
		t.Fatalf("loadgen size: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"Protocol grpc", "| 1,000 |", "| 50,000 |", "| predicted ÷ measured |"} {
		if !strings.Contains(plan.String(), want) {
			t.Errorf("loadgen size printed no %q:\n%s", want, plan.String())
		}
	}
	t.Log(plan.String())
}
