#!/usr/bin/env bash
# A/B of two builds on this machine, alternating them so that drift of the VM's speed hits both:
#   bench/ab.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR [rounds=2]
# Runs bench_read 20000, bench_ingest 1000000 and bench_dataset 3000000 (the latter needs the
# flights data, see bench/README.md) from each build, in the order before, after, after, before,
# ...; prints each run's figures under a header naming build and round. Slow (about 20 min for
# two rounds): not part of the test command.
set -uo pipefail
before=$(cd "$1" && pwd) after=$(cd "$2" && pwd) rounds=${3:-2}
run() {  # side, build, round, bench, args...
  local side=$1 build=$2 round=$3 bench=$4
  shift 4
  echo "=== $bench $* — $side ($build), round $round"
  (cd "$build/.." && "$build/bench/$bench" "$@") 2>&1 | grep -v '^\[20' | tail -40
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="before after"; else order="after before"; fi
  for bench in "bench_read 20000" "bench_ingest 1000000" "bench_dataset 3000000"; do
    for side in $order; do
      if [ "$side" = before ]; then b=$before; else b=$after; fi
      run "$side" "$b" "$r" $bench
    done
  done
done
