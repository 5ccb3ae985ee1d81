package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/contract/kafkasecurity"
	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/settings"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/server"
)

// about introduces the settings in -h.
const about = "api is blackfriday's sales API: gRPC, gRPC-Web, Connect and the course's REST and gRPC\n" +
	"on one port. It writes sales to Kafka and answers analytics from Valkey."

// go generate rewrites README.md's table of these settings, which
// TestREADMESettings keeps current.
//go:generate go test -run=TestREADMESettings . -args -update

// config is the api's configuration, read once from the environment. Each
// field with an env tag declares a setting (package settings says how):
// -h, the start-up log and the README's table are all made from the tags.
type config struct {
	Port              int           `env:"PORT" envDefault:"8080" help:"the one port for every protocol"`
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"5s" help:"time a client has to send its headers"`
	MaxConnections    int           `env:"MAX_CONNECTIONS" envDefault:"1024" help:"client connections open at once; one more is closed on accept"`
	MaxRequestBytes   byteSize      `env:"MAX_REQUEST_BYTES" envDefault:"1048576" help:"one request, on the wire and decompressed; in bytes, or with a 'KiB', 'MiB' or 'GiB' suffix"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" help:"time to drain calls and flush the producer on SIGTERM"`

	// MaxConnectionAge makes long-lived HTTP/2 clients (gRPC) dial again
	// now and then, so that they spread over the replicas there are.
	MaxConnectionAge      time.Duration `env:"MAX_CONNECTION_AGE" envDefault:"0" help:"a client connection this old (give or take 10%, at random) is asked to go: HTTP/2 gets a GOAWAY, HTTP/1.1 'Connection: close', and clients redial, spreading over the replicas again; '0' keeps connections (at least '1s' otherwise)"`
	MaxConnectionAgeGrace time.Duration `env:"MAX_CONNECTION_AGE_GRACE" envDefault:"30s" help:"time an aged connection's calls and streams have to finish before it is closed"`

	// GRPCServer names the server of native gRPC on the port.
	GRPCServer string `env:"GRPC_SERVER" envDefault:"grpc-go" help:"server of native gRPC on 'PORT': 'grpc-go' (about half the CPU per call) or 'connect' (connect-go, like every other protocol)"`

	KafkaBrokers         settings.List `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092" help:"comma-separated seed brokers ('make run': embedded Kafka when unset)"`
	KafkaTopic           string        `env:"KAFKA_TOPIC" envDefault:"sales" help:"the sales topic"`
	KafkaTopicPartitions int32         `env:"KAFKA_TOPIC_PARTITIONS" envDefault:"6" help:"partitions when the api creates a missing topic at start (best effort)"`
	KafkaLinger          time.Duration `env:"KAFKA_LINGER" envDefault:"1ms" help:"producer linger: adds up to this to each call's latency, and gives the broker fuller batches (about half its CPU per sale under load); '0' sends at once, and batches then form only behind the request in flight"`
	KafkaCompression     string        `env:"KAFKA_COMPRESSION" envDefault:"snappy" help:"producer batch codec: 'none', 'snappy', 'lz4', 'zstd' or 'gzip'"`
	ProduceTimeout       time.Duration `env:"PRODUCE_TIMEOUT" envDefault:"15s" help:"longest a call waits for Kafka's acknowledgement: longer than a leader's move (the broker session, 9 s)"`
	MaxBufferedRecords   int           `env:"MAX_BUFFERED_RECORDS" envDefault:"10000" help:"producer buffer bound, for single sales and again for batches (their own client under a linger); beyond it calls get 'resource_exhausted'"`
	// SalesSink "discard" is the load comparison's no-op baseline.
	SalesSink string `env:"SALES_SINK" envDefault:"kafka" help:"'discard' acknowledges without writing: only for the load comparison's no-op baseline"`

	// MaxInflightWrites and MaxInflightBytes bound the write calls served
	// at once and the request bytes they hold; beyond them calls are shed
	// with resource_exhausted before their body is read.
	MaxInflightWrites         int      `env:"MAX_INFLIGHT_WRITES" envDefault:"1024" help:"write calls served at once; beyond it 'resource_exhausted' at once, before the body is read"`
	MaxInflightBytes          byteSize `env:"MAX_INFLIGHT_BYTES" envDefault:"64MiB" help:"request bytes the write calls in flight may hold (at least twice 'MAX_REQUEST_BYTES'); a compressed message also holds 'MAX_REQUEST_BYTES' once whole"`
	MaxInflightBytesPerClient byteSize `env:"MAX_INFLIGHT_BYTES_PER_CLIENT" defaultText:"a quarter of 'MAX_INFLIGHT_BYTES', at least twice 'MAX_REQUEST_BYTES'" help:"those one client's write calls may hold (from twice 'MAX_REQUEST_BYTES' to 'MAX_INFLIGHT_BYTES'); beyond it 'resource_exhausted'. See [who is a client](docs/security.md#clients)"`
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, for the per-client limits.
	TrustedProxies prefixes `env:"TRUSTED_PROXIES" help:"CIDRs or addresses of the proxies whose 'X-Forwarded-For' names the client (the manifests: the private ranges); empty means the peer is the client"`

	// WriteTokensFile names a file of bearer tokens mounted from a Secret;
	// WriteTokens lists more, for development: a token in the environment
	// is visible to anyone who can read the pod's spec.
	WriteTokensFile    string  `env:"WRITE_TOKENS_FILE" help:"file of accepted bearer tokens (one a line, from a Secret); turns write authentication on"`
	WriteTokens        string  `env:"WRITE_TOKENS" secret:"true" help:"more tokens, comma-separated; for development only, and logged as a warning"`
	ReadAuth           bool    `env:"READ_AUTH" envDefault:"false" help:"'true': the query RPCs and reflection need a token too (health never does)"`
	LegacyWriteAuth    bool    `env:"LEGACY_WRITE_AUTH" envDefault:"true" help:"'false' leaves the course API open when authentication is on"`
	CORSAllowedOrigins origins `env:"CORS_ALLOWED_ORIGINS" envDefault:"*" help:"browser origins allowed: comma-separated 'https://host[:port]', '*', or 'off'"`

	// Valkey. The key prefix's default is the key schema's, which newConfig
	// sets: a tag would spell it a second time.
	ValkeyAddr      string        `env:"VALKEY_ADDR" envDefault:"127.0.0.1:6379" help:"Valkey or Redis ('make run': started locally when unset)"`
	ValkeyUsername  string        `env:"VALKEY_USERNAME" help:"ACL user"`
	ValkeyPassword  string        `env:"VALKEY_PASSWORD" secret:"true" help:"ACL password"`
	ValkeyKeyPrefix string        `env:"VALKEY_KEY_PREFIX" help:"prefix of every key"`
	ValkeyTimeout   time.Duration `env:"VALKEY_TIMEOUT" envDefault:"2s" help:"per-query Valkey timeout"`

	Streams streamConfig

	// MetricsAddr is empty when METRICS_ADDR is off.
	MetricsAddr string     `env:"METRICS_ADDR" envDefault:":9090" help:"Prometheus '/metrics' ('off' disables)"`
	Pprof       bool       `env:"PPROF" envDefault:"false" help:"also serve Go's profiles ('/debug/pprof/') on 'METRICS_ADDR', never on the public port"`
	LogLevel    slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"'debug', 'info', 'warn' or 'error'"`

	KafkaSettings settings.Kafka
	// Kafka is KafkaSettings checked, read exactly as the aggregator reads
	// it.
	Kafka kafkasecurity.Config `env:"-"`
}

// newConfig returns the config that an empty environment leaves as it is:
// the defaults that are Go values rather than tags.
func newConfig() config {
	return config{ValkeyKeyPrefix: keys.DefaultPrefix}
}

// streamConfig holds the settings of long-lived calls (WatchSummary and the
// dashboard) and of the per-request deadlines that let streams last.
type streamConfig struct {
	UnaryTimeout time.Duration `env:"UNARY_TIMEOUT" envDefault:"15s" help:"time to read a unary request; the answer must be written within this plus 'PRODUCE_TIMEOUT'"`
	// A sale's body is a few hundred bytes and a batch's at most
	// MAX_REQUEST_BYTES; 5 s carries a whole batch over a slow link, and
	// frees what a stalled body holds three times sooner than
	// UNARY_TIMEOUT would.
	WriteBodyTimeout     time.Duration `env:"WRITE_BODY_TIMEOUT" envDefault:"5s" help:"time a write call's body has to arrive once admitted (at most 'UNARY_TIMEOUT'); beyond it 'deadline_exceeded'"`
	StreamWriteTimeout   time.Duration `env:"STREAM_WRITE_TIMEOUT" envDefault:"30s" help:"longest one write of a stream may take before a client that stopped reading is cut off"`
	WatchInterval        time.Duration `env:"WATCH_INTERVAL" envDefault:"250ms" help:"least time between two WatchSummary snapshots (at least '10ms')"`
	WatchHeartbeat       time.Duration `env:"WATCH_HEARTBEAT" envDefault:"5s" help:"longest a WatchSummary stream stays silent (at least 'WATCH_INTERVAL')"`
	MaxWatchers          int           `env:"WATCH_MAX_STREAMS" envDefault:"1000" help:"WatchSummary streams allowed at once"`
	MaxWatchersPerClient int           `env:"WATCH_MAX_STREAMS_PER_CLIENT" defaultText:"'100', or 'WATCH_MAX_STREAMS' if lower" help:"WatchSummary streams one client may hold open (at most 'WATCH_MAX_STREAMS')"`
}

// loadConfig reads the configuration through getenv, applying defaults to
// unset variables and rejecting malformed ones, every one at once.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := newConfig()
	given, err := settings.Parse(&cfg, func(name string) (string, bool) { v := getenv(name); return v, v != "" })
	if err != nil {
		return cfg, err
	}
	// The defaults that follow from other settings, for the variables not
	// given: a given 0 is out of range, not unset. A client's share is a
	// quarter of the budget, with room for the largest compressed request.
	if _, ok := given["MAX_INFLIGHT_BYTES_PER_CLIENT"]; !ok {
		cfg.MaxInflightBytesPerClient = min(max(cfg.MaxInflightBytes/4, 2*cfg.MaxRequestBytes), cfg.MaxInflightBytes)
	}
	if _, ok := given["WATCH_MAX_STREAMS_PER_CLIENT"]; !ok {
		cfg.Streams.MaxWatchersPerClient = min(100, max(cfg.Streams.MaxWatchers, 1))
	}
	if cfg.MetricsAddr == "off" {
		cfg.MetricsAddr = ""
	}
	var kafkaErrs []error
	cfg.Kafka, kafkaErrs = cfg.KafkaSettings.Load()
	return cfg, errors.Join(append(kafkaErrs, cfg.check(), cfg.Streams.check())...)
}

// check applies the rules that parsing does not: ranges, and settings that
// depend on one another.
func (c config) check() error {
	var errs []error
	bad := func(name, why string) { errs = append(errs, fmt.Errorf("%s %s", name, why)) }
	if c.Port < 1 || c.Port > 65535 {
		bad("PORT", "must be between 1 and 65535")
	}
	if c.ReadHeaderTimeout <= 0 {
		bad("READ_HEADER_TIMEOUT", "must be positive")
	}
	if c.MaxConnections < 1 {
		bad("MAX_CONNECTIONS", "must be positive")
	}
	if c.MaxConnectionAge != 0 && c.MaxConnectionAge < time.Second {
		bad("MAX_CONNECTION_AGE", "must be 0 (off) or at least 1s")
	}
	if c.MaxConnectionAgeGrace <= 0 {
		bad("MAX_CONNECTION_AGE_GRACE", "must be positive")
	}
	if c.GRPCServer != server.GRPCServerGo && c.GRPCServer != server.GRPCServerConnect {
		bad("GRPC_SERVER", "must be grpc-go or connect")
	}
	if c.MaxRequestBytes < 1 {
		bad("MAX_REQUEST_BYTES", "must be positive")
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive")
	}
	if len(c.KafkaBrokers) == 0 {
		bad("KAFKA_BROKERS", "must name at least one broker")
	}
	if c.KafkaTopicPartitions < 1 {
		bad("KAFKA_TOPIC_PARTITIONS", "must be positive")
	}
	if _, err := ingest.ParseCompression(c.KafkaCompression); err != nil {
		bad("KAFKA_COMPRESSION", err.Error())
	}
	if c.ProduceTimeout <= 0 {
		bad("PRODUCE_TIMEOUT", "must be positive")
	}
	if c.MaxBufferedRecords < 1 {
		bad("MAX_BUFFERED_RECORDS", "must be positive")
	}
	if c.SalesSink != "kafka" && c.SalesSink != "discard" {
		bad("SALES_SINK", "must be kafka or discard")
	}
	if c.MaxInflightWrites < 1 {
		bad("MAX_INFLIGHT_WRITES", "must be positive")
	}
	// A compressed request holds its body and, once that is whole, what it
	// may decompress to: up to MAX_REQUEST_BYTES each.
	if c.MaxInflightBytes < 2*c.MaxRequestBytes {
		bad("MAX_INFLIGHT_BYTES", "must be at least twice MAX_REQUEST_BYTES, or the largest compressed request could never be admitted")
	}
	if c.MaxInflightBytesPerClient < 2*c.MaxRequestBytes || c.MaxInflightBytesPerClient > c.MaxInflightBytes {
		bad("MAX_INFLIGHT_BYTES_PER_CLIENT", "must be between twice MAX_REQUEST_BYTES (the largest compressed request) and MAX_INFLIGHT_BYTES")
	}
	if c.ReadAuth && c.WriteTokensFile == "" && c.WriteTokens == "" {
		bad("READ_AUTH", "needs tokens: set WRITE_TOKENS_FILE (or WRITE_TOKENS)")
	}
	return errors.Join(errs...)
}

// check applies the stream settings' rules.
func (c streamConfig) check() error {
	var errs []error
	bad := func(name, why string) { errs = append(errs, fmt.Errorf("%s %s", name, why)) }
	if c.UnaryTimeout <= 0 {
		bad("UNARY_TIMEOUT", "must be positive")
	}
	if c.WriteBodyTimeout <= 0 || c.WriteBodyTimeout > c.UnaryTimeout {
		bad("WRITE_BODY_TIMEOUT", "must be positive and at most UNARY_TIMEOUT")
	}
	if c.StreamWriteTimeout <= 0 {
		bad("STREAM_WRITE_TIMEOUT", "must be positive")
	}
	if c.WatchInterval < 10*time.Millisecond {
		bad("WATCH_INTERVAL", "must be at least 10ms")
	}
	if c.WatchHeartbeat < c.WatchInterval {
		bad("WATCH_HEARTBEAT", "must be at least WATCH_INTERVAL")
	}
	if c.MaxWatchers < 1 {
		bad("WATCH_MAX_STREAMS", "must be positive")
	}
	if c.MaxWatchersPerClient < 1 || c.MaxWatchersPerClient > c.MaxWatchers {
		bad("WATCH_MAX_STREAMS_PER_CLIENT", "must be between 1 and WATCH_MAX_STREAMS")
	}
	return errors.Join(errs...)
}

// LogValue logs the configuration with the secrets masked.
func (c config) LogValue() slog.Value { return settings.LogValue(c) }

// parseArgs reads the command line: -h lists the settings.
func parseArgs(args []string, stdout io.Writer) (exit bool, err error) {
	return settings.Args("api", about, settings.Of(newConfig()), args, stdout)
}

// byteSize is a size in bytes, with an optional KiB, MiB or GiB suffix.
type byteSize int64

func (n *byteSize) UnmarshalText(b []byte) error {
	v, unit := strings.TrimSpace(string(b)), int64(1)
	for _, u := range []struct {
		suffix string
		bytes  int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			v, unit = strings.TrimSpace(s), u.bytes
			break
		}
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x > (1<<62)/unit {
		return errors.New("want a size such as 4194304 or 4MiB")
	}
	*n = byteSize(x * unit)
	return nil
}

// origins is the CORS allowlist: "*", "off" (no cross-origin calls at all),
// or origins such as https://dashboard.example.com, comma-separated. An
// origin is a scheme and a host with an optional port, exactly as a
// browser sends it: a path or a trailing slash would never match, so it is
// refused here rather than silently blocking every call.
type origins []string

func (o *origins) UnmarshalText(b []byte) error {
	*o = nil
	if strings.EqualFold(strings.TrimSpace(string(b)), "off") {
		return nil
	}
	var all settings.List
	_ = all.UnmarshalText(b)
	if len(all) == 0 {
		return errors.New(`want origins, "*" or "off"`)
	}
	var errs []error
	for _, v := range all {
		u, err := url.Parse(v)
		if v != "*" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
			errs = append(errs, fmt.Errorf("holds %q: want an origin such as https://dashboard.example.com (scheme and host, no path)", v))
		}
	}
	*o = origins(all)
	return errors.Join(errs...)
}

// prefixes is a list of networks, comma-separated: CIDRs such as
// 10.0.0.0/8, or single addresses. A network that holds every address is
// refused: trusting it would let any client name itself.
type prefixes []netip.Prefix

func (p *prefixes) UnmarshalText(b []byte) error {
	*p = nil
	var all settings.List
	_ = all.UnmarshalText(b)
	var errs []error
	for _, v := range all {
		n, err := netip.ParsePrefix(v)
		if err != nil {
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("holds %q: want a CIDR such as 10.0.0.0/8 or an address", v))
				continue
			}
			n = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		if n.Bits() == 0 {
			errs = append(errs, fmt.Errorf("holds %q, every address: then any client could name itself", v))
			continue
		}
		*p = append(*p, n.Masked())
	}
	return errors.Join(errs...)
}
