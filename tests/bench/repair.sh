#!/bin/bash
# The repair job against the separate commands it journals (not run by ctest):
# a full `aibo-restore repair` of a memory on loopback, firmware flash
# included, with its time per step, and in the same run the sum of the
# separate `backup`, `firmware flash` and `restore` commands doing the same
# work on an identical pair of units. Target: the job costs at most 10%
# more than the steps alone.
#
#   tests/bench/repair.sh [BUILD_DIR] [MiB]      (default: build, 256)
#
# BK_BENCH_FW_MB sets the firmware payload (default 64 MiB). With
# BK_BENCH_ROWS=FILE, one tab-separated row per figure is also appended to
# FILE (see tests/bench/README.md for the columns): the ratio there is the
# separate sum over the job's wall time, target 1 / 1.10 = 0.91.
set -euo pipefail

BUILD=${1:-build}
MB=${2:-256}
FW_MB=${BK_BENCH_FW_MB:-64}
AR=$BUILD/cli/aibo-restore
VDEV=$BUILD/device/virtual/aibo-vdev
SIM=$BUILD/tests/cloudsim/aibo-cloudsim
for p in "$AR" "$VDEV" "$SIM"; do
	[ -x "$p" ] || { echo "repair.sh: build the tree first ($p missing)" >&2; exit 2; }
done

W=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-repair.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$W"' EXIT
export HOME=$W XDG_STATE_HOME=$W/state

serve() { # serve NAME CMD...: prints the "listening on" address
	local name=$1; shift
	"$@" >"$W/$name.out" 2>"$W/$name.err" &
	pids+=($!)
	for _ in $(seq 400); do grep -q '^listening' "$W/$name.out" 2>/dev/null && break; sleep 0.05; done
	sed -n 's/^listening on //p' "$W/$name.out"
}
now() { date +%s.%N; }
secs() { python3 -c "print('%.2f' % ($2 - $1))"; }

"$VDEV" pki init "$W/lab" >/dev/null
export AIBO_RESTORE_CONFIG=$W/lab/config
mkdir -p "$W/lab/firmware"
# The firmware payload: a ChaCha20 keystream with a fixed key (incompressible,
# the same every run).
{ openssl enc -chacha20 -nosalt -K "$(printf '%064d' 9)" -iv "$(printf '%032d' 0)" \
	-in /dev/zero 2>/dev/null || true; } | head -c "$((FW_MB << 20))" >"$W/rootfs.img"
"$AR" firmware pack --key "$W/lab/firmware.key" --model ERS-1000 --version 3.2.0 \
	--security-counter 2 --schema 1:3 "$W/rootfs.img" -o "$W/lab/firmware/fw.aifw" >/dev/null

# Two identical pairs: one for the job, one for the separate commands.
for p in J S; do
	"$VDEV" create "$W/old$p" --pki "$W/lab" --serial "OLD-$p" --fw-version 3.2.0 --schema 3 \
		--memory "${MB}M" --seed 7 >/dev/null
	"$VDEV" create "$W/new$p" --pki "$W/lab" --serial "NEW-$p" --fw-version 3.0.0 --schema 2 \
		--fresh >/dev/null
	"$VDEV" cert "$W/old$p" >"$W/old$p.cert"
	"$VDEV" cert "$W/new$p" >"$W/new$p.cert"
	"$SIM" register-unit --db "$W/cloud.db" "$W/old$p.cert" --owner "owner-$p" >/dev/null
	"$SIM" register-unit --db "$W/cloud.db" "$W/new$p.cert" >/dev/null
	"$SIM" add-ticket --db "$W/cloud.db" "T-$p" --old "OLD-$p" >/dev/null
done
bytes=$(du -sb "$W/oldJ/memory" | cut -f1)
AIBO_RESTORE_API_URL=$(serve cloud "$SIM" serve --pki "$W/lab" --db "$W/cloud.db" \
	--listen 127.0.0.1:0 --token-file "$W/lab/api.token")
export AIBO_RESTORE_API_URL
oldJ=$(serve oldJ "$VDEV" serve "$W/oldJ" --listen tcp:127.0.0.1:0)
newJ=$(serve newJ "$VDEV" serve "$W/newJ" --listen tcp:127.0.0.1:0)
oldS=$(serve oldS "$VDEV" serve "$W/oldS" --listen tcp:127.0.0.1:0)
newS=$(serve newS "$VDEV" serve "$W/newS" --listen tcp:127.0.0.1:0)

# The separate commands (the reassignment is an API call either way and is
# left out of both sums' comparison only where noted).
t0=$(now)
"$AR" --json --progress=none backup "$oldS" >"$W/backup.json"
t1=$(now)
"$AR" --progress=none firmware flash "$newS" "$W/lab/firmware/fw.aifw" --yes >/dev/null
t2=$(now)
"$AR" --progress=none reassign --ticket T-S --to "$newS" >/dev/null
t3=$(now)
id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$W/backup.json")
"$AR" --progress=none restore "$newS" "$id" >/dev/null
t4=$(now)
sep_backup=$(secs "$t0" "$t1")
sep_flash=$(secs "$t1" "$t2")
sep_reassign=$(secs "$t2" "$t3")
sep_restore=$(secs "$t3" "$t4")
sep_sum=$(python3 -c "print('%.2f' % ($sep_backup + $sep_flash + $sep_restore))")

# The job.
j0=$(now)
/usr/bin/time -f '%M' -o "$W/rss" "$AR" --json --progress=none repair --ticket T-J \
	--from "$oldJ" --to "$newJ" >"$W/job.json"
j1=$(now)
job_wall=$(secs "$j0" "$j1")
read -r rss <"$W/rss"

python3 - "$W/job.json" "$bytes" "$sep_backup" "$sep_flash" "$sep_reassign" "$sep_restore" \
	"$sep_sum" "$job_wall" "$rss" "$FW_MB" "${BK_BENCH_ROWS:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
mem = int(sys.argv[2])
sb, sf, sr_, srs, ssum, wall = (float(x) for x in sys.argv[3:9])
rss, fw = sys.argv[9], sys.argv[10]
steps = {s["name"]: s["seconds"] for s in r["steps"]}
assert r["state"] == "complete" and r["verification"]["ok"], r
print(f"memory {mem / 1048576:.0f} MiB in files, firmware payload {fw} MiB, loopback TCP")
print(f"{'step':<12}{'job (s)':>10}{'separate (s)':>15}")
for name, sep in [("preflight", None), ("backup", sb), ("firmware", sf), ("reassign", sr_),
                  ("restore", srs), ("identity", None), ("verify", None), ("complete", None)]:
    print(f"{name:<12}{steps[name]:>10.2f}{'' if sep is None else f'{sep:15.2f}'}")
job_core = steps["backup"] + steps["firmware"] + steps["restore"]
print(f"{'job, all steps':<28}{r['seconds']:>10.2f} s (wall {wall:.2f} s, peak RSS {rss} KiB)")
print(f"{'separate backup+flash+restore':<28}{ssum:>10.2f} s")
ratio = wall / ssum
print(f"job wall / separate sum: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%; target <= +10%)")
print(f"job backup+firmware+restore steps / separate: {job_core / ssum:.3f}")
if sys.argv[11]:
    with open(sys.argv[11], "a") as f:
        f.write(f"repair job {mem / 1048576:.0f} MiB + fw {fw} MiB\t{wall:.2f}\ts\t"
                f"backup + firmware flash + restore\t{ssum:.2f}\t{ssum / wall:.2f}\t0.91\t{rss}\t-\n")
PY
