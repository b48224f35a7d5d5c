#!/usr/bin/env bash
# The flights example: start a node (embedded NATS), replay 3M real flights through it while
# showing live features, then keep serving until Ctrl-C.
#   examples/flights/run.sh [--rows N] [--once] [--train] [--data-dir DIR] [--rpc HOST:PORT]
# --once stops the node after the replay (for scripts); --rows N replays only the first N rows;
# --train then runs examples/flights/train.sh (datasets, training, registry, AUC table).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build/cli/tessera"
data_dir="$root/data/flights-node"
rpc="127.0.0.1:7400"
rows=""
once=0
train=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --once) once=1; shift ;;
    --train) train=1; shift ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --rpc) rpc=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "build first: bash scripts/build.sh" >&2; exit 2; }

csv="$root/../shared/data/flights-3m.csv.gz"
if [ ! -f "$csv" ]; then
  csv="$root/data/flights-3m.csv.gz"
  [ -f "$csv" ] || { mkdir -p "$root/data"; bash "$root/examples/flights/fetch-data.sh" "$csv"; }
fi
input="$csv"
if [ -n "$rows" ]; then
  input="$root/data/flights-first-$rows.csv.gz"
  mkdir -p "$root/data"
  { zcat "$csv" || true; } | head -n $((rows + 1)) | gzip -1 > "$input"
fi

mkdir -p "$data_dir"
echo "== starting node (data in $data_dir, RPC on $rpc)"
"$bin" node --data-dir "$data_dir" --rpc "$rpc" --definitions "$root/examples/flights/flights.lua" \
  > "$data_dir/node.log" 2>&1 &
node_pid=$!
cleanup() { kill -TERM $node_pid 2>/dev/null && wait $node_pid 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do "$bin" status --rpc "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin" status --rpc "$rpc" >/dev/null || { echo "node did not start:"; cat "$data_dir/node.log"; exit 1; }

echo "== replaying $(basename "$input") through JetStream; live features of ORD and LAX every 2 s"
watch_features() {
  while sleep 2; do
    "$bin" features --json --rpc "$rpc" airport_delay ORD LAX 2>/dev/null | \
      tr -d ' \n' | sed 's/},{"as_of"/}\n{"as_of"/g' | \
      sed -E 's/.*"as_of":"([^"]*)".*"entity":"([^"]*)".*"status":"([^"]*)".*"values":\{([^}]*)\}.*/  \2 @ \1 [\3] \4/' || true
    echo
  done
}
watch_features &
watcher=$!
"$bin" ingest --replay --rpc "$rpc" --stream flights "$input" || true
kill $watcher 2>/dev/null || true
wait $watcher 2>/dev/null || true

echo "== status"
"$bin" status --rpc "$rpc"
echo "== airport_delay for the busiest airports (at the stream's clock: the latest arrival replayed)"
"$bin" features --rpc "$rpc" airport_delay ORD ATL DFW LAX
echo "== route_delay LAX-SFO and ORD-LGA, and LAX as it was 6 hours before the clock"
"$bin" features --rpc "$rpc" route_delay LAX-SFO ORD-LGA
"$bin" features --json --rpc "$rpc" --as-of -6h airport_delay LAX

if [ "$train" = 1 ]; then
  # Training sets need every event applied: wait until no shard lags.
  for _ in $(seq 600); do
    "$bin" status --json --rpc "$rpc" | tr -d ' \n' | grep -q '"lag":[1-9]' || break
    sleep 1
  done
  bash "$root/examples/flights/train.sh" --rpc "$rpc"
fi
if [ "$once" = 1 ]; then exit 0; fi
echo "== node running (log: $data_dir/node.log). Try:"
echo "   $bin features --rpc $rpc route_delay SFO-LAX"
echo "   $bin status --rpc $rpc --json"
echo "   Ctrl-C stops the node."
wait $node_pid
