#!/usr/bin/env bash
# Training on the flights example, against a node that has replayed the flights (run.sh):
# builds the point-in-time datasets of both labels, trains the MLP on real-time features and on
# the same features frozen at the previous midnight, registers, promotes and rolls back, and
# prints the test AUC of each.
#   examples/flights/train.sh [--rpc HOST:PORT] [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build/cli/tessera"
rpc="127.0.0.1:7400"
out="$root/data/flights-datasets"
while [ $# -gt 0 ]; do
  case "$1" in
    --rpc) rpc=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
echo "== point-in-time datasets (January-June 2001; features as known at departure)"
"$bin" dataset build late --rpc "$rpc" -o "$out/late.csv"
"$bin" dataset build late_daily --rpc "$rpc" -o "$out/late_daily.csv"
echo "== training (train Jan-Apr, validate May, test June)"
for m in late_mlp late_mlp_daily late_logistic; do
  "$bin" train "$m" --rpc "$rpc" | tee "$out/$m.txt"
done
auc() { "$bin" models show "$1" --json --rpc "$rpc" | tr -d ' \n' | sed -E 's/.*"test":\{[^}]*"auc":([0-9.]+).*/\1/'; }
echo "== test AUC, June 2001"
printf "  %-40s %s\n" "MLP, real-time features" "$(auc late_mlp)"
printf "  %-40s %s\n" "MLP, features frozen at previous midnight" "$(auc late_mlp_daily)"
printf "  %-40s %s\n" "logistic regression, real-time features" "$(auc late_logistic)"
echo "== registry: promote, a second version, roll back"
latest() { "$bin" models list --json --rpc "$rpc" | tr -d ' \n' | sed -E "s/.*\"name\":\"$1\",\"production\":[^,]*,\"versions\":\[([^]]*)\].*/\1/" | grep -o '"version":[0-9]*' | tail -1 | cut -d: -f2; }
v=$(latest late_mlp)
"$bin" models promote late_mlp "$v" --rpc "$rpc"
# A second version: the artifact exported and imported again (as a PyTorch model would be).
"$bin" models export late_mlp "$out/late_mlp.pt" -v "$v" --rpc "$rpc"
"$bin" models import late_mlp "$out/late_mlp.pt" --label late --rpc "$rpc"
v2=$(latest late_mlp)
"$bin" models promote late_mlp "$v2" --rpc "$rpc"
"$bin" models rollback late_mlp --rpc "$rpc"
"$bin" models list --rpc "$rpc"
echo "== a prediction from fresh features: LAX to SFO, departing at 18:00 on the last day"
# The node follows the registry: it serves the production version within a second or so.
for _ in $(seq 50); do
  "$bin" predict --vector late_mlp origin=LAX destination=SFO distance=337 \
    date=2001-06-30T18:00:00Z --rpc "$rpc" && break
  sleep 0.2
done
