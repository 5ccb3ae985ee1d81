package stack_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/valkey"
)

// TestServiceLifecycle starts a stack's Valkey, kills it and starts it
// again, as a person or a fault test does through the command line, then
// takes the stack down.
func TestServiceLifecycle(t *testing.T) {
	if valkey.InstalledVersion() == "" && os.Getenv("CI") != "true" {
		t.Skip("neither valkey-server nor redis-server is installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "stack")
	s, err := stack.New(stack.Config{Dir: dir, Valkey: valkey.Config{Port: 0}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Down() })
	if err := s.Up(ctx, stack.Valkey); err != nil {
		t.Fatal(err)
	}
	addr, err := s.Addr(stack.Valkey)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Env()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{testenv.ValkeyAddr + "=" + addr, testenv.RunDir + "=" + dir} {
		if !slices.Contains(env, want) {
			t.Errorf("Env() = %v, want %s among it", env, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stack.env")); err != nil || !strings.Contains(string(b), "export "+testenv.ValkeyAddr+"='"+addr+"'") {
		t.Errorf("stack.env = %q, %v, want the export lines", b, err)
	}

	running := func() bool {
		t.Helper()
		st, err := s.Status()
		if err != nil || len(st) != 1 || st[0].Name != stack.Valkey {
			t.Fatalf("Status() = %v, %v, want valkey alone", st, err)
		}
		return st[0].Pid != 0
	}
	if err := s.Kill(stack.Valkey); err != nil {
		t.Fatal(err)
	}
	if running() {
		t.Fatal("valkey runs after Kill()")
	}
	if err := s.Start(ctx, stack.Valkey); err != nil {
		t.Fatal(err)
	}
	if !running() {
		t.Fatal("valkey does not run after Start()")
	}
	if again, _ := s.Addr(stack.Valkey); again != addr {
		t.Errorf("Addr() after a restart = %s, want %s", again, addr)
	}
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the stack's directory is still there after Down(): %v", err)
	}
	if err := valkey.Ping(ctx, addr, "", ""); err == nil {
		t.Error("valkey answers PING after Down()")
	}
}

func TestUnknownService(t *testing.T) {
	t.Parallel()
	s, err := stack.New(stack.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kafka-0", "kafka-x", "redis", ""} {
		if err := s.Up(context.Background(), name); err == nil {
			t.Errorf("Up(%q) = nil, want an error naming the services", name)
		}
	}
}
