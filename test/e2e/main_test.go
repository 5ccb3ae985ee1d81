// Package e2e runs the real api and aggregator binaries against a real Kafka
// broker and a real Valkey/Redis server, sends sales through every protocol,
// and checks the aggregates exactly, through the query API and in Valkey.
//
// The stack launcher starts the services (`make test`, or by hand:
// bin/stack with kafka valkey -- go test ./test/e2e/) and names them in
// the environment of contract/testenv. Without them the tests skip, except
// under CI=true, where they fail.
package e2e

import (
	"os"
	"testing"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack/stacktest"
)

// binDir holds the api and aggregator binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(stacktest.Main(m, &binDir))
}

// services returns the addresses of the real Kafka and Valkey the tests use.
func services(t *testing.T) (kafka, valkey string) {
	t.Helper()
	return testenv.Kafka(t), testenv.Valkey(t)
}
