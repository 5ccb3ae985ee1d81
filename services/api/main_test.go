package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMainRefusesMisspeltSetting runs main in a child process of this test
// binary, as a pod would run the api: a variable that looks like one of
// its settings and is not stops it at once with exit status 1, naming the
// setting it was probably meant to be, while a setting of the aggregator's
// is only noted.
func TestMainRefusesMisspeltSetting(t *testing.T) {
	if os.Getenv("BF_API_TEST_MAIN") == "1" {
		os.Args = []string{"api"}
		main()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMainRefusesMisspeltSetting$")
	cmd.Env = append(os.Environ(), "BF_API_TEST_MAIN=1",
		"KAFKA_BROKERS=127.0.0.1:1", "VALKEY_ADDR=127.0.0.1:1", "PORT=0", "METRICS_ADDR=127.0.0.1:0",
		"KAFKA_BROKER=127.0.0.1:1", "KAFKA_DLQ_TOPIC=sales.dlq")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("api with KAFKA_BROKER set = %v, want exit status 1 at start; output:\n%s", err, out)
	}
	if want := "KAFKA_BROKER is not a setting of the api (did you mean KAFKA_BROKERS?)"; !strings.Contains(string(out), want) {
		t.Errorf("api's output = %q, want it to say %q", out, want)
	}
	if strings.Contains(string(out), "KAFKA_DLQ_TOPIC is not") {
		t.Errorf("api's output = %q, want the aggregator's KAFKA_DLQ_TOPIC only noted", out)
	}
}
