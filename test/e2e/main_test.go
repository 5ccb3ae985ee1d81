// Package e2e runs the real api and aggregator binaries against a real Kafka
// broker and a real Valkey/Redis server, sends sales through every protocol,
// and checks the aggregates exactly, through the query API and in Valkey.
//
// scripts/test.sh starts the services and exports BF_TEST_KAFKA_BROKERS,
// BF_TEST_VALKEY_ADDR and BF_TEST_KAFKA_CTL. Without them the tests skip,
// except under CI=true, where they fail.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the api and aggregator binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "bf-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "./services/api", "./services/aggregator")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build binaries:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// repoRoot finds the directory holding go.work above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}

// services returns the addresses of the real Kafka and Valkey the tests use.
func services(t *testing.T) (kafka, valkey string) {
	t.Helper()
	kafka, valkey = os.Getenv("BF_TEST_KAFKA_BROKERS"), os.Getenv("BF_TEST_VALKEY_ADDR")
	if kafka != "" && valkey != "" {
		return kafka, valkey
	}
	msg := "BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR must name a real Kafka and Valkey (scripts/test.sh starts them)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}
