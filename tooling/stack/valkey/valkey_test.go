package valkey

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needServer skips a test that runs a real server where none is
// installed, or fails it under CI=true, where the launcher installs one.
func needServer(t *testing.T) {
	t.Helper()
	if InstalledVersion() == "" && os.Getenv("CI") != "true" {
		t.Skip("neither valkey-server nor redis-server is installed")
	}
}

// TestRestart kills a server and starts it again, with and without an
// append-only file: the address stays, and the data stays only with one.
func TestRestart(t *testing.T) {
	needServer(t)
	t.Parallel()
	for _, aof := range []bool{true, false} {
		t.Run(map[bool]string{true: "appendonly", false: "in memory"}[aof], func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// always: the key is on disk before SIGKILL, whatever the timing.
			s, err := Open(t.TempDir(), Config{AppendOnly: aof, AppendFsync: "always"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Destroy(); err != nil {
					t.Error(err)
				}
			})
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			addr := s.Addr()
			if got, err := command(ctx, addr, "", "", "SET k v"); err != nil || got != "+OK" {
				t.Fatalf("SET = %q, %v", got, err)
			}
			if err := s.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := Ping(ctx, addr, "", ""); err == nil {
				t.Fatal("the server answers PING after Kill()")
			}
			// A restart in another process reads the kept configuration.
			s, err = Open(s.Dir(), Config{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if s.Addr() != addr {
				t.Errorf("Addr() after a restart = %s, want %s", s.Addr(), addr)
			}
			got, err := command(ctx, addr, "", "", "EXISTS k")
			if want := map[bool]string{true: ":1", false: ":0"}[aof]; err != nil || got != want {
				t.Errorf("EXISTS k after SIGKILL and a restart = %q, %v, want %q", got, err, want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	needServer(t)
	t.Parallel()
	for _, name := range []string{"valkey-server", "redis-server"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if v := Version(bin); !strings.HasPrefix(v, name+" ") || strings.Contains(v, "unknown") {
			t.Errorf("Version(%s) = %q, want %q and a version", bin, v, name)
		}
	}
}

// TestKillThenStart kills a server and starts it again at once, again and
// again, with a client dialing it all along: a killed redis-server's main
// thread can be a zombie while its other threads still hold the listening
// socket, and a start must wait for them rather than find its port taken.
func TestKillThenStart(t *testing.T) {
	needServer(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(t.TempDir(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Destroy(); err != nil {
			t.Error(err)
		}
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop, dialed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(dialed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = Ping(ctx, s.Addr(), "", "")
		}
	}()
	defer func() { close(stop); <-dialed }()
	for i := range 50 {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatalf("Start() right after Kill(), round %d: %v", i, err)
		}
	}
}
