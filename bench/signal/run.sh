#!/usr/bin/env bash
# Signaling benchmark: `signal` vs the Node socket.io v4 server (bench/signal/node-server.js),
# both driven by the same load client (`signal-load`: rooms of 2, ping-pong candidate
# relays at 10 msg/s per client), at several client counts, a few repetitions each.
# Prints medians and the ours/node ratio; raw JSON goes to bench/results/signal-<time>/.
#
# Usage: bench/signal/run.sh
# Knobs (env): SIZES="100 1000 5000" REPS=3 DURATION=20 RATE=10 BASE_PORT=21100
#              CLIENT_THREADS=1 NO_BUILD=1 (use the existing release binaries)
#              QUIET_BUSY_PCT=30 QUIET_WAIT=600 NOISE_MAX=25 ATTEMPTS=4 (see below)
#
# Everything runs on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail
# The whole script is one block, so bash parses it before running anything: editing this
# file during a (long) run cannot change what the run executes.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

SIZES="${SIZES:-100 1000 5000}"
REPS="${REPS:-3}"
DURATION="${DURATION:-20}"
RATE="${RATE:-10}"
BASE_PORT="${BASE_PORT:-21100}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
SIGNAL_BIN="$ROOT/target/release/signal"
LOAD_BIN="$ROOT/target/release/signal-load"
OUT="$ROOT/bench/results/signal-$(date -u +%Y%m%dT%H%M%SZ)"

SERVER_PID=""
LOAD_PID=""
cleanup() {
  # Only the processes this script started, by pid.
  for pid in $LOAD_PID $SERVER_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  SERVER_PID=""
  LOAD_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each client is one socket here and one in the server (same user): 5000 clients need
# more than the usual 1024 descriptors.
max_clients=0
for n in $SIZES; do
  if (( n > max_clients )); then max_clients=$n; fi
done
need=$(( max_clients + 1024 ))
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited ]] && (( hard < need )); then
  echo "ulimit -Hn is $hard; $need file descriptors are needed for $max_clients clients" >&2
  exit 1
fi
ulimit -n "$need"

if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -p signal -p bench
fi
[[ -x "$SIGNAL_BIN" && -x "$LOAD_BIN" ]] || { echo "missing $SIGNAL_BIN or $LOAD_BIN" >&2; exit 1; }
signal_help=$("$SIGNAL_BIN" --help)
grep -q -- --plain-http <<<"$signal_help" || { echo "signal has no --plain-http" >&2; exit 1; }
SIGNAL_ARGS=(--plain-http --public-dir public)
# Signaling only, like the Node server: no embedded TURN relay (it would also listen on
# 0.0.0.0:3478).
if grep -q -- --no-turn <<<"$signal_help"; then SIGNAL_ARGS+=(--no-turn); fi
if [[ ! -d bench/signal/node_modules/socket.io ]]; then
  npm ci --prefix bench/signal --no-audit --no-fund
fi

mkdir -p "$OUT"
# Run a private copy: target/ is shared, and a rebuild by someone else mid-run must not
# mix two server versions in one result set.
cp "$SIGNAL_BIN" "$OUT/signal"
SIGNAL_BIN="$OUT/signal"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "node: $(node --version), socket.io $(node -p "require('./bench/signal/node_modules/socket.io/package.json').version")"
  echo "signal: $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'), binary sha256 $(sha256sum "$SIGNAL_BIN" | cut -c1-12), args ${SIGNAL_ARGS[*]}"
  echo "sizes: $SIZES; reps: $REPS; relay: ${DURATION}s at ${RATE} msg/s per client; client threads: $CLIENT_THREADS"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/meta.txt"

# Server ports sit below the ephemeral range (32768+), where the client's own sockets
# (and other programs on this shared machine) would otherwise collide with them. A fresh
# port per server start avoids any TIME_WAIT left by the previous run.
port=$BASE_PORT

start_server() { # kind; sets SERVER_PID and port
  local kind=$1
  for _ in $(seq 20); do
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    if [[ $kind == node ]]; then
      node bench/signal/node-server.js --host 127.0.0.1 --port "$port" >"$OUT/$kind-$port.log" 2>&1 &
    else
      "$SIGNAL_BIN" --listen "127.0.0.1:$port" "${SIGNAL_ARGS[@]}" >"$OUT/$kind-$port.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 100); do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        # Most likely the port was taken after all: try the next one.
        echo "  $kind exited at start on port $port: $(tail -c 300 "$OUT/$kind-$port.log" | tr '\n' ' ')" >&2
        SERVER_PID=""
        port=$((port + 1))
        continue 2
      fi
      if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
      sleep 0.1
    done
    echo "$kind did not become ready on port $port" >&2
    exit 1
  done
  echo "$kind could not start" >&2
  exit 1
}

# Busy percentage of all CPUs over one second, from /proc/stat.
cpu_busy() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 idle i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  idle=$(( b[4] - a[4] + b[5] - a[5] ))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# This machine is shared: other people's builds and browser tests come and go. Start each
# measurement when the CPUs are mostly idle (QUIET_BUSY_PCT, default 30%), waiting at most
# QUIET_WAIT seconds (default 600); the busy level seen at the start is logged either way.
wait_quiet() {
  local busy waited=0
  busy=$(cpu_busy)
  while (( busy > ${QUIET_BUSY_PCT:-30} && waited < ${QUIET_WAIT:-600} )); do
    sleep 4
    waited=$((waited + 5))
    busy=$(cpu_busy)
  done
  echo "$busy"
}

# One measurement: fresh server, one signal-load run, server stopped. Returns the share
# of the machine other programs used meanwhile (percent, integer) in $NOISE.
measure() { # kind clients rep attempt
  local kind=$1 n=$2 rep=$3 attempt=$4 base status busy
  base="$OUT/$kind-$n-$rep"
  busy=$(wait_quiet)
  echo "$kind $n clients, rep $rep, attempt $attempt: machine ${busy}% busy before start" | tee -a "$OUT/meta.txt"
  start_server "$kind"
  "$LOAD_BIN" --server "127.0.0.1:$port" --clients "$n" --duration "$DURATION" \
    --rate "$RATE" --threads "$CLIENT_THREADS" --server-pid "$SERVER_PID" \
    --label "$kind" >"$base.json" 2>"$base.txt" &
  LOAD_PID=$!
  status=0
  wait "$LOAD_PID" || status=$?
  LOAD_PID=""
  cat "$base.txt"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "  !! $kind server died during the run (see $OUT/$kind-$port.log)"
  fi
  cleanup
  port=$((port + 1))
  NOISE=0
  if (( status != 0 )); then
    echo "  !! signal-load failed (exit $status) against $kind with $n clients" >&2
    mv "$base.json" "$base.failed-$attempt.json"
    return
  fi
  NOISE=$(node -p "Math.round(require('$base.json').machine.others_busy_pct)")
}

# Other people's builds and browser tests on this machine can take most of the CPU for
# minutes, which says nothing about either server. A measurement during which other
# programs used more than NOISE_MAX percent of the machine is kept aside (*.noisy-N.json,
# not in the medians) and repeated, up to ATTEMPTS times; the last attempt counts anyway.
NOISE_MAX="${NOISE_MAX:-25}"
ATTEMPTS="${ATTEMPTS:-4}"
for n in $SIZES; do
  for rep in $(seq "$REPS"); do
    # Alternate the servers within each repetition so that both see similar conditions.
    for kind in node signal; do
      for attempt in $(seq "$ATTEMPTS"); do
        measure "$kind" "$n" "$rep" "$attempt"
        if (( NOISE <= NOISE_MAX || attempt == ATTEMPTS )); then break; fi
        echo "  (others used ${NOISE}% of the machine: measuring again)"
        mv "$OUT/$kind-$n-$rep.json" "$OUT/$kind-$n-$rep.noisy-$attempt.json"
      done
    done
  done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/meta.txt"
echo
node bench/signal/report.js "$OUT"
echo
echo "results: $OUT"
exit
}
