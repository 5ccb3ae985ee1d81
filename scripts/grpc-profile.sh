#!/usr/bin/env bash
# What a durable gRPC call's api CPU is made of, on each server of native
# gRPC: the api (bin/api) runs with GRPC_SERVER=grpc-go and then =connect
# against the Kafka and Valkey that BF_TEST_KAFKA_BROKERS and
# BF_TEST_VALKEY_ADDR name (make grpc-profile starts them), loaded closed
# loop by loadgen's gRPC client; a CPU profile of PROFILE_SECONDS is taken
# in the middle and its samples are summed by what they run in. Prints one
# table: µs of api CPU per call by part, per server. Profiles and results
# go to OUT (default .run/grpc-profile-out).
set -euo pipefail

OUT=${OUT:-.run/grpc-profile-out}
SECONDS_LOAD=${PROFILE_SECONDS:-10}
CONCURRENCY=${PROFILE_CONCURRENCY:-64}
: "${BF_TEST_KAFKA_BROKERS:?run under bin/stack with kafka valkey}"
: "${BF_TEST_VALKEY_ADDR:?run under bin/stack with kafka valkey}"
mkdir -p "$OUT"
go build -o "$OUT/loadgen" ./tooling/loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for server in grpc-go connect; do
  port=$(free_port) mport=$(free_port)
  PORT=$port METRICS_ADDR=127.0.0.1:$mport PPROF=true GRPC_SERVER=$server LOG_LEVEL=warn \
    KAFKA_BROKERS=$BF_TEST_KAFKA_BROKERS VALKEY_ADDR=$BF_TEST_VALKEY_ADDR \
    KAFKA_TOPIC=grpc-profile-$server VALKEY_KEY_PREFIX=grpcprofile: \
    bin/api >"$OUT/api-$server.log" 2>&1 &
  api=$!
  trap 'kill $api 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
  # Warm up, then load for twice the profile and take it in the middle.
  "$OUT/loadgen" run -target "http://127.0.0.1:$port" -protocol grpc -concurrency "$CONCURRENCY" -duration 3s -warmup 0s -progress off >/dev/null
  "$OUT/loadgen" run -target "http://127.0.0.1:$port" -protocol grpc -concurrency "$CONCURRENCY" \
    -duration $((2 * SECONDS_LOAD))s -warmup 0s -server-pid $api -progress off -out "$OUT/load-$server.json" >/dev/null &
  load=$!
  sleep $((SECONDS_LOAD / 2))
  curl -fs -o "$OUT/cpu-$server.pprof" "http://127.0.0.1:$mport/debug/pprof/profile?seconds=$SECONDS_LOAD"
  wait $load
  kill $api; wait $api 2>/dev/null || true
  trap - EXIT
  go tool pprof -raw "$OUT/cpu-$server.pprof" >"$OUT/cpu-$server.raw" 2>/dev/null
done

python3 - "$OUT" "$SECONDS_LOAD" <<'EOF'
import json, re, sys
out, seconds = sys.argv[1], float(sys.argv[2])
# A sample counts for the part of its leaf-most frame that names one.
parts = [
    ("allocation and GC", r"^runtime\.(mallocgc|gcBgMarkWorker|gcDrain|scanobject|markroot|sweepone|bgsweep|memclrNoHeapPointers|growslice|makeslice|newobject|gcAssist|greyobject|findObject)"),
    ("stack growth", r"^runtime\.(morestack|newstack|copystack)"),
    ("scheduler", r"^runtime\.(schedule|findRunnable|park_m|goready|ready|mcall|gopark|futex|notesleep|notewakeup|stopm|startm|wakep|runqgrab|checkTimers|goexit|newproc|casgstatus)"),
    ("syscalls (read, write, epoll)", r"^syscall\.|^internal/poll\.|^runtime\.netpoll|^internal/runtime/syscall"),
    ("HPACK", r"/hpack\."),
    ("HTTP/2 server: grpc-go transport", r"google\.golang\.org/grpc/internal/transport\."),
    ("HTTP/2 server: net/http", r"^net/http\.|golang\.org/x/net/http2\.|^vendor/golang\.org/x/net/http2"),
    ("connect-go", r"^connectrpc\.com/connect\."),
    ("grpc-go", r"^google\.golang\.org/grpc\."),
    ("protobuf", r"google\.golang\.org/protobuf/"),
    ("franz-go producer", r"github\.com/twmb/franz-go/"),
    ("our code", r"blackfriday\.local/"),
]
def breakdown(server):
    text = open(f"{out}/cpu-{server}.raw").read()
    head, _, rest = text.partition("Locations")
    locs, cur = {}, None
    for line in rest.split("Mappings")[0].splitlines():
        m = re.match(r"\s*(\d+): 0x[0-9a-f]+ M=\d+ (\S+)", line)
        if m:
            cur = int(m.group(1)); locs[cur] = [m.group(2)]
        elif cur is not None and line.strip():
            locs[cur].append(line.split()[0])
    totals = {}
    for line in head.split("Samples:")[1].splitlines()[2:]:
        counts, _, ids = line.partition(":")
        nums = counts.split()
        if len(nums) < 2 or not ids.strip():
            continue
        frames = [fn for i in ids.split() for fn in locs.get(int(i), [])]
        part = next((name for fn in frames for name, rx in parts if re.search(rx, fn)), "other")
        totals[part] = totals.get(part, 0) + int(nums[1])
    return totals
rows = {}
for server in ("grpc-go", "connect"):
    load = json.load(open(f"{out}/load-{server}.json"))
    calls = load["calls_per_s"] * seconds
    rows[server] = ({k: v / 1e3 / calls for k, v in breakdown(server).items()}, load)
names = [p for p, _ in parts] + ["other"]
print(f"api CPU per durable gRPC call by part, µs (profile of {seconds:.0f} s under closed-loop load):")
print("| part | grpc-go | connect-go (GRPC_SERVER=connect) |")
print("|---|---:|---:|")
for p in names:
    print(f"| {p} | {rows['grpc-go'][0].get(p, 0):.1f} | {rows['connect'][0].get(p, 0):.1f} |")
print(f"| **profiled, all parts** | {sum(rows['grpc-go'][0].values()):.1f} | {sum(rows['connect'][0].values()):.1f} |")
print(f"| api CPU per call from /proc, whole run | {rows['grpc-go'][1]['cpu'].get('server_us_per_call', 0):.1f} | {rows['connect'][1]['cpu'].get('server_us_per_call', 0):.1f} |")
print(f"| calls/s | {rows['grpc-go'][1]['calls_per_s']:.0f} | {rows['connect'][1]['calls_per_s']:.0f} |")
EOF
