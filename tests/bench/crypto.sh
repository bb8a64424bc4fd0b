#!/bin/bash
# Throughput of our age encryption and decryption against the age CLI on
# the same file in the same run (not run by ctest).
#
#   tests/bench/crypto.sh [BUILD_DIR]
#
# BK_BENCH_MB sets the file size (default 1024 MiB); the work folder is made
# under $TMPDIR (it needs about three times the file size).
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

# Runs a command, prints its wall time in nanoseconds.
timed() {
	local t0 t1
	t0=$(date +%s%N)
	"$@"
	t1=$(date +%s%N)
	echo $((t1 - t0))
}
mbps() { awk -v mb="$MB" -v ns="$1" 'BEGIN { printf "%.1f", mb / (ns / 1e9) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

ours_enc=$(timed "$TOOL" encrypt -r "$R" -o "$W/ours.age" "$W/plain")
age_enc=$(timed age -r "$R" -o "$W/age.age" "$W/plain")
ours_dec=$(timed sh -c '"$0" decrypt -i "$1" "$2" > /dev/null' "$TOOL" "$W/id.txt" "$W/age.age")
age_dec=$(timed sh -c 'age -d -i "$0" "$1" > /dev/null' "$W/id.txt" "$W/ours.age")

echo "file: $MB MiB"
printf 'encrypt: ours %s MB/s, age %s MB/s, ratio ours/age %s\n' \
	"$(mbps "$ours_enc")" "$(mbps "$age_enc")" "$(ratio "$ours_enc" "$age_enc")"
printf 'decrypt: ours %s MB/s, age %s MB/s, ratio ours/age %s\n' \
	"$(mbps "$ours_dec")" "$(mbps "$age_dec")" "$(ratio "$ours_dec" "$age_dec")"
