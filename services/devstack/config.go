package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// config is devstack's configuration, read once from the environment. The
// variables the services share (PORT, KAFKA_*, VALKEY_ADDR) mean the same here.
type config struct {
	Port           string        // PORT: the api's port.
	Brokers        string        // KAFKA_BROKERS: a real Kafka; empty starts kfake.
	Topic          string        // KAFKA_TOPIC.
	DLQTopic       string        // KAFKA_DLQ_TOPIC.
	Partitions     int32         // KAFKA_TOPIC_PARTITIONS, for the embedded Kafka.
	KafkaPort      int           // DEVSTACK_KAFKA_PORT: the embedded Kafka's port.
	ValkeyAddr     string        // VALKEY_ADDR: a running server; empty starts one.
	ValkeyPort     int           // DEVSTACK_VALKEY_PORT: preferred port of the started server.
	AggregatorAddr string        // DEVSTACK_AGGREGATOR_ADDR: the aggregator's health endpoint.
	StateDir       string        // DEVSTACK_DIR: where the started server keeps its files.
	BinDir         string        // DEVSTACK_BIN_DIR: where the api and aggregator binaries are.
	StopTimeout    time.Duration // DEVSTACK_STOP_TIMEOUT: how long children get to drain.
}

func loadConfig() (config, error) {
	exe, err := os.Executable()
	if err != nil {
		return config{}, fmt.Errorf("find own binary: %w", err)
	}
	c := config{
		Port:           env("PORT", "8080"),
		Brokers:        os.Getenv("KAFKA_BROKERS"),
		Topic:          env("KAFKA_TOPIC", "sales"),
		DLQTopic:       env("KAFKA_DLQ_TOPIC", "sales.dlq"),
		ValkeyAddr:     os.Getenv("VALKEY_ADDR"),
		AggregatorAddr: env("DEVSTACK_AGGREGATOR_ADDR", "127.0.0.1:8081"),
		StateDir:       env("DEVSTACK_DIR", filepath.Join(".run", "devstack")),
		BinDir:         env("DEVSTACK_BIN_DIR", filepath.Dir(exe)),
	}
	var errs []error
	c.Partitions = int32(intEnv("KAFKA_TOPIC_PARTITIONS", 6, &errs))
	c.KafkaPort = intEnv("DEVSTACK_KAFKA_PORT", 9092, &errs)
	c.ValkeyPort = intEnv("DEVSTACK_VALKEY_PORT", 6379, &errs)
	d, err := time.ParseDuration(env("DEVSTACK_STOP_TIMEOUT", "15s"))
	if err != nil {
		errs = append(errs, fmt.Errorf("DEVSTACK_STOP_TIMEOUT: %w", err))
	}
	c.StopTimeout = d
	if len(errs) > 0 {
		return config{}, fmt.Errorf("config: %v", errs)
	}
	return c, nil
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func intEnv(key string, def int, errs *[]error) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		*errs = append(*errs, fmt.Errorf("%s=%q: want a positive integer", key, v))
		return def
	}
	return n
}
