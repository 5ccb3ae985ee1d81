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
//	loadgen size -rate 10000,100000,1000000 -check
//	loadgen -h
//	go test -bench . ./services/api/internal/server | loadgen benchratio
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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

// commands lists the subcommands, each with what it does in one line.
var commands = []struct{ name, args, does string }{
	{"run", "[flags]", "load the api with one protocol, open or closed loop, and measure it (the default)"},
	{"verify", "-truth FILE [flags]", "check the api's aggregates against a ground-truth file, exactly"},
	{"compare", "[-out DIR] [flags]", "compare every protocol end to end on real services; results, CSV, .hgrm and plots into -out"},
	{"report", "-in results.json -out DIR", "render a comparison's results.json again: tables, charts, CSV, .hgrm, plots"},
	{"size", "-rate R[,R…] [-in results.json] [-check]", "plan api pods, Kafka partitions and brokers, aggregators and Valkey primaries for a rate, from the CPU costs a compare run measured"},
	{"benchratio", "[-in FILE]", "summarise `go test -bench` output of the api's RecordSale benchmarks"},
	{"version", "", "print the version"},
	{"help", "", "print this list"},
}

// usage prints the subcommands.
func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: loadgen [command] [flags]  (loadgen COMMAND -h for a command's flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.does)
	}
}

// setUsage gives a subcommand's flag set a -h that says what the command
// does before its flags.
func setUsage(fs *flag.FlagSet) {
	fs.Usage = func() {
		name := strings.TrimPrefix(fs.Name(), "loadgen ")
		for _, c := range commands {
			if c.name == name {
				fmt.Fprintf(fs.Output(), "Usage: loadgen %s %s\n\n%s.\n\nFlags:\n", c.name, c.args, strings.ToUpper(c.does[:1])+c.does[1:])
			}
		}
		fs.PrintDefaults()
	}
}

// run dispatches to a subcommand; without one it runs a load.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			usage(stdout)
			return nil
		}
	}
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
	case "size":
		return runSize(args, stdout, stderr)
	case "benchratio":
		return runBenchRatio(args, os.Stdin, stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("loadgen version", flag.ContinueOnError)
		fs.SetOutput(stderr)
		setUsage(fs)
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		fmt.Fprintln(stdout, "loadgen", version)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", cmd)
}
