// Command loadgen drives the api with a protocol-switched load and measures
// it: one protocol, open loop (a constant arrival rate) or closed loop (N
// callers), with throughput, latency percentiles, errors by code, bytes on
// the wire and CPU per call, and a ground-truth file of every sale the api
// acknowledged.
//
//	loadgen [run] -target http://127.0.0.1:8080 -protocol grpc -concurrency 32 -duration 10s
//	loadgen [run] -protocol connect-json -rate 2000 -duration 30s -out result.json -truth truth.csv
//	loadgen verify -target http://127.0.0.1:8080 -truth truth.csv
//	loadgen compare -api-bin bin/api -aggregator-bin bin/aggregator -kafka HOST:PORT -valkey HOST:PORT
//	loadgen report -in docs/results/results.json -out docs/results
//	go test -bench . ./services/api/internal/server | loadgen benchratio
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time (-ldflags -X main.version=…).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand; without one it runs a load.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runLoad(ctx, args, stdout, stderr)
	case "verify":
		return runVerify(ctx, args, stdout, stderr)
	case "compare":
		return runCompare(ctx, args, stdout, stderr)
	case "report":
		return runReport(args, stdout, stderr)
	case "benchratio":
		return runBenchRatio(args, os.Stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "loadgen", version)
		return nil
	}
	return fmt.Errorf("unknown command %q (want run, verify, compare, report, benchratio or version)", cmd)
}
