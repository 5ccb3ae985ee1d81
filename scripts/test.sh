#!/usr/bin/env bash
# Runs every Go test against a real Apache Kafka broker and a real
# Valkey/Redis server, both started here by scripts/testenv.sh and stopped on
# exit. Under CI=true a test that needs a missing service fails, never skips.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export BF_RUN_DIR="${BF_RUN_DIR:-$root/.run}"

cleanup() { scripts/testenv.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT

scripts/testenv.sh up
# shellcheck disable=SC1091
source "$BF_RUN_DIR/testenv.env"
echo "test: using Kafka at $BF_TEST_KAFKA_BROKERS and Valkey at $BF_TEST_VALKEY_ADDR" >&2

# The race detector runs on the service packages; the end-to-end tests build
# and run the real binaries.
go test -count=1 -race -timeout 20m ./gen/... ./kafkasecurity/... ./services/api/... ./services/aggregator/... ./services/devstack/... ./services/loadgen/...
go test -count=1 -timeout 20m -v ./test/e2e/...
