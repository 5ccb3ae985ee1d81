package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchRatioTracing(t *testing.T) {
	t.Parallel()
	in := `goos: linux
BenchmarkRecordSaleTracing/grpc/baseline-2    10000   100000 ns/op   9000 B/op   100 allocs/op
BenchmarkRecordSaleTracing/grpc/baseline-2    10000   102000 ns/op   9000 B/op   100 allocs/op
BenchmarkRecordSaleTracing/grpc/off-2         10000   101000 ns/op   9000 B/op   100 allocs/op
BenchmarkRecordSaleTracing/grpc/on-2          10000   150000 ns/op  15000 B/op   160 allocs/op
`
	var out bytes.Buffer
	if err := runBenchRatio([]string{"-in", "-"}, strings.NewReader(in), &out, &out); err != nil {
		t.Fatalf("benchratio = %v\n%s", err, &out)
	}
	for _, want := range []string{
		"grpc           baseline    101.0 (100.0-102.0)     1.00            100     1.00         9000",
		"grpc           off         101.0 (101.0-101.0)     1.00            100     1.00         9000",
		"grpc           on          150.0 (150.0-150.0)     1.49            160     1.60        15000",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("benchratio printed\n%s\nwant a line %q", &out, want)
		}
	}
	if err := runBenchRatio([]string{"-in", "-"}, strings.NewReader("nothing"), &out, &out); err == nil {
		t.Error("benchratio of no benchmark lines = nil error, want one")
	}
}
