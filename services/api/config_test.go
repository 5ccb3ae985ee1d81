package main

import (
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"blackfriday.local/contract/kafkasecurity"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{
		Port:                 8080,
		KafkaBrokers:         []string{"127.0.0.1:9092"},
		KafkaTopic:           "sales",
		KafkaTopicPartitions: 6,
		KafkaLinger:          time.Millisecond,
		KafkaCompression:     "snappy",
		ValkeyAddr:           "127.0.0.1:6379",
		ValkeyKeyPrefix:      "bf:",
		ValkeyTimeout:        2 * time.Second,
		ProduceTimeout:       3 * time.Second,
		MaxBufferedRecords:   10000,
		MaxRequestBytes:      1 << 20,
		ShutdownTimeout:      10 * time.Second,
		CORSAllowedOrigins:   []string{"*"},
		LogLevel:             slog.LevelInfo,
		MetricsAddr:          ":9090",
		SalesSink:            "kafka",
		LegacyWriteAuth:      true,
		MaxInflightWrites:    1024,
		MaxInflightBytes:     64 << 20,
		// A quarter of MaxInflightBytes.
		MaxInflightBytesPerClient: 16 << 20,
		AdmissionMode:             "fixed",
		AdmissionTargetLatency:    50 * time.Millisecond,
		AdmissionMinWrites:        64,
		ReadHeaderTimeout:         5 * time.Second,
		MaxConnections:            1024,
	}
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
			"ADMISSION_MODE": "adaptive", "ADMISSION_TARGET_LATENCY": "20ms", "ADMISSION_MIN_WRITES": "16",
			"MAX_INFLIGHT_BYTES_PER_CLIENT": "3MiB", "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,fd00::/8,10.1.2.3/16",
		}, func(c *config) {
			*c = config{
				Port: 9000, KafkaBrokers: []string{"k1:9092", "k2:9092"}, KafkaTopic: "s2", KafkaTopicPartitions: 12,
				KafkaLinger: 5 * time.Millisecond, KafkaCompression: "lz4", ValkeyAddr: "v:6379", ValkeyUsername: "api", ValkeyPassword: "secret",
				ValkeyKeyPrefix: "x:", ValkeyTimeout: time.Second, ProduceTimeout: 2 * time.Second, MaxBufferedRecords: 5,
				MaxRequestBytes: 1 << 20, ShutdownTimeout: 30 * time.Second,
				CORSAllowedOrigins: []string{"https://a.example", "https://b.example"}, LogLevel: slog.LevelDebug,
				MetricsAddr: "127.0.0.1:9191", Pprof: true, SalesSink: "discard",
				Kafka: kafkasecurity.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "api", SASLPassword: " pass word ",
					TLS: true, TLSCAFile: "/ca.crt", TLSServerName: "kafka.example"},
				WriteTokensFile: "/etc/api-tokens/tokens", WriteTokens: "t1", ReadAuth: true,
				MaxInflightWrites: 64, MaxInflightBytes: 8 << 20,
				AdmissionMode: "adaptive", AdmissionTargetLatency: 20 * time.Millisecond, AdmissionMinWrites: 16,
				ReadHeaderTimeout: 2 * time.Second, MaxConnections: 300,
				MaxInflightBytesPerClient: 3 << 20,
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
					netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16")},
			}
		}},
		{"CORS off", map[string]string{"CORS_ALLOWED_ORIGINS": "OFF"}, func(c *config) { c.CORSAllowedOrigins = nil }},
		{"CORS with port", map[string]string{"CORS_ALLOWED_ORIGINS": "http://localhost:5173"},
			func(c *config) { c.CORSAllowedOrigins = []string{"http://localhost:5173"} }},
		{"metrics off", map[string]string{"METRICS_ADDR": "off"}, func(c *config) { c.MetricsAddr = "" }},
		{"plain byte count", map[string]string{"MAX_REQUEST_BYTES": "1000"}, func(c *config) { c.MaxRequestBytes = 1000 }},
		{"adaptive floor follows a small ceiling", map[string]string{"MAX_INFLIGHT_WRITES": "16"},
			func(c *config) { c.MaxInflightWrites, c.AdmissionMinWrites = 16, 16 }},
		{"a client's share follows the budget", map[string]string{"MAX_INFLIGHT_BYTES": "128MiB"},
			func(c *config) { c.MaxInflightBytes, c.MaxInflightBytesPerClient = 128<<20, 32<<20 }},
		{"a client's share has room for a compressed request", map[string]string{"MAX_INFLIGHT_BYTES": "4MiB"},
			func(c *config) { c.MaxInflightBytes, c.MaxInflightBytesPerClient = 4<<20, 2<<20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(func(k string) string { return tt.env[k] })
			want := defaults
			want.KafkaBrokers = append([]string(nil), defaults.KafkaBrokers...)
			tt.edit(&want)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("loadConfig(%v) = %+v, %v, want %+v", tt.env, got, err, want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"PORT":                          "http",
		"KAFKA_SASL_MECHANISM":          "GSSAPI",
		"KAFKA_TLS":                     "yes please",
		"KAFKA_COMPRESSION":             "brotli",
		"CORS_ALLOWED_ORIGINS":          "https://dashboard.example/",
		"READ_AUTH":                     "true", // without tokens
		"LEGACY_WRITE_AUTH":             "maybe",
		"MAX_INFLIGHT_WRITES":           "0",
		"READ_HEADER_TIMEOUT":           "0s",
		"MAX_CONNECTIONS":               "-1",
		"MAX_INFLIGHT_BYTES":            "1MiB", // below twice MAX_REQUEST_BYTES
		"MAX_INFLIGHT_BYTES_PER_CLIENT": "1MiB", // below twice MAX_REQUEST_BYTES
		"TRUSTED_PROXIES":               "10.0.0.0/8,gateway",
		"SALES_SINK":                    "null",
		"KAFKA_TOPIC_PARTITIONS":        "0",
		"PRODUCE_TIMEOUT":               "3",
		"MAX_BUFFERED_RECORDS":          "-1",
		"MAX_REQUEST_BYTES":             "4MB",
		"SHUTDOWN_TIMEOUT":              "soon",
		"LOG_LEVEL":                     "chatty",
		"ADMISSION_MODE":                "gradient",
		"ADMISSION_TARGET_LATENCY":      "0s",
		"ADMISSION_MIN_WRITES":          "2000", // above MAX_INFLIGHT_WRITES
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(func(k string) string {
				if k == name {
					return value
				}
				return ""
			})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("loadConfig(%s=%q) = %v, want an error naming %s", name, value, err, name)
			}
		})
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
			_, err := loadConfig(func(k string) string {
				return map[string]string{"CORS_ALLOWED_ORIGINS": tt.value}[k]
			})
			if (err == nil) != tt.ok {
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
			_, err := loadConfig(func(k string) string {
				return map[string]string{"TRUSTED_PROXIES": tt.value}[k]
			})
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "TRUSTED_PROXIES")) {
				t.Errorf("loadConfig(TRUSTED_PROXIES=%q) = %v, want ok %v", tt.value, err, tt.ok)
			}
		})
	}
}

func TestConfigLogMasksSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{
			"VALKEY_PASSWORD": "hunter2", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "api",
			"KAFKA_SASL_PASSWORD": "kafka-secret", "WRITE_TOKENS": "token-0123456789abcdef",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	for _, secret := range []string{"hunter2", "kafka-secret", "token-0123456789abcdef"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("logged config = %s, want %q masked", b.String(), secret)
		}
	}
	for _, want := range []string{`"valkey_password":"****"`, `"kafka_sasl_password":"****"`, `"write_tokens":"****"`, `"kafka_sasl_username":"api"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("logged config = %s, want it to hold %s", b.String(), want)
		}
	}
}
