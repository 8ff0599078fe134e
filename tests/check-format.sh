#!/usr/bin/env bash
# Fails if any tracked C source or header differs from .clang-format's output.
set -eu
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top"
mapfile -t files < <(git ls-files -- '*.c' '*.h')
if [ ${#files[@]} -eq 0 ]; then
    echo "format: no C files"
    exit 0
fi
if clang-format --style=file --dry-run -Werror "${files[@]}" 2>/tmp/kl-format.$$; then
    echo "format: ${#files[@]} C files match .clang-format"
    rm -f /tmp/kl-format.$$
    exit 0
fi
grep -E '^[^ ]+:[0-9]+:[0-9]+: error' /tmp/kl-format.$$ | cut -d: -f1 | sort -u | sed 's/^/format: differs from clang-format (run clang-format -i): /'
rm -f /tmp/kl-format.$$
exit 1
