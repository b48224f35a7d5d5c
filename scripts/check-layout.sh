#!/usr/bin/env bash
# Fails when an include points up the layers (../shared/DESIGN.md, "Layout"):
#   runtime/ <- cluster/ <- actors/<family>/ <- node/ <- cli/
# A folder may include its own files, lower layers', and public headers (include/tessera/).
#   scripts/check-layout.sh [ROOT]   (default: this checkout)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
bad=0
check() {  # folder, pattern of the folders it must not include
  local dir=$1 forbidden=$2
  [ -d "$dir" ] || return 0
  local hits
  hits=$(grep -rnE "#include \"($forbidden)" "$dir" --include='*.h' --include='*.cc' || true)
  if [ -n "$hits" ]; then
    echo "$dir/ includes a higher layer (allowed: lower layers only):"
    echo "$hits" | sed 's/^/  /'
    bad=1
  fi
}
check runtime 'cluster/|actors/|node/|cli/|client/'
check cluster 'actors/|node/|cli/|client/'
check actors 'node/|cli/'
check node 'cli/'
if [ "$bad" = 0 ]; then echo "layout: every include points down the layers"; fi
exit $bad
