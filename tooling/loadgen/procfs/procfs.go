// Package procfs reads a process's CPU time and peak resident memory from
// Linux's /proc.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, which Linux
// fixes at 100 for user space on every architecture it runs Go on.
const clockTick = 10 * time.Millisecond

// FS reads a /proc tree: the real one, or a copy in tests.
type FS struct{ root string }

// Default reads the real /proc.
var Default = FS{root: "/proc"}

// At returns an FS reading a /proc-like tree at root.
func At(root string) FS { return FS{root: root} }

// CPU returns the user and system CPU time pid has used, over all its
// threads (0 is this process).
func (fs FS) CPU(pid int) (user, system time.Duration, err error) {
	b, err := os.ReadFile(fs.path(pid, "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime (fields 14 and 15) from /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces or
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (user, system time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed stat: %d fields after the command", len(f))
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat utime: %w", err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat stime: %w", err)
	}
	return time.Duration(u) * clockTick, time.Duration(s) * clockTick, nil
}

// CPUTotal returns user plus system CPU time.
func (fs FS) CPUTotal(pid int) (time.Duration, error) {
	u, s, err := fs.CPU(pid)
	return u + s, err
}

// MachineBusy returns the CPU time all CPUs of the machine have spent busy
// (user, nice, system, irq, softirq and steal) since boot, from /proc/stat.
func (fs FS) MachineBusy() (time.Duration, error) {
	b, err := os.ReadFile(fs.root + "/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat: %q", line)
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat field %d: %w", i, err)
		}
		busy += v
	}
	return time.Duration(busy) * clockTick, nil
}

// PeakRSS returns pid's peak resident set size in bytes (VmHWM).
func (fs FS) PeakRSS(pid int) (int64, error) {
	return fs.statusKB(pid, "VmHWM:")
}

// RSS returns pid's current resident set size in bytes (VmRSS).
func (fs FS) RSS(pid int) (int64, error) {
	return fs.statusKB(pid, "VmRSS:")
}

func (fs FS) statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fs.path(pid, "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), field)
		if !found {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status %s %q: %w", field, rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("status of %d has no %s", pid, field)
}

// ResetPeakRSS sets pid's peak RSS back to its current RSS (writing 5 to
// /proc/PID/clear_refs), so that the next PeakRSS is the peak of what
// follows. It needs permission over the process.
func (fs FS) ResetPeakRSS(pid int) error {
	return os.WriteFile(fs.path(pid, "clear_refs"), []byte("5"), 0)
}

func (fs FS) path(pid int, name string) string {
	p := "self"
	if pid > 0 {
		p = strconv.Itoa(pid)
	}
	return fs.root + "/" + p + "/" + name
}
