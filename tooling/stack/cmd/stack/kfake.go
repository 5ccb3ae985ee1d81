package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"blackfriday.local/tooling/stack/kafka"
)

// serveKfake is `stack kfake`, the daemon a stack's kfake service runs:
// franz-go's in-memory Kafka with the sales topics seeded, until SIGTERM.
func serveKfake(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("stack kfake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 9092, "the port to listen on")
	partitions := fs.Int("partitions", 6, "partitions of each seeded topic")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	topics := []string{env("KAFKA_TOPIC", "sales"), env("KAFKA_DLQ_TOPIC", "sales.dlq")}
	err := kafka.Embedded(ctx, *port, int32(*partitions), topics, func(addr string) {
		fmt.Fprintf(stderr, "kfake: serving an in-memory Kafka at %s, topics %v with %d partitions each\n", addr, topics, *partitions)
	})
	if err != nil {
		fmt.Fprintln(stderr, "kfake:", err)
		return 1
	}
	return 0
}
