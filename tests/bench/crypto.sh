#!/bin/bash
# Throughput of our age encryption and decryption against the age CLI on
# the same file in the same run (not run by ctest).
#
#   tests/bench/crypto.sh [BUILD_DIR]
#
# BK_BENCH_MB sets the file size (default 1024 MiB); the work folder is made
# under $TMPDIR (it needs about three times the file size). No target is set
# for these ratios: they are reported, and tests/bench/run.sh shows them.
# With BK_BENCH_ROWS=FILE, one tab-separated row per figure is also appended
# to FILE (see tests/bench/README.md for the columns).
set -euo pipefail

BUILD=${1:-build}
TOOL=$BUILD/tests/bk-age-tool
MB=${BK_BENCH_MB:-1024}
[ -x "$TOOL" ] || { echo "crypto.sh: $TOOL not found (build the tree first)" >&2; exit 2; }
command -v age >/dev/null || { echo "crypto.sh: age is not installed" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-crypto.XXXXXX")
trap 'rm -rf "$W"' EXIT

age-keygen -o "$W/id.txt" 2>/dev/null
R=$(age-keygen -y "$W/id.txt")
head -c "$((MB * 1024 * 1024))" /dev/zero > "$W/plain"

# timed RSS_FILE COMMAND...: runs COMMAND, prints its wall time in
# nanoseconds and writes its peak RSS (KiB) to RSS_FILE.
timed() {
	local t0 t1 out=$1
	shift
	t0=$(date +%s%N)
	/usr/bin/time -f %M -o "$out" "$@"
	t1=$(date +%s%N)
	echo $((t1 - t0))
}
row() { [ -z "${BK_BENCH_ROWS:-}" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BK_BENCH_ROWS"; }
mbps() { awk -v mb="$MB" -v ns="$1" 'BEGIN { printf "%.1f", mb / (ns / 1e9) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

ours_enc=$(timed "$W/rss.oe" "$TOOL" encrypt -r "$R" -o "$W/ours.age" "$W/plain")
age_enc=$(timed "$W/rss.ae" age -r "$R" -o "$W/age.age" "$W/plain")
ours_dec=$(timed "$W/rss.od" sh -c '"$0" decrypt -i "$1" "$2" > /dev/null' "$TOOL" "$W/id.txt" "$W/age.age")
age_dec=$(timed "$W/rss.ad" sh -c 'age -d -i "$0" "$1" > /dev/null' "$W/id.txt" "$W/ours.age")

echo "file: $MB MiB"
printf 'encrypt: ours %s MiB/s, age %s MiB/s, ratio ours/age %s\n' \
	"$(mbps "$ours_enc")" "$(mbps "$age_enc")" "$(ratio "$ours_enc" "$age_enc")"
printf 'decrypt: ours %s MiB/s, age %s MiB/s, ratio ours/age %s\n' \
	"$(mbps "$ours_dec")" "$(mbps "$age_dec")" "$(ratio "$ours_dec" "$age_dec")"
row "age encrypt" "$(mbps "$ours_enc")" MiB/s "age -r" "$(mbps "$age_enc")" \
	"$(ratio "$ours_enc" "$age_enc")" - "$(cat "$W/rss.oe")" "$(cat "$W/rss.ae")"
row "age decrypt" "$(mbps "$ours_dec")" MiB/s "age -d" "$(mbps "$age_dec")" \
	"$(ratio "$ours_dec" "$age_dec")" - "$(cat "$W/rss.od")" "$(cat "$W/rss.ad")"
