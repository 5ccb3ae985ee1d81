package procfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stat      string
		user, sys time.Duration
		wantErr   bool
	}{
		{"plain", "1234 (api) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 0 0", 2500 * time.Millisecond, 750 * time.Millisecond, false},
		{"name with spaces and parentheses", "99 (my (weird) proc) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0", 70 * time.Millisecond, 30 * time.Millisecond, false},
		{"truncated", "99 (x) R 1 2 3", 0, 0, true},
		{"no parenthesis", "99 x R", 0, 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a 3 0", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, s, err := parseStat([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat(%q) error = %v, want error %v", tt.stat, err, tt.wantErr)
			}
			if u != tt.user || s != tt.sys {
				t.Errorf("parseStat(%q) = %v, %v, want %v, %v", tt.stat, u, s, tt.user, tt.sys)
			}
		})
	}
}

func TestFakeProc(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "42")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Name:\tapi\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte("42 (api) S 1 42 42 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0"), 0o644); err != nil {
		t.Fatal(err)
	}
	stat := "cpu  100 5 50 9999 7 3 2 1 0 0\ncpu0 50 2 25 5000 3 1 1 0 0 0\n"
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := At(root)
	if got, err := fs.MachineBusy(); err != nil || got != 161*10*time.Millisecond {
		t.Errorf("MachineBusy() = %v, %v, want 1.61s (100+5+50+3+2+1 ticks)", got, err)
	}
	if got, err := fs.PeakRSS(42); err != nil || got != 50<<20 {
		t.Errorf("PeakRSS(42) = %d, %v, want %d", got, err, 50<<20)
	}
	if got, err := fs.RSS(42); err != nil || got != 40<<20 {
		t.Errorf("RSS(42) = %d, %v, want %d", got, err, 40<<20)
	}
	if got, err := fs.CPUTotal(42); err != nil || got != 1500*time.Millisecond {
		t.Errorf("CPUTotal(42) = %v, %v, want 1.5s", got, err)
	}
	if _, err := fs.PeakRSS(43); err == nil {
		t.Error("PeakRSS(43) of a missing process = nil error, want one")
	}
}

// TestSelf reads this process from the real /proc: burning CPU shows up.
func TestSelf(t *testing.T) {
	t.Parallel()
	before, err := Default.CPUTotal(0)
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	// Spin until the CPU time has grown by 50ms; on a busy machine that
	// takes longer than 50ms, but not forever.
	x, grown := 0, time.Duration(0)
	for start := time.Now(); time.Since(start) < 10*time.Second && grown < 50*time.Millisecond; {
		for range 1_000_000 {
			x++
		}
		after, err := Default.CPUTotal(0)
		if err != nil {
			t.Fatal(err)
		}
		grown = after - before
	}
	if grown < 50*time.Millisecond {
		t.Errorf("CPU time grew by %v in 10s of spinning, want at least 50ms", grown)
	}
	if peak, err := Default.PeakRSS(0); err != nil || peak < 1<<20 {
		t.Errorf("PeakRSS(self) = %d, %v, want at least 1 MiB", peak, err)
	}
	if busy, err := Default.MachineBusy(); err != nil || busy <= 0 {
		t.Errorf("MachineBusy() = %v, %v, want the machine's busy time", busy, err)
	}
	_ = x
}
