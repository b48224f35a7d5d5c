#!/usr/bin/env bash
# Installs Tessera's client package from a build tree into a temporary prefix, builds
# examples/client against the installed package only (find_package(tessera)), starts a node and
# runs the example against it. Used by the test command (ctest ClientPackage.*).
#   scripts/check-client-example.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
tmp=$(mktemp -d)
node_pid=
cleanup() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in include/tessera/client.h include/tessera/result.h include/tessera/schemas/gateway.capnp \
         include/tessera/schemas/gateway.capnp.h lib/cmake/tessera/tesseraConfig.cmake; do
  [ -e "$tmp/prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
ls "$tmp/prefix"/lib*/libtessera_client.so* >/dev/null
# The example sees only the installed package: no path into this tree.
cmake -S "$root/examples/client" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/example" >/dev/null
"$build/cli/tessera" node --definitions "$root/tests/data/flights-departure.lua" \
  --data-dir "$tmp/node" --rpc 127.0.0.1:0 --log-level warn >"$tmp/node.out" 2>&1 &
node_pid=$!
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on RPC port \([0-9]*\).*/\1/p' "$tmp/node.out")
  [ -n "$port" ] && break
  kill -0 "$node_pid" 2>/dev/null || { cat "$tmp/node.out"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the node did not start"; cat "$tmp/node.out"; exit 1; }
out=$("$tmp/example/tessera_client_example" "127.0.0.1:$port")
echo "$out"
grep -q "accepted 3, rejected 0" <<<"$out"
grep -q "^LAX: .*count_1h=2" <<<"$out"
grep -q "^SFO: .*count_1h=1" <<<"$out"
grep -q "unknown view -> not found" <<<"$out"
echo "client package: installed, example built against it and run"
