package prodshape

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"blackfriday.local/tooling/stack/process"
)

func TestBusiestLeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		leaders   map[int32]int32
		node      int32
		partition int
	}{
		{"none", nil, -1, 0},
		{"leaderless", map[int32]int32{0: -1, 1: -1}, -1, 0},
		{"one", map[int32]int32{0: 2, 1: 2, 2: 0}, 2, 2},
		{"tie goes to the lowest id", map[int32]int32{0: 2, 1: 1, 2: 1, 3: 2, 4: -1}, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if node, n := BusiestLeader(tt.leaders); node != tt.node || n != tt.partition {
				t.Errorf("BusiestLeader(%v) = %d, %d, want %d, %d", tt.leaders, node, n, tt.node, tt.partition)
			}
		})
	}
}

// sleeper starts a process that runs until signalled, recorded in a pid
// file as a pod's is.
func sleeper(t *testing.T, pidFile string) {
	t.Helper()
	cmd := exec.Command("sleep", "120")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	if err := process.PidFile(pidFile).Write(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

// TestPodControl kills, stops and scales pods of a shape whose processes
// are stand-ins, and refuses what is not the shape's to control.
func TestPodControl(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := State{Pods: []Pod{
		{Name: "valkey-0", Workload: "valkey", Stack: true, PidFile: filepath.Join(dir, "valkey.pid")},
		{Name: "api-0", Workload: "api", GracePeriod: 5, PidFile: filepath.Join(dir, "api-0.pid")},
		{Name: "api-1", Workload: "api", GracePeriod: 5, PidFile: filepath.Join(dir, "api-1.pid")},
	}}
	for _, p := range st.Pods {
		sleeper(t, p.PidFile)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stateDir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir(dir), "shape.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sh, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.KillPod("api-0"); err != nil || sh.Running("api-0") {
		t.Errorf("KillPod(api-0) = %v, running %v; want nil, not running", err, sh.Running("api-0"))
	}
	// Scaling to 1 stops api-1 and leaves api-0, which does not run, to
	// StartPod: it fails here, the shape has no manifest.
	if err := sh.Scale(context.Background(), "api", 1); err == nil || sh.Running("api-1") {
		t.Errorf("Scale(api, 1) = %v, api-1 running %v; want the error of starting api-0, api-1 stopped", err, sh.Running("api-1"))
	}
	if err := sh.Scale(context.Background(), "api", 3); err == nil {
		t.Error("Scale(api, 3) = nil, want an error: two pods")
	}
	for _, name := range []string{"valkey-0", "api-9"} {
		if err := sh.StopPod(name); err == nil {
			t.Errorf("StopPod(%s) = nil, want an error", name)
		}
	}
	if !sh.Running("valkey-0") {
		t.Error("Running(valkey-0) = false after refused stops, want true")
	}
}
