package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/contract/kafkasecurity"
	"blackfriday.local/services/api/internal/ingest"
)

// config is the api's configuration, read once from the environment.
type config struct {
	Port                 int
	KafkaBrokers         []string
	KafkaTopic           string
	KafkaTopicPartitions int32
	KafkaLinger          time.Duration
	// KafkaCompression is the producer's batch compression: none,
	// snappy, lz4, zstd or gzip.
	KafkaCompression   string
	ValkeyAddr         string
	ValkeyUsername     string
	ValkeyPassword     string
	ValkeyKeyPrefix    string
	ValkeyTimeout      time.Duration
	ProduceTimeout     time.Duration
	MaxBufferedRecords int
	MaxRequestBytes    int64
	ShutdownTimeout    time.Duration
	CORSAllowedOrigins []string
	LogLevel           slog.Level
	// MetricsAddr serves /metrics; METRICS_ADDR=off disables it.
	MetricsAddr string
	// Pprof also serves Go's profiles (/debug/pprof/) on MetricsAddr.
	Pprof bool
	// SalesSink is "kafka", or "discard" for the load comparison's no-op
	// baseline, which acknowledges sales without writing them.
	SalesSink string
	// Kafka is the SASL and TLS configuration (KAFKA_SASL_*, KAFKA_TLS*),
	// read exactly as the aggregator reads it.
	Kafka kafkasecurity.Config
	// WriteTokensFile names a file of accepted bearer tokens, one a line,
	// mounted from a Secret; WriteTokens lists more, comma-separated (for
	// development: a token in the environment is visible to anyone who can
	// read the pod's spec). Either turns authentication of write RPCs on.
	WriteTokensFile string
	WriteTokens     string
	// ReadAuth makes the read RPCs require a token too.
	ReadAuth bool
	// LegacyWriteAuth makes the course's API require a token when
	// authentication is on (the default); false leaves it open.
	LegacyWriteAuth bool
	// MaxInflightWrites and MaxInflightBytes bound the write calls served at
	// once and the request bytes they hold; beyond them calls are shed with
	// resource_exhausted before their body is read.
	MaxInflightWrites int
	MaxInflightBytes  int64
	// MaxInflightBytesPerClient is one client's share of MaxInflightBytes.
	MaxInflightBytesPerClient int64
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, for the per-client limits.
	TrustedProxies []netip.Prefix
	// AdmissionMode is "fixed" (the write-call limit is
	// MaxInflightWrites, the default) or "adaptive" (it follows the
	// latency of the calls admitted, between AdmissionMinWrites and
	// MaxInflightWrites).
	AdmissionMode string
	// AdmissionTargetLatency is the adaptive limit's target: the 90th
	// percentile of admitted write calls' latency it keeps them near.
	AdmissionTargetLatency time.Duration
	// AdmissionMinWrites is the adaptive limit's floor.
	AdmissionMinWrites int
	// ReadHeaderTimeout bounds reading a request's headers: a client that
	// dribbles them is cut off.
	ReadHeaderTimeout time.Duration
	// MaxConnections bounds the client connections open at once.
	MaxConnections int
}

// loadConfig reads the configuration through getenv, applying defaults to
// unset variables and rejecting malformed ones.
func loadConfig(getenv func(string) string) (config, error) {
	e := env{getenv: getenv}
	cfg := config{
		Port:                 e.int("PORT", 8080),
		KafkaBrokers:         e.list("KAFKA_BROKERS", "127.0.0.1:9092"),
		KafkaTopic:           e.string("KAFKA_TOPIC", "sales"),
		KafkaTopicPartitions: int32(e.int("KAFKA_TOPIC_PARTITIONS", 6)),
		KafkaLinger:          e.duration("KAFKA_LINGER", time.Millisecond),
		KafkaCompression:     e.string("KAFKA_COMPRESSION", "snappy"),
		ValkeyAddr:           e.string("VALKEY_ADDR", "127.0.0.1:6379"),
		ValkeyUsername:       e.string("VALKEY_USERNAME", ""),
		ValkeyPassword:       e.string("VALKEY_PASSWORD", ""),
		ValkeyKeyPrefix:      e.string("VALKEY_KEY_PREFIX", "bf:"),
		ValkeyTimeout:        e.duration("VALKEY_TIMEOUT", 2*time.Second),
		ProduceTimeout:       e.duration("PRODUCE_TIMEOUT", 3*time.Second),
		MaxBufferedRecords:   e.int("MAX_BUFFERED_RECORDS", 10000),
		MaxRequestBytes:      e.bytes("MAX_REQUEST_BYTES", 1<<20),
		ShutdownTimeout:      e.duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		CORSAllowedOrigins:   e.origins("CORS_ALLOWED_ORIGINS", "*"),
		LogLevel:             e.level("LOG_LEVEL", slog.LevelInfo),
		MetricsAddr:          e.optional("METRICS_ADDR", ":9090"),
		Pprof:                e.bool("PPROF", false),
		SalesSink:            e.string("SALES_SINK", "kafka"),
		WriteTokensFile:      e.string("WRITE_TOKENS_FILE", ""),
		// Tokens are taken as they are; auth.Load trims each.
		WriteTokens:       getenv("WRITE_TOKENS"),
		ReadAuth:          e.bool("READ_AUTH", false),
		LegacyWriteAuth:   e.bool("LEGACY_WRITE_AUTH", true),
		MaxInflightWrites: e.int("MAX_INFLIGHT_WRITES", 1024),
		MaxInflightBytes:  e.bytes("MAX_INFLIGHT_BYTES", 64<<20),
		// docs/reliability-api.md#overload has the runs behind these.
		AdmissionMode:          e.string("ADMISSION_MODE", "fixed"),
		AdmissionTargetLatency: e.duration("ADMISSION_TARGET_LATENCY", 50*time.Millisecond),
		ReadHeaderTimeout:      e.duration("READ_HEADER_TIMEOUT", 5*time.Second),
		MaxConnections:         e.int("MAX_CONNECTIONS", 1024),
	}
	// The floor defaults to 64 calls, or MAX_INFLIGHT_WRITES if that is
	// lower.
	cfg.AdmissionMinWrites = e.int("ADMISSION_MIN_WRITES", min(64, max(cfg.MaxInflightWrites, 1)))
	// A client's share defaults to a quarter of the budget, with room for
	// the largest compressed request.
	cfg.MaxInflightBytesPerClient = e.bytes("MAX_INFLIGHT_BYTES_PER_CLIENT",
		min(max(cfg.MaxInflightBytes/4, 2*cfg.MaxRequestBytes), cfg.MaxInflightBytes))
	cfg.TrustedProxies = e.prefixes("TRUSTED_PROXIES")
	// The aggregator's reader, given the api's: the same variables, the same
	// rules, the same messages.
	var kafkaErrs []error
	cfg.Kafka, kafkaErrs = kafkasecurity.Load(e.string, func(name string) (string, bool) {
		v := getenv(name)
		return v, v != ""
	})
	e.errs = append(e.errs, kafkaErrs...)
	if cfg.ReadAuth && cfg.WriteTokensFile == "" && strings.TrimSpace(cfg.WriteTokens) == "" {
		e.fail("READ_AUTH", "needs tokens: set WRITE_TOKENS_FILE (or WRITE_TOKENS)")
	}
	if _, err := ingest.ParseCompression(cfg.KafkaCompression); err != nil {
		e.fail("KAFKA_COMPRESSION", err.Error())
	}
	if cfg.ReadHeaderTimeout <= 0 {
		e.fail("READ_HEADER_TIMEOUT", "must be positive")
	}
	if cfg.MaxConnections < 1 {
		e.fail("MAX_CONNECTIONS", "must be positive")
	}
	if cfg.MaxInflightWrites < 1 {
		e.fail("MAX_INFLIGHT_WRITES", "must be positive")
	}
	if cfg.AdmissionMode != "adaptive" && cfg.AdmissionMode != "fixed" {
		e.fail("ADMISSION_MODE", "must be adaptive or fixed")
	}
	if cfg.AdmissionTargetLatency <= 0 {
		e.fail("ADMISSION_TARGET_LATENCY", "must be positive")
	}
	if cfg.AdmissionMinWrites < 1 || cfg.AdmissionMinWrites > cfg.MaxInflightWrites {
		e.fail("ADMISSION_MIN_WRITES", "must be between 1 and MAX_INFLIGHT_WRITES")
	}
	// A compressed request holds its body and, once that is whole, what
	// it may decompress to: up to MAX_REQUEST_BYTES each.
	if cfg.MaxInflightBytes < 2*cfg.MaxRequestBytes {
		e.fail("MAX_INFLIGHT_BYTES", "must be at least twice MAX_REQUEST_BYTES, or the largest compressed request could never be admitted")
	}
	if cfg.MaxInflightBytesPerClient < 2*cfg.MaxRequestBytes || cfg.MaxInflightBytesPerClient > cfg.MaxInflightBytes {
		e.fail("MAX_INFLIGHT_BYTES_PER_CLIENT", "must be between twice MAX_REQUEST_BYTES (the largest compressed request) and MAX_INFLIGHT_BYTES")
	}
	switch {
	case cfg.Port < 1 || cfg.Port > 65535:
		e.fail("PORT", "must be between 1 and 65535")
	case cfg.KafkaTopicPartitions < 1:
		e.fail("KAFKA_TOPIC_PARTITIONS", "must be positive")
	case cfg.ProduceTimeout <= 0:
		e.fail("PRODUCE_TIMEOUT", "must be positive")
	case cfg.MaxBufferedRecords < 1:
		e.fail("MAX_BUFFERED_RECORDS", "must be positive")
	case cfg.MaxRequestBytes < 1:
		e.fail("MAX_REQUEST_BYTES", "must be positive")
	case cfg.ShutdownTimeout <= 0:
		e.fail("SHUTDOWN_TIMEOUT", "must be positive")
	}
	if cfg.SalesSink != "kafka" && cfg.SalesSink != "discard" {
		e.fail("SALES_SINK", "must be kafka or discard")
	}
	if len(cfg.KafkaBrokers) == 0 {
		e.fail("KAFKA_BROKERS", "must name at least one broker")
	}
	return cfg, errors.Join(e.errs...)
}

// mask hides a secret in the start-up log, showing only whether it is set.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "****"
}

// LogValue logs the configuration with the secrets masked.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("port", c.Port),
		slog.Any("kafka_brokers", c.KafkaBrokers),
		slog.String("kafka_topic", c.KafkaTopic),
		slog.Int("kafka_topic_partitions", int(c.KafkaTopicPartitions)),
		slog.String("kafka_linger", c.KafkaLinger.String()),
		slog.String("kafka_compression", c.KafkaCompression),
		slog.String("valkey_addr", c.ValkeyAddr),
		slog.String("valkey_username", c.ValkeyUsername),
		slog.String("valkey_password", mask(c.ValkeyPassword)),
		slog.String("valkey_key_prefix", c.ValkeyKeyPrefix),
		slog.String("valkey_timeout", c.ValkeyTimeout.String()),
		slog.String("produce_timeout", c.ProduceTimeout.String()),
		slog.Int("max_buffered_records", c.MaxBufferedRecords),
		slog.Int64("max_request_bytes", c.MaxRequestBytes),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.Any("cors_allowed_origins", c.CORSAllowedOrigins),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Bool("pprof", c.Pprof),
		slog.String("sales_sink", c.SalesSink),
		slog.String("kafka_sasl_mechanism", c.Kafka.SASLMechanism),
		slog.String("kafka_sasl_username", c.Kafka.SASLUsername),
		slog.String("kafka_sasl_password", mask(c.Kafka.SASLPassword)),
		slog.Bool("kafka_tls", c.Kafka.TLS),
		slog.String("kafka_tls_ca_file", c.Kafka.TLSCAFile),
		slog.String("kafka_tls_cert_file", c.Kafka.TLSCertFile),
		slog.String("kafka_tls_key_file", c.Kafka.TLSKeyFile),
		slog.String("kafka_tls_server_name", c.Kafka.TLSServerName),
		slog.String("write_tokens_file", c.WriteTokensFile),
		slog.String("write_tokens", mask(strings.TrimSpace(c.WriteTokens))),
		slog.Bool("read_auth", c.ReadAuth),
		slog.Bool("legacy_write_auth", c.LegacyWriteAuth),
		slog.Int("max_inflight_writes", c.MaxInflightWrites),
		slog.Int64("max_inflight_bytes", c.MaxInflightBytes),
		slog.Int64("max_inflight_bytes_per_client", c.MaxInflightBytesPerClient),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.String("admission_mode", c.AdmissionMode),
		slog.String("admission_target_latency", c.AdmissionTargetLatency.String()),
		slog.Int("admission_min_writes", c.AdmissionMinWrites),
		slog.String("read_header_timeout", c.ReadHeaderTimeout.String()),
		slog.Int("max_connections", c.MaxConnections),
	)
}

// env reads variables, collecting every malformed one so that a bad
// deployment learns all its mistakes at once.
type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) fail(name, why string) {
	e.errs = append(e.errs, fmt.Errorf("%s %s", name, why))
}

func (e *env) string(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// optional reads a variable that "off" disables, returning "" then.
func (e *env) optional(name, def string) string {
	if v := e.string(name, def); v != "off" {
		return v
	}
	return ""
}

func (e *env) list(name, def string) []string {
	var out []string
	for _, v := range strings.Split(e.string(name, def), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// origins reads the CORS allowlist: "*", "off" (no cross-origin calls at
// all), or origins such as https://dashboard.example.com, comma-separated.
// An origin is a scheme and a host with an optional port, exactly as a
// browser sends it: a path or a trailing slash would never match, so it is
// refused here rather than silently blocking every call.
func (e *env) origins(name, def string) []string {
	if strings.EqualFold(e.string(name, def), "off") {
		return nil
	}
	out := e.list(name, def)
	if len(out) == 0 {
		e.fail(name, `must list origins, "*" or "off"`)
		return []string{"*"}
	}
	for _, o := range out {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			e.fail(name, fmt.Sprintf("holds %q: want an origin such as https://dashboard.example.com (scheme and host, no path)", o))
		}
	}
	return out
}

// prefixes reads a list of networks, comma-separated: CIDRs such as
// 10.0.0.0/8, or single addresses. Empty is none. A network that holds
// every address is refused: trusting it would let any client name itself.
func (e *env) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range e.list(name, "") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil {
				e.fail(name, fmt.Sprintf("holds %q: want a CIDR such as 10.0.0.0/8 or an address", v))
				continue
			}
			p = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		if p.Bits() == 0 {
			e.fail(name, fmt.Sprintf("holds %q, every address: then any client could name itself", v))
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

func (e *env) bool(name string, def bool) bool {
	v := e.string(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, fmt.Sprintf("is not true or false: %q", v))
		return def
	}
	return b
}

func (e *env) int(name string, def int) int {
	v := e.string(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(name, fmt.Sprintf("is not an integer: %q", v))
		return def
	}
	return n
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.string(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(name, fmt.Sprintf("is not a duration such as 3s: %q", v))
		return def
	}
	return d
}

// bytes reads a size in bytes, with an optional KiB, MiB or GiB suffix.
func (e *env) bytes(name string, def int64) int64 {
	v := e.string(name, "")
	if v == "" {
		return def
	}
	unit := int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			v, unit = strings.TrimSpace(n), u
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > (1<<62)/unit {
		e.fail(name, fmt.Sprintf("is not a size such as 4194304 or 4MiB: %q", e.getenv(name)))
		return def
	}
	return n * unit
}

func (e *env) level(name string, def slog.Level) slog.Level {
	v := e.string(name, "")
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		e.fail(name, fmt.Sprintf("is not one of debug, info, warn, error: %q", v))
		return def
	}
	return l
}

// streamConfig holds the settings of long-lived calls (WatchSummary and the
// dashboard) and of the per-request deadlines that let streams last. It is
// read apart from config so each can be tested and logged on its own.
type streamConfig struct {
	// UnaryTimeout bounds reading a unary request and (plus
	// PRODUCE_TIMEOUT) writing its answer.
	UnaryTimeout time.Duration
	// StreamWriteTimeout bounds each write of a streaming response.
	StreamWriteTimeout time.Duration
	// WatchInterval is the least time between two WatchSummary snapshots.
	WatchInterval time.Duration
	// WatchHeartbeat is the longest a WatchSummary stream stays silent.
	WatchHeartbeat time.Duration
	// MaxWatchers bounds the WatchSummary streams served at once.
	MaxWatchers int
	// WriteBodyTimeout bounds the time a write call's body takes to
	// arrive.
	WriteBodyTimeout time.Duration
	// MaxWatchersPerClient bounds one client's WatchSummary streams.
	MaxWatchersPerClient int
}

// loadStreamConfig reads the stream settings through getenv, as loadConfig
// does.
func loadStreamConfig(getenv func(string) string) (streamConfig, error) {
	e := env{getenv: getenv}
	cfg := streamConfig{
		UnaryTimeout:       e.duration("UNARY_TIMEOUT", 15*time.Second),
		StreamWriteTimeout: e.duration("STREAM_WRITE_TIMEOUT", 30*time.Second),
		WatchInterval:      e.duration("WATCH_INTERVAL", 250*time.Millisecond),
		WatchHeartbeat:     e.duration("WATCH_HEARTBEAT", 5*time.Second),
		MaxWatchers:        e.int("WATCH_MAX_STREAMS", 1000),
		// A sale's body is a few hundred bytes and a batch's at most
		// MAX_REQUEST_BYTES; 5 s carries a whole batch over a slow
		// link, and frees what a stalled body holds three times sooner
		// than UNARY_TIMEOUT would.
		WriteBodyTimeout: e.duration("WRITE_BODY_TIMEOUT", 5*time.Second),
	}
	cfg.MaxWatchersPerClient = e.int("WATCH_MAX_STREAMS_PER_CLIENT", min(100, max(cfg.MaxWatchers, 1)))
	if cfg.UnaryTimeout <= 0 {
		e.fail("UNARY_TIMEOUT", "must be positive")
	}
	if cfg.StreamWriteTimeout <= 0 {
		e.fail("STREAM_WRITE_TIMEOUT", "must be positive")
	}
	if cfg.WatchInterval < 10*time.Millisecond {
		e.fail("WATCH_INTERVAL", "must be at least 10ms")
	}
	if cfg.WatchHeartbeat < cfg.WatchInterval {
		e.fail("WATCH_HEARTBEAT", "must be at least WATCH_INTERVAL")
	}
	if cfg.MaxWatchers < 1 {
		e.fail("WATCH_MAX_STREAMS", "must be positive")
	}
	if cfg.WriteBodyTimeout <= 0 || cfg.WriteBodyTimeout > cfg.UnaryTimeout {
		e.fail("WRITE_BODY_TIMEOUT", "must be positive and at most UNARY_TIMEOUT")
	}
	if cfg.MaxWatchersPerClient < 1 || cfg.MaxWatchersPerClient > cfg.MaxWatchers {
		e.fail("WATCH_MAX_STREAMS_PER_CLIENT", "must be between 1 and WATCH_MAX_STREAMS")
	}
	return cfg, errors.Join(e.errs...)
}

// LogValue logs the stream settings.
func (c streamConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("unary_timeout", c.UnaryTimeout.String()),
		slog.String("stream_write_timeout", c.StreamWriteTimeout.String()),
		slog.String("watch_interval", c.WatchInterval.String()),
		slog.String("watch_heartbeat", c.WatchHeartbeat.String()),
		slog.Int("watch_max_streams", c.MaxWatchers),
		slog.String("write_body_timeout", c.WriteBodyTimeout.String()),
		slog.Int("watch_max_streams_per_client", c.MaxWatchersPerClient),
	)
}
