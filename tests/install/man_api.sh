#!/usr/bin/env bash
# Every function of the public headers is documented: it is named in the
# NAME section (.Nm) of a section 3 page, and every page names its header.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
inc=$BK_TEST_SOURCE_DIR/libbackup/include/libbackup
man=$BK_TEST_SOURCE_DIR/man
# Function names declared with BK_EXTERN (the declaration may span lines).
for h in "$inc"/*.h; do
  grep -v '^#' "$h" | tr '\n' ' ' | grep -o 'BK_EXTERN[^;(]*(' | sed 's/($//; s/.*[ *]//' >"$tmp/$(basename "$h").fns" || true
done
cat "$man"/*.3 | sed -n 's/^\.Nm \([A-Za-z0-9_]*\).*/\1/p' | sort -u >"$tmp/documented"
for h in "$inc"/*.h; do
  name=$(basename "$h")
  missing=$(sort -u "$tmp/$name.fns" | comm -23 - "$tmp/documented" | tr '\n' ' ')
  check "every function of $name has a man page" sh -c "[ -z '$missing' ] || { echo 'undocumented: $missing'; exit 1; }"
done
check "the functions were found" test "$(cat "$tmp"/*.fns | wc -l)" -gt 50
for page in "$man"/bk_*.3; do
  check "$(basename "$page") names its header" grep -q '^\.In libbackup/' "$page"
done
finish
