#!/usr/bin/env bash
# The README's main command: install, build, start a node with an embedded NATS server,
# replay the flights data set through it and show real-time features being served.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec bash examples/flights/run.sh "$@"
