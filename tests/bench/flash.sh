#!/bin/bash
# Firmware flash throughput against the raw device channel, on the same
# bytes in the same run (not run by ctest): a SIZE_MIB bundle (default 512)
# flashed into a virtual unit served on TCP loopback, and the same number of
# bytes sent as FW_WRITE requests to a unit that only acknowledges them.
#
#   tests/bench/flash.sh [BUILD_DIR] [SIZE_MIB]
#
# The work folder is made under $TMPDIR and needs about three times the size.
# Target: the verified flash (terminal check of the bundle, the writes, the
# unit's FW_FINISH check and FW_ACTIVATE) at least 0.8 x the raw channel.
# Also printed: the ceiling the design sets (two single-core BLAKE2b-512
# passes in series, measured in the same run) against the raw channel.
# With BK_BENCH_ROWS=FILE, one tab-separated row per figure is also appended
# to FILE (see tests/bench/README.md for the columns).
set -euo pipefail

BUILD=${1:-build}
MB=${2:-512}
TOOL=$BUILD/tests/bk-flash-bench
[ -x "$TOOL" ] || { echo "flash.sh: $TOOL not found (build the tree first)" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-flash.XXXXXX")
trap 'rm -rf "$W"' EXIT
if [ -z "${BK_BENCH_ROWS:-}" ]; then
	"$TOOL" "$W" "$MB"
	exit 0
fi
/usr/bin/time -f %M -o "$W/rss" "$TOOL" "$W" "$MB" | tee "$W/out"
# figure LABEL: the first number after LABEL on its line of the output.
figure() {
	awk -v l="$1" 'index($0, l) == 1 { $0 = substr($0, length(l) + 1); print $1; exit }' "$W/out"
}
raw=$(figure "raw channel:")
write=$(figure "flash, preflight+write:")
verified=$(figure "flash, verified:")
e2e=$(figure "flash, end to end:")
ceiling=$(figure "ceiling (2 passes):")
for v in "$raw" "$write" "$verified" "$e2e" "$ceiling"; do
	[[ $v =~ ^[0-9.]+$ ]] || { echo "flash.sh: cannot read the figures above" >&2; exit 1; }
done
rss=$(cat "$W/rss")
# row FIGURE VALUE TARGET: against the raw channel, ratio flash/raw.
row() {
	printf '%s\t%s\tMB/s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "raw channel (FW_WRITE sink)" "$raw" \
		"$(awk -v a="$2" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')" "$3" "$rss" - >>"$BK_BENCH_ROWS"
}
row "flash $MB MiB, verified" "$verified" 0.80
row "flash $MB MiB, preflight+write" "$write" -
row "flash $MB MiB, end to end" "$e2e" -
# The design's ceiling: two single-core BLAKE2b-512 passes in series (the
# terminal's check before the first byte, the unit's check as bytes
# arrive), with no transfer cost at all.
row "flash ceiling, 2 x BLAKE2b-512" "$ceiling" -
