// Package e2e runs the real api and aggregator binaries against a real Kafka
// broker and a real Valkey/Redis server, sends sales through every protocol,
// and checks the aggregates exactly, through the query API and in Valkey.
//
// scripts/test.sh starts the services and exports BF_TEST_KAFKA_BROKERS,
// BF_TEST_VALKEY_ADDR and BF_TEST_KAFKA_CTL. Without them the tests skip,
// except under CI=true, where they fail.
package e2e

import (
	"os"
	"testing"

	"blackfriday.local/test/pipelinetest"
)

// binDir holds the api and aggregator binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(pipelinetest.Main(m, &binDir))
}

// services returns the addresses of the real Kafka and Valkey the tests use.
func services(t *testing.T) (kafka, valkey string) {
	t.Helper()
	return pipelinetest.Services(t, "scripts/test.sh")
}
