#!/usr/bin/env bash
# Manage ONE real single-node Apache Kafka broker (KRaft, broker+controller in
# one JVM) on 127.0.0.1 for tests. No Docker: the broker jars come from Maven
# Central via test/kafka/pom.xml and are cached between runs.
#
# Usage: scripts/kafka.sh start|stop|kill|addr|sasl-addr|status|destroy
#   start    idempotent; first start picks free loopback ports, formats storage,
#            later starts reuse the same ports, cluster id and data. Waits until
#            the broker is up; the last stdout line is the bootstrap address.
#   stop     SIGTERM (graceful), SIGKILL after KAFKA_STOP_TIMEOUT (30 s); keeps data
#   kill     SIGKILL now; keeps data
#   addr     prints 127.0.0.1:PORT
#   sasl-addr  prints 127.0.0.1:PORT of the SCRAM listener (KAFKA_SCRAM_USERS)
#   status   prints "running 127.0.0.1:PORT" or "stopped"; exit 0 / 3
#   destroy  stop and delete the state dir
#
# Environment:
#   BF_RUN_DIR          state root (default <repo>/.run); state in $BF_RUN_DIR/kafka
#   BF_CACHE_DIR        jar cache root (default ${XDG_CACHE_HOME:-~/.cache}/blackfriday)
#   KAFKA_VERSION       override the version pinned in test/kafka/pom.xml
#   KAFKA_PORT          broker port for the first start (default: a free one)
#   KAFKA_CONTROLLER_PORT  controller port for the first start (default: a free one)
#   KAFKA_HEAP_OPTS     default "-Xmx512m -Xms256m"
#   KAFKA_OPTS          extra JVM options
#   KAFKA_EXTRA_PROPERTIES  extra server.properties lines (newline separated)
#   KAFKA_SCRAM_USERS   opt-in, first start only: "NAME:PASSWORD ..." adds a
#                       SASL_PLAINTEXT listener (SCRAM-SHA-256 and SCRAM-SHA-512)
#                       on a second port, with these users' credentials written
#                       at format time (StorageTool --add-scram). The PLAINTEXT
#                       listener stays as it is. Later starts keep the listener.
#   KAFKA_SASL_PORT     port of that listener for the first start (default: a free one)
#   KAFKA_AUTHORIZER    opt-in, first start only: "acl" turns on Kafka's
#                       StandardAuthorizer with allow.everyone.if.no.acl.found=false;
#                       the PLAINTEXT and controller listeners (principal
#                       User:ANONYMOUS) are super users, SCRAM users need ACLs.
#   KAFKA_START_TIMEOUT seconds to wait for readiness (default 60)
#   KAFKA_STOP_TIMEOUT  seconds to wait for a graceful stop (default 30)
set -euo pipefail
shopt -s inherit_errexit

SERVICE=kafka
NOUN=broker
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POM="$REPO_ROOT/test/kafka/pom.xml"
LOG4J_CONF="$REPO_ROOT/test/kafka/log4j2.xml"
CACHE_ROOT="${BF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blackfriday}"

# kafka.log is log4j2's output (see test/kafka/log4j2.xml), kafka.out the
# JVM's stdout/stderr.
PROPS="$STATE/server.properties"
CTRL_PORT_FILE="$STATE/controller_port"
CLUSTER_ID_FILE="$STATE/cluster_id"
SASL_PORT_FILE="$STATE/sasl_port"   # present when the SCRAM listener is on
AUTHORIZER_FILE="$STATE/authorizer" # present when ACLs are enforced
VERSION_FILE="$STATE/version"
DATA_DIR="$STATE/data"
FORMAT_LOG="$STATE/format.log"
OFFSET_FILE="$STATE/log_offset" # size of $LOG_FILE when the current broker was launched
DUMP_FILES=("$FORMAT_LOG" "$OUT_FILE" "$LOG_FILE")

START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

kafka_version() {
  if [[ -n "${KAFKA_VERSION:-}" ]]; then
    printf '%s\n' "$KAFKA_VERSION"
    return
  fi
  local v
  v="$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p;T;q' "$POM")"
  [[ -n "$v" ]] || die "cannot read <kafka.version> from $POM"
  printf '%s\n' "$v"
}

# Prints the pid of OUR running broker (checked against its command line), or fails.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmdline
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  pid_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"kafka.Kafka $PROPS"* ]] || return 1
  printf '%s\n' "$pid"
}

ensure_java_maven() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  ((${#missing[@]} == 0)) && return 0
  apt_install "installing ${missing[*]} with apt-get (needed to run the test Kafka broker)" "${missing[@]}" ||
    die "missing ${missing[*]}: install a Java 17+ runtime and Maven"
}

# Kafka 4.x brokers need Java 17 or newer.
check_java() {
  local v major
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  major="${v%%.*}"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version (java.specification.version='$v')"
  ((major >= 17)) || die "Java $v found; Apache Kafka 4.x needs Java 17 or newer"
}

# Prints the directory holding all broker jars, downloading them once. The
# marker file records a hash of the pom, so editing the pom re-downloads.
ensure_jars() {
  local version="$1" dir libs marker tmp want
  dir="$CACHE_ROOT/kafka-$version"
  libs="$dir/libs"
  marker="$dir/.complete"
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -d "$libs" && "$(cat "$marker" 2>/dev/null || true)" == "$want" ]]; then
    printf '%s\n' "$libs"
    return 0
  fi
  mkdir -p "$dir"
  (
    flock 8
    if [[ -d "$libs" && "$(cat "$marker" 2>/dev/null || true)" == "$want" ]]; then
      exit 0
    fi
    log "downloading Apache Kafka $version jars from Maven Central into $libs (one-time)"
    tmp="$(mktemp -d "$dir/libs.tmp.XXXXXX")"
    if ! mvn -B -Dstyle.color=never -f "$POM" -Dkafka.version="$version" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" >"$dir/mvn.log" 2>&1; then
      rm -rf "$tmp"
      printf -- '----- last 40 lines of %s -----\n' "$dir/mvn.log" >&2
      tail -n 40 "$dir/mvn.log" >&2 || true
      die "maven could not resolve org.apache.kafka:kafka_2.13:$version (full log: $dir/mvn.log)"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || {
      rm -rf "$tmp"
      die "no kafka_2.13 jar after download"
    }
    chmod 755 "$tmp"
    rm -f "$marker"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    printf '%s\n' "$want" >"$marker"
  ) 8>"$dir/.lock" || return 1
  printf '%s\n' "$libs"
}

new_cluster_id() {
  # Same shape as org.apache.kafka.common.Uuid: 16 random bytes, base64url
  # without padding, never starting with '-'.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && "$id" != AAAAAAAAAAAAAAAAAAAAA* ]] && break
  done
  printf '%s\n' "$id"
}

write_properties() {
  local port="$1" ctrl="$2" sasl="${3:-}"
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT"
  if [[ -n "$sasl" ]]; then
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$sasl"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  cat >"$PROPS.tmp" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$ctrl
listeners=$listeners,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR

# Single node, tuned for tests on a small machine.
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=6
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted broker must wait for its old incarnation's
# session to expire before it can register (default 9 s): keep that short.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
EOF
  if [[ -n "$sasl" ]]; then
    cat >>"$PROPS.tmp" <<'EOF'

# KAFKA_SCRAM_USERS: SCRAM on the SASL_PLAINTEXT listener; the users'
# credentials live in the cluster metadata (written at format time).
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  if [[ -f "$AUTHORIZER_FILE" ]]; then
    cat >>"$PROPS.tmp" <<'EOF'

# KAFKA_AUTHORIZER=acl: ACLs enforced; the PLAINTEXT and controller listeners
# (no authentication, so User:ANONYMOUS) keep full access for the harness.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
  fi
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$PROPS.tmp"
  fi
  mv "$PROPS.tmp" "$PROPS"
}

print_sasl_addr() {
  [[ -f "$SASL_PORT_FILE" ]] || die "no SCRAM listener in $STATE (start with KAFKA_SCRAM_USERS set)"
  printf '127.0.0.1:%s\n' "$(cat "$SASL_PORT_FILE")"
}

# Prints the StorageTool --add-scram arguments for KAFKA_SCRAM_USERS, one a
# line: every user gets SCRAM-SHA-256 and SCRAM-SHA-512 credentials.
scram_format_args() {
  local entry name password mech
  for entry in ${KAFKA_SCRAM_USERS:-}; do
    name="${entry%%:*}"
    password="${entry#*:}"
    [[ "$entry" == *:* && "$name" =~ ^[A-Za-z0-9._-]+$ && -n "$password" && "$password" != *[],=[]* ]] ||
      die "KAFKA_SCRAM_USERS entry for '$name': want NAME:PASSWORD (name of letters, digits, . _ -; password without , = [ ])"
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
      printf '%s\n' --add-scram "$mech=[name=$name,password=$password]"
    done
  done
}

# started PORT OFFSET: the broker's port answers and, in the log it wrote
# since it was launched (past OFFSET), it says it started.
started() {
  port_open "$1" && [[ -f "$LOG_FILE" ]] &&
    grep -q 'Kafka Server started' < <(tail -c "+$(($2 + 1))" "$LOG_FILE")
}

# Wait until broker $1 is up.
wait_ready() {
  local offset=0
  [[ -f "$OFFSET_FILE" ]] && offset="$(cat "$OFFSET_FILE")"
  wait_started "$1" 0.2 "not ready" started "$(cat "$PORT_FILE")" "$offset"
}

cmd_start() {
  lock_state

  local pid
  if pid="$(running_pid)"; then
    log "broker already running (pid $pid)"
    wait_ready "$pid"
    print_addr
    return 0
  fi
  rm -f "$PID_FILE"

  ensure_java_maven
  check_java
  local version libs
  version="$(kafka_version)"
  libs="$(ensure_jars "$version")"

  # Ports and cluster id are chosen once and then reused, so a restarted
  # broker keeps its address and its data.
  local port ctrl
  port="$(choose_port "${KAFKA_PORT:-}" "$PORT_FILE")"
  ctrl="$(choose_port "${KAFKA_CONTROLLER_PORT:-}" "$CTRL_PORT_FILE" "$port")"
  [[ "$port" =~ ^[0-9]+$ && "$ctrl" =~ ^[0-9]+$ && "$port" != "$ctrl" ]] ||
    die "bad ports: broker=$port controller=$ctrl"
  port_open "$port" && die "port $port on 127.0.0.1 is already in use by another process"
  port_open "$ctrl" && die "controller port $ctrl on 127.0.0.1 is already in use by another process"
  # The SCRAM listener and the authorizer are chosen at the first start,
  # when the storage is formatted, and kept afterwards.
  local sasl="" first_start=false
  [[ -f "$DATA_DIR/meta.properties" ]] || first_start=true
  if [[ -f "$SASL_PORT_FILE" ]]; then
    sasl="$(cat "$SASL_PORT_FILE")"
  elif [[ "$first_start" == true && -n "${KAFKA_SCRAM_USERS:-}" ]]; then
    sasl="${KAFKA_SASL_PORT:-$(free_port "$port $ctrl")}"
  fi
  if [[ -n "$sasl" ]]; then
    [[ "$sasl" =~ ^[0-9]+$ && "$sasl" != "$port" && "$sasl" != "$ctrl" ]] || die "bad SASL port: $sasl"
    port_open "$sasl" && die "SASL port $sasl on 127.0.0.1 is already in use by another process"
    printf '%s\n' "$sasl" >"$SASL_PORT_FILE"
  fi
  if [[ "$first_start" == true ]]; then
    case "${KAFKA_AUTHORIZER:-}" in
      acl) : >"$AUTHORIZER_FILE" ;;
      "") ;;
      *) die "KAFKA_AUTHORIZER=${KAFKA_AUTHORIZER}: want acl or nothing" ;;
    esac
  fi
  printf '%s\n' "$port" >"$PORT_FILE"
  printf '%s\n' "$ctrl" >"$CTRL_PORT_FILE"
  printf '%s\n' "$version" >"$VERSION_FILE"
  [[ -f "$CLUSTER_ID_FILE" ]] || new_cluster_id >"$CLUSTER_ID_FILE"

  write_properties "$port" "$ctrl" "$sasl"
  mkdir -p "$DATA_DIR"

  # shellcheck disable=SC2206 # word splitting of the option strings is intended
  local jvm=(${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONF" "-Dkafka.logs.dir=$STATE"
    -Dlog4j2.shutdownHookEnabled=false
    ${KAFKA_OPTS:-})

  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    local scram=() args entry users=""
    args="$(scram_format_args)" || exit 1
    [[ -z "$args" ]] || mapfile -t scram <<<"$args"
    for entry in ${KAFKA_SCRAM_USERS:-}; do users+=" ${entry%%:*}"; done
    log "formatting KRaft storage in $DATA_DIR (cluster id $(cat "$CLUSTER_ID_FILE"))${users:+; SCRAM users:$users}"
    java "${jvm[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
      --config "$PROPS" --cluster-id "$(cat "$CLUSTER_ID_FILE")" --standalone \
      "${scram[@]}" --ignore-formatted >"$FORMAT_LOG" 2>&1 ||
      fail "kafka storage format failed"
  fi

  local offset=0
  [[ -f "$LOG_FILE" ]] && offset="$(stat -c %s "$LOG_FILE")"
  printf '%s\n' "$offset" >"$OFFSET_FILE"
  printf -- '===== %s starting Apache Kafka %s on 127.0.0.1:%s =====\n' \
    "$(date -u +%FT%TZ)" "$version" "$port" >>"$OUT_FILE"

  launch kafka-launch java "${jvm[@]}" -cp "$libs/*" kafka.Kafka "$PROPS"
  pid="$(cat "$PID_FILE")"
  log "started Apache Kafka $version (pid $pid), waiting for 127.0.0.1:$port"
  wait_ready "$pid"
  local extras=""
  [[ -z "$sasl" ]] || extras+=", SCRAM (SASL_PLAINTEXT) at 127.0.0.1:$sasl"
  [[ ! -f "$AUTHORIZER_FILE" ]] || extras+=", ACLs enforced"
  log "ready: Apache Kafka $version (KRaft) at 127.0.0.1:$port$extras, state in $STATE"
  print_addr
}

cmd_stop() {
  local pid
  pid="$(running_or_forget)" || return 0
  log "stopping broker (pid $pid)"
  terminate "$pid"
  rm -f "$PID_FILE"
  log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  addr) print_addr ;;
  sasl-addr) print_sasl_addr ;;
  status) cmd_status ;;
  destroy) cmd_destroy ;;
  version) kafka_version ;;
  *)
    echo "usage: $0 start|stop|kill|addr|sasl-addr|status|destroy|version" >&2
    exit 2
    ;;
esac
