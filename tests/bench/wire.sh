#!/bin/bash
# Backup pull and restore push over TCP loopback against `pack` of the same
# memory folder and the bare Noise channel (bk-bench-channel), all measured
# in the same run, with peak RSS, one unit against four in parallel (not run
# by ctest).
#
#   tests/bench/wire.sh [BUILD_DIR] [MIB]
#
# MIB (or BK_BENCH_MB) sets the memory size (default 1024 MiB; four units of
# a quarter each for the parallel run). The work folder is made under
# $TMPDIR and needs about four times the size. Targets: backup and restore
# at least 0.8 x the lower of the channel and pack; four units at once at
# least 1.6 x one. The machine may be shared: compare ratios of one run.
set -euo pipefail

BUILD=${1:-build}
AR=$BUILD/cli/aibo-restore
VDEV=$BUILD/device/virtual/aibo-vdev
MB=${2:-${BK_BENCH_MB:-1024}}
[ -x "$AR" ] && [ -x "$VDEV" ] || { echo "wire.sh: build the tree first ($BUILD)" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-wire.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
export HOME=$W XDG_STATE_HOME=$W/state
"$VDEV" pki init "$W/lab" >/dev/null
export AIBO_RESTORE_CONFIG=$W/lab/config

serve() { # serve DIR: prints the URI
	"$VDEV" serve "$1" --listen tcp:127.0.0.1:0 >"$1.out" 2>"$1.err" &
	pids+=($!)
	for _ in $(seq 200); do grep -q '^listening' "$1.out" 2>/dev/null && break; sleep 0.05; done
	sed -n 's/^listening on //p' "$1.out"
}
# rss_time OUT CMD...: runs CMD, writes "seconds peak_kib" to OUT.
rss_time() {
	local out=$1; shift
	/usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null
}
mbps() { python3 -c "import sys; print('%.1f' % ($1 / 1048576 / max($2, 1e-6)))"; }

"$VDEV" create "$W/src" --pki "$W/lab" --serial BENCH-SRC --memory "${MB}M" >/dev/null
"$VDEV" create "$W/dst" --pki "$W/lab" --serial BENCH-DST --fresh >/dev/null
bytes=$(du -sb "$W/src/memory" | cut -f1)
src=$(serve "$W/src")
dst=$(serve "$W/dst")

rss_time "$W/t.pack" "$AR" pack --serial BENCH-SRC --model ERS-1000 --fw-version 3.0.0 \
	--schema 2 -o "$W/pack.aibk" "$W/src/memory"
rss_time "$W/t.backup" "$AR" --json backup "$src" -o "$W/pull.aibk"
"$AR" --json backup "$src" -o "$W/pull2.aibk" >"$W/pull.json"
rss_time "$W/t.restore" "$AR" restore "$dst" "$W/pull.aibk"
# The bare channel, same size, same moment.
chan=""
if [ -x "$BUILD/tests/bk-bench-channel" ]; then
	chan=$("$BUILD/tests/bk-bench-channel" "$MB" |
		sed -n 's/^Noise channel over TCP loopback (vs AEAD) *\([0-9.]*\).*/\1/p')
	# MB/s (10^6) to MiB/s.
	chan=$(python3 -c "print('%.1f' % ($chan * 1e6 / 1048576))")
fi
"$AR" --json restore "$dst" "$W/pull.aibk" --overwrite >"$W/push.json" || true
file=$(stat -c %s "$W/pull.aibk")
read -r tp rp <"$W/t.pack"
read -r tb rb <"$W/t.backup"
read -r tr rr <"$W/t.restore"
xfer=$(python3 -c "import json; d=json.load(open('$W/pull.json'))['transfer']; print(d['seconds'])")

echo "memory: $((bytes / 1048576)) MiB in files, backup file $((file / 1048576)) MiB"
printf '%-34s %8s s %9s MiB/s (memory) %8s KiB peak RSS\n' \
	"pack (terminal, same tree)" "$tp" "$(mbps "$bytes" "$tp")" "$rp"
printf '%-34s %8s s %9s MiB/s (memory) %8s KiB peak RSS\n' \
	"backup pull (unit makes it)" "$tb" "$(mbps "$bytes" "$tb")" "$rb"
printf '%-34s %8s s %9s MiB/s (file)\n' \
	"  of which the channel transfer" "$xfer" "$(mbps "$file" "$xfer")"
printf '%-34s %8s s %9s MiB/s (memory) %8s KiB peak RSS\n' \
	"restore push (unit commits)" "$tr" "$(mbps "$bytes" "$tr")" "$rr"
[ -n "$chan" ] && printf '%-34s %10s %9s MiB/s\n' "Noise channel alone (loopback)" "" "$chan"
python3 - "$(mbps "$bytes" "$tp")" "${chan:-0}" "$(mbps "$bytes" "$tb")" "$(mbps "$bytes" "$tr")" <<'PY'
import sys
pack, chan, pull, push = map(float, sys.argv[1:])
ref = min(pack, chan) if chan > 0 else pack
what = "pack" if ref == pack else "channel"
for name, v in (("backup", pull), ("restore", push)):
    print("%-34s %9.2f x %s (target >= 0.80): %s" % (name + " / reference", v / ref, what,
          "met" if v >= 0.8 * ref else "NOT met"))
PY

# Four units of a quarter each, in parallel.
q=$((MB / 4))
args=(); rargs=()
for i in 1 2 3 4; do
	"$VDEV" create "$W/p$i" --pki "$W/lab" --serial BENCH-P$i --memory "${q}M" --seed $i >/dev/null
	"$VDEV" create "$W/q$i" --pki "$W/lab" --serial BENCH-Q$i --fresh >/dev/null
	args+=("$(serve "$W/p$i")")
done
mkdir "$W/four"
rss_time "$W/t.four" "$AR" --json backup "${args[@]}" -O "$W/four"
for i in 1 2 3 4; do rargs+=("$(serve "$W/q$i")" "$(ls "$W/four"/*.aibk | sed -n "${i}p")"); done
rss_time "$W/t.fourr" "$AR" restore "${rargs[@]}"
read -r t4 r4 <"$W/t.four"
read -r t4r r4r <"$W/t.fourr"
b4=$(du -scb "$W"/p?/memory | tail -1 | cut -f1)
printf '%-34s %8s s %9s MiB/s (memory) %8s KiB peak RSS\n' \
	"backup pull, four units at once" "$t4" "$(mbps "$b4" "$t4")" "$r4"
printf '%-34s %8s s %9s MiB/s (memory) %8s KiB peak RSS\n' \
	"restore push, four units at once" "$t4r" "$(mbps "$b4" "$t4r")" "$r4r"
python3 - "$(mbps "$bytes" "$tb")" "$(mbps "$b4" "$t4")" "$(mbps "$bytes" "$tr")" "$(mbps "$b4" "$t4r")" <<'PY'
import sys
one_b, four_b, one_r, four_r = map(float, sys.argv[1:])
for name, one, four in (("backup", one_b, four_b), ("restore", one_r, four_r)):
    print("%-34s %9.2f x one unit (target >= 1.60): %s" % (name + ", four units", four / one,
          "met" if four >= 1.6 * one else "NOT met"))
PY
