#!/usr/bin/env bash
# Channel benchmark: the Noise device channel over TCP loopback against
# libsodium's single-core AEAD and a raw TCP copy, in the same run.
# usage: tests/bench/channel.sh [BUILD_DIR] [MIB]   (defaults: build, 1024)
# Target: the channel at least 0.6 x the single-core AEAD. With
# BK_BENCH_ROWS=FILE, one tab-separated row per figure is also appended to
# FILE (see tests/bench/README.md for the columns).
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
cmake --build "$build" --target bk-bench-channel -j "$(nproc)" >/dev/null
if [ -z "${BK_BENCH_ROWS:-}" ]; then
	exec "$build/tests/bk-bench-channel" "$mib"
fi
out=$(mktemp "${TMPDIR:-/tmp}/bk-bench-channel.XXXXXX")
trap 'rm -f "$out" "$out.rss"' EXIT
/usr/bin/time -f %M -o "$out.rss" "$build/tests/bk-bench-channel" "$mib" | tee "$out"
# figure LABEL: the first number after LABEL on its line of the output.
figure() {
	awk -v l="$1" 'index($0, l) == 1 { $0 = substr($0, length(l) + 1); print $1; exit }' "$out"
}
aead=$(figure "libsodium ChaCha20-Poly1305, one core")
raw=$(figure "raw TCP loopback copy")
chan=$(figure "Noise channel over TCP loopback (vs AEAD)")
for v in "$aead" "$raw" "$chan"; do
	[[ $v =~ ^[0-9.]+$ ]] || { echo "channel.sh: cannot read the figures above" >&2; exit 1; }
done
rss=$(cat "$out.rss")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Peak RSS is the whole program's (both ends of the channel, in two threads).
printf '%s\t%s\tMB/s\t%s\t%s\t%s\t%s\t%s\t%s\n' "channel $mib MiB" "$chan" \
	"libsodium AEAD, one core" "$aead" "$(ratio "$chan" "$aead")" 0.60 "$rss" - >>"$BK_BENCH_ROWS"
printf '%s\t%s\tMB/s\t%s\t%s\t%s\t%s\t%s\t%s\n' "channel $mib MiB" "$chan" \
	"raw TCP loopback" "$raw" "$(ratio "$chan" "$raw")" - "$rss" - >>"$BK_BENCH_ROWS"
