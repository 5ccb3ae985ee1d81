# shellcheck shell=bash
# Helpers shared by scripts/kafka.sh and scripts/valkey.sh, each of which
# manages ONE test service on 127.0.0.1. Sourced, never run.
#
# Set before sourcing:
#   SERVICE   the service's name: its state is $BF_RUN_DIR/$SERVICE and its
#             log lines start with "$SERVICE.sh:"
#   NOUN      what messages call it (broker, server)
# Set here: REPO_ROOT, RUN_ROOT, STATE, PID_FILE, PORT_FILE, LOG_FILE,
# OUT_FILE. Set by the script before calling anything:
#   DUMP_FILES     the logs that a failure shows, in order (an array)
#   START_TIMEOUT  seconds wait_started waits
#   STOP_TIMEOUT   seconds terminate waits before SIGKILL
# and a function running_pid that prints the pid of OUR running service
# (checked against its command line), or fails.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_ROOT="${BF_RUN_DIR:-$REPO_ROOT/.run}"
[[ "$RUN_ROOT" == /* ]] || RUN_ROOT="$PWD/$RUN_ROOT"
STATE="$RUN_ROOT/$SERVICE"
PID_FILE="$STATE/$SERVICE.pid"
PORT_FILE="$STATE/port"
# shellcheck disable=SC2034 # used by the scripts
LOG_FILE="$STATE/$SERVICE.log" # the service's own log
OUT_FILE="$STATE/$SERVICE.out" # process stdout/stderr

log() { printf '%s.sh: %s\n' "$SERVICE" "$*" >&2; }

die() {
  log "ERROR: $*"
  exit 1
}

# Print the tail of the service's logs to stderr (for loud failures).
dump_logs() {
  local f
  for f in "${DUMP_FILES[@]}"; do
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

# apt_install WHY PACKAGE...: installs the packages with apt-get, saying WHY
# first. Fails without trying unless we are root with apt-get; dies if
# apt-get fails.
apt_install() {
  local why="$1"
  shift
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  log "$why"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq >&2 && apt-get install -y -qq "$@" >&2; }; then
    die "apt-get install $* failed"
  fi
}

# lock_state holds the state directory's lock (fd 9) until the script exits,
# so concurrent starts of one service take turns.
lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock 9
}

# True if $1 is a live (non-zombie) process.
pid_alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# Prints the pid of our running service; if there is none, forgets its pid
# file, says so and fails.
running_or_forget() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "$NOUN not running"
    return 1
  fi
  printf '%s\n' "$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free loopback TCP port below the Linux ephemeral range (so it cannot clash
# with outgoing connections), not in $1 (space separated exclusions).
free_port() {
  local exclude=" ${1:-} " p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ "$exclude" == *" $p "* ]] && continue
    port_open "$p" && continue
    if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Htan "sport = :$p" 2>/dev/null || true)" ]]; then
      continue
    fi
    printf '%s\n' "$p"
    return 0
  done
  die "could not find a free loopback port"
}

# choose_port SETTING FILE [EXCLUDE]: the port for a start. SETTING (from the
# environment) if set, else the port of the earlier starts (in FILE), else a
# free one not in EXCLUDE. So a restarted service keeps its address.
choose_port() {
  if [[ -n "$1" ]]; then
    printf '%s\n' "$1"
  elif [[ -f "$2" ]]; then
    cat "$2"
  else
    free_port "${3:-}"
  fi
}

print_addr() {
  [[ -f "$PORT_FILE" ]] || die "no $NOUN state in $STATE (run: $0 start)"
  printf '127.0.0.1:%s\n' "$(cat "$PORT_FILE")"
}

# launch NAME COMMAND...: starts COMMAND for good and waits for PID_FILE.
# setsid + nohup: it outlives this shell and its session. The inner shell
# (named NAME) records its own pid and then becomes COMMAND (exec), so the
# pid file is right even if setsid has to fork. fd 9 (our lock) is not
# inherited.
launch() {
  local name="$1" i
  shift
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  nohup setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' "$name" "$PID_FILE" \
    "$@" </dev/null >>"$OUT_FILE" 2>&1 9>&- &
  for ((i = 0; i < 100; i++)); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.05
  done
  [[ -s "$PID_FILE" ]] || fail "$NOUN launcher did not write $PID_FILE"
}

# wait_started PID INTERVAL WHAT CHECK...: runs CHECK every INTERVAL seconds
# until it succeeds. Fails loudly if PID exits first, and kills it if CHECK
# still fails after START_TIMEOUT ("$NOUN WHAT on ADDRESS after ...").
wait_started() {
  local pid="$1" interval="$2" what="$3" deadline=$((SECONDS + START_TIMEOUT))
  shift 3
  while :; do
    if ! pid_alive "$pid"; then
      rm -f "$PID_FILE"
      fail "$NOUN process $pid exited during startup"
    fi
    "$@" && return 0
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      fail "$NOUN $what on 127.0.0.1:$(cat "$PORT_FILE") after ${START_TIMEOUT}s (killed it)"
    fi
    sleep "$interval"
  done
}

# Wait until $1 is gone, up to $2 seconds. Returns 1 on timeout.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while pid_alive "$pid"; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.1
  done
  return 0
}

# terminate PID: SIGTERM, then SIGKILL after STOP_TIMEOUT.
terminate() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "$NOUN did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "$NOUN pid $pid survived SIGKILL"
  fi
}

cmd_kill() {
  local pid
  pid="$(running_or_forget)" || return 0
  log "killing $NOUN (pid $pid) with SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "$NOUN pid $pid survived SIGKILL"
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
    [[ "$STATE" == */"$SERVICE" ]] || die "refusing to delete unexpected state dir $STATE"
    rm -rf "$STATE"
    log "deleted $STATE"
  fi
}
