#!/usr/bin/env bash
# The JSON vs gRPC comparison behind `make compare`: builds the api, the
# aggregator and the load generator, starts a real single-node Apache Kafka
# broker and a real Valkey/Redis server (bin/stack, in .run/compare-env)
# unless BF_TEST_KAFKA_BROKERS and BF_TEST_VALKEY_ADDR already name running
# ones, runs `loadgen compare`, writes docs/results/, and stops everything it
# started.
#
# Knobs (environment, defaults in brackets):
#   COMPARE_REPS [3]                repetitions
#   COMPARE_DURATION [1500ms]       measured window of each run
#   COMPARE_WARMUP [500ms]          warm-up of each run
#   COMPARE_BROKER_WARMUP [8s]      load before anything is measured (the broker's JIT)
#   COMPARE_CONCURRENCY [128]       closed-loop callers, every protocol
#   COMPARE_SWEEP [32,512]          extra gRPC concurrencies (empty: none)
#   COMPARE_RATE [0]                open-loop calls/s (0: half the slowest unary saturation)
#   COMPARE_FRESHNESS [20s]         freshness probe duration
#   COMPARE_PROTOCOLS [all]         comma-separated subset
#   COMPARE_OUT [docs/results]      where the report goes
#   COMPARE_ARGS                    more `loadgen compare` flags
# For a longer, steadier run: make compare COMPARE_REPS=5 COMPARE_DURATION=10s
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

reps="${COMPARE_REPS:-3}"
duration="${COMPARE_DURATION:-1500ms}"
warmup="${COMPARE_WARMUP:-500ms}"
broker_warmup="${COMPARE_BROKER_WARMUP:-8s}"
concurrency="${COMPARE_CONCURRENCY:-128}"
rate="${COMPARE_RATE:-0}"
freshness="${COMPARE_FRESHNESS:-20s}"
sweep="${COMPARE_SWEEP-32,512}"
protocols="${COMPARE_PROTOCOLS:-}"
out="${COMPARE_OUT:-docs/results}"
extra="${COMPARE_ARGS:-}"

# The command that reproduces this run, for the report.
command="make compare"
for v in COMPARE_REPS COMPARE_DURATION COMPARE_WARMUP COMPARE_BROKER_WARMUP COMPARE_CONCURRENCY COMPARE_RATE COMPARE_FRESHNESS COMPARE_SWEEP COMPARE_PROTOCOLS COMPARE_ARGS; do
  [[ -n "${!v+set}" ]] || continue
  val="${!v}"
  if [[ "$val" =~ ^[A-Za-z0-9.,_:/-]+$ ]]; then command+=" $v=$val"; else command+=" $v=${val@Q}"; fi
done

bin="$(mktemp -d "${TMPDIR:-/tmp}/bf-compare-bin.XXXXXX")"
started_env=""
cleanup() {
  local rc=$?
  if [[ -n "$started_env" ]]; then
    bin/stack -dir "$started_env" down >/dev/null 2>&1 || echo "compare: could not stop the test services in $started_env" >&2
  fi
  rm -rf "$bin"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "compare: building the api, the aggregator and the load generator" >&2
go build -o "$bin/" ./services/api ./services/aggregator ./services/loadgen

if [[ -z "${BF_TEST_KAFKA_BROKERS:-}" || -z "${BF_TEST_VALKEY_ADDR:-}" ]]; then
  started_env="$root/.run/compare-env"
  eval "$(bin/stack -dir "$started_env" up kafka valkey)"
fi
run_dir="${BF_RUN_DIR:-$root/.run/stack}"
kafka_pid="$(cut -d' ' -f1 "$run_dir/kafka/node-1/kafka.pid" 2>/dev/null || echo 0)"
valkey_pid="$(cut -d' ' -f1 "$run_dir/valkey/valkey.pid" 2>/dev/null || echo 0)"
kafka_version="$(sed -n 's/.*"version": "\([^"]*\)".*/\1/p' "$run_dir/kafka/cluster.json" 2>/dev/null || true)"
valkey_version="$(redis-server --version 2>/dev/null | sed -n 's/^Redis server v=\([^ ]*\).*/redis-server \1/p' || true)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- services gen proto 2>/dev/null; then revision+=" with local changes"; fi

bench_args=()
if [[ -f "$out/bench.txt" ]]; then bench_args=(-bench "$out/bench.txt"); fi

echo "compare: Kafka at $BF_TEST_KAFKA_BROKERS (pid $kafka_pid), Valkey at $BF_TEST_VALKEY_ADDR; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# shellcheck disable=SC2086
"$bin/loadgen" compare \
  -api-bin "$bin/api" -aggregator-bin "$bin/aggregator" \
  -kafka "$BF_TEST_KAFKA_BROKERS" -valkey "$BF_TEST_VALKEY_ADDR" \
  -kafka-pid "$kafka_pid" -valkey-pid "$valkey_pid" \
  -kafka-version "$kafka_version" -valkey-version "$valkey_version" -revision "$revision" \
  -reps "$reps" -duration "$duration" -warmup "$warmup" -broker-warmup "$broker_warmup" -concurrency "$concurrency" \
  -rate "$rate" -freshness "$freshness" -sweep "$sweep" ${protocols:+-protocols "$protocols"} \
  -work "$root/.run/compare" -out "$out" -command "$command" \
  "${bench_args[@]}" $extra
