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

SERVICE=valkey
NOUN=server
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# valkey.log is the server's log (--logfile), valkey.out its stdout/stderr.
DATA_DIR="$STATE/data"
DUMP_FILES=("$OUT_FILE" "$LOG_FILE")

START_TIMEOUT="${VALKEY_START_TIMEOUT:-30}"
STOP_TIMEOUT="${VALKEY_STOP_TIMEOUT:-30}"

# Prints the server binary to use, installing redis-server if there is none.
server_bin() {
  local b
  for b in valkey-server redis-server; do
    if command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return 0
    fi
  done
  # Debian's package starts a system service on port 6379; we do not use it.
  if apt_install "neither valkey-server nor redis-server found; installing Debian's redis-server with apt-get" redis-server &&
    command -v redis-server >/dev/null 2>&1; then
    command -v redis-server
    return 0
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

# Wait until server $1 answers PING.
wait_ready() {
  wait_started "$1" 0.1 "not answering PING" ping "$(cat "$PORT_FILE")"
}

cmd_start() {
  lock_state

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
  port="$(choose_port "${VALKEY_PORT:-}" "$PORT_FILE")"
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
  launch valkey-launch "$server" "${args[@]}"
  pid="$(cat "$PID_FILE")"
  wait_ready "$pid"
  log "ready: $(server_version "$server") at 127.0.0.1:$port (appendonly=${VALKEY_APPENDONLY:-no}), state in $STATE"
  print_addr
}

cmd_stop() {
  local pid port cli
  pid="$(running_or_forget)" || return 0
  port="$(cat "$PORT_FILE")"
  log "stopping server (pid $pid)"
  cli="$(cli_bin "$(server_bin)")"
  if [[ -n "$cli" ]]; then
    local auth=()
    mapfile -t auth < <(cli_auth)
    timeout 10 "$cli" -h 127.0.0.1 -p "$port" "${auth[@]}" shutdown nosave >/dev/null 2>&1 || true
  fi
  wait_gone "$pid" 2 || terminate "$pid"
  rm -f "$PID_FILE"
  log "stopped"
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
