package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/prodshape"
)

// prodFlags are the flags of up-prod.
type prodFlags struct {
	overlay, replicas string
	plainKafka        bool
	// nodesSet is whether -kafka-nodes was given: without it the
	// overlay's node pool decides.
	nodesSet bool
}

// prodCommand runs up-prod, check-prod, and down for a directory that
// holds a production shape.
func prodCommand(ctx context.Context, cmd string, cfg stack.Config, f prodFlags, stdout, stderr io.Writer) int {
	pcfg := prodshape.Config{Dir: cfg.Dir, Overlay: f.overlay, Bin: cfg.Bin, Kafka: cfg.Kafka, PlainKafka: f.plainKafka, Log: stderr}
	switch cmd {
	case "up-prod":
		if f.nodesSet {
			pcfg.KafkaNodes = cfg.Kafka.Nodes
		}
		var err error
		if pcfg.Replicas, err = parseReplicas(f.replicas); err != nil {
			fmt.Fprintln(stderr, "stack:", err)
			return 2
		}
		sh, err := prodshape.Up(ctx, pcfg)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		env, err := sh.Env()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprint(stderr, sh.Summary())
		fmt.Fprint(stdout, stack.Exports(env))
		fmt.Fprintf(stderr, "stack: up-prod: the %s shape runs; `stack -dir %s check-prod` compares it with its manifests, `stack -dir %s down` stops it\n", f.overlay, cfg.Dir, cfg.Dir)
		return 0
	case "check-prod":
		sh, err := prodshape.Open(pcfg)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		findings, err := sh.Check(ctx)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, x := range findings {
			fmt.Fprintln(stdout, x)
		}
		if failed := prodshape.Failed(findings); len(failed) > 0 {
			fmt.Fprintf(stderr, "stack: check-prod: %d of %d comparisons failed\n", len(failed), len(findings))
			return 1
		}
		fmt.Fprintf(stderr, "stack: check-prod: the processes answer as the manifests declare (%d comparisons)\n", len(findings))
		return 0
	default: // down
		sh, err := prodshape.Open(pcfg)
		if err == nil {
			err = sh.Down()
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stderr, "stack: everything in %s stopped, state deleted\n", cfg.Dir)
		return 0
	}
}

// parseReplicas reads "NAME=N,...".
func parseReplicas(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		name, n, ok := strings.Cut(kv, "=")
		v, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || v < 1 {
			return nil, fmt.Errorf("-replicas %q: want NAME=N,... with N at least 1", s)
		}
		out[name] = v
	}
	return out, nil
}
