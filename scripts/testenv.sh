#!/usr/bin/env bash
# Bring the test services up or down: one real Valkey/Redis server and one real
# single-node Apache Kafka broker (KRaft), both on 127.0.0.1.
#
# Usage: scripts/testenv.sh up|down|status
#   up      starts Valkey then Kafka (idempotent), writes $BF_RUN_DIR/testenv.env
#           (export lines for BF_TEST_KAFKA_BROKERS, BF_TEST_VALKEY_ADDR,
#           BF_TEST_KAFKA_CTL, BF_TEST_VALKEY_CTL, BF_RUN_DIR), prints the same
#           lines on stdout (so `eval "$(scripts/testenv.sh up)"` works) and a
#           one-line summary on stderr.
#   down    stops both and deletes their state and the env file
#   status  shows both services' status
#
# BF_RUN_DIR (default <repo>/.run) holds all state; see scripts/kafka.sh and
# scripts/valkey.sh for the per-service settings (KAFKA_PORT, VALKEY_PORT,
# VALKEY_APPENDONLY, ...), which pass through.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
KAFKA_CTL="$SCRIPT_DIR/kafka.sh"
VALKEY_CTL="$SCRIPT_DIR/valkey.sh"

BF_RUN_DIR="${BF_RUN_DIR:-$REPO_ROOT/.run}"
[[ "$BF_RUN_DIR" == /* ]] || BF_RUN_DIR="$PWD/$BF_RUN_DIR"
export BF_RUN_DIR
ENV_FILE="$BF_RUN_DIR/testenv.env"

log() { printf 'testenv: %s\n' "$*" >&2; }

# Run "$@" and print the last line of its stdout; its stderr passes through.
last_line() {
  local out
  out="$("$@")" || return 1
  out="${out##*$'\n'}"
  [[ -n "$out" ]] || return 1
  printf '%s\n' "$out"
}

cmd_up() {
  mkdir -p "$BF_RUN_DIR"
  local valkey_addr kafka_addr valkey_version kafka_version t0=$SECONDS
  if ! valkey_addr="$(last_line "$VALKEY_CTL" start)"; then
    log "FAILED to start Valkey/Redis (logs above; state in $BF_RUN_DIR/valkey)"
    exit 1
  fi
  if ! kafka_addr="$(last_line "$KAFKA_CTL" start)"; then
    log "FAILED to start Apache Kafka (logs above; state in $BF_RUN_DIR/kafka)." \
      "Valkey/Redis is still running at $valkey_addr; run '$0 down' to clean up"
    exit 1
  fi
  valkey_version="$("$VALKEY_CTL" version)"
  kafka_version="$(cat "$BF_RUN_DIR/kafka/version" 2>/dev/null || "$KAFKA_CTL" version)"

  local tmp="$ENV_FILE.tmp.$$"
  {
    printf '# Written by scripts/testenv.sh up; source it to reach the test services.\n'
    printf 'export BF_TEST_KAFKA_BROKERS=%q\n' "$kafka_addr"
    printf 'export BF_TEST_VALKEY_ADDR=%q\n' "$valkey_addr"
    printf 'export BF_TEST_KAFKA_CTL=%q\n' "$KAFKA_CTL"
    printf 'export BF_TEST_VALKEY_CTL=%q\n' "$VALKEY_CTL"
    printf 'export BF_RUN_DIR=%q\n' "$BF_RUN_DIR"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
  grep '^export ' "$ENV_FILE"
  log "Apache Kafka $kafka_version (KRaft, real broker) at $kafka_addr;" \
    "$valkey_version at $valkey_addr (up in $((SECONDS - t0))s; env in $ENV_FILE)"
}

cmd_down() {
  local rc=0
  "$KAFKA_CTL" destroy || {
    rc=1
    log "FAILED to stop Apache Kafka"
  }
  "$VALKEY_CTL" destroy || {
    rc=1
    log "FAILED to stop Valkey/Redis"
  }
  rm -f "$ENV_FILE"
  if ((rc == 0)); then
    log "Apache Kafka and Valkey/Redis stopped, state deleted"
  fi
  return "$rc"
}

cmd_status() {
  local k v rc=0
  k="$("$KAFKA_CTL" status)" || rc=3
  v="$("$VALKEY_CTL" status)" || rc=3
  printf 'kafka:  %s\nvalkey: %s\n' "$k" "$v"
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
