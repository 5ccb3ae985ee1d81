package main

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"blackfriday.local/contract/kafkasecurity"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{
		Brokers:           []string{"127.0.0.1:9092"},
		Topic:             "sales",
		DLQTopic:          "sales.dlq",
		Group:             "blackfriday-aggregator",
		TopicPartitions:   6,
		ValkeyAddr:        "127.0.0.1:6379",
		KeyPrefix:         "bf:",
		PollMaxRecords:    50000,
		RateTTL:           25 * time.Hour,
		SessionTimeout:    15 * time.Second,
		HTTPAddr:          ":8081",
		LogLevel:          slog.LevelInfo,
		DedupWindow:       10 * time.Minute,
		ReconcileInterval: 30 * time.Second,
		LogResetUnready:   5 * time.Minute,
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    func(c config) config
		wantErr string
	}{
		{name: "defaults", env: nil, want: func(c config) config { return c }},
		{
			name: "everything set",
			env: map[string]string{
				"KAFKA_BROKERS": " k1:9092, k2:9092 ,", "KAFKA_TOPIC": "s", "KAFKA_DLQ_TOPIC": "s.dead",
				"KAFKA_GROUP": "g", "KAFKA_TOPIC_PARTITIONS": "12", "VALKEY_ADDR": "v:6379",
				"VALKEY_USERNAME": "agg", "VALKEY_PASSWORD": "secret", "VALKEY_KEY_PREFIX": "x:",
				"POLL_MAX_RECORDS": "500", "RATE_TTL": "2h", "HTTP_ADDR": "127.0.0.1:9000", "LOG_LEVEL": "debug",
				"KAFKA_INSTANCE_ID": "aggregator-0", "KAFKA_SESSION_TIMEOUT": "30s",
				"DEDUP_WINDOW": "1h", "RECONCILE_INTERVAL": "5s", "LOG_RESET_UNREADY": "90s",
				"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "aggregator",
				"KAFKA_SASL_PASSWORD": " pass word ", "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": "/ca.crt",
				"KAFKA_TLS_CERT_FILE": "/user.crt", "KAFKA_TLS_KEY_FILE": "/user.key", "KAFKA_TLS_SERVER_NAME": "kafka",
			},
			want: func(c config) config {
				return config{
					Brokers: []string{"k1:9092", "k2:9092"}, Topic: "s", DLQTopic: "s.dead", Group: "g",
					TopicPartitions: 12, ValkeyAddr: "v:6379", ValkeyUsername: "agg", ValkeyPassword: "secret",
					KeyPrefix: "x:", PollMaxRecords: 500, RateTTL: 2 * time.Hour, HTTPAddr: "127.0.0.1:9000",
					LogLevel: slog.LevelDebug, InstanceID: "aggregator-0", SessionTimeout: 30 * time.Second,
					DedupWindow: time.Hour, ReconcileInterval: 5 * time.Second, LogResetUnready: 90 * time.Second,
					Kafka: kafkasecurity.Config{
						SASLMechanism: "SCRAM-SHA-512", SASLUsername: "aggregator", SASLPassword: " pass word ",
						TLS: true, TLSCAFile: "/ca.crt", TLSCertFile: "/user.crt", TLSKeyFile: "/user.key", TLSServerName: "kafka",
					},
				}
			},
		},
		{
			name: "empty HTTP_ADDR disables the probes",
			env:  map[string]string{"HTTP_ADDR": ""},
			want: func(c config) config { c.HTTPAddr = ""; return c },
		},
		{
			name: "empty values elsewhere mean the default",
			env:  map[string]string{"KAFKA_TOPIC": " ", "POLL_MAX_RECORDS": ""},
			want: func(c config) config { return c },
		},
		{
			name: "zero DEDUP_WINDOW turns dedup off",
			env:  map[string]string{"DEDUP_WINDOW": "0s"},
			want: func(c config) config { c.DedupWindow = 0; return c },
		},
		{
			name: "SCRAM-SHA-256 without TLS",
			env:  map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			want: func(c config) config {
				c.Kafka = kafkasecurity.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p"}
				return c
			},
		},
		{
			name: "TLS without SASL",
			env:  map[string]string{"KAFKA_TLS": "1"},
			want: func(c config) config { c.Kafka.TLS = true; return c },
		},
		{name: "bad DEDUP_WINDOW", env: map[string]string{"DEDUP_WINDOW": "10"}, wantErr: "DEDUP_WINDOW"},
		{name: "negative DEDUP_WINDOW", env: map[string]string{"DEDUP_WINDOW": "-1m"}, wantErr: "DEDUP_WINDOW"},
		{name: "DEDUP_WINDOW past retention", env: map[string]string{"DEDUP_WINDOW": "200h"}, wantErr: "DEDUP_WINDOW"},
		{name: "short RECONCILE_INTERVAL", env: map[string]string{"RECONCILE_INTERVAL": "10ms"}, wantErr: "RECONCILE_INTERVAL"},
		{name: "zero LOG_RESET_UNREADY", env: map[string]string{"LOG_RESET_UNREADY": "0s"}, wantErr: "LOG_RESET_UNREADY"},
		{name: "unknown mechanism", env: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, wantErr: "KAFKA_SASL_MECHANISM"},
		{name: "mechanism without password", env: map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}, wantErr: "KAFKA_SASL_PASSWORD"},
		{name: "password without mechanism", env: map[string]string{"KAFKA_SASL_PASSWORD": "p"}, wantErr: "KAFKA_SASL_MECHANISM"},
		{name: "bad KAFKA_TLS", env: map[string]string{"KAFKA_TLS": "sure"}, wantErr: "KAFKA_TLS"},
		{name: "CA without TLS", env: map[string]string{"KAFKA_TLS_CA_FILE": "/ca.crt"}, wantErr: "KAFKA_TLS is not true"},
		{name: "cert without key", env: map[string]string{"KAFKA_TLS": "true", "KAFKA_TLS_CERT_FILE": "/c"}, wantErr: "KAFKA_TLS_KEY_FILE"},
		{name: "bad partitions", env: map[string]string{"KAFKA_TOPIC_PARTITIONS": "six"}, wantErr: "KAFKA_TOPIC_PARTITIONS"},
		{name: "zero poll", env: map[string]string{"POLL_MAX_RECORDS": "0"}, wantErr: "POLL_MAX_RECORDS"},
		{name: "short session", env: map[string]string{"KAFKA_SESSION_TIMEOUT": "1s"}, wantErr: "KAFKA_SESSION_TIMEOUT"},
		{name: "bad ttl", env: map[string]string{"RATE_TTL": "25"}, wantErr: "RATE_TTL"},
		{name: "bad level", env: map[string]string{"LOG_LEVEL": "loud"}, wantErr: "LOG_LEVEL"},
		{name: "no brokers", env: map[string]string{"KAFKA_BROKERS": " , "}, wantErr: "KAFKA_BROKERS"},
		{name: "dlq is the topic", env: map[string]string{"KAFKA_DLQ_TOPIC": "sales"}, wantErr: "KAFKA_DLQ_TOPIC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, err := loadConfig(lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig(%v) = %v, want an error naming %s", tt.env, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig(%v) = %v, want nil", tt.env, err)
			}
			if want := tt.want(defaults); !reflect.DeepEqual(got, want) {
				t.Errorf("loadConfig(%v) = %+v, want %+v", tt.env, got, want)
			}
		})
	}
}

func TestConfigLogMasksPasswords(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"VALKEY_PASSWORD": "hunter2", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "swordfish",
	}
	c, err := loadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	log := buf.String()
	for _, secret := range []string{"hunter2", "swordfish"} {
		if strings.Contains(log, secret) {
			t.Errorf("config log = %s, want %q masked", log, secret)
		}
	}
	for _, want := range []string{`"VALKEY_PASSWORD":"*****"`, `"KAFKA_SASL_PASSWORD":"*****"`, `"KAFKA_SASL_USERNAME":"aggregator"`} {
		if !strings.Contains(log, want) {
			t.Errorf("config log = %s, want it to contain %s", log, want)
		}
	}
}
