package main

import (
	"bytes"
	"flag"
	"log/slog"
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

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{
		Brokers:           settings.List{"127.0.0.1:9092"},
		Topic:             "sales",
		DLQTopic:          "sales.dlq",
		Group:             "blackfriday-aggregator",
		TopicPartitions:   6,
		ValkeyAddr:        "127.0.0.1:6379",
		KeyPrefix:         keys.DefaultPrefix,
		PollMaxRecords:    50000,
		RateTTL:           25 * time.Hour,
		SessionTimeout:    15 * time.Second,
		HTTPAddr:          ":8081",
		LogLevel:          slog.LevelInfo,
		DedupWindow:       10 * time.Minute,
		ReconcileInterval: 30 * time.Second,
		LogResetUnready:   5 * time.Minute,
		KafkaSettings:     settings.Kafka{TLS: "false"},
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
					Brokers: settings.List{"k1:9092", "k2:9092"}, Topic: "s", DLQTopic: "s.dead", Group: "g",
					TopicPartitions: 12, ValkeyAddr: "v:6379", ValkeyUsername: "agg", ValkeyPassword: "secret",
					KeyPrefix: "x:", PollMaxRecords: 500, RateTTL: 2 * time.Hour, HTTPAddr: "127.0.0.1:9000",
					LogLevel: slog.LevelDebug, InstanceID: "aggregator-0", SessionTimeout: 30 * time.Second,
					DedupWindow: time.Hour, ReconcileInterval: 5 * time.Second, LogResetUnready: 90 * time.Second,
					KafkaSettings: settings.Kafka{
						SASLMechanism: "scram-sha-512", SASLUsername: "aggregator", SASLPassword: " pass word ",
						TLS: "true", TLSCAFile: "/ca.crt", TLSCertFile: "/user.crt", TLSKeyFile: "/user.key", TLSServerName: "kafka",
					},
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
			name: "blank HTTP_ADDR disables the probes too",
			env:  map[string]string{"HTTP_ADDR": "  "},
			want: func(c config) config { c.HTTPAddr = ""; return c },
		},
		{
			name: "empty values elsewhere mean the default",
			env:  map[string]string{"KAFKA_TOPIC": " ", "POLL_MAX_RECORDS": ""},
			want: func(c config) config { return c },
		},
		{
			name: "values are trimmed",
			env:  map[string]string{"KAFKA_TOPIC": " s ", "POLL_MAX_RECORDS": "\t500\n"},
			want: func(c config) config { c.Topic, c.PollMaxRecords = "s", 500; return c },
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
				c.KafkaSettings = settings.Kafka{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p", TLS: "false"}
				c.Kafka = kafkasecurity.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p"}
				return c
			},
		},
		{
			name: "TLS without SASL",
			env:  map[string]string{"KAFKA_TLS": "1"},
			want: func(c config) config { c.KafkaSettings.TLS, c.Kafka.TLS = "1", true; return c },
		},
		{name: "bad DEDUP_WINDOW", env: map[string]string{"DEDUP_WINDOW": "10"}, wantErr: `DEDUP_WINDOW="10": want a duration`},
		{name: "negative DEDUP_WINDOW", env: map[string]string{"DEDUP_WINDOW": "-1m"}, wantErr: "DEDUP_WINDOW=-1m0s: want a value from 0s to 168h0m0s"},
		{name: "DEDUP_WINDOW past retention", env: map[string]string{"DEDUP_WINDOW": "200h"}, wantErr: "DEDUP_WINDOW"},
		{name: "short RECONCILE_INTERVAL", env: map[string]string{"RECONCILE_INTERVAL": "10ms"}, wantErr: "RECONCILE_INTERVAL"},
		{name: "zero LOG_RESET_UNREADY", env: map[string]string{"LOG_RESET_UNREADY": "0s"}, wantErr: "LOG_RESET_UNREADY"},
		{name: "unknown mechanism", env: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, wantErr: "KAFKA_SASL_MECHANISM"},
		{name: "mechanism without password", env: map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}, wantErr: "KAFKA_SASL_PASSWORD"},
		{name: "password without mechanism", env: map[string]string{"KAFKA_SASL_PASSWORD": "p"}, wantErr: "KAFKA_SASL_MECHANISM"},
		{name: "bad KAFKA_TLS", env: map[string]string{"KAFKA_TLS": "sure"}, wantErr: "KAFKA_TLS"},
		{name: "CA without TLS", env: map[string]string{"KAFKA_TLS_CA_FILE": "/ca.crt"}, wantErr: "KAFKA_TLS is not true"},
		{name: "cert without key", env: map[string]string{"KAFKA_TLS": "true", "KAFKA_TLS_CERT_FILE": "/c"}, wantErr: "KAFKA_TLS_KEY_FILE"},
		{name: "bad partitions", env: map[string]string{"KAFKA_TOPIC_PARTITIONS": "six"}, wantErr: `KAFKA_TOPIC_PARTITIONS="six": want an integer`},
		{name: "too many partitions", env: map[string]string{"KAFKA_TOPIC_PARTITIONS": "10001"}, wantErr: "KAFKA_TOPIC_PARTITIONS=10001: want a value from 1 to 10000"},
		{name: "zero poll", env: map[string]string{"POLL_MAX_RECORDS": "0"}, wantErr: "POLL_MAX_RECORDS"},
		{name: "short session", env: map[string]string{"KAFKA_SESSION_TIMEOUT": "1s"}, wantErr: "KAFKA_SESSION_TIMEOUT"},
		{name: "bad ttl", env: map[string]string{"RATE_TTL": "25"}, wantErr: "RATE_TTL"},
		{name: "short ttl", env: map[string]string{"RATE_TTL": "10ms"}, wantErr: "RATE_TTL=10ms: want at least 1s"},
		{name: "bad level", env: map[string]string{"LOG_LEVEL": "loud"}, wantErr: `LOG_LEVEL="loud": want debug, info, warn or error`},
		{name: "no brokers", env: map[string]string{"KAFKA_BROKERS": " , "}, wantErr: "KAFKA_BROKERS"},
		{name: "dlq is the topic", env: map[string]string{"KAFKA_DLQ_TOPIC": "sales"}, wantErr: "KAFKA_DLQ_TOPIC"},
		{name: "every mistake at once", env: map[string]string{"POLL_MAX_RECORDS": "0", "RATE_TTL": "0s", "KAFKA_TLS_KEY_FILE": "/k"},
			wantErr: "POLL_MAX_RECORDS=0: want a value from 1 to 1000000\nRATE_TTL=0s: want at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			got, err := loadConfig(lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig(%v) = %v, want an error holding %q", tt.env, err, tt.wantErr)
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
	tests := []struct {
		name string
		env  map[string]string
		want []string // in the log
	}{
		{"passwords set", map[string]string{
			"VALKEY_PASSWORD": "hunter2", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
			"KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "swordfish",
		}, []string{`"VALKEY_PASSWORD":"****"`, `"KAFKA_SASL_PASSWORD":"****"`, `"KAFKA_SASL_USERNAME":"aggregator"`}},
		{"passwords unset", nil, []string{`"VALKEY_PASSWORD":""`, `"KAFKA_SASL_PASSWORD":""`}},
		{"every kind of value", nil, []string{
			`"KAFKA_BROKERS":["127.0.0.1:9092"]`, `"KAFKA_TOPIC_PARTITIONS":6`, `"RATE_TTL":"25h0m0s"`,
			`"LOG_LEVEL":"INFO"`, `"HTTP_ADDR":":8081"`, `"KAFKA_TLS":"false"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
			log := buf.String()
			for _, s := range settings.Of(c) {
				if s.Secret && tt.env[s.Name] != "" && strings.Contains(log, tt.env[s.Name]) {
					t.Errorf("config log = %s, want %s masked", log, s.Name)
				}
				if !strings.Contains(log, `"`+s.Name+`":`) {
					t.Errorf("config log = %s, want it to hold %s", log, s.Name)
				}
			}
			for _, want := range tt.want {
				if !strings.Contains(log, want) {
					t.Errorf("config log = %s, want it to contain %s", log, want)
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
		"Usage: aggregator [-h]\n",
		"  KAFKA_GROUP (default blackfriday-aggregator)\n        consumer group\n",
		"  POLL_MAX_RECORDS (default 50000)\n",
		"  KAFKA_INSTANCE_ID\n",
		"  VALKEY_PASSWORD\n        ACL password (secret: masked in the log)\n",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("aggregator -h = %s\nwant it to hold %q", help, want)
		}
	}
	if want := "See valkey-keys.md (docs/valkey-keys.md)"; !strings.Contains(strings.Join(strings.Fields(help), " "), want) {
		t.Errorf("aggregator -h = %s\nwant it to hold %q", help, want)
	}
	for _, s := range settings.Of(config{}) {
		if !strings.Contains(help, "\n  "+s.Name+" ") && !strings.Contains(help, "\n  "+s.Name+"\n") {
			t.Errorf("aggregator -h does not list %s", s.Name)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		// Only a word too long for one line (a link) may pass the edge.
		if strings.HasPrefix(line, "        ") && len(line) > 80 && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("aggregator -h has a help line over 80 columns: %q", line)
		}
	}
}

// TestHelpExitsZero runs the aggregator's main with -h in a child process:
// it prints the settings and exits 0, reading nothing else.
func TestHelpExitsZero(t *testing.T) {
	if os.Getenv("BF_AGGREGATOR_HELP_CHILD") == "1" {
		os.Args = []string{"aggregator", "-h"}
		main()
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelpExitsZero$")
	cmd.Env = append(os.Environ(), "BF_AGGREGATOR_HELP_CHILD=1", "POLL_MAX_RECORDS=not a number")
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("aggregator -h: %v, want exit 0; stdout:\n%s", err, out)
	} else if !bytes.HasPrefix(out, []byte("Usage: aggregator [-h]\n")) || !bytes.Contains(out, []byte("LOG_RESET_UNREADY")) {
		t.Errorf("aggregator -h printed %s, want the settings", out)
	}
}

var update = flag.Bool("update", false, "rewrite the settings table in the repository's README.md")

// TestREADMESettings checks README.md's table of the aggregator's settings;
// with -update (go generate) it rewrites the table instead.
func TestREADMESettings(t *testing.T) {
	settingstest.CheckREADME(t, filepath.Join("..", "..", "README.md"), "aggregator", settings.Of(newConfig()), *update)
}

// TestManifestsSetOnlySettings: the aggregator cannot refuse unknown
// variables, so a misspelt one in the manifests is caught here.
func TestManifestsSetOnlySettings(t *testing.T) {
	t.Parallel()
	settingstest.CheckManifests(t, filepath.Join("..", "..", "kustomize"), "aggregator", settings.Of(config{}))
}

func TestSettingsDeclared(t *testing.T) {
	t.Parallel()
	settingstest.CheckDeclared(t, settings.Of(newConfig()))
}
