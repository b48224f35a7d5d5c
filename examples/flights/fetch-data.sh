#!/usr/bin/env bash
# Obtains flights-3m.csv.gz (3,000,000 real US flights, Jan-Jun 2001) without ../shared:
# downloads the npm package vega-datasets@3.2.1 and converts its Parquet file to CSV.
set -euo pipefail
out=${1:?usage: fetch-data.sh OUTPUT.csv.gz}
command -v npm >/dev/null || { echo "fetch-data: npm is needed (apt-get install npm)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "fetch-data: downloading vega-datasets@3.2.1 from the npm registry" >&2
npm pack --silent vega-datasets@3.2.1 >/dev/null
tar -xzf vega-datasets-3.2.1.tgz package/data/flights-3m.parquet
npm init -y >/dev/null
npm install --silent --no-audit --no-fund hyparquet@1 hyparquet-compressors@1 >/dev/null
cp "$here/fetch-data.mjs" .
node fetch-data.mjs package/data/flights-3m.parquet "$out"
