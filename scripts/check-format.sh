#!/usr/bin/env bash
# Fails when a C++ source differs from what .clang-format makes of it; lists the files.
#   scripts/check-format.sh          check
#   scripts/check-format.sh --fix    rewrite them
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format is missing: bash scripts/install-deps.sh" >&2; exit 2; }
mapfile -t files < <(find actors cli client cluster include node runtime tests bench examples -name '*.cc' -o -name '*.h' 2>/dev/null | sort)
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "not formatted as .clang-format says (fix: bash scripts/check-format.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "format: ${#files[@]} files follow .clang-format"
