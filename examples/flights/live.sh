#!/usr/bin/env bash
# The flights example live: a node learns from January-May 2001, then June is replayed as it
# happened, at a speed-up, as two streams in event-time order: `departures` (at the scheduled
# departure: flight id, origin, destination, distance, date) and `flights` (at arrival, with the
# delay: the label). late_mlp follows `departures` and publishes one prediction per departure on
# tsr.pred.late_mlp; a deliberately bad canary (a wider MLP exported upside down: it answers
# 1 - p, as a model trained with flipped labels would) serves 20% of the routes; the logistic
# regression scores every example in shadow. Every few seconds it prints predictions/s, p99, the
# stage mix and the path mix. Monitoring joins the arrivals to the predictions logged at
# departure: the bad canary is found significantly worse than production and rolled back to
# candidate by itself, with an alert; June's inputs are tested for drift against the January-April
# training reference (weekly windows, tested daily). At the end: the live quality of each
# version (AUC, log loss, accuracy with intervals; over up to 600,000 pairs per version: the whole
# month), the drift ranking, the alerts, and production's live AUC beside its offline AUC on June's
# point-in-time dataset.
#   examples/flights/live.sh [--speedup X] [--from DATE] [--to DATE] [--days N] [--data-dir DIR]
#                            [--rpc HOST:PORT] [--keep]
# Defaults: June 2001 at 8640x (a day each 10 s, about 5 minutes). --days N replays only the
# first N days. --keep leaves the node running at the end (Ctrl-C stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build/cli/tessera"
data_dir="$root/data/flights-live"
rpc="127.0.0.1:7410"
speedup=8640
from="2001-06-01"
to="2001-07-01"
days=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --speedup) speedup=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --to) to=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --rpc) rpc=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "build first: bash scripts/build.sh" >&2; exit 2; }
if [ -n "$days" ]; then
  to=$(date -u -d "$from + $days days" +%Y-%m-%d)
fi

csv="$root/../shared/data/flights-3m.csv.gz"
if [ ! -f "$csv" ]; then
  csv="$root/data/flights-3m.csv.gz"
  [ -f "$csv" ] || { mkdir -p "$root/data"; bash "$root/examples/flights/fetch-data.sh" "$csv"; }
fi

rm -rf "$data_dir"
mkdir -p "$data_dir"
# The definitions: the flights example's, with the split moved before June (what a team that
# goes live on June 1st can train and test on), late_mlp following departures and monitored, a
# wider MLP trained as late_mlp's second version. At a speed-up a second of the follower's lag is
# hours of event time: the views keep days for as-of reads and a label waits 2 days (event
# time) for a prediction still on its way.
defs="$data_dir/live.lua"
sed -e 's/validation = { "2001-05-01", "2001-06-01" }/validation = { "2001-05-01", "2001-05-22" }/' \
    -e 's/test = { "2001-06-01", "2001-07-01" }/test = { "2001-05-22", "2001-06-01" }/' \
    -e 's/model { name = "late_mlp", label = "late",/model { name = "late_mlp", label = "late", follow = { stream = "departures" }, monitor = { label_grace = "2d", window = 600000, rollback = true, min_pairs = 500, drift_window = "7d", drift_step = "1d" },/' \
    -e 's/ttl = "6h",/ttl = "6h", as_of_horizon = "3d",/' -e 's/ttl = "7d",/ttl = "7d", as_of_horizon = "9d",/' \
    "$root/examples/flights/flights.lua" > "$defs"
cat >> "$defs" <<'EOF'

-- Live (examples/flights/live.sh): a departure is published at its scheduled time.
stream {
  name = "departures", time_field = "date",
  fields = { id = "text", date = "timestamp", distance = "float", origin = "text", destination = "text" },
  duplicate_window = "2h", offline_retention = "60d", clock = "replay",
}
view {
  name = "route_departures", version = 1, entity = "route", stream = "departures", ttl = "1d",
  features = { count { "departures_24h", window = "24h" } },
}
-- late_mlp's second version: a wider MLP, trained under its own name and imported.
model { name = "late_mlp_wide", label = "late", kind = "mlp", hidden = { 64, 32 }, epochs = 4,
        batch_size = 1024, learning_rate = 0.003, seed = 11, split = split }
EOF
grep -q 'follow = { stream = "departures" }, monitor = {' "$defs" || { echo "could not edit flights.lua" >&2; exit 2; }

# The history (before the period) for the features and training; the period with flight ids.
history="$data_dir/history.csv.gz"
period="$data_dir/period.csv.gz"
echo "== preparing the data: history before $from, the period [$from, $to) with flight ids"
{ zcat "$csv" || true; } | awk -F, -v from="$from" 'NR == 1 || $1 < from' | gzip -1 > "$history"
{ zcat "$csv" || true; } | awk -F, -v from="$from" -v to="$to" -v OFS=, \
  'NR == 1 { print $0, "id"; next } $1 >= from && $1 < to { print $0, "F" NR }' | gzip -1 > "$period"

echo "== starting node (data in $data_dir, RPC on $rpc)"
"$bin" node --data-dir "$data_dir/node" --rpc "$rpc" --definitions "$defs" \
  > "$data_dir/node.log" 2>&1 &
node_pid=$!
cleanup() { kill -TERM $node_pid 2>/dev/null && wait $node_pid 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 200); do "$bin" status --rpc "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin" status --rpc "$rpc" >/dev/null || { echo "node did not start:"; cat "$data_dir/node.log"; exit 1; }

echo "== ingesting the history"
"$bin" ingest --replay --quiet --rpc "$rpc" --stream flights "$history"
for _ in $(seq 600); do
  "$bin" status --json --rpc "$rpc" | tr -d ' \n' | grep -q '"lag":[1-9]' || break
  sleep 1
done

echo "== training late_mlp, late_mlp_wide and late_logistic (train Jan-Apr, validate and test May)"
for m in late_mlp late_mlp_wide late_logistic; do
  "$bin" train "$m" --quiet --rpc "$rpc"
done
latest() { "$bin" models list --json --rpc "$rpc" | tr -d ' \n' | sed -E "s/.*\"name\":\"$1\",\"production\":[^,]*,\"versions\":\[([^]]*)\].*/\1/" | grep -o '"version":[0-9]*' | tail -1 | cut -d: -f2; }
"$bin" models promote late_mlp "$(latest late_mlp)" --rpc "$rpc"
"$bin" models export late_mlp_wide "$data_dir/wide.pt" -v "$(latest late_mlp_wide)" --rpc "$rpc"
# The bad canary: the wide MLP upside down (1 - p), as a model trained with flipped labels.
# (From a file: TorchScript compiles the module from its source.)
cat > "$data_dir/upside_down.py" <<'PY'
import sys, torch
class UpsideDown(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
    def forward(self, x):
        return 1 - self.m(x)
torch.jit.script(UpsideDown(torch.jit.load(sys.argv[1]))).save(sys.argv[2])
PY
/usr/bin/python3 "$data_dir/upside_down.py" "$data_dir/wide.pt" "$data_dir/upside-down.pt"
"$bin" models import late_mlp "$data_dir/upside-down.pt" --label late --rpc "$rpc"
"$bin" models promote late_mlp "$(latest late_mlp)" --stage canary --share 0.2 --rpc "$rpc"
# The logistic regression as late_mlp's shadow: its artifact imported as a late_mlp version.
"$bin" models export late_logistic "$data_dir/logistic.pt" -v "$(latest late_logistic)" --rpc "$rpc"
"$bin" models import late_mlp "$data_dir/logistic.pt" --label late --rpc "$rpc"
"$bin" models promote late_mlp "$(latest late_mlp)" --stage shadow --rpc "$rpc"
"$bin" models show late_mlp --rpc "$rpc"

echo "== replaying [$from, $to) at ${speedup}x: departures at departure, flights at arrival"
"$bin" replay --rpc "$rpc" --definitions "$defs" --stream departures --stream flights \
  --from "$from" --to "$to" --speedup "$speedup" --every 5 --model late_mlp "$period"

echo "== status (live quality: the arrivals of the period joined to the predictions logged at departure)"
joined() { "$bin" status --json --rpc "$rpc" | tr -d ' \n' | grep -o '"joined":[0-9]*' | head -1; }
prev=""
for _ in $(seq 30); do  # until the monitor has read the last arrivals (no new pair in 2 s)
  now=$(joined); [ -n "$now" ] && [ "$now" = "$prev" ] && break
  prev=$now; sleep 2
done
"$bin" status --rpc "$rpc" | grep -E "^(model|late_|follow|  late_|quality|  v|  canary|  drift|    )" || true
echo "== the registry: the bad canary is a candidate again"
"$bin" models list --rpc "$rpc" | grep -E "late_mlp|version" || true
echo "== alerts (tessera alerts)"
"$bin" alerts --rpc "$rpc" || true

echo "== production's live AUC beside its offline AUC on June's point-in-time dataset"
prod=$("$bin" models list --json --rpc "$rpc" | tr -d ' \n' | sed -E 's/.*"name":"late_mlp","production":([0-9]+).*/\1/')
"$bin" dataset build late --from "$from" --to "$to" -o "$data_dir/period-dataset.csv" --quiet --rpc "$rpc"
"$bin" models export late_mlp "$data_dir/production.pt" -v "$prod" --rpc "$rpc"
"$bin" models show late_mlp -v "$prod" --json --rpc "$rpc" > "$data_dir/production.json"
"$bin" status --json --rpc "$rpc" > "$data_dir/status.json"
/usr/bin/python3 - "$data_dir" "$prod" <<'PY'
import csv, json, math, sys
import numpy as np, torch
d, prod = sys.argv[1], int(sys.argv[2])
inputs = json.load(open(d + "/production.json"))["inputs"]
rows = list(csv.reader(open(d + "/period-dataset.csv")))
col = {c: i for i, c in enumerate(rows[0])}
x = np.array([[float(r[col[c]]) if r[col[c]] != "" else math.nan for c in inputs] for r in rows[1:]],
             dtype=np.float32)
y = np.array([1.0 if r[col["label"]] in ("1", "true", "1.0") else 0.0 for r in rows[1:]])
p = torch.jit.load(d + "/production.pt")(torch.from_numpy(x)).detach().numpy().astype(np.float64)
order = np.argsort(p, kind="mergesort")
ranks = np.empty(len(p))
ps = p[order]
i = 0
while i < len(ps):  # average ranks over ties (Mann-Whitney)
    j = i
    while j + 1 < len(ps) and ps[j + 1] == ps[i]:
        j += 1
    ranks[order[i:j + 1]] = (i + j) / 2 + 1
    i = j + 1
pos = y.sum(); neg = len(y) - pos
auc = (ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)
live = None
for q in json.load(open(d + "/status.json")).get("quality", []):
    for a in q["arms"]:
        if a["stage"] == "production" and a["version"] == prod:
            live = a
print(f"offline: late_mlp v{prod} on the period's {len(y):,} examples (point-in-time): AUC {auc:.4f}")
if live:
    lo, hi = live["auc_interval"]
    inside = lo <= auc <= hi
    print(f"live:    the last {live['pairs']:,} labelled predictions: AUC {live['auc']:.4f} "
          f"[{lo:.4f}, {hi:.4f}] -> the offline AUC is {'inside' if inside else 'OUTSIDE'} the live interval")
PY
echo "== skew: 1,000 logged vectors recomputed from the offline log (what a training set holds)"
"$bin" skew late_mlp --sample 1000 --rpc "$rpc" | head -20 || true
echo "== the last predictions in the prediction log"
"$bin" predictions tail late_mlp -n 3 --rpc "$rpc" || true
if [ "$keep" = 1 ]; then
  echo "== node running (log: $data_dir/node.log); Ctrl-C stops it"
  wait $node_pid
fi
