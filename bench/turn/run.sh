#!/usr/bin/env bash
# TURN relay benchmark: coturn vs turn-relay, same turnserver.conf, same
# turnutils_uclient load, all on 127.0.0.1. Prints relayed packets/s, loss, RTT
# and server CPU µs per relayed packet (utime+stime from /proc/PID/stat), medians
# over REPEATS runs, and the ratio ours/coturn.
#
#   bench/turn/run.sh                 # defaults below
#   REPEATS=5 CLIENTS=50 MESSAGES=4000 bench/turn/run.sh
#
#   ONLY="channel send" bench/turn/run.sh   # a subset of the profiles (channel send paced tcp)
#
# Every run is bounded: fixed message counts and a `timeout` on each client.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
REPEATS=${REPEATS:-3}
CLIENTS=${CLIENTS:-50}
MESSAGES=${MESSAGES:-4000}
LEN=${LEN:-120}
# Burst profiles pace each client at INTERVAL ms; the paced profile is WebRTC-like.
INTERVAL=${INTERVAL:-2}
PACED_MESSAGES=${PACED_MESSAGES:-500}
PACED_INTERVAL=${PACED_INTERVAL:-20}
PORT=${PORT:-34780}
PEER_PORT=${PEER_PORT:-34790}
SECRET=$(sed -n 's/^static-auth-secret=//p' turnserver.conf | head -n1)
OUT=${OUT:-$ROOT/bench/results/turn}
mkdir -p "$OUT"

for t in turnserver turnutils_uclient turnutils_peer; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install coturn)" >&2; exit 1; }
done
# OURS=/path/to/turn-relay compares another build (e.g. an older one) instead.
if [ -z "${OURS:-}" ]; then
  cargo build --release -q -p turn-relay
  OURS=$ROOT/target/release/turn-relay
fi
TICK=$(getconf CLK_TCK)

# Same file for both; the overrides keep everything on loopback and lift the
# example's per-user quota (all uclient sessions share one REST user).
COMMON=(-c "$ROOT/turnserver.conf" --listening-ip 127.0.0.1 --relay-ip 127.0.0.1
        --listening-port "$PORT" --min-port 45000 --max-port 46999
        --allow-loopback-peers --user-quota 0 --total-quota 0)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server() { # $1 = coturn|ours
  if [ "$1" = coturn ]; then
    turnserver "${COMMON[@]}" --no-stdout-log --log-file /dev/null --pidfile "$OUT/coturn.pid" \
      >"$OUT/coturn.log" 2>&1 &
  else
    RUST_LOG=warn "$OURS" "${COMMON[@]}" >"$OUT/ours.log" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 50); do
    timeout 2 turnutils_stunclient -p "$PORT" 127.0.0.1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

# One measured run: prints "pps loss_pct rtt_ms cpu_us_per_pkt".
measure() { # $1 server, $2.. uclient flags
  local server=$1; shift
  start_server "$server"
  local c0 t0 c1 t1 log
  log=$(mktemp)
  c0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
  timeout 300 turnutils_uclient "$@" -c -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" \
    -W "$SECRET" -u bench -l "$LEN" 127.0.0.1 >"$log" 2>&1 || true
  t1=$(date +%s.%N); c1=$(cpu_ticks "$SERVER_PID")
  stop_server
  awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tick="$TICK" '
    /start_mclient: tot_send_msgs=/ { split($0, a, "tot_send_msgs="); split(a[2], b, ","); sent=b[1]+0;
                                       split($0, d, "tot_recv_msgs="); recv=d[2]+0 }
    /Total lost packets/ { split($0, a, "("); split(a[2], b, "%"); loss=b[1]+0 }
    /Average round trip delay/ { for (i=1;i<=NF;i++) if ($i=="delay") rtt=$(i+1)+0 }
    END {
      relayed = sent + recv          # client->peer and peer->client datagrams
      secs = t1 - t0; cpu_us = (c1 - c0) / tick * 1e6
      if (relayed == 0) { print "0 100 0 0"; exit }
      printf "%.0f %.3f %.3f %.3f\n", relayed / secs, loss, rtt, cpu_us / relayed
    }' "$log"
  cp "$log" "$OUT/last-$server.txt"; rm -f "$log"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PEER_PID=$!
trap 'kill $PEER_PID 2>/dev/null; stop_server' EXIT
sleep 0.3

PROFILES=(
  "channel|-m $CLIENTS -n $MESSAGES -z $INTERVAL"
  "send|-s -m $CLIENTS -n $MESSAGES -z $INTERVAL"
  "paced|-m $CLIENTS -n $PACED_MESSAGES -z $PACED_INTERVAL"
  # TCP allocations (RFC 6062): clients in pairs, each pair's messages through two TCP relays.
  "tcp|-T -m $CLIENTS -n $MESSAGES -z $INTERVAL"
)

echo "# $(date -u +%FT%TZ) $(nproc) cores; load $(cut -d" " -f1-3 /proc/loadavg); repeats=$REPEATS; clients=$CLIENTS; len=$LEN"
printf "%-8s %-7s %10s %8s %8s %10s\n" profile server "pkt/s" "loss%" "rtt_ms" "cpu_us/pkt"
for p in "${PROFILES[@]}"; do
  name=${p%%|*}; flags=${p#*|}
  case " ${ONLY:-channel send paced tcp} " in *" $name "*) ;; *) continue ;; esac
  declare -A med=()
  for server in coturn ours; do
    : >"$OUT/$name-$server.runs"
    for _ in $(seq "$REPEATS"); do
      # shellcheck disable=SC2086
      measure "$server" $flags >>"$OUT/$name-$server.runs"
    done
    for col in 1 2 3 4; do
      med[$server.$col]=$(cut -d' ' -f$col "$OUT/$name-$server.runs" | median)
    done
    printf "%-8s %-7s %10.0f %8.3f %8.3f %10.3f\n" "$name" "$server" \
      "${med[$server.1]}" "${med[$server.2]}" "${med[$server.3]}" "${med[$server.4]}"
  done
  awk -v a="${med[ours.4]}" -v b="${med[coturn.4]}" -v pa="${med[ours.1]}" -v pb="${med[coturn.1]}" -v n="$name" \
    'BEGIN { printf "%-8s ratio   pkt/s %.2fx   cpu/pkt %.2fx (ours/coturn)\n", n, (pb?pa/pb:0), (b?a/b:0) }'
  unset med
done
