package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack/valkey"
)

// TestWith runs commands under `stack with valkey`: each sees the server's
// address, its exit code is stack's, and the stack is gone afterwards.
func TestWith(t *testing.T) {
	if valkey.InstalledVersion() == "" && os.Getenv("CI") != "true" {
		t.Skip("neither valkey-server nor redis-server is installed")
	}
	// The services of an enclosing `stack with` (make test's) would be
	// used instead of started.
	t.Setenv(testenv.ValkeyAddr, "")
	tests := []struct {
		script string
		want   int
	}{
		{`test -n "$BF_TEST_VALKEY_ADDR" && test -d "$BF_RUN_DIR/valkey"`, 0},
		{`exit 3`, 3},
	}
	for _, tt := range tests {
		dir := filepath.Join(t.TempDir(), "stack")
		var stdout, stderr bytes.Buffer
		args := []string{"-dir", dir, "-valkey-port", "0", "with", "valkey", "--", "sh", "-c", tt.script}
		if got := run(context.Background(), args, &stdout, &stderr); got != tt.want {
			t.Errorf("stack with valkey -- sh -c %q = %d, want %d\n%s", tt.script, got, tt.want, stderr.String())
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("after stack with, %s is still there: %v", dir, err)
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"nonsense"}, {"start"}, {"kill", "api", "aggregator"}, {"with", "valkey"}} {
		var stdout, stderr bytes.Buffer
		if got := run(context.Background(), append([]string{"-dir", t.TempDir()}, args...), &stdout, &stderr); got != 2 {
			t.Errorf("stack %q = %d, want 2 (usage)\n%s", args, got, stderr.String())
		}
	}
}
