#!/usr/bin/env bash
# Memory archives made by other tools (Python's tarfile, zstd, age), with a
# valid statement signed by the lab terminal: a correct one is accepted, each
# hostile one is refused with its code and exit status, and nothing is
# written outside the extraction folder.
set -euo pipefail
. "$(dirname "$0")/../cli/lib.sh"
ar=${AIBO_RESTORE:?}
labtool=${BK_TEST_LAB:?}
here=$(dirname "$0")
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg XDG_STATE_HOME=$tmp/state
unset AIBO_RESTORE_PASSPHRASE || true
cd "$tmp"
"$labtool" pki lab >/dev/null
export AIBO_RESTORE_CONFIG=$tmp/lab/config
depot=$(age-keygen -y lab/depot.identity)

make() { # make KIND: KIND.aibk and its statement
  python3 "$here/mkarchive.py" "$1" "$1.tar" "$1.manifest"
  zstd -q -3 -f "$1.tar" -o "$1.tar.zst"
  age -r "$depot" -o "$1.aibk" "$1.tar.zst"
  "$labtool" sign lab "$1.aibk" "$1.manifest" "$(stat -c %s "$1.tar.zst")"
}

make good
expect_exit 0 "a correct archive by other tools verifies" "$ar" --json verify good.aibk
check "json ok" test "$(json_get out 'd["ok"]')" = True
expect_exit 0 "and extracts" "$ar" extract -C good-out good.aibk
check "its files" cmp good-out/photos/p1.jpg <(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256))*40)')
check "only the domains" test "$(ls -A good-out | tr '\n' ' ')" = "memories personality photos "

hostile() { # hostile KIND EXIT CODE
  local kind=$1 want=$2 code=$3
  make "$kind"
  mkdir -p "w-$kind"
  expect_exit "$want" "$kind: verify refuses (exit $want)" "$ar" --json verify "$kind.aibk"
  check "$kind: code $code" test "$(json_get out 'd["error"]["code"]')" = "$code"
  one_json out && ok "$kind: one JSON object" || bad "$kind: one JSON object"
  expect_exit "$want" "$kind: extract refuses" "$ar" --json extract -C "w-$kind/out" "$kind.aibk"
  check "$kind: extract code $code" test "$(json_get out 'd["error"]["code"]')" = "$code"
  check "$kind: no output folder" test ! -e "w-$kind/out"
  check "$kind: nothing beside it" test -z "$(ls -A "w-$kind")"
  check "$kind: nothing written elsewhere" test ! -e "$tmp/x" -a ! -e "w-$kind/x" -a ! -e /etc/x
}

hostile dotdot 1 archive-unsafe-path
hostile absolute 1 archive-unsafe-path
hostile symlink 1 archive-link
hostile hardlink 1 archive-link
hostile duplicate 1 archive-duplicate
hostile undeclared 1 archive-undeclared-entry
hostile huge 10 limit-exceeded

# Without the statement beside it, a file is refused before any decryption.
rm good.aibk.statement
expect_exit 4 "no statement" "$ar" --json verify good.aibk
check "statement-missing" test "$(json_get out 'd["error"]["code"]')" = statement-missing
finish
