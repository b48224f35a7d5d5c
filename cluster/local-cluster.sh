#!/usr/bin/env bash
# A development cluster on loopback: a 3-server NATS cluster with JetStream (replicas 3) and
# N Tessera nodes, all in one directory, torn down with `down`.
#
#   cluster/local-cluster.sh up [--nodes N] [--dir DIR] [--definitions FILE.lua]
#   cluster/local-cluster.sh status | down [--dir DIR]
#   cluster/local-cluster.sh kill-nats K | start-nats K    (chaos: stop / restart NATS server K)
#   cluster/local-cluster.sh kill-node K | start-node K    (SIGKILL / restart Tessera node K)
#
# Ports: NATS clients 4301-4303, routes 6301-6303, monitoring 8301-8303; nodes' RPC 7401.. (node K on 7400+K).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cmd=${1:-}
shift || true
nodes=3
dir=${TESSERA_CLUSTER_DIR:-/tmp/tessera-cluster}
defs=$root/examples/flights/flights.lua
bin=${TESSERA_BIN:-$root/build/cli/tessera}
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --definitions) defs=$2; shift 2 ;;
    *) break ;;
  esac
done
urls="nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303"

nats_conf() {  # K
  local k=$1 routes=""
  for j in 1 2 3; do [[ $j != "$k" ]] && routes+="nats-route://127.0.0.1:630$j, "; done
  cat > "$dir/nats$k.conf" <<CONF
server_name: tsr-nats-$k
listen: 127.0.0.1:430$k
http: 127.0.0.1:830$k
jetstream { store_dir: "$dir/nats$k" }
cluster { name: tessera-local, listen: 127.0.0.1:630$k, routes: [ ${routes%, } ] }
CONF
}
start_nats() {  # K
  nats_conf "$1"
  nats-server -c "$dir/nats$1.conf" >>"$dir/nats$1.log" 2>&1 &
  echo $! > "$dir/nats$1.pid"
}
start_node() {  # K
  local k=$1
  "$bin" node --data-dir "$dir/node$k" --node-id "node$k" --rpc "127.0.0.1:$((7400 + k))" --nats "$urls" \
    --shards "${TSR_SHARDS:-8}" \
    --replicas 3 --definitions "$defs" >>"$dir/node$k.log" 2>&1 &
  echo $! > "$dir/node$k.pid"
}
stop_pidfile() {  # FILE SIGNAL
  [[ -f $1 ]] || return 0
  local pid; pid=$(cat "$1")
  kill -"$2" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

case $cmd in
  up)
    [[ -x $bin ]] || { echo "build first: bash scripts/build.sh" >&2; exit 2; }
    mkdir -p "$dir"
    for k in 1 2 3; do start_nats "$k"; done
    for k in 1 2 3; do wait_port "430$k" || { echo "NATS server $k did not start; see $dir/nats$k.log" >&2; exit 1; }; done
    sleep 2  # let the JetStream meta group elect a leader
    for k in $(seq 1 "$nodes"); do start_node "$k"; wait_port $((7400 + k)) || { echo "node $k did not start; see $dir/node$k.log" >&2; exit 1; }; done
    echo "cluster up in $dir: NATS $urls; nodes' RPC on 127.0.0.1:7401..$((7400 + nodes))"
    echo "try: $bin status --rpc 127.0.0.1:7401"
    ;;
  status) "$bin" status --rpc 127.0.0.1:7401 ;;
  down)
    for f in "$dir"/node*.pid; do [[ -e $f ]] && stop_pidfile "$f" TERM; done
    for f in "$dir"/nats*.pid; do [[ -e $f ]] && stop_pidfile "$f" TERM; done
    echo "cluster down (data kept in $dir; remove it for a fresh start)"
    ;;
  kill-nats) stop_pidfile "$dir/nats$1.pid" KILL ;;
  start-nats) start_nats "$1"; wait_port "430$1" ;;
  kill-node) stop_pidfile "$dir/node$1.pid" KILL ;;
  start-node) start_node "$1"; wait_port $((7400 + $1)) ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
