#!/usr/bin/env bash
# Load figures for the README: examples/bench_server on every store (memory,
# file, Redis, cookie mode) against examples/bare_server (the same routes
# with no sessions), one after the other under wrk, all on 127.0.0.1.
# Scenarios: read (GET /profile), write (POST /cart), new (POST /login
# without a cookie), over SESSIONS sessions made first. Writes
# bench/results.csv and draws bench/chart.svg (bench/chart.py).
#
#   bash bench/run.sh                      # 5 s per scenario
#   DURATION=10s CONNECTIONS=64 bash bench/run.sh
#
# Needs wrk, redis-server, curl and python3 (apt-get install wrk
# redis-server curl python3). Redis runs on a free port in a temporary
# directory and is stopped at the end. Every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
SESSIONS=${SESSIONS:-200}
STORES=${STORES:-"memory file redis cookie"}

for tool in wrk redis-server curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool" >&2; exit 2; }
done

cargo build --release -q -p typed-session-examples --example bench_server --example bare_server
BIN=target/release/examples
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no >/dev/null &
PIDS+=($!)
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

rps() {  # METHOD TARGET COOKIE_FILE PORT
  METHOD=$1 TARGET=$2 COOKIES=$3 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
    -s bench/requests.lua "http://127.0.0.1:$4" | awk '/Requests\/sec/ {print $2}'
}

echo "server,read,write,new" > bench/results.csv
for server in bare $STORES; do
  port=$(free_port)
  if [ "$server" = bare ]; then
    PORT=$port "$BIN/bare_server" & pid=$!
  else
    PORT=$port "$BIN/bench_server" --store "$server" & pid=$!
  fi
  PIDS+=("$pid")
  wait_up "$port"
  cookies="$WORK/cookies-$server"
  : > "$cookies"
  for _ in $(seq "$SESSIONS"); do
    curl -fs -D - -o /dev/null -X POST "http://127.0.0.1:$port/login" \
      | awk 'tolower($1) == "set-cookie:" { split($2, a, ";"); print a[1] }' >> "$cookies"
  done
  read=$(rps GET /profile "$cookies" "$port")
  write=$(rps POST /cart "$cookies" "$port")
  new=$(rps POST /login "" "$port")
  echo "$server,$read,$write,$new" >> bench/results.csv
  echo "  $server: read $read, write $write, new $new requests/s"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done

python3 bench/chart.py bench/results.csv bench/chart.svg
