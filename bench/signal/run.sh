#!/usr/bin/env bash
# Signaling benchmark: `signal` vs the Node socket.io v4 server (bench/signal/node-server.js),
# both driven by the same load client (`signal-load`: rooms of 2, ping-pong candidate
# relays at 10 msg/s per client), at several client counts, a few repetitions each.
# Prints medians and the ours/node ratio; raw JSON goes to bench/results/signal-<time>/.
#
# Usage: bench/signal/run.sh
# Knobs (env): SIZES="100 1000 5000" REPS=3 DURATION=20 RATE=10 BASE_PORT=21100
#              CLIENT_THREADS=1 NO_BUILD=1 (use the existing release binaries)
#
# Everything runs on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

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
grep -q -- --plain-http <<<"$("$SIGNAL_BIN" --help)" || { echo "signal has no --plain-http" >&2; exit 1; }
if [[ ! -d bench/signal/node_modules/socket.io ]]; then
  npm ci --prefix bench/signal --no-audit --no-fund
fi

mkdir -p "$OUT"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "node: $(node --version), socket.io $(node -p "require('./bench/signal/node_modules/socket.io/package.json').version")"
  echo "signal: $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'), binary sha256 $(sha256sum "$SIGNAL_BIN" | cut -c1-12)"
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
      "$SIGNAL_BIN" --listen "127.0.0.1:$port" --plain-http --public-dir public >"$OUT/$kind-$port.log" 2>&1 &
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
# QUIET_WAIT seconds (default 120); the busy level seen at the start is logged either way.
wait_quiet() {
  local busy waited=0
  busy=$(cpu_busy)
  while (( busy > ${QUIET_BUSY_PCT:-30} && waited < ${QUIET_WAIT:-120} )); do
    sleep 4
    waited=$((waited + 5))
    busy=$(cpu_busy)
  done
  echo "$busy"
}

for n in $SIZES; do
  for rep in $(seq "$REPS"); do
    # Alternate the servers within each repetition so that both see the same background
    # load on this shared machine.
    for kind in node signal; do
      busy=$(wait_quiet)
      echo "$kind $n clients, rep $rep: machine ${busy}% busy before start" | tee -a "$OUT/meta.txt"
      start_server "$kind"
      "$LOAD_BIN" --server "127.0.0.1:$port" --clients "$n" --duration "$DURATION" \
        --rate "$RATE" --threads "$CLIENT_THREADS" --server-pid "$SERVER_PID" \
        --label "$kind" >"$OUT/$kind-$n-$rep.json" 2>"$OUT/$kind-$n-$rep.txt" &
      LOAD_PID=$!
      status=0
      wait "$LOAD_PID" || status=$?
      LOAD_PID=""
      cat "$OUT/$kind-$n-$rep.txt"
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "  !! $kind server died during the run (see $OUT/$kind-$port.log)"
      fi
      cleanup
      if (( status != 0 )); then
        echo "  !! signal-load failed (exit $status) against $kind with $n clients" >&2
        rm -f "$OUT/$kind-$n-$rep.json"
      fi
      port=$((port + 1))
    done
  done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/meta.txt"
echo
node bench/signal/report.js "$OUT"
echo
echo "results: $OUT"
