#!/usr/bin/env bash
# Fails if any C source or header in the tree differs from .clang-format's output.
set -eu
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top"
files=$(git ls-files -co --exclude-standard -- '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
bad=0
for f in $files; do
    [ -f "$f" ] || continue
    if ! clang-format --style=file "$f" | cmp -s - "$f"; then
        echo "format: $f differs from clang-format (run: clang-format -i $f)"
        bad=1
    fi
done
[ "$bad" = 0 ] && echo "format: all C files match .clang-format"
exit $bad
