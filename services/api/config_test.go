package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{
		Port:                 8080,
		KafkaBrokers:         []string{"127.0.0.1:9092"},
		KafkaTopic:           "sales",
		KafkaTopicPartitions: 6,
		ValkeyAddr:           "127.0.0.1:6379",
		ValkeyKeyPrefix:      "bf:",
		ValkeyTimeout:        2 * time.Second,
		ProduceTimeout:       3 * time.Second,
		MaxBufferedRecords:   10000,
		MaxRequestBytes:      4 << 20,
		ShutdownTimeout:      10 * time.Second,
		CORSAllowedOrigins:   []string{"*"},
		LogLevel:             slog.LevelInfo,
		MetricsAddr:          ":9090",
		SalesSink:            "kafka",
	}
	tests := []struct {
		name string
		env  map[string]string
		edit func(*config)
	}{
		{"defaults", nil, func(*config) {}},
		{"everything set", map[string]string{
			"PORT": "9000", "KAFKA_BROKERS": "k1:9092, k2:9092,", "KAFKA_TOPIC": "s2", "KAFKA_TOPIC_PARTITIONS": "12",
			"KAFKA_LINGER": "5ms", "VALKEY_ADDR": "v:6379", "VALKEY_USERNAME": "api", "VALKEY_PASSWORD": "secret",
			"VALKEY_KEY_PREFIX": "x:", "VALKEY_TIMEOUT": "1s", "PRODUCE_TIMEOUT": "2s", "MAX_BUFFERED_RECORDS": "5",
			"MAX_REQUEST_BYTES": "1MiB", "SHUTDOWN_TIMEOUT": "30s", "CORS_ALLOWED_ORIGINS": "https://a.example,https://b.example",
			"LOG_LEVEL": "DEBUG", "METRICS_ADDR": "127.0.0.1:9191", "SALES_SINK": "discard",
		}, func(c *config) {
			*c = config{
				Port: 9000, KafkaBrokers: []string{"k1:9092", "k2:9092"}, KafkaTopic: "s2", KafkaTopicPartitions: 12,
				KafkaLinger: 5 * time.Millisecond, ValkeyAddr: "v:6379", ValkeyUsername: "api", ValkeyPassword: "secret",
				ValkeyKeyPrefix: "x:", ValkeyTimeout: time.Second, ProduceTimeout: 2 * time.Second, MaxBufferedRecords: 5,
				MaxRequestBytes: 1 << 20, ShutdownTimeout: 30 * time.Second,
				CORSAllowedOrigins: []string{"https://a.example", "https://b.example"}, LogLevel: slog.LevelDebug,
				MetricsAddr: "127.0.0.1:9191", SalesSink: "discard",
			}
		}},
		{"metrics off", map[string]string{"METRICS_ADDR": "off"}, func(c *config) { c.MetricsAddr = "" }},
		{"plain byte count", map[string]string{"MAX_REQUEST_BYTES": "1000"}, func(c *config) { c.MaxRequestBytes = 1000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(func(k string) string { return tt.env[k] })
			want := defaults
			want.KafkaBrokers = append([]string(nil), defaults.KafkaBrokers...)
			tt.edit(&want)
			if err != nil || slog.AnyValue(got).String() != slog.AnyValue(want).String() || got.ValkeyPassword != want.ValkeyPassword {
				t.Errorf("loadConfig(%v) = %+v, %v, want %+v", tt.env, got, err, want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"PORT":                   "http",
		"SALES_SINK":             "null",
		"KAFKA_TOPIC_PARTITIONS": "0",
		"PRODUCE_TIMEOUT":        "3",
		"MAX_BUFFERED_RECORDS":   "-1",
		"MAX_REQUEST_BYTES":      "4MB",
		"SHUTDOWN_TIMEOUT":       "soon",
		"LOG_LEVEL":              "chatty",
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

func TestConfigLogMasksSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"VALKEY_PASSWORD": "hunter2"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), `"valkey_password":"****"`) {
		t.Errorf("logged config = %s, want the password masked", b.String())
	}
}
