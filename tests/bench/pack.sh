#!/bin/bash
# Backup throughput: aibo-restore pack / verify / extract against the same
# work done by standard tools (tar + zstd -3 + age), restic and borg, on one
# deterministic memory tree in the same run (not run by ctest).
#
#   tests/bench/pack.sh [BUILD_DIR] [SIZE_MIB]
#
# The tree is about SIZE_MIB (default 1024): half incompressible photos, half
# compressible JSON records, generated from a fixed seed. The work folder is
# made under $TMPDIR and needs about four times the tree's size. Targets:
# pack at least 1.25 x `tar | zstd -3 | age` and 3 x restic. With
# BK_BENCH_ROWS=FILE, one tab-separated row per figure is also appended to
# FILE (see tests/bench/README.md for the columns). With BK_BENCH_TREE=DIR,
# only the lab and the tree are made, in DIR (for profiling one command).
set -euo pipefail

BUILD=${1:-build}
MB=${2:-1024}
AR=$BUILD/cli/aibo-restore
LAB=$BUILD/tests/bk-test-lab
for t in "$AR" "$LAB"; do
	[ -x "$t" ] || { echo "pack.sh: $t not found (build the tree first)" >&2; exit 2; }
done
for t in age age-keygen zstd tar openssl /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "pack.sh: $t is not installed" >&2; exit 2; }
done

if [ -n "${BK_BENCH_TREE:-}" ]; then
	mkdir -p "$BK_BENCH_TREE"
	W=$(cd "$BK_BENCH_TREE" && pwd)
else
	W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-pack.XXXXXX")
	trap 'rm -rf "$W"' EXIT
fi
cd "$W"
"$LAB" pki lab >/dev/null
export AIBO_RESTORE_CONFIG=$W/lab/config
R=$(age-keygen -y lab/depot.identity)

# --- The tree ------------------------------------------------------------
half=$((MB * 1024 * 1024 / 2))
mkdir -p tree/photos tree/logs tree/personality
echo '{"name":"bench","mood":"calm"}' >tree/personality/state.json
# Photos: a ChaCha20 keystream with a fixed key, in 4 MiB files.
{ openssl enc -chacha20 -nosalt -K "$(printf '%064d' 7)" -iv "$(printf '%032d' 0)" \
	-in /dev/zero 2>/dev/null || true; } | head -c "$half" | split -b 4M -d -a 4 - tree/photos/img-
for f in tree/photos/img-*; do mv "$f" "$f.jpg"; done
# Records: JSON lines from a fixed linear congruential sequence, 8 MiB files.
awk -v total="$half" 'BEGIN {
	x = 12345; n = 0; file = 0; size = 0; out = sprintf("tree/logs/records-%04d.jsonl", file)
	while (n < total) {
		x = (x * 1103515245 + 12345) % 2147483648
		line = sprintf("{\"t\":%d,\"event\":\"%s\",\"room\":%d,\"battery\":%d,\"ok\":true}",
			1700000000 + n / 64, (x % 3 == 0) ? "play" : ((x % 3 == 1) ? "sleep" : "walk"),
			x % 17, 20 + x % 80)
		print line > out
		n += length(line) + 1; size += length(line) + 1
		if (size >= 8388608) { close(out); file++; size = 0; out = sprintf("tree/logs/records-%04d.jsonl", file) }
	}
}'
input=$(du -sb tree | cut -f1)
mib=$(awk -v b="$input" 'BEGIN { printf "%.0f", b / 1048576 }')
drop() { sync; }
if [ -n "${BK_BENCH_TREE:-}" ]; then
	echo "tree: $W/tree ($mib MiB); export AIBO_RESTORE_CONFIG=$W/lab/config"
	exit 0
fi

# run NAME OUTPUT COMMAND...: wall time, peak RSS (KiB), output size.
results=()
run() {
	local name=$1 output=$2; shift 2
	drop
	local t0 t1
	t0=$(date +%s%N)
	/usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>"$W/err" || { echo "pack.sh: $name failed:" >&2; cat "$W/err" >&2; exit 1; }
	t1=$(date +%s%N)
	local size=0
	[ -n "$output" ] && [ -e "$output" ] && size=$(du -sb "$output" | cut -f1)
	results+=("$name#$(( (t1 - t0) / 1000000 ))#$(cat "$W/rss")#$size")
}
missing() { results+=("$1#missing##"); }

# --- Packing ----------------------------------------------------------------
run "pack (aibo-restore)" ours.aibk "$AR" pack -o ours.aibk --serial BENCH-1 --model ERS-1000 --fw-version 1.0.0 tree
run "tar | zstd -3 | age" std.age sh -c "tar -C tree -cf - . | zstd -3 -q -c | age -r '$R' -o std.age"
if command -v restic >/dev/null; then
	export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$PWD/restic-cache
	restic init -q -r restic-repo >/dev/null
	run "restic backup" restic-repo restic -q -r restic-repo backup tree
else
	missing "restic backup"
fi
if command -v borg >/dev/null; then
	export BORG_PASSPHRASE=bench BORG_BASE_DIR=$PWD/borg-home
	borg init -e repokey borg-repo >/dev/null 2>&1
	run "borg create zstd,3" borg-repo borg create --compression zstd,3 borg-repo::a tree
else
	missing "borg create zstd,3"
fi
# --- Verifying --------------------------------------------------------------
run "verify (aibo-restore)" "" "$AR" verify ours.aibk
run "age -d | zstd -d | tar -t" "" sh -c "age -d -i lab/depot.identity std.age | zstd -d -q | tar -t >/dev/null"
# --- Extracting -------------------------------------------------------------
run "extract (aibo-restore)" out-ours "$AR" extract -C out-ours ours.aibk
mkdir out-std
run "age -d | zstd -d | tar -x" out-std sh -c "age -d -i lab/depot.identity std.age | zstd -d -q | tar -C out-std -xf -"
diff -rq out-ours tree >/dev/null || { echo "pack.sh: extracted tree differs" >&2; exit 1; }

printf 'tree: %s MiB (%s bytes; half photos, half records), %s\n' "$mib" "$input" "$(nproc) cores"
printf '%-28s %10s %10s %12s %10s\n' "command" "seconds" "MB/s" "peak RSS" "ratio"
for r in "${results[@]}"; do
	IFS="#" read -r name ms rss size <<<"$r"
	if [ "$ms" = missing ]; then
		printf '%-28s %10s\n' "$name" "missing"
		continue
	fi
	ratio="-"
	[ "$size" -gt 0 ] && ratio=$(awk -v s="$size" -v i="$input" 'BEGIN { printf "%.3f", s / i }')
	printf '%-28s %10.2f %10.1f %9s KiB %10s\n' "$name" "$(awk -v m="$ms" 'BEGIN { print m / 1000 }')" \
		"$(awk -v b="$input" -v m="$ms" 'BEGIN { printf "%.1f", b / 1e6 / (m / 1000) }')" "$rss" "$ratio"
done
echo "ratio: output bytes / tree bytes (packing), extracted bytes / tree bytes (extracting)"

# --- Rows for tests/bench/run.sh ----------------------------------------------
[ -n "${BK_BENCH_ROWS:-}" ] || exit 0
declare -A ms=() kib=() bytes=()
for r in "${results[@]}"; do
	IFS="#" read -r name t k size <<<"$r"
	ms[$name]=$t kib[$name]=$k bytes[$name]=$size
done
mbs() { awk -v b="$input" -v m="$1" 'BEGIN { printf "%.1f", b / 1e6 / (m / 1000) }'; }
# pair FIGURE OURS PEER TARGET: ours against PEER in MB/s, ratio ours/peer.
pair() {
	local fig=$1 ours=$2 peer=$3 target=$4
	if [ "${ms[$peer]}" = missing ]; then
		printf '%s\t%s\tMB/s\t%s\tmissing\t-\t%s\t%s\t-\n' "$fig" "$(mbs "${ms[$ours]}")" \
			"$peer" "$target" "${kib[$ours]}" >>"$BK_BENCH_ROWS"
		return
	fi
	printf '%s\t%s\tMB/s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fig" "$(mbs "${ms[$ours]}")" "$peer" \
		"$(mbs "${ms[$peer]}")" "$(awk -v a="${ms[$ours]}" -v b="${ms[$peer]}" 'BEGIN { printf "%.2f", b / a }')" \
		"$target" "${kib[$ours]}" "${kib[$peer]}" >>"$BK_BENCH_ROWS"
}
pair "pack $mib MiB" "pack (aibo-restore)" "tar | zstd -3 | age" 1.25
pair "pack $mib MiB" "pack (aibo-restore)" "restic backup" 3.00
pair "pack $mib MiB" "pack (aibo-restore)" "borg create zstd,3" -
pair "verify $mib MiB" "verify (aibo-restore)" "age -d | zstd -d | tar -t" -
pair "extract $mib MiB" "extract (aibo-restore)" "age -d | zstd -d | tar -x" -
# Output size: ratio peer bytes / our bytes (above 1: ours is smaller).
printf '%s\t%s\tMiB\t%s\t%s\t%s\t-\t-\t-\n' "pack output size" \
	"$(awk -v b="${bytes["pack (aibo-restore)"]}" 'BEGIN { printf "%.1f", b / 1048576 }')" \
	"tar | zstd -3 | age" \
	"$(awk -v b="${bytes["tar | zstd -3 | age"]}" 'BEGIN { printf "%.1f", b / 1048576 }')" \
	"$(awk -v a="${bytes["pack (aibo-restore)"]}" -v b="${bytes["tar | zstd -3 | age"]}" 'BEGIN { printf "%.2f", b / a }')" \
	>>"$BK_BENCH_ROWS"
