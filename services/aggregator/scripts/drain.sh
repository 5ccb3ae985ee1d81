#!/usr/bin/env bash
# Measure how fast aggregator binaries drain one pre-filled backlog, the way
# `loadgen compare` measures "drain" (tooling/loadgen/internal/compare/drain.go):
# the applied-sales counter on the metrics port, from its first increase to
# the last, with the aggregator's and redis-server's CPU over that window.
#
#   drain.sh fill SECONDS               fill a new topic through the real api
#                                       (RecordSales batches of 500 over gRPC)
#                                       and print its name
#   drain.sh run TOPIC BIN [VAR=VALUE…] drain TOPIC from the start with BIN
#                                       (fresh group and key prefix), print
#                                       one result line
#
# Needs BF_TEST_KAFKA_BROKERS, BF_TEST_VALKEY_ADDR and BF_RUN_DIR (eval
# "$(bin/stack up kafka valkey)"). `fill` also needs
# API_BIN and LOADGEN_BIN. Wrap measurements in flock /tmp/bf-measure.lock.
set -euo pipefail

: "${BF_TEST_KAFKA_BROKERS:?start the services with bin/stack up kafka valkey}" "${BF_TEST_VALKEY_ADDR:?start the services with bin/stack up kafka valkey}"
tick="$(getconf CLK_TCK)"

cpu_ticks() { # utime+stime of a pid, in clock ticks
  awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

applied() {
  curl -fsS "http://$1/metrics" 2>/dev/null | awk '$1=="bf_aggregator_sales_applied_total"{print $2}' || true
}

cmd_fill() {
  local seconds="$1" topic port pid
  topic="drain-$(date +%s)-$RANDOM"
  port="$(free_port)"
  KAFKA_BROKERS="$BF_TEST_KAFKA_BROKERS" KAFKA_TOPIC="$topic" KAFKA_TOPIC_PARTITIONS=6 \
    VALKEY_ADDR="$BF_TEST_VALKEY_ADDR" VALKEY_KEY_PREFIX="drainfill:" PORT="$port" METRICS_ADDR=off \
    LOG_LEVEL=warn MAX_BUFFERED_RECORDS=300000 MAX_INFLIGHT_WRITES=4096 "${API_BIN:?}" >&2 &
  pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  "${LOADGEN_BIN:?}" run -target "http://127.0.0.1:$port" -protocol batch -concurrency 64 \
    -duration "${seconds}s" -warmup 0s -progress off -out /dev/null >&2
  kill "$pid"; wait "$pid" || true
  echo "$topic"
}

cmd_run() {
  local topic="$1" bin="$2"; shift 2
  local id port pid vpid rss t0 first_at="" first_n=0 first_cpu=0 first_vcpu=0 last_at last_n=0 last_cpu last_vcpu stable=0 n now
  id="$RANDOM$RANDOM"
  port="$(free_port)"
  vpid="$(cut -d' ' -f1 "$BF_RUN_DIR/valkey/valkey.pid")" # the pid file holds the pid, then its start time
  env KAFKA_BROKERS="$BF_TEST_KAFKA_BROKERS" KAFKA_TOPIC="$topic" KAFKA_DLQ_TOPIC="$topic.dlq" \
    KAFKA_GROUP="drain-$id" VALKEY_ADDR="$BF_TEST_VALKEY_ADDR" VALKEY_KEY_PREFIX="drain:$id:" \
    HTTP_ADDR="127.0.0.1:$port" LOG_LEVEL=warn "$@" "$bin" >&2 &
  pid=$!
  t0="$(date +%s.%N)"
  while :; do
    n="$(applied "127.0.0.1:$port")"
    now="$(date +%s.%N)"
    if [[ -n "$n" ]] && awk -v n="$n" -v l="$last_n" 'BEGIN{exit !(n>l)}'; then
      if [[ -z "$first_at" ]]; then first_at="$now" first_n="$n" first_cpu="$(cpu_ticks "$pid")" first_vcpu="$(cpu_ticks "$vpid")"; fi
      last_at="$now" last_n="$n" last_cpu="$(cpu_ticks "$pid")" last_vcpu="$(cpu_ticks "$vpid")" stable=0
    elif [[ -n "$first_at" ]]; then
      stable=$((stable + 1))
      ((stable < 30)) || break # 3 s without progress: drained
    fi
    sleep 0.1
  done
  rss="$(awk '/^VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status")"
  kill "$pid"; wait "$pid" || true
  awk -v rss="$rss" -v bin="$bin" -v a="$first_at" -v b="$last_at" -v n0="$first_n" -v n1="$last_n" -v c0="$first_cpu" -v c1="$last_cpu" \
    -v v0="$first_vcpu" -v v1="$last_vcpu" -v t0="$t0" -v tick="$tick" -v extra="$*" 'BEGIN{
      e=b-a; printf "%s %s: %d sales in %.2f s (start %.2f s): %.0f sales/s, aggregator %.2f cores (peak RSS %s MB), redis %.2f cores\n",
      bin, extra, n1, e, a-t0, (n1-n0)/e, (c1-c0)/tick/e, rss, (v1-v0)/tick/e }'
  # The keys are per run; drop them so the server stays small (the test
  # server is this measurement's own).
  redis-cli -h "${BF_TEST_VALKEY_ADDR%:*}" -p "${BF_TEST_VALKEY_ADDR##*:}" FLUSHALL >/dev/null
}

case "${1:-}" in
  fill) shift; cmd_fill "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) echo "usage: $0 fill SECONDS | run TOPIC BIN [VAR=VALUE…]" >&2; exit 2 ;;
esac
