package main

import (
	"bytes"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"blackfriday.local/contract/kafkasecurity"
	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/settings"
	"blackfriday.local/contract/settings/settingstest"
)

// defaults is the configuration of an empty environment.
func defaults() config {
	return config{
		Port:                 8080,
		ReadHeaderTimeout:    5 * time.Second,
		MaxConnections:       1024,
		MaxRequestBytes:      1 << 20,
		ShutdownTimeout:      10 * time.Second,
		KafkaBrokers:         settings.List{"127.0.0.1:9092"},
		KafkaTopic:           "sales",
		KafkaTopicPartitions: 6,
		KafkaLinger:          time.Millisecond,
		KafkaCompression:     "snappy",
		ProduceTimeout:       15 * time.Second,
		MaxBufferedRecords:   10000,
		SalesSink:            "kafka",
		MaxInflightWrites:    1024,
		MaxInflightBytes:     64 << 20,
		// A quarter of MaxInflightBytes.
		MaxInflightBytesPerClient: 16 << 20,
		LegacyWriteAuth:           true,
		MaxConnectionAgeGrace:     30 * time.Second,
		GRPCServer:                "grpc-go",
		CORSAllowedOrigins:        origins{"*"},
		ValkeyAddr:                "127.0.0.1:6379",
		ValkeyKeyPrefix:           keys.DefaultPrefix,
		ValkeyTimeout:             2 * time.Second,
		Streams: streamConfig{
			UnaryTimeout:         15 * time.Second,
			WriteBodyTimeout:     5 * time.Second,
			StreamWriteTimeout:   30 * time.Second,
			WatchInterval:        250 * time.Millisecond,
			WatchHeartbeat:       5 * time.Second,
			MaxWatchers:          1000,
			MaxWatchersPerClient: 100,
		},
		MetricsAddr:   ":9090",
		LogLevel:      slog.LevelInfo,
		KafkaSettings: settings.Kafka{TLS: "false"},
	}
}

// getenv reads env as os.Getenv reads the environment.
func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		edit func(*config)
	}{
		{"defaults", nil, func(*config) {}},
		{"everything set", map[string]string{
			"PORT": "9000", "KAFKA_BROKERS": "k1:9092, k2:9092,", "KAFKA_TOPIC": "s2", "KAFKA_TOPIC_PARTITIONS": "12",
			"KAFKA_LINGER": "5ms", "KAFKA_COMPRESSION": "lz4", "VALKEY_ADDR": "v:6379", "VALKEY_USERNAME": "api", "VALKEY_PASSWORD": "secret",
			"VALKEY_KEY_PREFIX": "x:", "VALKEY_TIMEOUT": "1s", "PRODUCE_TIMEOUT": "2s", "MAX_BUFFERED_RECORDS": "5",
			"MAX_REQUEST_BYTES": "1MiB", "SHUTDOWN_TIMEOUT": "30s", "CORS_ALLOWED_ORIGINS": "https://a.example,https://b.example",
			"LOG_LEVEL": "DEBUG", "METRICS_ADDR": "127.0.0.1:9191", "PPROF": "true", "SALES_SINK": "discard",
			"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": " pass word ",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": "/ca.crt", "KAFKA_TLS_SERVER_NAME": "kafka.example",
			"WRITE_TOKENS_FILE": "/etc/api-tokens/tokens", "WRITE_TOKENS": "t1", "READ_AUTH": "true",
			"LEGACY_WRITE_AUTH": "false", "MAX_INFLIGHT_WRITES": "64", "MAX_INFLIGHT_BYTES": "8MiB", "READ_HEADER_TIMEOUT": "2s", "MAX_CONNECTIONS": "300",
			"MAX_CONNECTION_AGE": "5m", "MAX_CONNECTION_AGE_GRACE": "1m", "GRPC_SERVER": "connect",
			"MAX_INFLIGHT_BYTES_PER_CLIENT": "3MiB", "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,fd00::/8,10.1.2.3/16",
		}, func(c *config) {
			*c = config{
				Port: 9000, KafkaBrokers: settings.List{"k1:9092", "k2:9092"}, KafkaTopic: "s2", KafkaTopicPartitions: 12,
				KafkaLinger: 5 * time.Millisecond, KafkaCompression: "lz4", ValkeyAddr: "v:6379", ValkeyUsername: "api", ValkeyPassword: "secret",
				ValkeyKeyPrefix: "x:", ValkeyTimeout: time.Second, ProduceTimeout: 2 * time.Second, MaxBufferedRecords: 5,
				MaxRequestBytes: 1 << 20, ShutdownTimeout: 30 * time.Second,
				CORSAllowedOrigins: origins{"https://a.example", "https://b.example"}, LogLevel: slog.LevelDebug,
				MetricsAddr: "127.0.0.1:9191", Pprof: true, SalesSink: "discard",
				KafkaSettings: settings.Kafka{SASLMechanism: "scram-sha-512", SASLUsername: "api", SASLPassword: " pass word ",
					TLS: "true", TLSCAFile: "/ca.crt", TLSServerName: "kafka.example"},
				Kafka: kafkasecurity.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "api", SASLPassword: " pass word ",
					TLS: true, TLSCAFile: "/ca.crt", TLSServerName: "kafka.example"},
				WriteTokensFile: "/etc/api-tokens/tokens", WriteTokens: "t1", ReadAuth: true,
				MaxInflightWrites: 64, MaxInflightBytes: 8 << 20,
				ReadHeaderTimeout: 2 * time.Second, MaxConnections: 300,
				MaxConnectionAge: 5 * time.Minute, MaxConnectionAgeGrace: time.Minute, GRPCServer: "connect",
				MaxInflightBytesPerClient: 3 << 20,
				TrustedProxies: prefixes{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
					netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16")},
				Streams: defaults().Streams,
			}
		}},
		{"values are trimmed", map[string]string{"PORT": " 9000 ", "KAFKA_TOPIC": "\ts2\n"},
			func(c *config) { c.Port, c.KafkaTopic = 9000, "s2" }},
		{"empty or blank means the default", map[string]string{"PORT": "", "KAFKA_TOPIC": "  "}, func(*config) {}},
		{"CORS off", map[string]string{"CORS_ALLOWED_ORIGINS": "OFF"}, func(c *config) { c.CORSAllowedOrigins = nil }},
		{"CORS with port", map[string]string{"CORS_ALLOWED_ORIGINS": "http://localhost:5173"},
			func(c *config) { c.CORSAllowedOrigins = origins{"http://localhost:5173"} }},
		{"metrics off", map[string]string{"METRICS_ADDR": "off"}, func(c *config) { c.MetricsAddr = "" }},
		{"plain byte count", map[string]string{"MAX_REQUEST_BYTES": "1000"}, func(c *config) { c.MaxRequestBytes = 1000 }},
		{"a client's share follows the budget", map[string]string{"MAX_INFLIGHT_BYTES": "128MiB"},
			func(c *config) { c.MaxInflightBytes, c.MaxInflightBytesPerClient = 128<<20, 32<<20 }},
		{"a client's share has room for a compressed request", map[string]string{"MAX_INFLIGHT_BYTES": "4MiB"},
			func(c *config) { c.MaxInflightBytes, c.MaxInflightBytesPerClient = 4<<20, 2<<20 }},
		{"SCRAM-SHA-256 without TLS", map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
		}, func(c *config) {
			c.KafkaSettings.SASLMechanism, c.KafkaSettings.SASLUsername, c.KafkaSettings.SASLPassword = "SCRAM-SHA-256", "u", "p"
			c.Kafka = kafkasecurity.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(getenv(tt.env))
			want := defaults()
			tt.edit(&want)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("loadConfig(%v) = %+v, %v, want %+v", tt.env, got, err, want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string // in the error, with the variable's name
	}{
		{map[string]string{"PORT": "http"}, `PORT="http": want an integer`},
		{map[string]string{"PORT": "65536"}, "PORT must be between 1 and 65535"},
		{map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"},
		{map[string]string{"KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM is not"},
		{map[string]string{"KAFKA_TLS": "yes please"}, "KAFKA_TLS"},
		{map[string]string{"KAFKA_TLS_CA_FILE": "/ca.crt"}, "KAFKA_TLS is not true"},
		{map[string]string{"KAFKA_COMPRESSION": "brotli"}, "KAFKA_COMPRESSION"},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "https://dashboard.example/"}, "CORS_ALLOWED_ORIGINS"},
		{map[string]string{"READ_AUTH": "true"}, "READ_AUTH needs tokens"},
		{map[string]string{"LEGACY_WRITE_AUTH": "maybe"}, `LEGACY_WRITE_AUTH="maybe": want true or false`},
		{map[string]string{"MAX_INFLIGHT_WRITES": "0"}, "MAX_INFLIGHT_WRITES"},
		{map[string]string{"READ_HEADER_TIMEOUT": "0s"}, "READ_HEADER_TIMEOUT"},
		{map[string]string{"MAX_CONNECTIONS": "-1"}, "MAX_CONNECTIONS"},
		{map[string]string{"MAX_CONNECTION_AGE": "10ms"}, "MAX_CONNECTION_AGE must be 0 (off) or at least 1s"},
		{map[string]string{"MAX_CONNECTION_AGE": "-5m"}, "MAX_CONNECTION_AGE must be 0"},
		{map[string]string{"MAX_CONNECTION_AGE_GRACE": "0s"}, "MAX_CONNECTION_AGE_GRACE must be positive"},
		{map[string]string{"MAX_INFLIGHT_BYTES": "1MiB"}, "MAX_INFLIGHT_BYTES must be at least twice MAX_REQUEST_BYTES"},
		{map[string]string{"MAX_INFLIGHT_BYTES_PER_CLIENT": "1MiB"}, "MAX_INFLIGHT_BYTES_PER_CLIENT"},
		{map[string]string{"MAX_INFLIGHT_BYTES_PER_CLIENT": "65MiB"}, "MAX_INFLIGHT_BYTES_PER_CLIENT"},
		{map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,gateway"}, `TRUSTED_PROXIES="10.0.0.0/8,gateway": holds "gateway"`},
		{map[string]string{"SALES_SINK": "null"}, "SALES_SINK"},
		{map[string]string{"KAFKA_BROKERS": " , "}, "KAFKA_BROKERS"},
		{map[string]string{"KAFKA_TOPIC_PARTITIONS": "0"}, "KAFKA_TOPIC_PARTITIONS"},
		{map[string]string{"PRODUCE_TIMEOUT": "3"}, `PRODUCE_TIMEOUT="3": want a duration such as 3s`},
		{map[string]string{"MAX_BUFFERED_RECORDS": "-1"}, "MAX_BUFFERED_RECORDS"},
		{map[string]string{"MAX_REQUEST_BYTES": "4MB"}, `MAX_REQUEST_BYTES="4MB": want a size`},
		{map[string]string{"MAX_REQUEST_BYTES": "0"}, "MAX_REQUEST_BYTES must be positive"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{map[string]string{"LOG_LEVEL": "chatty"}, `LOG_LEVEL="chatty": want debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if _, err := loadConfig(getenv(tt.env)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadConfig(%v) = %v, want an error holding %q", tt.env, err, tt.want)
			}
		})
	}
}

// TestLoadConfigReportsEveryMistake: a bad deployment learns all its
// mistakes at once.
func TestLoadConfigReportsEveryMistake(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(getenv(map[string]string{"PORT": "http", "WATCH_INTERVAL": "soon", "PPROF": "maybe"}))
	for _, name := range []string{"PORT", "WATCH_INTERVAL", "PPROF"} {
		if err == nil || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("loadConfig() = %v, want an error naming %s", err, name)
		}
	}
	_, err = loadConfig(getenv(map[string]string{"MAX_CONNECTIONS": "0", "WATCH_MAX_STREAMS": "0", "KAFKA_TLS_CA_FILE": "/ca"}))
	for _, name := range []string{"MAX_CONNECTIONS", "WATCH_MAX_STREAMS", "KAFKA_TLS"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("loadConfig() = %v, want an error naming %s", err, name)
		}
	}
}

func TestLoadConfigCORSOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		ok    bool
	}{
		{"*", true},
		{"https://api.blackfriday.example.com", true},
		{"https://a.example, http://localhost:8080", true},
		{"https://*.blackfriday.example.com", true},
		{" , ", false},
		{"api.blackfriday.example.com", false},
		{"https://api.blackfriday.example.com/", false},
		{"https://api.blackfriday.example.com/dashboard", false},
		{"ftp://files.example", false},
		{"https://user@a.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(getenv(map[string]string{"CORS_ALLOWED_ORIGINS": tt.value}))
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS")) {
				t.Errorf("loadConfig(CORS_ALLOWED_ORIGINS=%q) = %v, want ok %v", tt.value, err, tt.ok)
			}
		})
	}
}

func TestLoadConfigTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7", true},
		{"203.0.113.7", true},
		{"2001:db8::1", true},
		{"10.0.0.0/33", false},
		{"0.0.0.0/0", false},
		{"::/0", false},
		{"10.0.0.0/8;192.168.0.0/16", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(getenv(map[string]string{"TRUSTED_PROXIES": tt.value}))
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "TRUSTED_PROXIES")) {
				t.Errorf("loadConfig(TRUSTED_PROXIES=%q) = %v, want ok %v", tt.value, err, tt.ok)
			}
		})
	}
}

func TestConfigLogMasksSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // in the log
	}{
		{"secrets set", map[string]string{
			"VALKEY_PASSWORD": "hunter2", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api",
			"KAFKA_SASL_PASSWORD": "kafka-secret", "WRITE_TOKENS": "token-0123456789abcdef",
		}, []string{`"VALKEY_PASSWORD":"****"`, `"KAFKA_SASL_PASSWORD":"****"`, `"WRITE_TOKENS":"****"`, `"KAFKA_SASL_USERNAME":"api"`}},
		{"secrets unset", nil, []string{`"VALKEY_PASSWORD":""`, `"KAFKA_SASL_PASSWORD":""`, `"WRITE_TOKENS":""`}},
		{"every kind of value", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8", "MAX_REQUEST_BYTES": "2MiB"}, []string{
			`"PORT":8080`, `"KAFKA_BROKERS":["127.0.0.1:9092"]`, `"KAFKA_LINGER":"1ms"`, `"LOG_LEVEL":"INFO"`,
			`"MAX_REQUEST_BYTES":2097152`, `"TRUSTED_PROXIES":["10.0.0.0/8"]`, `"LEGACY_WRITE_AUTH":true`,
			`"WATCH_MAX_STREAMS_PER_CLIENT":100`, `"KAFKA_TLS":"false"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(getenv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
			for _, s := range settings.Of(cfg) {
				if s.Secret && tt.env[s.Name] != "" && strings.Contains(b.String(), tt.env[s.Name]) {
					t.Errorf("logged config = %s, want %s masked", b.String(), s.Name)
				}
				if !strings.Contains(b.String(), `"`+s.Name+`":`) {
					t.Errorf("logged config = %s, want it to hold %s", b.String(), s.Name)
				}
			}
			for _, want := range tt.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("logged config = %s, want it to hold %s", b.String(), want)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := parseArgs([]string{"-h"}, &out); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{
		"Usage: api [-h]\n",
		"  PORT (default 8080)\n        the one port for every protocol\n",
		"  MAX_INFLIGHT_BYTES (default 64MiB)\n",
		"  MAX_INFLIGHT_BYTES_PER_CLIENT (default: a quarter of 'MAX_INFLIGHT_BYTES', at least twice 'MAX_REQUEST_BYTES')\n",
		"  VALKEY_PASSWORD\n        ACL password (secret: masked in the log)\n",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("api -h = %s\nwant it to hold %q", help, want)
		}
	}
	// A link shows its target; the words may be wrapped.
	if want := "See who is a client (docs/security.md#clients)"; !strings.Contains(strings.Join(strings.Fields(help), " "), want) {
		t.Errorf("api -h = %s\nwant it to hold %q", help, want)
	}
	for _, s := range settings.Of(config{}) {
		if !strings.Contains(help, "\n  "+s.Name+" ") && !strings.Contains(help, "\n  "+s.Name+"\n") {
			t.Errorf("api -h does not list %s", s.Name)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		// Only a word too long for one line (a link) may pass the edge.
		if strings.HasPrefix(line, "        ") && len(line) > 80 && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("api -h has a help line over 80 columns: %q", line)
		}
	}
}

// TestHelpExitsZero runs the api's main with -h in a child process: it
// prints the settings and exits 0, reading nothing else.
func TestHelpExitsZero(t *testing.T) {
	if os.Getenv("BF_API_HELP_CHILD") == "1" {
		os.Args = []string{"api", "--help"}
		main()
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelpExitsZero$")
	cmd.Env = append(os.Environ(), "BF_API_HELP_CHILD=1", "PORT=not a port")
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("api --help: %v, want exit 0; stdout:\n%s", err, out)
	} else if !bytes.HasPrefix(out, []byte("Usage: api [-h]\n")) || !bytes.Contains(out, []byte("WATCH_MAX_STREAMS_PER_CLIENT")) {
		t.Errorf("api --help printed %s, want the settings", out)
	}
}

var update = flag.Bool("update", false, "rewrite the settings table in the repository's README.md")

// TestREADMESettings checks README.md's table of the api's settings; with
// -update (go generate) it rewrites the table instead.
func TestREADMESettings(t *testing.T) {
	settingstest.CheckREADME(t, filepath.Join("..", "..", "README.md"), "api", settings.Of(newConfig()), *update)
}

// TestManifestsSetOnlySettings: the api cannot refuse unknown variables,
// so a misspelt one in the manifests is caught here.
func TestManifestsSetOnlySettings(t *testing.T) {
	t.Parallel()
	settingstest.CheckManifests(t, filepath.Join("..", "..", "kustomize"), "api", settings.Of(config{}))
}

func TestSettingsDeclared(t *testing.T) {
	t.Parallel()
	settingstest.CheckDeclared(t, settings.Of(newConfig()))
}
