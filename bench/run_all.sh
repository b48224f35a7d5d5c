#!/usr/bin/env bash
# Runs every benchmark ROUNDS times (default 3), one after another, into bench/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
out=bench/last-run.txt
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(git rev-parse --short HEAD)"
  for r in $(seq "$rounds"); do
    echo "## round $r"
    build/bench/bench_ingest 1000000 2>&1 | grep -v '\] \[info\]\|^20..-..-..T'
    build/bench/bench_freshness 6 2>&1 | grep -v '\] \[info\]\|^20..-..-..T'
    build/bench/bench_read 20000 2>&1 | grep -v '\] \[info\]\|^20..-..-..T\|rps='
    build/bench/bench_cluster 10 300000 2>&1 | grep -v '\] \[info\]\|^20..-..-..T'
    build/bench/bench_predict 5000 5 2>&1 | grep -v '\] \[info\]\|^20..-..-..T'
  done
} | tee "$out"
