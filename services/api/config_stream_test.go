package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadStreamConfig(t *testing.T) {
	t.Parallel()
	defaults := streamConfig{
		UnaryTimeout:         15 * time.Second,
		StreamWriteTimeout:   30 * time.Second,
		WatchInterval:        250 * time.Millisecond,
		WatchHeartbeat:       5 * time.Second,
		MaxWatchers:          1000,
		WriteBodyTimeout:     5 * time.Second,
		MaxWatchersPerClient: 100,
	}
	tests := []struct {
		name string
		env  map[string]string
		want streamConfig
	}{
		{"defaults", nil, defaults},
		{"everything set", map[string]string{
			"UNARY_TIMEOUT": "20s", "STREAM_WRITE_TIMEOUT": "1m", "WATCH_INTERVAL": "100ms",
			"WATCH_HEARTBEAT": "2s", "WATCH_MAX_STREAMS": "7", "WRITE_BODY_TIMEOUT": "20s", "WATCH_MAX_STREAMS_PER_CLIENT": "2",
		}, streamConfig{20 * time.Second, time.Minute, 100 * time.Millisecond, 2 * time.Second, 7, 20 * time.Second, 2}},
		{"a client's streams follow a small cap", map[string]string{"WATCH_MAX_STREAMS": "7"},
			streamConfig{15 * time.Second, 30 * time.Second, 250 * time.Millisecond, 5 * time.Second, 7, 5 * time.Second, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadStreamConfig(func(k string) string { return tt.env[k] })
			if err != nil || got != tt.want {
				t.Errorf("loadStreamConfig(%v) = %+v, %v, want %+v", tt.env, got, err, tt.want)
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
			_, err := loadStreamConfig(func(k string) string { return env[k] })
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("loadStreamConfig(%v) = %v, want an error naming %s", env, err, name)
			}
		})
	}
}
