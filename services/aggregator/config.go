package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"blackfriday.local/contract/kafkasecurity"
	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/settings"
)

// about introduces the settings in -h.
const about = "aggregator consumes blackfriday's sales from Kafka and folds them into Valkey,\n" +
	"counting each sale exactly once."

// go generate rewrites README.md's table of these settings, which
// TestREADMESettings keeps current.
//go:generate go test -run=TestREADMESettings . -args -update

// config is the aggregator's configuration, read once from the environment.
// Each field with an env tag declares a setting (package settings says
// how): -h, the start-up log and the README's table are all made from the
// tags.
type config struct {
	Brokers         settings.List `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092" help:"comma-separated seed brokers ('make run': embedded Kafka when unset)"`
	Topic           string        `env:"KAFKA_TOPIC" envDefault:"sales" help:"the sales topic"`
	DLQTopic        string        `env:"KAFKA_DLQ_TOPIC" envDefault:"sales.dlq" help:"where undecodable or invalid records go (not 'KAFKA_TOPIC')"`
	Group           string        `env:"KAFKA_GROUP" envDefault:"blackfriday-aggregator" help:"consumer group"`
	TopicPartitions int32         `env:"KAFKA_TOPIC_PARTITIONS" envDefault:"6" help:"partitions when the aggregator creates a missing topic (1 to 10000)"`
	// InstanceID, when set, makes the aggregator a static group member
	// (for example a StatefulSet pod name).
	InstanceID     string        `env:"KAFKA_INSTANCE_ID" help:"static group membership: a restarted member with the same id takes its partitions back without a rebalance"`
	SessionTimeout time.Duration `env:"KAFKA_SESSION_TIMEOUT" envDefault:"15s" help:"how long the group waits for a silent member before giving its partitions to others (6s to 5m)"`
	// PollMaxRecords bounds one poll, and so each partition's batch. A
	// poll's partitions are processed in parallel, so a larger poll keeps
	// every core busy longer between polls: draining a backlog, 50,000
	// went 30-55% faster than 10,000 (scripts/drain.sh).
	PollMaxRecords int `env:"POLL_MAX_RECORDS" envDefault:"50000" help:"records per poll (the fold batch, 1 to 1000000); a poll's partitions are folded and applied in parallel"`

	// Valkey. The key prefix's default is the key schema's, which newConfig
	// sets: a tag would spell it a second time.
	ValkeyAddr     string        `env:"VALKEY_ADDR" envDefault:"127.0.0.1:6379" help:"Valkey or Redis ('make run': started locally when unset)"`
	ValkeyUsername string        `env:"VALKEY_USERNAME" help:"ACL user"`
	ValkeyPassword string        `env:"VALKEY_PASSWORD" secret:"true" help:"ACL password"`
	KeyPrefix      string        `env:"VALKEY_KEY_PREFIX" help:"prefix of every key"`
	RateTTL        time.Duration `env:"RATE_TTL" envDefault:"25h" help:"how long per-minute rate buckets are kept (at least 1s)"`
	// Past the topic's retention (7 days) a window could not be replayed.
	DedupWindow       time.Duration `env:"DEDUP_WINDOW" envDefault:"10m" help:"a sale re-sent with the same 'sale_id' within this window is counted once ('0' turns it off; at most 168h, the topic's retention); costs 25 (batches of 100+) to 120 (one sale a batch) bytes of Valkey memory per remembered sale, and 80 to 130 bytes of the aggregator's heap for its copy. See [valkey-keys.md](docs/valkey-keys.md)"`
	ReconcileInterval time.Duration `env:"RECONCILE_INTERVAL" envDefault:"30s" help:"how often every owned partition's offset is compared with Valkey's and with its log, to notice lost state even when idle (1s to 1h)"`
	LogResetUnready   time.Duration `env:"LOG_RESET_UNREADY" envDefault:"5m" help:"how long '/readyz' answers 503 after a partition's log went back under its stored offset (a recreated topic, a truncated log; 1s to 24h). See [reliability.md](docs/reliability.md#offsets-that-go-backwards-a-recreated-or-truncated-topic)"`

	// HTTPAddr is empty when HTTP_ADDR is set but empty.
	HTTPAddr string     `env:"HTTP_ADDR" envDefault:":8081" help:"'/healthz', '/readyz' and Prometheus '/metrics'; set but empty disables them"`
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"'debug', 'info', 'warn' or 'error'"`

	KafkaSettings settings.Kafka
	// Kafka is KafkaSettings checked, read exactly as the api reads it.
	Kafka kafkasecurity.Config `env:"-"`
}

// newConfig returns the config that an empty environment leaves as it is:
// the defaults that are Go values rather than tags.
func newConfig() config {
	return config{KeyPrefix: keys.DefaultPrefix}
}

// loadConfig reads the configuration through lookup, os.LookupEnv in
// production, applying defaults to unset variables and rejecting malformed
// ones, every one at once.
func loadConfig(lookup func(string) (string, bool)) (config, error) {
	c := newConfig()
	if _, err := settings.Parse(&c, lookup); err != nil {
		return config{}, fmt.Errorf("configuration: %w", err)
	}
	// Unlike the others, an HTTP_ADDR that is set but empty means "off".
	if v, ok := lookup("HTTP_ADDR"); ok && strings.TrimSpace(v) == "" {
		c.HTTPAddr = ""
	}
	var kafkaErrs []error
	c.Kafka, kafkaErrs = c.KafkaSettings.Load()
	if err := errors.Join(append(kafkaErrs, c.check())...); err != nil {
		return config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// check applies the rules that parsing does not: ranges, and settings that
// depend on one another.
func (c config) check() error {
	errs := []error{
		within("KAFKA_TOPIC_PARTITIONS", c.TopicPartitions, 1, 10000),
		within("POLL_MAX_RECORDS", c.PollMaxRecords, 1, 1000000),
		within("KAFKA_SESSION_TIMEOUT", c.SessionTimeout, 6*time.Second, 5*time.Minute),
		within("DEDUP_WINDOW", c.DedupWindow, 0, 7*24*time.Hour),
		within("RECONCILE_INTERVAL", c.ReconcileInterval, time.Second, time.Hour),
		within("LOG_RESET_UNREADY", c.LogResetUnready, time.Second, 24*time.Hour),
	}
	if c.RateTTL < time.Second {
		errs = append(errs, fmt.Errorf("RATE_TTL=%v: want at least 1s", c.RateTTL))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS lists no broker"))
	}
	if c.Topic == c.DLQTopic {
		errs = append(errs, fmt.Errorf("KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC (%q)", c.Topic))
	}
	return errors.Join(errs...)
}

// within reports a setting's value outside [lo, hi].
func within[T int | int32 | time.Duration](name string, v, lo, hi T) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s=%v: want a value from %v to %v", name, v, lo, hi)
	}
	return nil
}

// LogValue renders the configuration for the start-up log, secrets masked.
func (c config) LogValue() slog.Value { return settings.LogValue(c) }

// parseArgs reads the command line: -h lists the settings.
func parseArgs(args []string, stdout io.Writer) (exit bool, err error) {
	return settings.Args("aggregator", about, settings.Of(newConfig()), args, stdout)
}
