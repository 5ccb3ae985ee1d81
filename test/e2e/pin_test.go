package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// pinning keeps the api on a core of its own while a measurement runs:
// the api on the last CPU, and everything else that takes part (this test
// process, which drives the load, the broker, Valkey and the aggregators)
// on the others. On two shared cores the driver and the broker otherwise
// take the api's CPU, and a figure meant to show the api's own limit shows
// theirs.
type pinning struct {
	API    string `json:"api_cpus"`
	Others string `json:"others_cpus"`
	// Pinned names what was pinned to Others: "self", "broker pid N"...
	Pinned []string `json:"pinned"`
}

// pin pins pid (every thread, with taskset -a) to cpus.
func pin(t *testing.T, what string, pid int, cpus string) {
	t.Helper()
	if out, err := exec.Command("taskset", "-a", "-cp", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("pin %s (pid %d) to CPUs %s: %v\n%s", what, pid, cpus, err, out)
	}
}

// pinAPIAlone pins the api to the last CPU and this process, the
// aggregators and whatever listens on the stack's Kafka and Valkey
// addresses to the rest. It fails on a machine with one CPU.
func (s *stack) pinAPIAlone(t *testing.T, apiPid int) pinning {
	t.Helper()
	n := runtime.NumCPU()
	if n < 2 {
		t.Fatalf("pinning needs at least 2 CPUs, this machine has %d", n)
	}
	p := pinning{API: strconv.Itoa(n - 1), Others: "0"}
	if n > 2 {
		p.Others = fmt.Sprintf("0-%d", n-2)
	}
	pin(t, "the api", apiPid, p.API)
	pin(t, "this test (the load's driver)", os.Getpid(), p.Others)
	p.Pinned = append(p.Pinned, "this test (the load driver)")
	s.mu.Lock()
	for name, a := range s.aggs {
		pin(t, name, a.Pid(), p.Others)
		p.Pinned = append(p.Pinned, name)
	}
	s.mu.Unlock()
	addrs := append(strings.Split(s.kafka, ","), s.valkey)
	seen := map[int]bool{}
	for _, a := range addrs {
		pid, err := listener(a)
		if err != nil {
			t.Fatalf("pinning: %v", err)
		}
		if pid == apiPid || seen[pid] {
			continue
		}
		seen[pid] = true
		pin(t, a, pid, p.Others)
		p.Pinned = append(p.Pinned, fmt.Sprintf("%s (pid %d)", a, pid))
	}
	return p
}

// listener returns the pid of the process listening on the TCP address
// addr ("127.0.0.1:9092"), from /proc/net/tcp and the processes' sockets.
func listener(addr string) (int, error) {
	_, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return 0, err
	}
	pn, err := strconv.Atoi(port)
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf(":%04X", pn)
	var inode string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st ... uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				inode = fields[9]
			}
		}
		fh.Close()
		if inode != "" {
			break
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("nothing listens on %s", addr)
	}
	link := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && l == link {
			return strconv.Atoi(strings.Split(fd, "/")[2])
		}
	}
	return 0, fmt.Errorf("no process holds the socket listening on %s", addr)
}
