#!/usr/bin/env bash
# Side-by-side benchmark, in one run: the same chat call sent direct to the mock upstream, through
# nginx (a plain keep-alive reverse proxy: the practical limit of one HTTP hop) and through the
# edge (auth, routing, token cap and daily request cap on the event, metering). The proxy under
# test (with the edge: its control plane, which takes the edge's usage records and lease calls)
# is pinned to one core, the load generator and the mock to another, the same for every path.
#
#   loadtest/bench/side_by_side.sh [--duration SECS] [--no-caps] [--flamegraph [SVG]] [--edge-bin PATH]
#                                  [--otlp [--otlp-http]] [--edge-env KEY=VALUE]... [--instructions N [--stream]] [--syscalls N] [--keep]
#
#   --duration SECS  length of each throughput and fixed-rate run (default 10)
#   --no-caps        the event has no token cap and no daily request cap
#   --flamegraph     afterwards, profile the edge under the throughput load with `perf` and write
#                    docs/img/edge-flamegraph.svg, or the SVG path given (needs perf and inferno;
#                    both installed if absent)
#   --edge-bin PATH  measure this edge binary instead of target/dist/aiproxy-edge (an older
#                    build, for a before/after comparison; the control plane stays the current one)
#   --otlp           the edge exports every span (OTEL_TRACES_SAMPLER=always_on) and its metrics
#                    over OTLP/gRPC to a sink in the mock's process (on the load core), which
#                    counts the spans it receives; printed at the end against the calls the
#                    edge served, overall and in the fixed-rate rounds (the SDK drops spans its
#                    queue cannot hold, which a saturated proxy does)
#   --otlp-http      with --otlp, export over OTLP/HTTP (http/protobuf) instead of gRPC
#   --edge-env K=V   extra environment for the edge (repeatable), e.g. with --otlp
#                    OTEL_TRACES_EXPORTER=none (metrics only) or OTEL_BSP_MAX_EXPORT_BATCH_SIZE=128
#   --keep           keep the scratch folder (logs, configs, raw oha output)
#   --instructions N instead of the comparison: run the edge under valgrind's callgrind and print
#                    the instructions it executes per call over N calls (after 500 uncounted ones).
#                    Counts, not seconds: repeatable whatever else the machine runs, so two edge
#                    builds (--edge-bin) can be compared in separate runs. User space only.
#                    With --stream, the calls are the SSE phase's streamed chat calls (the mock's
#                    streams, chunks 10 ms apart: 32 streams at a time).
#   --syscalls N     instead of the comparison: count the system calls nginx and the edge make
#                    (perf stat on the syscalls tracepoints, every thread of the proxy) over N
#                    calls in a closed loop, then over N calls at half nginx's rate there, and
#                    print them per call by name: where the kernel half of a proxy's CPU goes.
#                    With --stream, the calls are the SSE phase's streamed chat calls, 50 at a time.
#
# Measured, per path (direct, nginx, edge):
#   1. throughput: closed loop, 32 keep-alive connections, ROUNDS rounds of --duration/2 seconds
#      per path (after 2 s of warm-up), nginx and edge alternating; the median round per path and
#      the median of the rounds' edge/nginx ratios; the proxy's process CPU and its core's busy
#      time (/proc/stat, softirq included), and peak RSS (VmRSS, sampled every 0.2 s; nginx:
#      master + worker);
#   2. latency p50/p99 at a fixed rate of half nginx's measured throughput (oha, 32 connections,
#      latency measured from the scheduled send time: no coordinated omission): ROUNDS rounds of
#      --duration seconds per path, nginx and edge alternating; per path the median round;
#   3. SSE first byte: ROUNDS rounds per path, nginx and edge alternating, of 50 concurrent
#      workers, each a curl making SSE_CALLS sequential streamed chat calls on one keep-alive
#      connection (after one uncounted warm-up call), the rounds' calls pooled; first byte =
#      curl's time_starttransfer minus time_pretransfer (from the request sent to the first
#      response byte). The mock sends its first chunk at once, then four content chunks and the
#      finish chunk 10 ms apart (and the usage chunk, which the edge asks for, right after the
#      finish chunk, as Azure does). Also printed, not a target: the last byte (time_total
#      minus time_pretransfer), what a proxy adds to the whole stream.
# Then prints the ratios, and the latency targets round by round: in each round of 2. and 3., the
# edge's p50/p99 less nginx's (the direct path cancels out), their median over the rounds and how
# many rounds met the target. Everything listens on 127.0.0.1; all processes are stopped on exit.
#
# Environment: PROXY_CPU (default 0), LOAD_CPU (default 1), CP_CPU (the control plane's; default
# PROXY_CPU), SSE_STREAMS (default 50: the SSE phase's concurrent streams), SSE_CALLS (default
# 20), ROUNDS (3; ROUNDS=9 for a verdict on the p99 targets, whose rounds spread by more than the
# 0.1 ms they test).
# The control plane shares the proxy's core by default: on the load generator's core its work
# (usage batches, leases) would slow oha and the mock during the edge's runs only, and show up
# as milliseconds of latency charged to the edge's tail; on the proxy's core it is charged to the
# edge, as it should be (the figures report its CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD

DURATION=10
CAPS=1
FLAMEGRAPH=0
FLAME_SVG=docs/img/edge-flamegraph.svg
EDGE_BIN=
KEEP=0
INSTRUCTIONS=0
STREAM=0
SYSCALLS=0
OTLP=0
OTLP_HTTP=0
EDGE_ENV=()
CONNS=32
SSE_STREAMS=${SSE_STREAMS:-50}
SSE_CALLS=${SSE_CALLS:-20}
ROUNDS=${ROUNDS:-3}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CP_CPU=${CP_CPU:-$PROXY_CPU}
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=$2; shift ;;
    --no-caps) CAPS=0 ;;
    --flamegraph)
      FLAMEGRAPH=1
      if [[ $# -gt 1 && $2 == *.svg ]]; then FLAME_SVG=$2; shift; fi
      ;;
    --edge-bin) EDGE_BIN=$(realpath "$2"); shift ;;
    --keep) KEEP=1 ;;
    --otlp) OTLP=1 ;;
    --otlp-http) OTLP_HTTP=1 ;;
    --edge-env) [[ $2 == *=* ]] || die "--edge-env: KEY=VALUE expected, got '$2'"; EDGE_ENV+=("$2"); shift ;;
    --instructions) INSTRUCTIONS=$2; shift ;;
    --stream) STREAM=1 ;;
    --syscalls) SYSCALLS=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $STREAM == 0 || $INSTRUCTIONS -gt 0 || $SYSCALLS -gt 0 ]] || die "--stream goes with --instructions N or --syscalls N"

# ---------------------------------------------------------------------------------------------
# Tools
export PATH="$HOME/.cargo/bin:$PATH"
for tool in curl jq taskset python3; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
if [[ $INSTRUCTIONS == 0 ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  log "installing nginx from the distribution"
  apt-get install -y nginx-light >/dev/null 2>&1 || apt-get install -y nginx >/dev/null 2>&1 \
    || die "could not install nginx (apt-get install -y nginx-light)"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! command -v oha >/dev/null; then
  log "installing oha from crates.io (cargo install oha --locked)"
  cargo install oha --locked >/dev/null 2>&1 || die "could not install oha (cargo install oha --locked)"
fi
if [[ $FLAMEGRAPH == 1 || $SYSCALLS -gt 0 ]]; then
  if ! command -v perf >/dev/null; then
    apt-get install -y linux-perf >/dev/null 2>&1 || die "could not install perf (apt-get install -y linux-perf)"
  fi
fi
if [[ $SYSCALLS -gt 0 && ! -d /sys/kernel/tracing/events/syscalls ]]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
  [[ -d /sys/kernel/tracing/events/syscalls ]] || die "--syscalls: the syscalls tracepoints are not available (tracefs)"
fi
if [[ $FLAMEGRAPH == 1 ]]; then
  if ! command -v inferno-flamegraph >/dev/null; then
    log "installing inferno from crates.io (cargo install inferno --locked)"
    cargo install inferno --locked >/dev/null 2>&1 || die "--flamegraph: could not install inferno"
  fi
fi

# The control plane and the mock as release builds; the edge as shipped (the `dist` profile:
# whole-program LTO, see Cargo.toml and Dockerfile.edge).
# Built every time (a no-op when up to date): a binary left from older sources is never measured.
BIN=$REPO/target/release
log "building the release binaries (cargo build --release -p aiproxy-control-plane -p aiproxy-loadtest --bins)"
cargo build --release -p aiproxy-control-plane -p aiproxy-loadtest --bins >&2 || die "the release build failed"
if [[ -z $EDGE_BIN ]]; then
  log "building the edge as shipped (cargo build --profile dist -p aiproxy-edge)"
  cargo build --profile dist -p aiproxy-edge >&2 || die "the edge's build failed"
fi
EDGE_BIN=${EDGE_BIN:-$REPO/target/dist/aiproxy-edge}
[[ $FLAME_SVG == /* ]] || FLAME_SVG=$REPO/$FLAME_SVG
[[ -x $EDGE_BIN ]] || die "--edge-bin: $EDGE_BIN is not an executable"

# ---------------------------------------------------------------------------------------------
# Processes, and their end
DIR=$(mktemp -d /tmp/aiproxy-side-by-side.XXXXXX)
chmod 755 "$DIR" # nginx's worker runs as nobody
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP == 1 ]]; then log "scratch folder kept: $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r MOCK_PORT ADMIN_PORT GRPC_PORT EDGE_PORT NGINX_PORT OTLP_PORT OTLP_HTTP_PORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(7):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

wait_http() { # url what pid [expected status]
  local url=$1 what=$2 pid=$3 want=${4:-}
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || die "$what exited at start (logs in $DIR; rerun with --keep)"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    if [[ -n $want && $code == "$want" ]] || [[ -z $want && $code != 000 ]]; then return 0; fi
    sleep 0.1
  done
  die "$what was not ready within 30 s"
}

UPSTREAM_KEY="upstream-key-$RANDOM$RANDOM"
ADMIN_TOKEN="adm_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EDGE_TOKEN="edge_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CLEAN_ENV=(env -u AZURE_CLIENT_ID -u AZURE_TENANT_ID -u AZURE_CLIENT_SECRET -u IDENTITY_ENDPOINT -u MSI_ENDPOINT)

OTLP_LISTEN=
if [[ $OTLP == 1 ]]; then
  OTLP_LISTEN="127.0.0.1:$OTLP_PORT"
  if [[ $OTLP_HTTP == 1 ]]; then
    EDGE_ENV=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_HTTP_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "${EDGE_ENV[@]}")
  else
    EDGE_ENV=(OTEL_EXPORTER_OTLP_ENDPOINT="http://$OTLP_LISTEN" "${EDGE_ENV[@]}")
  fi
  EDGE_ENV=(OTEL_TRACES_SAMPLER=always_on "${EDGE_ENV[@]}")
fi
log "mock upstream on 127.0.0.1:$MOCK_PORT (cpu $LOAD_CPU)${OTLP_LISTEN:+, OTLP sink on $OTLP_LISTEN (gRPC), 127.0.0.1:$OTLP_HTTP_PORT (HTTP)}"
taskset -c "$LOAD_CPU" "$BIN/mock-azure" --listen "127.0.0.1:$MOCK_PORT" --api-key "$UPSTREAM_KEY" \
  --stream-chunks 4 --stream-delay-ms 10 ${OTLP_LISTEN:+--otlp-listen "$OTLP_LISTEN" --otlp-http-listen "127.0.0.1:$OTLP_HTTP_PORT"} >"$DIR/mock.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/" "the mock" "${PIDS[-1]}"

log "control plane on 127.0.0.1:$ADMIN_PORT (cpu $CP_CPU)"
(cd "$DIR" && exec "${CLEAN_ENV[@]}" RUST_LOG=warn \
  AIPROXY_DATABASE_URL="sqlite://$DIR/aiproxy.db" AIPROXY_DATA_DIR="$DIR" \
  AIPROXY_ADMIN_ADDR="127.0.0.1:$ADMIN_PORT" AIPROXY_GRPC_ADDR="127.0.0.1:$GRPC_PORT" \
  AIPROXY_ADMIN_TOKEN="$ADMIN_TOKEN" AIPROXY_EDGE_TOKEN="$EDGE_TOKEN" \
  AIPROXY_ALLOW_INSECURE_UPSTREAMS=true AIPROXY_CREDENTIAL=none \
  taskset -c "$CP_CPU" "$BIN/aiproxy-control-plane") >"$DIR/control-plane.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" "the control plane" "${PIDS[-1]}" 200
CP_PID=${PIDS[-1]}

admin() { # method path [json]
  local out
  out=$(curl -sS -X "$1" "http://127.0.0.1:$ADMIN_PORT/admin/api/v1$2" \
    -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
    ${3:+--data "$3"} -w '\n%{http_code}')
  local code=${out##*$'\n'}
  [[ $code == 2* ]] || die "admin $1 $2 answered $code: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}
RESOURCE_ID=$(admin POST /resources "$(jq -nc --arg ep "http://127.0.0.1:$MOCK_PORT" --arg key "$UPSTREAM_KEY" \
  '{friendly_name: "gpt-4o (bench)", deployment_name: "gpt-4o", model_type: "Foundry_Model",
    endpoint_url: $ep, key: $key, region: ""}')" | jq -r .id)
if [[ $CAPS == 1 ]]; then TOKEN_CAP=4096; REQUEST_CAP=1000000000; else TOKEN_CAP=0; REQUEST_CAP=0; fi
EVENT_ID=$(admin POST /events "$(jq -nc --arg rid "$RESOURCE_ID" \
  --arg from "$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ)" --arg to "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)" \
  --argjson tcap "$TOKEN_CAP" --argjson rcap "$REQUEST_CAP" \
  '{name: "Side-by-side bench", starts_at: $from, ends_at: $to, time_zone: "UTC",
    organizer_name: "Ada", organizer_email: "ada@example.com", resource_ids: [$rid],
    max_token_cap: $tcap, daily_request_cap: $rcap}')" | jq -r .id)
ATTENDEE_KEY=$(admin POST "/events/$EVENT_ID/attendees" '{"user_id":"bench-1"}' | jq -r .api_key)
[[ -n $ATTENDEE_KEY && $ATTENDEE_KEY != null ]] || die "no attendee key"
log "event $EVENT_ID: max_token_cap=$TOKEN_CAP daily_request_cap=$REQUEST_CAP"

log "edge on 127.0.0.1:$EDGE_PORT (cpu $PROXY_CPU)"
mkdir -p "$DIR/edge"
EDGE_WRAP=()
if [[ $INSTRUCTIONS -gt 0 ]]; then
  command -v callgrind_control >/dev/null || die "--instructions: valgrind is needed (apt-get install -y valgrind)"
  EDGE_WRAP=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/callgrind.out")
fi
(cd "$DIR/edge" && exec "${CLEAN_ENV[@]}" RUST_LOG=warn \
  AIPROXY_CONTROL_PLANE_URL="http://127.0.0.1:$GRPC_PORT" AIPROXY_LISTEN_ADDR="127.0.0.1:$EDGE_PORT" \
  AIPROXY_EDGE_TOKEN="$EDGE_TOKEN" AIPROXY_EDGE_ID=bench-edge AIPROXY_EDGE_STATE_DIR="$DIR/edge" \
  "${EDGE_ENV[@]}" taskset -c "$PROXY_CPU" "${EDGE_WRAP[@]}" "$EDGE_BIN") >"$DIR/edge.log" 2>&1 &
PIDS+=($!)
EDGE_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$EDGE_PORT/readyz" "the edge" "$EDGE_PID" 200

NGINX_PID=
if [[ $INSTRUCTIONS == 0 ]]; then # --instructions measures the edge alone
  log "nginx on 127.0.0.1:$NGINX_PORT (cpu $PROXY_CPU)"
  sed -e "s|@DIR@|$DIR|g" -e "s|@MOCK_PORT@|$MOCK_PORT|g" -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
    "$REPO/loadtest/bench/nginx.conf.template" >"$DIR/nginx.conf"
  taskset -c "$PROXY_CPU" "$NGINX" -p "$DIR" -e "$DIR/nginx-error.log" -c "$DIR/nginx.conf" >"$DIR/nginx.log" 2>&1 &
  PIDS+=($!)
  NGINX_PID=${PIDS[-1]}
  wait_http "http://127.0.0.1:$NGINX_PORT/" "nginx" "$NGINX_PID"
fi

API_VERSION=2024-10-21
CHAT_PATH="/openai/deployments/gpt-4o/chat/completions?api-version=$API_VERSION"
BODY='{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in three languages."}],"max_tokens":64,"temperature":0.2}'
STREAM_BODY='{"messages":[{"role":"user","content":"Say hello in three languages."}],"max_tokens":64,"stream":true}'
declare -A URL KEY PID
URL[direct]="http://127.0.0.1:$MOCK_PORT$CHAT_PATH"; KEY[direct]=$UPSTREAM_KEY
URL[nginx]="http://127.0.0.1:$NGINX_PORT$CHAT_PATH"; KEY[nginx]=$UPSTREAM_KEY; PID[nginx]=$NGINX_PID
URL[edge]="http://127.0.0.1:$EDGE_PORT/api/v1$CHAT_PATH"; KEY[edge]=$ATTENDEE_KEY; PID[edge]=$EDGE_PID
PATHS=(direct nginx edge)

# The attendee's key reaches the edge with the catalog: wait until a call goes through.
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "api-key: $ATTENDEE_KEY" -H 'content-type: application/json' \
    --data "$BODY" "${URL[edge]}" || true)
  [[ $code == 200 ]] && break
  sleep 0.1
done
[[ $code == 200 ]] || die "a call through the edge answered $code"
for p in direct ${NGINX_PID:+nginx}; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "api-key: ${KEY[$p]}" -H 'content-type: application/json' \
    --data "$BODY" "${URL[$p]}" || true)
  [[ $code == 200 ]] || die "a call $p answered $code"
done

# With --otlp: what the sink received (the edge exports a batch when 512 spans are queued, or
# every 5 s; the mock prints the count every second it changes), against the calls the edge
# served, and the edge's extra environment.
sink_spans() {
  grep -o 'OTLP spans received: [0-9]*' "$DIR/mock.log" | tail -1 | awk '{print $4 + 0}'
}
# Answers in the oha outputs given (a run cut at its end may leave a few calls uncounted).
oha_calls() {
  local n=0 f
  for f in "$@"; do
    [[ -e $f ]] && n=$((n + $(jq '[.statusCodeDistribution | to_entries[] | .value] | add // 0' "$f")))
  done
  echo "$n"
}
otlp_report() {
  [[ $OTLP == 1 || ${#EDGE_ENV[@]} -gt 0 ]] || return 0
  [[ $OTLP == 1 ]] && sleep 6
  local spans calls rate=""
  spans=$(sink_spans)
  # Every call through the edge: oha's, and every streamed call, warm-ups included.
  calls=$(($(oha_calls "$DIR"/*edge*.json "$DIR"/counted.json "$DIR"/uncounted.json) + $(cat "$DIR"/sse-edge.*.txt.* 2>/dev/null | wc -l)))
  if [[ -n ${LAT_SPANS[1]:-} ]]; then
    local lat_calls
    lat_calls=$(oha_calls "$DIR"/lat-edge.*.json)
    rate="; at the fixed rate $((LAT_SPANS[1] - LAT_SPANS[0])) spans for $lat_calls calls"
  fi
  echo "edge environment: ${EDGE_ENV[*]}${OTLP_LISTEN:+; OTLP spans received by the sink: $spans for about $calls calls through the edge$rate}"
}

oha_run() { # path out.json [oha args...]
  local p=$1 out=$2
  shift 2
  taskset -c "$LOAD_CPU" oha --no-tui --output-format json -m POST \
    -H "api-key: ${KEY[$p]}" -H 'content-type: application/json' -d "$BODY" "$@" "${URL[$p]}" >"$out" 2>"$out.err" \
    || die "oha failed on $p: $(cat "$out.err")"
  local bad
  bad=$(jq '[.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0' "$out")
  [[ $bad == 0 ]] || log "warning: $p: $bad answers were not 200: $(jq -c .statusCodeDistribution "$out")"
}

if [[ $INSTRUCTIONS -gt 0 ]]; then
  [[ $STREAM == 1 ]] && BODY=$STREAM_BODY
  oha_run edge "$DIR/uncounted.json" -n 500 -c "$CONNS"
  callgrind_control -i on "$EDGE_PID" >/dev/null 2>&1
  oha_run edge "$DIR/counted.json" -n "$INSTRUCTIONS" -c "$CONNS"
  callgrind_control -i off "$EDGE_PID" >/dev/null 2>&1
  callgrind_control -d "$EDGE_PID" >/dev/null 2>&1
  sleep 1
  total=$(cat "$DIR"/callgrind.out.* | awk '/^totals:/ {s += $2} END {print s + 0}')
  [[ $total -gt 0 ]] || die "callgrind counted no instructions (logs in $DIR; rerun with --keep)"
  log "edge $EDGE_BIN: $total instructions over $INSTRUCTIONS calls"
  echo "edge instructions per $([[ $STREAM == 1 ]] && echo "streamed ")call: $((total / INSTRUCTIONS)) ($EDGE_BIN)"
  otlp_report
  exit 0
fi

# CPU time (clock ticks) used so far by the proxy, the process and its children (nginx's worker):
# user and system apart, and together.
TICKS=$(getconf CLK_TCK)
cpu_split() { # pid → user system
  local user=0 sys=0 p u s
  for p in $1 $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{ print $14, $15 }' "/proc/$p/stat" 2>/dev/null || echo 0 0)
    user=$((user + u)); sys=$((sys + s))
  done
  echo "$user $sys"
}
cpu_ticks() { # pid
  local user sys
  read -r user sys < <(cpu_split "$1")
  echo $((user + sys))
}

# --syscalls: each proxy's system calls per call, closed loop and at half nginx's rate.
syscall_counts() { # path out.csv oha-args...
  local p=$1 out=$2 pids perf_pid
  shift 2
  pids=$({ echo "${PID[$p]}"; pgrep -P "${PID[$p]}" || true; } | paste -sd,)
  perf stat -x, -e raw_syscalls:sys_enter -e 'syscalls:sys_enter_*' -e context-switches -p "$pids" \
    -o "$out.perf" 2>"$out.perf.err" &
  perf_pid=$!
  sleep 1 # perf attaches
  local user0 sys0 user1 sys1
  read -r user0 sys0 < <(cpu_split "${PID[$p]}")
  oha_run "$p" "$out.json" -c "$SYS_CONNS" "$@"
  read -r user1 sys1 < <(cpu_split "${PID[$p]}")
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  local calls
  calls=$(oha_calls "$out.json")
  [[ $calls -gt 0 ]] || die "--syscalls: no answers counted for $p"
  awk -v u="$((user1 - user0))" -v s="$((sys1 - sys0))" -v hz="$TICKS" -v n="$calls" \
    'BEGIN { printf "CPU µs per call, user,%.3f\nCPU µs per call, system,%.3f\n", u / hz / n * 1e6, s / hz / n * 1e6 }' >"$out.cpu"
  # count,unit,event,... → event,count per call
  { cat "$out.cpu"
    awk -F, -v n="$calls" '$1 ~ /^[0-9]+$/ && $1 > 0 { sub(/^syscalls:sys_enter_/, "", $3); sub(/^raw_syscalls:sys_enter$/, "all system calls", $3); printf "%s,%.3f\n", $3, $1 / n }' \
      "$out.perf"; } >"$out"
  [[ -s $out ]] || die "--syscalls: perf counted nothing for $p: $(tail -3 "$out.perf.err")"
}
if [[ $SYSCALLS -gt 0 ]]; then
  SYS_CONNS=$CONNS
  [[ $STREAM == 1 ]] && BODY=$STREAM_BODY SYS_CONNS=$SSE_STREAMS
  for p in nginx edge; do oha_run "$p" "$DIR/sys-warm-$p.json" -n 2000 -c "$SYS_CONNS"; done
  syscall_counts nginx "$DIR/sys-nginx-max.csv" -n "$SYSCALLS"
  RATE=$(jq '.summary.requestsPerSec / 2 | floor' "$DIR/sys-nginx-max.csv.json")
  syscall_counts edge "$DIR/sys-edge-max.csv" -n "$SYSCALLS"
  syscall_counts nginx "$DIR/sys-nginx-rate.csv" -n "$SYSCALLS" -q "$RATE"
  syscall_counts edge "$DIR/sys-edge-rate.csv" -n "$SYSCALLS" -q "$RATE"
  echo
  echo "System calls per $([[ $STREAM == 1 ]] && echo "streamed ")call over $SYSCALLS calls ($SYS_CONNS connections), proxy on cpu $PROXY_CPU; $(nginx -v 2>&1 | sed 's/^nginx version: //'), edge $EDGE_BIN"
  echo
  echo "| system call | nginx, closed loop | edge, closed loop | nginx, $RATE req/s | edge, $RATE req/s |"
  echo "|---|---|---|---|---|"
  python3 - "$DIR" <<'PY'
import sys
d = sys.argv[1]
cols = ["nginx-max", "edge-max", "nginx-rate", "edge-rate"]
tables = []
for c in cols:
    t = {}
    for line in open(f"{d}/sys-{c}.csv"):
        name, v = line.rstrip().rsplit(",", 1)
        t[name] = float(v)
    tables.append(t)
names = sorted({n for t in tables for n in t}, key=lambda n: (not n.startswith("CPU"), n != "all system calls", n == "context-switches", -max(t.get(n, 0) for t in tables)))
for n in names:
    if max(t.get(n, 0) for t in tables) < 0.005:
        continue
    print("| " + n + " | " + " | ".join(f"{t.get(n, 0):.3f}" for t in tables) + " |")
PY
  exit 0
fi

# The proxy's RSS (KiB, the process and its children: nginx's worker) until the file stop appears.
rss_sampler() { # pid out
  local pid=$1 out=$2 max=0
  while [[ ! -e $out.stop ]]; do
    local total=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
      local kb
      kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
      total=$((total + ${kb:-0}))
    done
    ((total > max)) && max=$total
    echo "$max" >"$out"
    sleep 0.2
  done
}

# Busy and total ticks of one CPU (softirq included: loopback TCP work is mostly accounted there,
# not to the process).
cpu_busy() { # cpu
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
for p in nginx edge; do
  log "$p pinned to cpu(s) $(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/${PID[$p]}/status")"
done

declare -A RPS RSS P50 P99 SSE50 SSE99 LAST50 LAST99 CPU CORE
# 1. Throughput, closed loop: ROUNDS rounds of DURATION/2 s per path, nginx and the edge in
# alternating order; per path the median round, and the median of the rounds' edge/nginx ratios
# (paired, so that a burst of outside load on the machine skews one round, not the result).
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ROUND_SECS=$(((DURATION + 1) / 2))
for p in "${PATHS[@]}"; do
  log "warm-up $p: 2 s with $CONNS connections"
  oha_run "$p" "$DIR/warm-$p.json" -c "$CONNS" -z 2s
done
: >"$DIR/ratios"
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=(direct nginx edge); else order=(direct edge nginx); fi
  line="throughput round $round ($ROUND_SECS s each):"
  for p in "${order[@]}"; do
    if [[ -n ${PID[$p]:-} ]]; then
      rss_sampler "${PID[$p]}" "$DIR/rss-$p.$round" &
      sampler=$!
      ticks=$(cpu_ticks "${PID[$p]}")
      cp_ticks=$(cpu_ticks "$CP_PID")
      read -r busy0 total0 < <(cpu_busy "$PROXY_CPU")
      started=$(date +%s.%N)
    fi
    oha_run "$p" "$DIR/tput-$p.$round.json" -c "$CONNS" -z "${ROUND_SECS}s"
    rps=$(jq '.summary.requestsPerSec' "$DIR/tput-$p.$round.json")
    echo "$rps" >>"$DIR/rps-$p"
    line+=" $p $(printf '%.0f' "$rps")"
    if [[ -n ${PID[$p]:-} ]]; then
      awk -v t="$(($(cpu_ticks "${PID[$p]}") - ticks))" -v hz="$TICKS" -v s="$started" -v e="$(date +%s.%N)" \
        'BEGIN { printf "%.0f\n", 100 * t / hz / (e - s) }' >>"$DIR/cpu-$p"
      awk -v t="$(($(cpu_ticks "$CP_PID") - cp_ticks))" -v hz="$TICKS" -v s="$started" -v e="$(date +%s.%N)" \
        'BEGIN { printf "%.0f\n", 100 * t / hz / (e - s) }' >>"$DIR/cp-cpu-$p"
      read -r busy1 total1 < <(cpu_busy "$PROXY_CPU")
      awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" 'BEGIN { printf "%.0f\n", 100 * b / t }' >>"$DIR/core-$p"
      touch "$DIR/rss-$p.$round.stop"
      wait "$sampler" || true
      cat "$DIR/rss-$p.$round" >>"$DIR/rss-$p"
      line+=" (process $(tail -n 1 "$DIR/cpu-$p") %, cpu $PROXY_CPU $(tail -n 1 "$DIR/core-$p") %)"
    fi
    line+=";"
  done
  awk -v e="$(tail -n 1 "$DIR/rps-edge")" -v n="$(tail -n 1 "$DIR/rps-nginx")" 'BEGIN { print e / n }' >>"$DIR/ratios"
  log "$line edge/nginx $(tail -n 1 "$DIR/ratios")"
done
for p in "${PATHS[@]}"; do
  RPS[$p]=$(median <"$DIR/rps-$p")
  if [[ -n ${PID[$p]:-} ]]; then
    CPU[$p]=$(median <"$DIR/cpu-$p")
    CORE[$p]=$(median <"$DIR/core-$p")
    RSS[$p]=$(sort -n "$DIR/rss-$p" | tail -n 1)
  fi
done
RATIO=$(median <"$DIR/ratios")
RATIO_RANGE="$(sort -g "$DIR/ratios" | head -n 1) to $(sort -g "$DIR/ratios" | tail -n 1)"

# 2. Latency at a fixed rate: half of nginx's maximum. ROUNDS rounds of DURATION s per path,
# nginx and the edge alternating as above; per path the median round's p50 and p99 (one round's
# tail moves by milliseconds with a burst of outside load on the machine).
RATE=$(awk -v r="${RPS[nginx]}" 'BEGIN { printf "%d", r / 2 }')
# With --otlp, the spans exported for the calls of these rounds: counted once what the rounds
# before queued has been exported, and again after.
LAT_SPANS=()
if [[ -n $OTLP_LISTEN ]]; then sleep 6; LAT_SPANS[0]=$(sink_spans); fi
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=(direct nginx edge); else order=(direct edge nginx); fi
  line="latency round $round ($RATE req/s, $DURATION s each), p50/p99 ms:"
  for p in "${order[@]}"; do
    oha_run "$p" "$DIR/lat-$p.$round.json" -c "$CONNS" -q "$RATE" -z "${DURATION}s" --latency-correction
    jq '.latencyPercentiles.p50 * 1000' "$DIR/lat-$p.$round.json" >>"$DIR/p50-$p"
    jq '.latencyPercentiles.p99 * 1000' "$DIR/lat-$p.$round.json" >>"$DIR/p99-$p"
    line+=" $p $(printf '%.3f/%.3f' "$(tail -n 1 "$DIR/p50-$p")" "$(tail -n 1 "$DIR/p99-$p")");"
  done
  log "$line"
done
if [[ -n $OTLP_LISTEN ]]; then sleep 6; LAT_SPANS[1]=$(sink_spans); fi
for p in "${PATHS[@]}"; do
  P50[$p]=$(median <"$DIR/p50-$p")
  P99[$p]=$(median <"$DIR/p99-$p")
done

# 3. SSE first byte, 50 concurrent streams.
sse_run() { # path out
  local p=$1 out=$2 args=() i
  # One warm-up call per worker (connection set-up, process start), not counted.
  for ((i = 0; i <= SSE_CALLS; i++)); do args+=(-o /dev/null "${URL[$p]}"); done
  local workers=()
  for ((i = 0; i < SSE_STREAMS; i++)); do
    taskset -c "$LOAD_CPU" timeout 60 curl -sS -N -H "api-key: ${KEY[$p]}" -H 'content-type: application/json' \
      --data "$STREAM_BODY" -w '%{http_code} %{time_pretransfer} %{time_starttransfer} %{time_total}\n' "${args[@]}" >"$out.$i" 2>>"$out.err" &
    workers+=($!)
  done
  for i in "${workers[@]}"; do wait "$i" || true; done
  for ((i = 0; i < SSE_STREAMS; i++)); do tail -n +2 "$out.$i"; done >"$out"
}
percentile() { # file q → value (ms) of column 1
  sort -n "$1" | awk -v q="$2" '{ v[NR] = $1 } END { i = int(NR * q / 100 + 0.999999); if (i < 1) i = 1; printf "%.3f", v[i] }'
}
# ROUNDS rounds, nginx and the edge alternating; each path's calls of all rounds pooled.
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=(direct nginx edge); else order=(direct edge nginx); fi
  for p in "${order[@]}"; do
    log "SSE first byte $p, round $round: $SSE_STREAMS streams x $SSE_CALLS calls"
    sse_run "$p" "$DIR/sse-$p.$round.txt"
    cat "$DIR/sse-$p.$round.txt" >>"$DIR/sse-$p.txt"
  done
done
for p in "${PATHS[@]}"; do
  bad=$(awk '$1 != 200' "$DIR/sse-$p.txt" | wc -l)
  [[ $bad == 0 ]] || log "warning: $p: $bad streamed calls were not 200"
  awk '$1 == 200 { printf "%.3f\n", ($3 - $2) * 1000 }' "$DIR/sse-$p.txt" >"$DIR/sse-$p.ms"
  SSE50[$p]=$(percentile "$DIR/sse-$p.ms" 50)
  SSE99[$p]=$(percentile "$DIR/sse-$p.ms" 99)
  awk '$1 == 200 { printf "%.3f\n", ($4 - $2) * 1000 }' "$DIR/sse-$p.txt" >"$DIR/sse-last-$p.ms"
  LAST50[$p]=$(percentile "$DIR/sse-last-$p.ms" 50)
  LAST99[$p]=$(percentile "$DIR/sse-last-$p.ms" 99)
  for ((round = 1; round <= ROUNDS; round++)); do
    awk '$1 == 200 { printf "%.3f\n", ($3 - $2) * 1000 }' "$DIR/sse-$p.$round.txt" >"$DIR/sse-$p.$round.ms"
    percentile "$DIR/sse-$p.$round.ms" 50 >>"$DIR/sse50-$p"; echo >>"$DIR/sse50-$p"
    percentile "$DIR/sse-$p.$round.ms" 99 >>"$DIR/sse99-$p"; echo >>"$DIR/sse99-$p"
  done
done
# The same targets round by round: the edge's figure less nginx's in the same round (the direct
# path cancels out), so a burst of outside load that slows one round weighs on one pair only.
paired() { # name edge-file nginx-file limit-ms → one line: median, range, rounds within the limit
  paste "$2" "$3" | awk '{ printf "%.3f\n", $1 - $2 }' | sort -g | awk -v name="$1" -v limit="$4" '
    { d[NR] = $1; if ($1 <= limit + 1e-9) ok++ }
    END {
      med = (NR % 2) ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2
      printf "  %-22s median %+.3f ms (%+.3f to %+.3f); within target (<= %+.1f ms) in %d of %d rounds\n", name, med, d[1], d[NR], limit, ok, NR
    }'
}
# 4. Optional: a flame graph of the edge under the throughput load (after the measured runs, so
# the profiler does not perturb them).
if [[ $FLAMEGRAPH == 1 ]]; then
  log "flame graph: perf record on the edge for $DURATION s of throughput load"
  perf record -F 499 --call-graph dwarf,16384 -p "$EDGE_PID" -o "$DIR/perf.data" -- sleep "$DURATION" \
    >"$DIR/perf.log" 2>&1 &
  perf_pid=$!
  oha_run edge "$DIR/flame-edge.json" -c "$CONNS" -z "${DURATION}s"
  wait "$perf_pid" || die "perf record failed: $(tail -3 "$DIR/perf.log")"
  log "flame graph: folding the stacks"
  mkdir -p "$(dirname "$FLAME_SVG")"
  perf script -i "$DIR/perf.data" 2>/dev/null | inferno-collapse-perf 2>/dev/null >"$DIR/edge.folded"
  inferno-flamegraph --minwidth 0.5 --title "aiproxy-edge, $CONNS connections, one core (caps: $([[ $CAPS == 1 ]] && echo on || echo off))" \
    "$DIR/edge.folded" >"$FLAME_SVG"
  log "wrote $FLAME_SVG"
fi

# ---------------------------------------------------------------------------------------------
# Report
f() { awk -v v="$1" 'BEGIN { printf "%.3f", v }'; }
echo
echo "Side by side on one pinned core (proxy on cpu $PROXY_CPU, control plane on cpu $CP_CPU; oha and mock on cpu $LOAD_CPU)"
echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), oha $(oha --version | awk '{print $2}'), event caps: $([[ $CAPS == 1 ]] && echo "max_token_cap $TOKEN_CAP, daily_request_cap $REQUEST_CAP" || echo none)"
echo
echo "| path | req/s ($CONNS conns, median of $ROUNDS x $ROUND_SECS s) | proxy process CPU % | cpu $PROXY_CPU busy % | p50 ms @ $RATE req/s (median of $ROUNDS x $DURATION s) | p99 ms @ $RATE req/s (median of $ROUNDS) | SSE first byte p50 ms ($ROUNDS x $SSE_STREAMS x $SSE_CALLS calls) | SSE first byte p99 ms | proxy peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for p in "${PATHS[@]}"; do
  rss=-
  [[ -n ${RSS[$p]:-} ]] && rss=$(awk -v k="${RSS[$p]}" 'BEGIN { printf "%.1f", k / 1024 }')
  printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$p" "${RPS[$p]}" "${CPU[$p]:--}" "${CORE[$p]:--}" "$(f "${P50[$p]}")" "$(f "${P99[$p]}")" \
    "${SSE50[$p]}" "${SSE99[$p]}" "$rss"
done
echo
awk -v r="$RATIO" -v range="$RATIO_RANGE" -v n="$ROUNDS" \
  'BEGIN { printf "edge/nginx throughput: %.2f, median of %d paired rounds (%s) (target >= 0.90)\n", r, n, range }'
for p in nginx edge; do
  awk -v p="$p" -v a50="${P50[$p]}" -v a99="${P99[$p]}" -v d50="${P50[direct]}" -v d99="${P99[direct]}" \
    -v s50="${SSE50[$p]}" -v s99="${SSE99[$p]}" -v t50="${SSE50[direct]}" -v t99="${SSE99[direct]}" \
    -v l50="${LAST50[$p]}" -v l99="${LAST99[$p]}" -v m50="${LAST50[direct]}" -v m99="${LAST99[direct]}" \
    'BEGIN { printf "%-5s added vs direct: p50 %+.3f ms, p99 %+.3f ms; SSE first byte p50 %+.3f ms, p99 %+.3f ms; SSE last byte p50 %+.3f ms, p99 %+.3f ms\n", p, a50 - d50, a99 - d99, s50 - t50, s99 - t99, l50 - m50, l99 - m99 }'
done
echo "edge less nginx, paired by round:"
paired "p50 at the fixed rate" "$DIR/p50-edge" "$DIR/p50-nginx" 0.1
paired "p99 at the fixed rate" "$DIR/p99-edge" "$DIR/p99-nginx" 0.1
paired "SSE first byte p50" "$DIR/sse50-edge" "$DIR/sse50-nginx" 0
paired "SSE first byte p99" "$DIR/sse99-edge" "$DIR/sse99-nginx" 0
echo "control plane CPU during the throughput rounds (cpu $CP_CPU): $(median <"$DIR/cp-cpu-edge") % of a core with the edge, $(median <"$DIR/cp-cpu-nginx") % with nginx"
awk -v e="${RSS[edge]}" -v n="${RSS[nginx]}" 'BEGIN { printf "peak RSS under load: edge %.1f MiB, nginx %.1f MiB (target: edge <= 30 MiB)\n", e / 1024, n / 1024 }'
otlp_report
