#!/usr/bin/env bash
# Formats every C++ file of the project with clang-format (.clang-format: Google style, 100
# columns). `scripts/format.sh --check` changes nothing and fails listing the files that are not
# formatted (CI runs it first, in scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format: clang-format missing (scripts/setup.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files -- 'src/*.cpp' 'src/*.h' 'tests/*.cpp' 'tests/*.h' 'bench/*.cpp' 'bench/*.h')
if [ "${1:-}" = "--check" ]; then
  if ! out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
    echo "format: not clang-formatted (run scripts/format.sh):" >&2
    grep -oE '^[^:]+\.(cpp|h):[0-9]+' <<<"$out" | cut -d: -f1 | sort -u | sed 's/^/  /' >&2
    exit 1
  fi
  echo "format: ${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
