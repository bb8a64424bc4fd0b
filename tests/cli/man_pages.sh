#!/usr/bin/env bash
# Every man page renders without warnings (mandoc -Tlint -Wwarning).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
for page in "${BK_TEST_SOURCE_DIR:?}"/man/*.[1-8]; do
  check "$(basename "$page") lints clean" sh -c "mandoc -Tlint -Wwarning '$page' >'$tmp/lint' 2>&1; s=\$?; cat '$tmp/lint'; [ \$s -eq 0 ] && [ ! -s '$tmp/lint' ]"
done
check "aibo-restore.1 documents every exit status" sh -c "for c in 0 1 2 3 4 5 6 7 8 9 10 11 12; do grep -q \"^\\.It \$c\$\" '${BK_TEST_SOURCE_DIR}/man/aibo-restore.1' || { echo missing \$c; exit 1; }; done"
finish
