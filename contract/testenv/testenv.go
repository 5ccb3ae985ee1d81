// Package testenv names the environment through which the stack launcher
// (tooling/stack) tells tests where the real services are, and holds the
// one rule for a test that needs one: without it the test is skipped, and
// under CI=true it fails, because CI must never pass by skipping.
//
// It lives in contract so that every module can import it, the services
// included, without their container builds needing anything beyond gen/,
// contract/ and the service.
package testenv

import (
	"os"
	"testing"
)

// The variables the launcher writes (`stack env`, `stack with`) and the
// tests read.
const (
	// KafkaBrokers is the bootstrap list of a real Apache Kafka cluster,
	// comma separated.
	KafkaBrokers = "BF_TEST_KAFKA_BROKERS"
	// ValkeyAddr is the host:port of a real Valkey or Redis server.
	ValkeyAddr = "BF_TEST_VALKEY_ADDR"
	// KafkaCtl is an executable that manages a Kafka of the caller's own:
	// `$BF_TEST_KAFKA_CTL start|stop|kill|addr|sasl-addr|destroy`, acting
	// on the stack in RunDir. start prints the bootstrap address as its
	// last line; a first start reads KAFKA_SCRAM_USERS ("NAME:PASSWORD
	// ...", a SCRAM listener whose address sasl-addr prints) and
	// KAFKA_AUTHORIZER ("acl"). For tests that cannot import the launcher.
	KafkaCtl = "BF_TEST_KAFKA_CTL"
	// RunDir is the launcher's state directory for the stack, which holds
	// its processes, logs and data. Setting it to a directory of the
	// test's own gives the test services of its own.
	RunDir = "BF_RUN_DIR"
)

// Start says how to get the services, in skip and failure messages.
const Start = "`make test` starts them; by hand: eval \"$(bin/stack up kafka valkey)\""

// Need returns the value of the environment variable name, which names
// something a test needs: a real service, or what a make target prepares;
// how says how to get it. When it is empty the test is skipped, or fails
// when CI=true.
func Need(tb testing.TB, name, how string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is empty: the test needs it, and under CI=true fails instead of skipping (%s)", name, how)
	}
	tb.Skipf("%s is empty: the test needs it (%s)", name, how)
	return ""
}

// Kafka returns the bootstrap list of the real Kafka cluster, or skips (or
// fails under CI) as Need does.
func Kafka(tb testing.TB) string {
	tb.Helper()
	return Need(tb, KafkaBrokers, Start)
}

// Valkey returns the address of the real Valkey server, or skips (or fails
// under CI) as Need does.
func Valkey(tb testing.TB) string {
	tb.Helper()
	return Need(tb, ValkeyAddr, Start)
}
