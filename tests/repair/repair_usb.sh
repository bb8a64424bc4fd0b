#!/usr/bin/env bash
# The repair job over the simulated USB bus: the replacement on USB and the old
# unit on TCP, then the old unit on USB and the replacement on TCP. The test
# bed must start: a bed that cannot is a failure, not a skip.
set -euo pipefail
BUILD=${BK_BUILD_DIR:-${1:?build folder}}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/lab.sh"
trap 'lab_stop; rm -rf "$tmp"' EXIT
export LAB_FW_SIZE=$((192 << 10))
lab_init
db=$lab/pki/depot.db

# usb_up NAME: serves unit NAME on the simulated USB bus; its URI in
# ${uri[NAME]}, the bed's environment in $usb_dir and $usb_preload.
usb_up() {
  local name=$1 p
  "$VDEV" serve "$lab/$name" --usb >"$lab/$name.out" 2>"$lab/$name.err" &
  p=$!
  lab_pids+=("$p")
  upid[$name]=$p
  for _ in $(seq 400); do
    grep -q '^LD_PRELOAD=' "$lab/$name.out" 2>/dev/null && break
    kill -0 "$p" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q '^LD_PRELOAD=' "$lab/$name.out"; then
    echo "    the USB test bed for $name did not start: $(cat "$lab/$name.err")" >&2
    return 1
  fi
  uri[$name]=$(sed -n 's/^listening on //p' "$lab/$name.out" | head -1)
  usb_dir=$(sed -n 's/^UMOCKDEV_DIR=//p' "$lab/$name.out")
  usb_preload=$(sed -n 's/^LD_PRELOAD=//p' "$lab/$name.out")
}

# usb_repair N LABEL WHO: a full repair of pair N, unit WHO-N on USB, the
# other on TCP; aibo-restore runs inside the USB bed.
usb_repair() {
  local n=$1 l=$2 who=$3 other
  other=$([ "$who" = new ] && echo old || echo new)
  lab_units "$n" 1M
  if ! usb_up "$who-$n"; then
    bad "$l: the USB test bed starts"
    finish || true
    exit 1
  fi
  ok "$l: the USB test bed starts"
  lab_up "$other-$n"
  check "$l: the unit is at usb:${who^^}-$n" test "${uri[$who-$n]}" = "usb:${who^^}-$n"
  expect_exit 0 "$l: the unit answers over USB" env UMOCKDEV_DIR="$usb_dir" \
    LD_PRELOAD="$usb_preload" "$AR" --json info "${uri[$who-$n]}"
  check "$l: info over USB: serial" test "$(json_get "$tmp/out" 'd["serial"]')" = "${who^^}-$n"
  expect_exit 0 "$l: repair completes" env UMOCKDEV_DIR="$usb_dir" LD_PRELOAD="$usb_preload" \
    "$AR" --json --progress=none repair --ticket "T-$n" --from "${uri[old-$n]}" \
    --to "${uri[new-$n]}"
  check "$l: state complete" test "$(json_get "$tmp/out" 'd["state"] + "/" + d["step"]')" = complete/complete
  check "$l: verification ok" test "$(json_get "$tmp/out" 'd["report"]["verification"]["ok"]')" = True
  check "$l: the replacement's address recorded" test "$(json_get "$tmp/out" 'd["report"]["new_unit"]["address"]')" = "${uri[new-$n]}"
  check "$l: firmware flashed" test "$(json_get "$tmp/out" 'd["report"]["new_unit"]["firmware_before"] + ">" + d["report"]["new_unit"]["firmware_after"]')" = "3.0.0>3.2.0"
  check "$l: every step done" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["report"]
assert [s["name"] for s in r["steps"]] == ["preflight", "backup", "firmware", "reassign",
    "restore", "identity", "verify", "complete"], r["steps"]
assert all(s["state"] == "done" for s in r["steps"]), r["steps"]
' "$tmp/out"
  check "$l: same memory" lab_same_memory "$n"
  check "$l: old unit unchanged" lab_old_unchanged "$n"
  check "$l: one reassignment" test "$(lab_reassignments "$n")" = 1
  check "$l: ticket completed" test "$(lab_ticket_status "$n")" = completed
  expect_exit 0 "$l: the replacement reports its identity over $([ "$who" = new ] && echo USB || echo TCP)" \
    env UMOCKDEV_DIR="$usb_dir" LD_PRELOAD="$usb_preload" "$AR" --json info "${uri[new-$n]}"
  check "$l: identity installed" test "$(json_get "$tmp/out" 'str(d["identity"]["installed"]) + d["identity"]["serial"]')" = "TrueNEW-$n"
  lab_down "$who-$n"
  lab_down "$other-$n"
  check "$l: the USB test bed is removed" test ! -e "$usb_dir"
}

usb_repair 1 "replacement on USB" new
usb_repair 2 "old unit on USB" old

finish
