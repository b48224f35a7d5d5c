#!/usr/bin/env bash
# Installs the Debian packages Tessera needs, skipping those already present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config git clang-format
      libcaf-dev libcapnp-dev capnproto librocksdb-dev libgflags-dev
      libnats-dev nats-server libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
      liblua5.4-dev libgtest-dev libgmock-dev zlib1g-dev redis-server redis-tools
      libtorch-dev python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
