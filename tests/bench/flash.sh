#!/bin/bash
# Firmware flash throughput against the raw device channel, on the same
# bytes in the same run (not run by ctest): a SIZE_MIB bundle (default 512)
# flashed into a virtual unit served on TCP loopback, and the same number of
# bytes sent as FW_WRITE requests to a unit that only acknowledges them.
#
#   tests/bench/flash.sh [BUILD_DIR] [SIZE_MIB]
#
# The work folder is made under $TMPDIR and needs about three times the size.
set -euo pipefail

BUILD=${1:-build}
MB=${2:-512}
TOOL=$BUILD/tests/bk-flash-bench
[ -x "$TOOL" ] || { echo "flash.sh: $TOOL not found (build the tree first)" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-flash.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$TOOL" "$W" "$MB"
