#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz one at a time.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]
#
# Builds (when needed) a clang build with ASan, UBSan and libFuzzer in
# $BK_FUZZ_BUILD_DIR (default: $TMPDIR/build-fuzz), then runs each target
# (default: every tests/fuzz/fuzz_<target>.c) for SECONDS on a scratch copy of
# its corpus tests/fuzz/corpora/<target>/, so the committed corpus is never
# changed. After a finding the target is restarted until its time is used
# (at most 5 findings each). Findings of this run (crash-*, leak-*, timeout-*, oom-*) are
# kept in $BK_FUZZ_OUT_DIR (default: $TMPDIR/fuzz-out)/findings/<target>/,
# each run's output in .../logs/<target>.log. Prints one line per target and
# exits 1 when anything was found.
#
# Environment: BK_FUZZ_BUILD_DIR, BK_FUZZ_OUT_DIR, BK_FUZZ_JOBS (build
# parallelism, default 2), BK_FUZZ_MAX_LEN (overrides every target's -max_len).
set -euo pipefail

usage() {
	echo "usage: $0 SECONDS [TARGET...]" >&2
	exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
seconds=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=${TMPDIR:-/tmp}
build=${BK_FUZZ_BUILD_DIR:-$tmp/build-fuzz}
out=${BK_FUZZ_OUT_DIR:-$tmp/fuzz-out}
jobs=${BK_FUZZ_JOBS:-2}

if [[ $# -gt 0 ]]; then
	targets=("$@")
else
	targets=()
	for f in "$here"/fuzz_*.c; do
		t=${f##*/fuzz_}
		targets+=("${t%.c}")
	done
fi
for t in "${targets[@]}"; do
	if [[ ! -f $here/fuzz_$t.c ]]; then
		echo "$0: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2
		exit 2
	fi
	if [[ ! -d $here/corpora/$t ]] || [[ -z $(ls -A "$here/corpora/$t") ]]; then
		echo "$0: target '$t' has no seed corpus (tests/fuzz/corpora/$t)" >&2
		exit 2
	fi
done

echo "build: $build"
echo "output: $out"
if [[ ! -f $build/CMakeCache.txt ]]; then
	CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DBK_FUZZ=ON \
		-DBK_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.configure.log" 2>&1 ||
		{ cat "$build.configure.log" >&2; exit 1; }
fi
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "fuzz-$t"); done
cmake --build "$build" -j"$jobs" "${build_targets[@]}" >"$build.build.log" 2>&1 ||
	{ tail -n 50 "$build.build.log" >&2; exit 1; }

mkdir -p "$out/logs" "$out/findings"
scratch=$(mktemp -d "$tmp/fuzz-scratch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Leaks count as findings; UBSan reports abort (the build does not recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in "${targets[@]}"; do
	bin=$build/tests/fuzz-$t
	[[ -x $bin ]] || bin=$(find "$build" -name "fuzz-$t" -type f -perm -u+x | head -n 1)
	if [[ -z $bin || ! -x $bin ]]; then
		echo "$t: not built" >&2
		status=1
		continue
	fi
	corpus=$scratch/$t/corpus
	findings=$out/findings/$t
	log=$out/logs/$t.log
	rm -rf "$findings"
	mkdir -p "$corpus" "$findings" "$scratch/$t/tmp"
	cp "$here/corpora/$t"/* "$corpus/"
	seeds=$(ls -A "$corpus" | wc -l)
	# -max_len: the largest seed, at least 4 KiB.
	largest=$(find "$corpus" -type f -printf '%s\n' | sort -n | tail -n 1)
	max_len=${BK_FUZZ_MAX_LEN:-$((largest > 4096 ? largest : 4096))}
	: >"$log"
	execs=0
	runs=0
	before=0
	start=$(date +%s)
	while :; do
		left=$((seconds - ($(date +%s) - start)))
		[[ $left -gt 0 ]] || break
		runs=$((runs + 1))
		rc=0
		TMPDIR=$scratch/$t/tmp "$bin" "$corpus" -max_total_time="$left" -max_len="$max_len" \
			-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$findings/" >"$scratch/$t/run.log" 2>&1 || rc=$?
		cat "$scratch/$t/run.log" >>"$log"
		# Executions of this run: the final stats, else the last status line.
		n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t/run.log" |
			tail -n 1 | grep -o '[0-9]*$' || true)
		[[ -n $n ]] || n=$(grep -o '^#[0-9]*' "$scratch/$t/run.log" | tail -n 1 | tr -d '#' || true)
		execs=$((execs + ${n:-0}))
		[[ $rc -ne 0 ]] || break
		found=$(ls -A "$findings" | wc -l)
		# Stop after 5 findings, or when a run found nothing new.
		[[ $found -lt 5 && $found -gt $before ]] || break
		before=$found
	done
	size=$(ls -A "$corpus" | wc -l)
	list=$(cd "$findings" && ls -A | tr '\n' ' ')
	if [[ -n $list ]]; then
		status=1
		echo "$t: $execs executions in ${seconds}s, corpus $size files ($seeds seeds), findings: $list"
	else
		echo "$t: $execs executions in ${seconds}s, corpus $size files ($seeds seeds), findings: none"
	fi
done
exit $status
