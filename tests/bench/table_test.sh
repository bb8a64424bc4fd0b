#!/bin/bash
# The judging half of tests/bench/run.sh on fixed rows: targets met, below,
# under half (the --check alarm), a missing peer, a failed benchmark.
set -euo pipefail
RUN=${BK_TEST_SOURCE_DIR:-$(dirname "$0")/../..}/tests/bench/run.sh
W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-table.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
t=$(printf '\t')

cat >"$W/ok.tsv" <<ROWS
pack 32 MiB${t}300.0${t}MB/s${t}tar | zstd -3 | age${t}200.0${t}1.50${t}1.25${t}9000${t}4000
pack 32 MiB${t}300.0${t}MB/s${t}restic backup${t}missing${t}-${t}3.00${t}9000${t}-
channel 32 MiB${t}700.0${t}MB/s${t}libsodium AEAD, one core${t}1600.0${t}0.44${t}0.60${t}5000${t}-
age encrypt${t}900.0${t}MiB/s${t}age -r${t}1000.0${t}0.90${t}-${t}3000${t}8000
repair job 16 MiB + fw 8 MiB${t}10.00${t}s${t}backup + firmware flash + restore${t}9.50${t}0.95${t}0.91${t}20000${t}-
ROWS
out=$(bash "$RUN" --check --table "$W/ok.tsv") || fail "no alarm expected: $out"
grep -q '^pack 32 MiB .*tar | zstd -3 | age .* 1\.50 .*>= 1\.25 .*met' <<<"$out" || fail "met row: $out"
grep -q '^pack 32 MiB .*restic backup .*missing' <<<"$out" || fail "missing row: $out"
grep -q '^channel 32 MiB .* 0\.44 .*>= 0\.60 .*below' <<<"$out" || fail "below row: $out"
grep -q '^age encrypt .* 0\.90 .* - ' <<<"$out" || fail "no-target row: $out"
grep -q '^repair job .* 0\.95 .*met' <<<"$out" || fail "repair row: $out"
! grep -q "^ALARM" <<<"$out" || fail "unexpected alarm: $out"

# Under half the target: an alarm with --check (exit 1), a note without.
cp "$W/ok.tsv" "$W/alarm.tsv"
printf 'flash 32 MiB, verified\t50.0\tMB/s\traw channel\t200.0\t0.25\t0.80\t7000\t-\n' >>"$W/alarm.tsv"
rc=0
out=$(bash "$RUN" --check --table "$W/alarm.tsv") || rc=$?
[ "$rc" = 1 ] || fail "--check should exit 1 on a ratio under half its target (got $rc)"
grep -q '^ALARM: flash 32 MiB, verified vs raw channel: ratio 0.25, target 0.80' <<<"$out" ||
	fail "alarm line: $out"
out=$(bash "$RUN" --table "$W/alarm.tsv") || fail "without --check the table must not fail"
grep -q '^note: flash 32 MiB, verified' <<<"$out" || fail "note line: $out"

# A benchmark that failed, or printed a ratio that is not a number.
cp "$W/ok.tsv" "$W/failed.tsv"
printf 'wire\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED\n' >>"$W/failed.tsv"
rc=0
out=$(bash "$RUN" --check --table "$W/failed.tsv") || rc=$?
[ "$rc" = 1 ] || fail "--check should exit 1 on a failed benchmark (got $rc)"
grep -q '^ALARM: wire: the benchmark failed' <<<"$out" || fail "failed line: $out"
cp "$W/ok.tsv" "$W/nan.tsv"
printf 'wire backup pull 16 MiB\t50.0\tMiB/s\tpack\t0\tinf\t0.80\t-\t-\n' >>"$W/nan.tsv"
rc=0
bash "$RUN" --check --table "$W/nan.tsv" >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "--check should exit 1 on a ratio that is not a number (got $rc)"
echo "ok"
