#!/bin/bash
# Every benchmark in one run, one table: each figure of ours, the peer
# measured in the same run, their ratio (above 1: ours is better), the
# target ratio and peak RSS.
#
#   tests/bench/run.sh [--quick] [--check] [--only LIST] [--tsv FILE] [-v] [BUILD_DIR]
#
#   --quick      small sizes (16-32 MiB) so that the whole run takes about two
#                minutes on an idle 2-core machine; without it, the sizes the
#                targets are stated for (1 GiB pack and wire, 256 MiB channel
#                and repair, 512 MiB flash: many minutes, several GiB of $TMPDIR)
#   --check      exit 1 if a ratio falls below half its target (a regression
#                alarm: the figures are too noisy for a tighter bound) or a
#                benchmark fails
#   --only LIST  comma-separated subset of: crypto,pack,channel,wire,flash,repair
#   --tsv FILE   also write the rows, tab-separated, to FILE
#   --table FILE run nothing: print the table of rows saved with --tsv (and
#                with --check, judge them)
#   -v           show each benchmark's own output as it runs
#
# Without BUILD_DIR, the tree is configured and built in build-bench at the
# top of the source tree (the project's default optimised build type,
# RelWithDebInfo). A BUILD_DIR given is used as it is (build it first). A
# peer that is not installed (restic, borg) is reported as `missing`.
# Each benchmark's full output is kept in the log folder printed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL=crypto,pack,channel,wire,flash,repair

quick=0 check=0 verbose=0 only=$ALL tsv="" build="" table_only=""
usage() { sed -n '6,7p' "${BASH_SOURCE[0]}" | sed 's/^#  *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--check) check=1 ;;
	--only) [ $# -ge 2 ] || usage; only=$2; shift ;;
	--tsv) [ $# -ge 2 ] || usage; tsv=$2; shift ;;
	--table) [ $# -ge 2 ] || usage; table_only=$2; shift ;;
	-v | --verbose) verbose=1 ;;
	-h | --help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run.sh: unknown option $1" >&2; usage ;;
	*) [ -z "$build" ] || usage; build=$1 ;;
	esac
	shift
done
for b in ${only//,/ }; do
	case ",$ALL," in *",$b,"*) ;; *) echo "run.sh: unknown benchmark $b" >&2; usage ;; esac
done
want() { case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }

if [ "$quick" = 1 ]; then
	crypto_mb=32 pack_mb=32 channel_mb=32 wire_mb=16 flash_mb=32 repair_mb=16 fw_mb=8
else
	crypto_mb=1024 pack_mb=1024 channel_mb=256 wire_mb=1024 flash_mb=512 repair_mb=256 fw_mb=64
fi

# --- The table ------------------------------------------------------------------
# table ROWS: prints the table; with --check, returns 1 on an alarm.
table() {
python3 - "$1" "$check" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
check = sys.argv[2] == "1"
table, alarms = [], []
for r in rows:
    r += ["-"] * (10 - len(r))
    name, value, unit, peer, pvalue, ratio, target, rss, prss, status = r[:10]
    if status == "FAILED":
        pass
    elif pvalue == "missing":
        status = "missing"
    elif target in ("", "-"):
        status = "-"
    elif not all(x.replace(".", "", 1).isdigit() for x in (ratio, target)):
        status = "FAILED"
    elif float(ratio) >= float(target):
        status = "met"
    elif float(ratio) >= float(target) / 2:
        status = "below"
    else:
        status = "ALARM"
        alarms.append("%s vs %s: ratio %s, target %s (alarm below %.2f)"
                      % (name, peer, ratio, target, float(target) / 2))
    if status == "FAILED":
        alarms.append("%s: the benchmark failed or printed no usable ratio" % name)
    table.append([name, value + " " + unit if value != "-" else "-", peer,
                  pvalue + ("" if pvalue in ("-", "missing") else " " + unit),
                  ratio, (">= " + target) if target not in ("", "-") else "-", status,
                  rss, prss])
head = ["figure", "ours", "peer (same run)", "peer", "ratio", "target", "status",
        "RSS KiB", "peer RSS KiB"]
width = [max(len(x[i]) for x in table + [head]) for i in range(len(head))]
right = {1, 3, 4, 7, 8}
def fmt(cells):
    return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, width))).rstrip()
print()
print(fmt(head))
print(fmt(["-" * w for w in width]))
for t in table:
    print(fmt(t))
print()
print("ratio: ours / peer for rates, peer / ours for times and sizes (above 1: ours is better);")
print("status: met, below (under the target), ALARM (under half the target), missing (peer not")
print("installed), - (no target). Ratios are only comparable within one run.")
if alarms:
    print()
    for a in alarms:
        print(("ALARM: " if check else "note: ") + a)
sys.exit(1 if check and alarms else 0)
PY
}

if [ -n "$table_only" ]; then
	table "$table_only"
	exit
fi

# --- The build ------------------------------------------------------------------
if [ -z "$build" ]; then
	build=$ROOT/build-bench
	echo "== building in $build (RelWithDebInfo)"
	cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$build" -j "$(nproc)" --target aibo-restore aibo-vdev aibo-cloudsim \
		bk-test-lab bk-age-tool bk-bench-channel bk-flash-bench >/dev/null
fi
build=$(cd "$build" && pwd)
[ -f "$build/CMakeCache.txt" ] || { echo "run.sh: $build is not a CMake build folder" >&2; exit 2; }
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
sanitize=$(sed -n 's/^BK_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
case $btype in Release | RelWithDebInfo | MinSizeRel) ;; *)
	echo "run.sh: warning: $build is a ${btype:-no-type} build; the ratios mean little" >&2 ;;
esac
[ -z "$sanitize" ] || echo "run.sh: warning: $build is built with sanitizers ($sanitize); the ratios mean little" >&2

W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-run.XXXXXX")
rows=$W/rows.tsv
: >"$rows"
failed=()

# bench NAME COMMAND...: runs one benchmark with BK_BENCH_ROWS set, its output
# in $W/NAME.log; a failure becomes a FAILED row.
bench() {
	local name=$1 t0 rc=0
	shift
	t0=$(date +%s)
	printf '== %-8s %s\n' "$name" "$*" | sed "s|$HERE/|tests/bench/|; s|$build|BUILD|"
	if [ "$verbose" = 1 ]; then
		BK_BENCH_ROWS=$rows "$@" 2>&1 | tee "$W/$name.log" || rc=$?
	else
		BK_BENCH_ROWS=$rows "$@" >"$W/$name.log" 2>&1 || rc=$?
	fi
	if [ "$rc" != 0 ]; then
		failed+=("$name")
		printf '%s\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED\n' "$name" >>"$rows"
		echo "   FAILED (exit $rc); last lines of $W/$name.log:" >&2
		tail -5 "$W/$name.log" | sed 's/^/   | /' >&2
	fi
	printf '   %d s\n' $(($(date +%s) - t0))
}

# wire.sh prints a human table only: read its figures back from that.
wire() {
	"$HERE/wire.sh" "$build" "$wire_mb" >"$W/wire.out" || return
	cat "$W/wire.out"
	python3 - "$W/wire.out" "$wire_mb" >>"$rows" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
mb = sys.argv[2]
def line(label):
    m = re.search(r"^" + re.escape(label) + r"\s+([\d.]+) s\s+([\d.]+) MiB/s.*?(\d+) KiB peak RSS",
                  text, re.M)
    if not m:
        sys.exit("run.sh: wire.sh printed no '%s' line" % label)
    return float(m.group(2)), m.group(3)
pack, pack_rss = line("pack (terminal, same tree)")
pull, pull_rss = line("backup pull (unit makes it)")
push, push_rss = line("restore push (unit commits)")
m = re.search(r"^Noise channel alone \(loopback\)\s+([\d.]+) MiB/s", text, re.M)
chan = float(m.group(1)) if m else 0.0
if chan > 0 and chan < pack:
    ref, ref_name = chan, "Noise channel alone (the lower)"
elif chan > 0:
    ref, ref_name = pack, "pack, same tree (the lower)"
else:
    ref, ref_name = pack, "pack, same tree (no channel figure)"
for name, v, rss in (("backup pull", pull, pull_rss), ("restore push", push, push_rss)):
    print("wire %s %s MiB\t%.1f\tMiB/s\t%s\t%.1f\t%.2f\t0.80\t%s\t-" % (name, mb, v, ref_name, ref, v / ref, rss))
four = {}
for name in ("backup pull", "restore push"):
    try:
        four[name] = line(name + ", four units at once")
    except SystemExit:
        pass
for name, one in (("backup pull", pull), ("restore push", push)):
    if name in four:
        v, rss = four[name]
        print("wire %s, 4 units x %d MiB\t%.1f\tMiB/s\tone unit (%s)\t%.1f\t%.2f\t1.60\t%s\t-"
              % (name, int(mb) // 4, v, name, one, v / one, rss))
PY
}

cd "$W"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
	"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), ${btype:-no type} build"
want crypto && BK_BENCH_MB=$crypto_mb bench crypto "$HERE/crypto.sh" "$build"
want pack && bench pack "$HERE/pack.sh" "$build" "$pack_mb"
want channel && bench channel "$HERE/channel.sh" "$build" "$channel_mb"
want wire && bench wire wire "(tests/bench/wire.sh BUILD $wire_mb)"
want flash && bench flash "$HERE/flash.sh" "$build" "$flash_mb"
want repair && BK_BENCH_FW_MB=$fw_mb bench repair "$HERE/repair.sh" "$build" "$repair_mb"
[ -z "$tsv" ] || cp "$rows" "$tsv"

rc=0
table "$rows" || rc=$?
echo "logs: $W"
[ "${#failed[@]}" = 0 ] || { echo "run.sh: failed: ${failed[*]}" >&2; exit 1; }
exit "$rc"
