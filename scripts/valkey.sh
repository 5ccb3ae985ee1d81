#!/usr/bin/env bash
# Manage ONE real Valkey (or Redis) server on 127.0.0.1 for tests.
# Uses valkey-server if on PATH, else redis-server; installs Debian's
# redis-server with apt-get if neither exists (as root).
#
# Usage: scripts/valkey.sh start|stop|kill|addr|status|destroy|version
#   start    idempotent; the first start picks a free loopback port, later
#            starts reuse it. Waits for PING -> PONG; last stdout line is
#            the address 127.0.0.1:PORT.
#   stop     SHUTDOWN NOSAVE (AOF, if on, is flushed), SIGTERM/SIGKILL fallback
#   kill     SIGKILL now
#   addr     prints 127.0.0.1:PORT
#   status   prints "running 127.0.0.1:PORT" or "stopped"; exit 0 / 3
#   destroy  stop and delete the state dir
#   version  prints e.g. "redis-server 7.0.15"
#
# Environment:
#   BF_RUN_DIR          state root (default <repo>/.run); state in $BF_RUN_DIR/valkey
#   VALKEY_PORT         port for the first start (default: a free one)
#   VALKEY_APPENDONLY   yes = AOF persistence in the state dir (default no:
#                       no persistence at all, data is lost on stop)
#   VALKEY_APPENDFSYNC  always|everysec|no (default everysec), with AOF only
#   VALKEY_EXTRA_ARGS   extra server arguments (word split), e.g. "--maxmemory 256mb"
#   VALKEY_ACLFILE      an ACL file to load (--aclfile), e.g. one rendered by
#                       kustomize/base/valkey/render-acl.sh
#   VALKEY_ADMIN_USER, VALKEY_ADMIN_PASSWORD
#                       credentials for this script's own PING and SHUTDOWN,
#                       needed when the ACL file turns the default user off
#   VALKEY_START_TIMEOUT seconds to wait for PONG (default 30)
#   VALKEY_STOP_TIMEOUT  seconds to wait for a stop (default 30)
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

RUN_ROOT="${BF_RUN_DIR:-$REPO_ROOT/.run}"
[[ "$RUN_ROOT" == /* ]] || RUN_ROOT="$PWD/$RUN_ROOT"
STATE="$RUN_ROOT/valkey"

PID_FILE="$STATE/valkey.pid"
PORT_FILE="$STATE/port"
DATA_DIR="$STATE/data"
LOG_FILE="$STATE/valkey.log"  # server log (--logfile)
OUT_FILE="$STATE/valkey.out"  # process stdout/stderr

START_TIMEOUT="${VALKEY_START_TIMEOUT:-30}"
STOP_TIMEOUT="${VALKEY_STOP_TIMEOUT:-30}"

log() { printf 'valkey.sh: %s\n' "$*" >&2; }

die() {
  log "ERROR: $*"
  exit 1
}

dump_logs() {
  local f
  for f in "$OUT_FILE" "$LOG_FILE"; do
    if [[ -s "$f" ]]; then
      printf -- '----- last 40 lines of %s -----\n' "$f" >&2
      tail -n 40 "$f" >&2 || true
    fi
  done
  printf -- '----- end of logs -----\n' >&2
}

fail() {
  log "ERROR: $*"
  dump_logs
  exit 1
}

# Prints the server binary to use, installing redis-server if there is none.
server_bin() {
  local b
  for b in valkey-server redis-server; do
    if command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return 0
    fi
  done
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "neither valkey-server nor redis-server found; installing Debian's redis-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >&2 && apt-get install -y -qq redis-server >&2; }; then
      die "apt-get install redis-server failed"
    fi
    # Debian's package starts a system service on port 6379; we do not use it.
    if command -v redis-server >/dev/null 2>&1; then
      command -v redis-server
      return 0
    fi
  fi
  die "no valkey-server or redis-server on PATH (install valkey or redis-server)"
}

# The matching CLI (may be empty: then a bash PING is used).
cli_bin() {
  local server="$1" b
  case "$(basename "$server")" in
    valkey-server) b="valkey-cli" ;;
    *) b="redis-cli" ;;
  esac
  if command -v "$b" >/dev/null 2>&1; then
    command -v "$b"
  elif command -v redis-cli >/dev/null 2>&1; then
    command -v redis-cli
  fi
  return 0
}

server_version() {
  local server="$1" v
  v="$("$server" --version 2>/dev/null || true)"
  v="${v#* v=}"
  v="${v%% *}"
  printf '%s %s\n' "$(basename "$server")" "${v:-unknown}"
}

pid_alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# Prints the pid of OUR running server (the port in its cmdline must match).
running_pid() {
  [[ -f "$PID_FILE" && -f "$PORT_FILE" ]] || return 1
  local pid cmdline port
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  port="$(cat "$PORT_FILE")"
  pid_alive "$pid" || return 1
  # redis rewrites its process title to "redis-server 127.0.0.1:PORT".
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"-server"*":$port "* || "$cmdline" == *"-server"*"--port $port "* ]] || return 1
  printf '%s\n' "$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    port_open "$p" && continue
    if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Htan "sport = :$p" 2>/dev/null || true)" ]]; then
      continue
    fi
    printf '%s\n' "$p"
    return 0
  done
  die "could not find a free loopback port"
}

# The redis-cli arguments that authenticate as VALKEY_ADMIN_USER, if set.
cli_auth() {
  if [[ -n "${VALKEY_ADMIN_USER:-}" ]]; then
    printf '%s\n' --user "$VALKEY_ADMIN_USER" --pass "${VALKEY_ADMIN_PASSWORD:-}" --no-auth-warning
  fi
}

# PING the server on port $1; succeeds on PONG.
ping() {
  local port="$1" cli reply auth=()
  cli="$(cli_bin "$(server_bin)")"
  mapfile -t auth < <(cli_auth)
  if [[ -n "$cli" ]]; then
    reply="$(timeout 5 "$cli" -h 127.0.0.1 -p "$port" "${auth[@]}" ping 2>/dev/null || true)"
  else
    reply="$(
      exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
      if [[ -n "${VALKEY_ADMIN_USER:-}" ]]; then
        printf 'AUTH %s %s\r\n' "$VALKEY_ADMIN_USER" "${VALKEY_ADMIN_PASSWORD:-}" >&3
        IFS= read -r -t 2 line <&3 || true
      fi
      printf 'PING\r\n' >&3
      IFS= read -r -t 2 line <&3 || true
      printf '%s' "${line%$'\r'}"
    )" 2>/dev/null || true
    reply="${reply#+}"
  fi
  [[ "$reply" == "PONG" ]]
}

print_addr() {
  [[ -f "$PORT_FILE" ]] || die "no server state in $STATE (run: $0 start)"
  printf '127.0.0.1:%s\n' "$(cat "$PORT_FILE")"
}

wait_ready() {
  local pid="$1" port deadline
  port="$(cat "$PORT_FILE")"
  deadline=$((SECONDS + START_TIMEOUT))
  until ping "$port"; do
    if ! pid_alive "$pid"; then
      rm -f "$PID_FILE"
      fail "server process $pid exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      fail "server not answering PING on 127.0.0.1:$port after ${START_TIMEOUT}s (killed it)"
    fi
    sleep 0.1
  done
}

cmd_start() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9

  local pid
  if pid="$(running_pid)"; then
    log "server already running (pid $pid)"
    wait_ready "$pid"
    print_addr
    return 0
  fi
  rm -f "$PID_FILE"

  local server port
  server="$(server_bin)"
  if [[ -n "${VALKEY_PORT:-}" ]]; then
    port="$VALKEY_PORT"
  elif [[ -f "$PORT_FILE" ]]; then
    port="$(cat "$PORT_FILE")"
  else
    port="$(free_port)"
  fi
  [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
  port_open "$port" && die "port $port on 127.0.0.1 is already in use by another process"
  printf '%s\n' "$port" >"$PORT_FILE"
  mkdir -p "$DATA_DIR"

  local args=(
    --port "$port" --bind 127.0.0.1 --daemonize no
    --dir "$DATA_DIR" --logfile "$LOG_FILE" --save ''
  )
  if [[ "${VALKEY_APPENDONLY:-no}" == "yes" ]]; then
    args+=(--appendonly yes --appendfsync "${VALKEY_APPENDFSYNC:-everysec}")
  else
    args+=(--appendonly no)
  fi
  if [[ -n "${VALKEY_ACLFILE:-}" ]]; then
    [[ -r "$VALKEY_ACLFILE" ]] || die "VALKEY_ACLFILE $VALKEY_ACLFILE is not readable"
    args+=(--aclfile "$VALKEY_ACLFILE")
  fi
  # shellcheck disable=SC2206 # word splitting is intended
  args+=(${VALKEY_EXTRA_ARGS:-})

  printf -- '===== %s starting %s on 127.0.0.1:%s =====\n' \
    "$(date -u +%FT%TZ)" "$(server_version "$server")" "$port" >>"$OUT_FILE"
  # See scripts/kafka.sh: detached from this shell; the pid file is written
  # by the process that then becomes the server; fd 9 (our lock) is closed.
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  nohup setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' valkey-launch "$PID_FILE" \
    "$server" "${args[@]}" </dev/null >>"$OUT_FILE" 2>&1 9>&- &

  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.05
  done
  [[ -s "$PID_FILE" ]] || fail "launcher did not write $PID_FILE"
  pid="$(cat "$PID_FILE")"
  wait_ready "$pid"
  log "ready: $(server_version "$server") at 127.0.0.1:$port (appendonly=${VALKEY_APPENDONLY:-no}), state in $STATE"
  print_addr
}

wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while pid_alive "$pid"; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.1
  done
  return 0
}

cmd_stop() {
  local pid port cli
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "server not running"
    return 0
  fi
  port="$(cat "$PORT_FILE")"
  log "stopping server (pid $pid)"
  cli="$(cli_bin "$(server_bin)")"
  if [[ -n "$cli" ]]; then
    local auth=()
    mapfile -t auth < <(cli_auth)
    timeout 10 "$cli" -h 127.0.0.1 -p "$port" "${auth[@]}" shutdown nosave >/dev/null 2>&1 || true
  fi
  if ! wait_gone "$pid" 2; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
      log "server did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "server pid $pid survived SIGKILL"
    fi
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_kill() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "server not running"
    return 0
  fi
  log "killing server (pid $pid) with SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "server pid $pid survived SIGKILL"
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    printf 'running %s (pid %s)\n' "$(print_addr)" "$pid"
    return 0
  fi
  printf 'stopped\n'
  return 3
}

cmd_destroy() {
  cmd_stop
  if [[ -d "$STATE" ]]; then
    [[ "$STATE" == */valkey ]] || die "refusing to delete unexpected state dir $STATE"
    rm -rf "$STATE"
    log "deleted $STATE"
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  addr) print_addr ;;
  status) cmd_status ;;
  destroy) cmd_destroy ;;
  version) server_version "$(server_bin)" ;;
  *)
    echo "usage: $0 start|stop|kill|addr|status|destroy|version" >&2
    exit 2
    ;;
esac
