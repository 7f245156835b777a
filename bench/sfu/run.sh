#!/bin/sh
# SFU benchmark (docs/BENCHMARKS.md, "SFU"): release `signal` + `sfu-load` on loopback.
#
#   bench/sfu/run.sh                 # default shape, 3 runs, medians
#   ROOMS=4 PUBLISHERS=1 SUBSCRIBERS=15 RUNS=3 bench/sfu/run.sh
#   bench/sfu/run.sh churn           # 300 join/leave cycles: RSS flat, no room/task left
#   OLD_SIGNAL=/path/to/old/signal bench/sfu/run.sh
#                                    # before/after in the same run: each of the RUNS starts the
#                                    # old and this tree's server in turn (alternating which goes
#                                    # first) under the same load; medians of both and new/old
#   RECORD=1 bench/sfu/run.sh        # forwarding alone against forwarding while the server
#                                    # records every room, the same way (old = alone, new =
#                                    # recording)
#   LOAD_FLAGS='--simulcast --feedback' bench/sfu/run.sh
#                                    # extra sfu-load flags for every run (simulcast publishers,
#                                    # transport-wide feedback from every client)
#   NEW_LOAD_FLAGS='--simulcast --feedback' NEW_CONFIG=bench/sfu/bwe.toml bench/sfu/run.sh
#   NEW_LOAD_FLAGS='--simulcast --remb' NEW_CONFIG=bench/sfu/remb.toml bench/sfu/run.sh
#                                    # this tree's server twice, the same way: old = as is,
#                                    # new = with these sfu-load flags and/or server config
#                                    # (simulcast publishers with bandwidth estimation on: ours
#                                    # from transport-wide feedback, or the clients' REMB)
#
# Each run starts a fresh server (in a loopback-only network namespace when run as root with
# `unshare`), runs `sfu-load run --baseline` (the SFU, then a plain-UDP fan-out with the same
# shape) and stores the JSON under bench/results/sfu-<UTC time>/; a summary with medians is
# printed and written to summary.json.
set -eu
cd "$(dirname "$0")/../.."
MODE=${1:-run}
ROOMS=${ROOMS:-1}
PUBLISHERS=${PUBLISHERS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-8}
KBPS=${KBPS:-1000}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CYCLES=${CYCLES:-300}

if [ -n "${RECORD:-}" ]; then NEW_LOAD_FLAGS="--record ${NEW_LOAD_FLAGS:-}"; fi
LOAD_FLAGS=${LOAD_FLAGS:-}
NEW_LOAD_FLAGS=${NEW_LOAD_FLAGS:-}
NEW_CONFIG=${NEW_CONFIG:-}
if [ -n "$NEW_CONFIG" ]; then NEW_CONFIG=$(realpath "$NEW_CONFIG"); fi

if [ "${INNER:-}" != 1 ]; then
  cargo build --release -q -p signal -p sfu-load
  OUT=bench/results/sfu-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$OUT"
  export OUT INNER=1
  if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    exec unshare --net --pid --fork --kill-child --mount-proc sh -c 'ip link set lo up && exec "$0" "$1"' "$0" "$MODE"
  fi
  exec "$0" "$MODE"
fi

# The operator endpoint (GET /api/rooms) sfu-load reads: the same token for both.
SIGNAL_OPERATOR_TOKEN=${SIGNAL_OPERATOR_TOKEN:-bench-operator-token-$$-$(date +%s)}
export SIGNAL_OPERATOR_TOKEN
CERTS=$(mktemp -d)
trap 'rm -rf "$CERTS"' EXIT
start_server() { # $1 = log name, $2 = binary (default: this tree's release build), $3 = config file
  "${2:-target/release/signal}" ${3:+--config "$3"} --listen 127.0.0.1:0 --public-dir public --cert-dir "$CERTS" --plain-http --no-turn \
    --sfu-room-capacity 1000 --recordings-dir "$CERTS/recordings" >"$OUT/server-$1.log" 2>&1 &
  SPID=$!
  PORT=
  for _ in $(seq 1 100); do
    PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$OUT/server-$1.log" | cut -d: -f2 || true)
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "server did not start"; cat "$OUT/server-$1.log"; exit 1; }
}

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(nproc) cores, $(uname -r)"; echo "load before: $(cat /proc/loadavg)"
  echo "shape: rooms=$ROOMS publishers=$PUBLISHERS subscribers=$SUBSCRIBERS kbps=$KBPS warmup=$WARMUP duration=$DURATION runs=$RUNS"
  git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit: /' || true
  if [ -n "${OLD_SIGNAL:-}" ]; then echo "old server: $OLD_SIGNAL"; fi
  if [ -n "$LOAD_FLAGS" ]; then echo "sfu-load flags: $LOAD_FLAGS"; fi
  if [ -n "$NEW_LOAD_FLAGS$NEW_CONFIG" ]; then echo "new: sfu-load flags '$NEW_LOAD_FLAGS', server config '$NEW_CONFIG'"; fi
  if [ -n "$NEW_CONFIG" ]; then sed 's/^/  /' "$NEW_CONFIG"; fi
} >"$OUT/meta.txt"

if [ "$MODE" = churn ]; then
  start_server churn
  RC=0
  target/release/sfu-load churn --server 127.0.0.1:"$PORT" --pid "$SPID" --cycles "$CYCLES" --group 2 | tee "$OUT/churn.json" || RC=$?
  kill "$SPID"
  echo "results: $OUT"
  exit $RC
fi

load() { # $1 = output file, then extra sfu-load flags
  out=$1; shift
  target/release/sfu-load run --server 127.0.0.1:"$PORT" --pid "$SPID" "$@" \
    --rooms "$ROOMS" --publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS" --video-kbps "$KBPS" \
    --warmup "$WARMUP" --duration "$DURATION" >"$out"
  kill "$SPID"; wait "$SPID" 2>/dev/null || true
}

for i in $(seq 1 "$RUNS"); do
  if [ -z "${OLD_SIGNAL:-}$NEW_LOAD_FLAGS$NEW_CONFIG" ]; then
    start_server "$i"
    # The plain-UDP baseline fans out one stream per publisher: none for simulcast.
    case " $LOAD_FLAGS " in *" --simulcast "*) baseline= ;; *) baseline=--baseline ;; esac
    # shellcheck disable=SC2086 # flags are words
    load "$OUT/run-$i.json" $baseline $LOAD_FLAGS
  else
    # Alternate which goes first: the machine's load drifts during a run.
    if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
      echo "run $i: $which, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
      # shellcheck disable=SC2086
      if [ "$which" = old ]; then
        start_server "$i-old" "${OLD_SIGNAL:-}"
        load "$OUT/run-$i-old.json" $LOAD_FLAGS
      else
        start_server "$i-new" "" "$NEW_CONFIG"
        load "$OUT/run-$i-new.json" $LOAD_FLAGS $NEW_LOAD_FLAGS
      fi
      rm -rf "$CERTS/recordings"
    done
  fi
done

python3 - "$OUT" <<'PY'
import json, glob, statistics, sys
out = sys.argv[1]
keys = ["forwarded_pps", "forwarded_video_pps", "subscriber_video_streams", "loss_video_pct", "loss_audio_pct",
        "latency_p50_ms", "latency_p99_ms", "server_cpu_us_per_forwarded_packet", "server_cpu_pct", "server_rss_mib"]
def load(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{pattern}"))]
def med(runs, *path):
    vals = []
    for r in runs:
        v = r
        for k in path: v = v[k]
        vals.append(v)
    return statistics.median(vals)
def each(runs, *path):
    vals = []
    for r in runs:
        v = r
        for k in path: v = v[k]
        vals.append(v)
    return vals
old, new = load("run-*-old.json"), load("run-*-new.json")
if old:
    cpu = "server_cpu_us_per_forwarded_packet"
    summary = {"shape": new[0]["shape"], "runs": len(new),
               "old": {k: med(old, "sfu", k) for k in keys},
               "new": {k: med(new, "sfu", k) for k in keys},
               "cpu_us_per_packet_each_run": {"old": each(old, "sfu", cpu), "new": each(new, "sfu", cpu)},
               "server_cpu_pct_each_run": {"old": each(old, "sfu", "server_cpu_pct"), "new": each(new, "sfu", "server_cpu_pct")},
               "new_over_old_cpu_per_packet": med(new, "sfu", cpu) / med(old, "sfu", cpu)}
else:
    runs = load("run-*.json")
    summary = {"shape": runs[0]["shape"], "runs": len(runs),
               "sfu": {k: med(runs, "sfu", k) for k in keys},
               "cpu_us_per_packet_each_run": each(runs, "sfu", "server_cpu_us_per_forwarded_packet")}
    if "udp_baseline" in runs[0]:
        summary["udp_baseline"] = {k: med(runs, "udp_baseline", k) for k in keys}
        summary["ratio"] = {k: med(runs, "ratio", k) for k in runs[0]["ratio"]}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
print(f"results: {out}")
PY
