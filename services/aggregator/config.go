package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/contract/kafkasecurity"
)

// config is the aggregator's configuration, read once from the environment.
type config struct {
	Brokers         []string
	Topic           string
	DLQTopic        string
	Group           string
	TopicPartitions int32
	ValkeyAddr      string
	ValkeyUsername  string
	ValkeyPassword  string
	KeyPrefix       string
	// PollMaxRecords bounds one poll, and so each partition's batch. A
	// poll's partitions are processed in parallel, so a larger poll keeps
	// every core busy longer between polls: draining a backlog, 50,000
	// went 30-55% faster than 10,000 (scripts/drain.sh).
	PollMaxRecords int
	RateTTL        time.Duration
	// InstanceID, when set, makes the aggregator a static group member: a
	// restarted process with the same id takes its partitions back at once,
	// without a rebalance (for example a StatefulSet pod name).
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others.
	SessionTimeout time.Duration
	// HTTPAddr serves /healthz and /readyz; empty disables it.
	HTTPAddr string
	LogLevel slog.Level
	// DedupWindow is how far apart (by record timestamp) two records of
	// one sale_id may be written and still count once; zero turns dedup
	// off.
	DedupWindow time.Duration
	// ReconcileInterval is how often every owned partition's offset is
	// compared with Valkey's and with its log, to notice lost data even
	// when idle.
	ReconcileInterval time.Duration
	// LogResetUnready is how long /readyz answers 503 after a partition's
	// log went back under its stored offset (a recreated topic, a
	// truncated log), so that the event shows on the readiness probe.
	LogResetUnready time.Duration
	// Kafka is the SASL and TLS configuration.
	Kafka kafkasecurity.Config
}

// loadConfig reads the configuration through lookup, os.LookupEnv in
// production, applying defaults to unset variables.
func loadConfig(lookup func(string) (string, bool)) (config, error) {
	str := func(name, def string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	var errs []error
	integer := func(name string, def, lo, hi int) int {
		v := str(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, lo, hi))
			return def
		}
		return n
	}

	c := config{
		Topic:             str("KAFKA_TOPIC", "sales"),
		DLQTopic:          str("KAFKA_DLQ_TOPIC", "sales.dlq"),
		Group:             str("KAFKA_GROUP", "blackfriday-aggregator"),
		TopicPartitions:   int32(integer("KAFKA_TOPIC_PARTITIONS", 6, 1, 10000)),
		ValkeyAddr:        str("VALKEY_ADDR", "127.0.0.1:6379"),
		ValkeyUsername:    str("VALKEY_USERNAME", ""),
		ValkeyPassword:    str("VALKEY_PASSWORD", ""),
		KeyPrefix:         str("VALKEY_KEY_PREFIX", "bf:"),
		PollMaxRecords:    integer("POLL_MAX_RECORDS", 50000, 1, 1000000),
		InstanceID:        str("KAFKA_INSTANCE_ID", ""),
		SessionTimeout:    15 * time.Second,
		RateTTL:           25 * time.Hour,
		HTTPAddr:          ":8081",
		DedupWindow:       10 * time.Minute,
		ReconcileInterval: 30 * time.Second,
		LogResetUnready:   5 * time.Minute,
	}
	duration := func(name string, lo, hi time.Duration, example string, dst *time.Duration) {
		v := str(name, "")
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration from %v to %v, such as %s", name, v, lo, hi, example))
			return
		}
		*dst = d
	}
	// Past the topic's retention (7 days) a window could not be replayed.
	duration("DEDUP_WINDOW", 0, 7*24*time.Hour, "10m (0 turns dedup off)", &c.DedupWindow)
	duration("RECONCILE_INTERVAL", time.Second, time.Hour, "30s", &c.ReconcileInterval)
	duration("LOG_RESET_UNREADY", time.Second, 24*time.Hour, "5m", &c.LogResetUnready)
	var kafkaErrs []error
	c.Kafka, kafkaErrs = kafkasecurity.Load(str, lookup)
	errs = append(errs, kafkaErrs...)
	for _, b := range strings.Split(str("KAFKA_BROKERS", "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS lists no broker"))
	}
	if c.Topic == c.DLQTopic {
		errs = append(errs, fmt.Errorf("KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC (%q)", c.Topic))
	}
	if v := str("KAFKA_SESSION_TIMEOUT", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 6*time.Second || d > 5*time.Minute {
			errs = append(errs, fmt.Errorf("KAFKA_SESSION_TIMEOUT=%q: want a duration from 6s to 5m", v))
		} else {
			c.SessionTimeout = d
		}
	}
	if v := str("RATE_TTL", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("RATE_TTL=%q: want a duration of at least 1s, such as 25h", v))
		} else {
			c.RateTTL = d
		}
	}
	// Unlike the others, an HTTP_ADDR that is set but empty means "off".
	if v, ok := lookup("HTTP_ADDR"); ok {
		c.HTTPAddr = strings.TrimSpace(v)
	}
	if v := str("LOG_LEVEL", ""); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// mask hides a secret in the start-up log, showing only whether it is set.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "*****"
}

// LogValue renders the configuration for the start-up log, passwords
// masked.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("KAFKA_BROKERS", strings.Join(c.Brokers, ",")),
		slog.String("KAFKA_TOPIC", c.Topic),
		slog.String("KAFKA_DLQ_TOPIC", c.DLQTopic),
		slog.String("KAFKA_GROUP", c.Group),
		slog.Int("KAFKA_TOPIC_PARTITIONS", int(c.TopicPartitions)),
		slog.String("KAFKA_INSTANCE_ID", c.InstanceID),
		slog.String("KAFKA_SESSION_TIMEOUT", c.SessionTimeout.String()),
		slog.String("VALKEY_ADDR", c.ValkeyAddr),
		slog.String("VALKEY_USERNAME", c.ValkeyUsername),
		slog.String("VALKEY_PASSWORD", mask(c.ValkeyPassword)),
		slog.String("VALKEY_KEY_PREFIX", c.KeyPrefix),
		slog.Int("POLL_MAX_RECORDS", c.PollMaxRecords),
		slog.String("RATE_TTL", c.RateTTL.String()),
		slog.String("HTTP_ADDR", c.HTTPAddr),
		slog.String("LOG_LEVEL", c.LogLevel.String()),
		slog.String("DEDUP_WINDOW", c.DedupWindow.String()),
		slog.String("RECONCILE_INTERVAL", c.ReconcileInterval.String()),
		slog.String("LOG_RESET_UNREADY", c.LogResetUnready.String()),
		slog.String("KAFKA_SASL_MECHANISM", c.Kafka.SASLMechanism),
		slog.String("KAFKA_SASL_USERNAME", c.Kafka.SASLUsername),
		slog.String("KAFKA_SASL_PASSWORD", mask(c.Kafka.SASLPassword)),
		slog.Bool("KAFKA_TLS", c.Kafka.TLS),
		slog.String("KAFKA_TLS_CA_FILE", c.Kafka.TLSCAFile),
		slog.String("KAFKA_TLS_CERT_FILE", c.Kafka.TLSCertFile),
		slog.String("KAFKA_TLS_KEY_FILE", c.Kafka.TLSKeyFile),
		slog.String("KAFKA_TLS_SERVER_NAME", c.Kafka.TLSServerName),
	)
}
