package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadStreamConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want streamConfig
	}{
		{"defaults", nil, defaults().Streams},
		{"everything set", map[string]string{
			"UNARY_TIMEOUT": "20s", "STREAM_WRITE_TIMEOUT": "1m", "WATCH_INTERVAL": "100ms",
			"WATCH_HEARTBEAT": "2s", "WATCH_MAX_STREAMS": "7", "WRITE_BODY_TIMEOUT": "20s", "WATCH_MAX_STREAMS_PER_CLIENT": "2",
		}, streamConfig{
			UnaryTimeout: 20 * time.Second, WriteBodyTimeout: 20 * time.Second, StreamWriteTimeout: time.Minute,
			WatchInterval: 100 * time.Millisecond, WatchHeartbeat: 2 * time.Second, MaxWatchers: 7, MaxWatchersPerClient: 2,
		}},
		{"a client's streams follow a small cap", map[string]string{"WATCH_MAX_STREAMS": "7"}, func() streamConfig {
			c := defaults().Streams
			c.MaxWatchers, c.MaxWatchersPerClient = 7, 7
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(getenv(tt.env))
			if err != nil || got.Streams != tt.want {
				t.Errorf("loadConfig(%v).Streams = %+v, %v, want %+v", tt.env, got.Streams, err, tt.want)
			}
		})
	}
}

func TestLoadStreamConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]map[string]string{
		"UNARY_TIMEOUT":                {"UNARY_TIMEOUT": "0s"},
		"STREAM_WRITE_TIMEOUT":         {"STREAM_WRITE_TIMEOUT": "-1s"},
		"WATCH_INTERVAL":               {"WATCH_INTERVAL": "1ms"},
		"WATCH_HEARTBEAT":              {"WATCH_INTERVAL": "2s", "WATCH_HEARTBEAT": "1s"},
		"WATCH_MAX_STREAMS":            {"WATCH_MAX_STREAMS": "0"},
		"WRITE_BODY_TIMEOUT":           {"WRITE_BODY_TIMEOUT": "16s"}, // beyond UNARY_TIMEOUT
		"WATCH_MAX_STREAMS_PER_CLIENT": {"WATCH_MAX_STREAMS_PER_CLIENT": "1001"},
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := loadConfig(getenv(env)); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("loadConfig(%v) = %v, want an error naming %s", env, err, name)
			}
		})
	}
}
