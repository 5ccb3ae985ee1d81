package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestParseRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantConc int
		wantErr  string
	}{
		{"closed loop default", nil, 32, ""},
		{"open loop default", []string{"-rate", "500"}, 512, ""},
		{"the in-cluster Job's flags", []string{"-target", "http://api:8080", "-protocol", "grpc", "-rate", "500", "-duration", "5m"}, 512, ""},
		{"explicit", []string{"-concurrency", "7"}, 7, ""},
		{"bad progress", []string{"-progress", "sometimes"}, 0, "-progress"},
		{"stray argument", []string{"grpc"}, 0, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseRunFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRunFlags(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.concurrency != tt.wantConc {
				t.Errorf("parseRunFlags(%q).concurrency = %d, want %d", tt.args, f.concurrency, tt.wantConc)
			}
		})
	}
}

func TestRunDispatch(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "loadgen ") {
		t.Errorf("run(version) = %v, %q", err, out.String())
	}
	for _, args := range [][]string{{"nonsense"}, {"-protocol", "soap", "-duration", "1ms"}, {"verify"},
		// A broker without a server: compare starts both, or neither.
		{"compare", "-kafka", "127.0.0.1:1", "-valkey", ""}, {"compare", "-kafka", "", "-valkey", "127.0.0.1:1"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
