package main

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"strings"
	"testing"

	"blackfriday.local/tooling/loadgen/protocol"
)

func TestParseRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantConc int
		// wantConns is the HTTP/2 connections; 0 means the default.
		wantConns int
		wantErr   string
	}{
		{"closed loop default", nil, 32, 0, ""},
		{"open loop default", []string{"-rate", "500"}, 512, 0, ""},
		{"the in-cluster Job's flags", []string{"-target", "http://api:8080", "-protocol", "grpc", "-rate", "500", "-duration", "5m"}, 512, 0, ""},
		{"explicit", []string{"-concurrency", "7", "-conns", "2"}, 7, 2, ""},
		{"no connection", []string{"-conns", "0"}, 0, 0, "-conns"},
		{"bad progress", []string{"-progress", "sometimes"}, 0, 0, "-progress"},
		{"stray argument", []string{"grpc"}, 0, 0, "unexpected arguments"},
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
			// More than one, so that an HTTP/2 client reaches more than
			// one replica.
			if want := cmp.Or(tt.wantConns, protocol.DefaultH2Conns); f.conns != want || f.conns < 2 && tt.wantConns == 0 {
				t.Errorf("parseRunFlags(%q).conns = %d, want %d", tt.args, f.conns, want)
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

// TestHelp checks that loadgen -h names every subcommand, and that each
// subcommand answers -h with what it does.
func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, io.Discard); err != nil {
		t.Fatalf("run(-h) = %v", err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), "\n  "+c.name+" ") {
			t.Errorf("loadgen -h does not list %s:\n%s", c.name, out.String())
		}
		if c.name == "help" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), []string{c.name, "-h"}, &stdout, &stderr); err != nil {
				t.Fatalf("run(%s -h) = %v", c.name, err)
			}
			if !strings.Contains(stderr.String(), "Usage: loadgen "+c.name) || stdout.Len() != 0 {
				t.Errorf("loadgen %s -h wrote %q to stderr and %q to stdout, want its usage on stderr alone", c.name, stderr.String(), stdout.String())
			}
		})
	}
}
