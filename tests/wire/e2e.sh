#!/usr/bin/env bash
# Backups pulled from units and restored onto replacement units, end to end:
# aibo-vdev serve + aibo-restore backup/restore over TCP, with disconnects,
# killed commands, power losses of the unit, refusals, and four units at once.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
vdev=${BK_BUILD_DIR:?}/device/virtual/aibo-vdev
ar=${AIBO_RESTORE:?}
size=${BK_WIRE_SIZE:-1M}
pids=()
cleanup_servers() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup_servers; rm -rf "$tmp"' EXIT
export HOME=$tmp XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/xdg

# start NAME ARGS...: aibo-vdev serve in the background; sets $uri and $pid.
start() {
  local name=$1; shift
  "$vdev" serve "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do
    grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  uri=$(sed -n 's/^listening on //p' "$tmp/$name.out")
  [ -n "$uri" ] || { cat "$tmp/$name.err"; return 1; }
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# digests UNIT: the unit's domain digests without its serial.
digests() { "$vdev" digest "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["domains"], sort_keys=True))'; }
parts() { find "$tmp/lab/backups" -name '*.part' | wc -l; }
rows() { "$ar" --json backups list | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }

"$vdev" pki init "$tmp/lab" >/dev/null
export AIBO_RESTORE_CONFIG=$tmp/lab/config
mk() { local d=$1; shift; "$vdev" create "$tmp/$d" --pki "$tmp/lab" --serial "$@" >/dev/null; }
mk old E2W-OLD --memory "$size" --seed 7
mk new E2W-NEW --fresh
mk empty E2W-EMPTY --fresh
mk empty2 E2W-EMPTY2 --fresh

# --- Backup, verify, restore: the new unit's memory equals the old one's. ---
start old "$tmp/old" --listen tcp:127.0.0.1:0; old_uri=$uri; old_pid=$pid
expect_exit 0 "backup --verify into the store" "$ar" --json backup "$old_uri" --verify
check "backup: one JSON object" one_json "$tmp/out"
id=$(json_get "$tmp/out" 'd["id"]')
check "backup: in the store" test -f "$tmp/lab/backups/$id.aibk" -a -f "$tmp/lab/backups/$id.aibk.statement"
check "backup: in the catalog once" test "$(rows)" = 1
check "backup: no part left" test "$(parts)" = 0
check "backup: the unit dropped its copy" test ! -e "$tmp/old/backup/$id.aibk"
expect_exit 0 "verify the pulled backup (full)" "$ar" verify "$id"
expect_exit 0 "inspect: statement by the unit" "$ar" --json inspect "$id"
check "producer is the old unit" test "$(json_get "$tmp/out" 'd["statement"]["producer"]')" = E2W-OLD
check "age opens it with the depot identity" sh -c "age -d -i '$tmp/lab/depot.identity' '$tmp/lab/backups/$id.aibk' | zstd -d | tar -t | head -1 | grep -qx MANIFEST.json"
old_d=$(digests "$tmp/old")
start new "$tmp/new" --listen tcp:127.0.0.1:0; new_uri=$uri; new_pid=$pid
expect_exit 0 "restore onto the fresh unit" "$ar" --json restore "$new_uri" "$id"
check "restore: digests match" test "$(json_get "$tmp/out" 'd["digests_match"]')" = True
check "restore: the new unit's memory equals the old one's" test "$old_d" = "$(digests "$tmp/new")"
check "restore: no staging left on the unit" test ! -e "$tmp/new/restore" -a ! -e "$tmp/new/memory.new"
expect_exit 0 "restore again: already there" "$ar" --json restore "$new_uri" "$id"
check "second restore sends nothing" test "$(json_get "$tmp/out" 'd["transfer"]["bytes"]')" = 0
expect_exit 0 "backup -o FILE" "$ar" backup "$old_uri" -o "$tmp/own.aibk"
check "-o: statement beside it, no part" test -f "$tmp/own.aibk.statement" -a ! -e "$tmp/own.aibk.part"
check "-o: not in the catalog" test "$(rows)" = 1
expect_exit 1 "backup -o refuses to overwrite" "$ar" backup "$old_uri" -o "$tmp/own.aibk"
mkdir "$tmp/outdir"
expect_exit 0 "backup -O DIR" "$ar" --json backup "$old_uri" -O "$tmp/outdir"
check "-O: DIR/ID.aibk" test -f "$tmp/outdir/$(json_get "$tmp/out" 'd["id"]').aibk"

parts_wanted=${BK_WIRE_PARTS:-basic faults}
if [[ " $parts_wanted " == *" basic "* ]]; then
# --- A memory of 0 bytes. ---
start empty "$tmp/empty" --listen tcp:127.0.0.1:0; empty_uri=$uri
start empty2 "$tmp/empty2" --listen tcp:127.0.0.1:0; empty2_uri=$uri
expect_exit 0 "backup of an empty memory" "$ar" --json backup "$empty_uri"
eid=$(json_get "$tmp/out" 'd["id"]')
expect_exit 0 "restore of an empty memory" "$ar" restore "$empty2_uri" "$eid"
check "empty memories equal" test "$(digests "$tmp/empty")" = "$(digests "$tmp/empty2")"

# --- Refusals: each a clear error and its exit code, nothing changed. ---
mk held E2W-HELD --memory 64K --seed 3
start held "$tmp/held" --listen tcp:127.0.0.1:0
held_before=$(digests "$tmp/held")
expect_exit 1 "a unit holding a memory is refused" "$ar" --json restore "$uri" "$id"
check "reason unit-has-memory" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = unit-has-memory
check "the held memory is untouched" test "$held_before" = "$(digests "$tmp/held")"
mk other E2W-OTHER --fresh --model ERS-2000
start other "$tmp/other" --listen tcp:127.0.0.1:0
expect_exit 5 "another model is refused" "$ar" --json restore "$uri" "$id"
check "reason model-mismatch" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = model-mismatch
mk oldfw E2W-OLDFW --fresh --schema 1 --fw-version 2.0.0
start oldfw "$tmp/oldfw" --listen tcp:127.0.0.1:0
expect_exit 5 "a firmware that cannot hold the schema is refused" "$ar" --json restore "$uri" "$id"
check "reason schema-unsupported" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = schema-unsupported
check "the message names the schema needed" grep -q 'holding schema 2' "$tmp/out"
check "nothing changed on that unit" test ! -e "$tmp/oldfw/restore"
age-keygen -o "$tmp/stranger.id" 2>/dev/null
mk fresh3 E2W-FRESH3 --fresh
start fresh3 "$tmp/fresh3" --listen tcp:127.0.0.1:0; fresh3_uri=$uri; fresh3_pid=$pid
before=$(digests "$tmp/fresh3")
expect_exit 7 "a wrong identity is refused" "$ar" --json restore "$fresh3_uri" "$id" -i "$tmp/stranger.id"
check "reason no-identity-matched" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = no-identity-matched
# A statement from an unknown CA: a unit of another lab.
"$vdev" pki init "$tmp/lab2" >/dev/null
"$vdev" create "$tmp/alien" --pki "$tmp/lab2" --serial E2W-ALIEN --memory 64K >/dev/null
start alien "$tmp/alien" --listen tcp:127.0.0.1:0
AIBO_RESTORE_CONFIG=$tmp/lab2/config "$ar" backup "$uri" -o "$tmp/alien.aibk" -r "$(age-keygen -y "$tmp/lab/depot.identity" 2>/dev/null || sed -n 's/^# public key: //p' "$tmp/lab/depot.identity")" >/dev/null
expect_exit 4 "a statement from an unknown CA is refused" "$ar" --json restore "$fresh3_uri" "$tmp/alien.aibk"
check "reason statement-invalid" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = statement-invalid
expect_exit 7 "a unit of an unknown factory is refused at the handshake" "$ar" --json backup "$uri"
check "nothing changed on the refusing unit" test "$before" = "$(digests "$tmp/fresh3")" -a ! -e "$tmp/fresh3/restore"
# A corrupted frame from the unit.
stop "$fresh3_pid"
start fresh3c "$tmp/fresh3" --listen tcp:127.0.0.1:0 --fault corrupt-frame=6; fresh3_uri=$uri; fresh3_pid=$pid
set +e; "$ar" --json restore "$fresh3_uri" "$id" >"$tmp/out" 2>"$tmp/err"; st=$?; set -e
check "a corrupted frame is an error or is survived by resuming (exit $st)" test "$st" = 0 -o "$st" = 6 -o "$st" = 4
if [ "$st" = 0 ]; then
  check "after a corrupted frame the memory is whole" test "$(digests "$tmp/fresh3")" = "$old_d"
else
  check "after a corrupted frame the memory is untouched" test "$before" = "$(digests "$tmp/fresh3")"
fi
stop "$fresh3_pid"

# --- Disconnects at random offsets: each resumes, re-sending at most a window. ---
window=$((8 * 65506))
for i in 1 2; do
  off=$(( (RANDOM * 32768 + RANDOM) % 600000 + 20000 ))
  stop "$old_pid"
  start oldd$i "$tmp/old" --listen tcp:127.0.0.1:0 --fault "disconnect-after=$off"; old_uri=$uri; old_pid=$pid
  expect_exit 0 "backup resumes after a disconnect at $off" "$ar" --json backup "$old_uri"
  check "backup: reconnected" test "$(json_get "$tmp/out" 'd["transfer"]["reconnects"]')" -ge 1
  check "backup: re-sent at most one window" python3 -c "
import json; d=json.load(open('$tmp/out'))['transfer']; assert d['bytes'] - d['size'] <= $window * d['reconnects'], d"
  check "backup: one more catalog row, no part" test "$(parts)" = 0
  did=$(json_get "$tmp/out" 'd["id"]')
  expect_exit 0 "verify after a resumed backup" "$ar" verify "$did"
done
mk new2 E2W-NEW2 --fresh
off=$(( (RANDOM * 32768 + RANDOM) % 600000 + 20000 ))
start new2 "$tmp/new2" --listen tcp:127.0.0.1:0 --fault "disconnect-after=$off"
expect_exit 0 "restore resumes after a disconnect at $off" "$ar" --json restore "$uri" "$id"
check "restore: reconnected" test "$(json_get "$tmp/out" 'd["transfer"]["reconnects"]')" -ge 1
check "restore: re-sent at most one window" python3 -c "
import json; d=json.load(open('$tmp/out'))['transfer']; assert d['bytes'] - (d['size'] - d['start']) <= $window * d['reconnects'], d"
check "restore after a disconnect: memories equal" test "$old_d" = "$(digests "$tmp/new2")"

# --- kill -9 of aibo-restore, then the same command again. ---
stop "$old_pid"
start oldslow "$tmp/old" --listen tcp:127.0.0.1:0 --fault rate=400K; old_uri=$uri; old_pid=$pid
n0=$(rows)
"$ar" backup "$old_uri" >/dev/null 2>&1 & k=$!
# Killed once part of the backup is on the terminal.
for _ in $(seq 200); do [ "$(parts)" -gt 0 ] && break; sleep 0.05; done
check "backup still running when killed, part of it received" test "$(parts)" -gt 0
check "backup still running when killed" kill -0 "$k"
kill -9 "$k" 2>/dev/null || true; wait "$k" 2>/dev/null || true
# A power cycle of the unit too: a backup it was still making is gone, and
# the new one's answer names it, so the terminal drops its part (with a
# small memory the unit had finished making it: the same backup continues).
stop "$old_pid"
start oldfast "$tmp/old" --listen tcp:127.0.0.1:0; old_uri=$uri; old_pid=$pid
expect_exit 0 "backup again after kill -9" "$ar" --json backup "$old_uri"
check "after kill -9: one new catalog row" test "$(rows)" = $((n0 + 1))
check "after kill -9: no stray part" test "$(parts)" = 0
mk new3 E2W-NEW3 --fresh
# The unit never answers its 6th request: the command waits, and is killed.
start new3slow "$tmp/new3" --listen tcp:127.0.0.1:0 --fault stall=6; p3=$pid
"$ar" restore "$uri" "$id" >/dev/null 2>&1 & k=$!
sleep 1.5
check "restore still running when killed" kill -0 "$k"
kill -9 "$k" 2>/dev/null || true; wait "$k" 2>/dev/null || true
expect_exit 0 "restore again after kill -9" "$ar" --json restore "$uri" "$id"
check "after kill -9: resumed from the unit's bytes" test "$(json_get "$tmp/out" 'd["resumed"]')" = True
check "after kill -9: memories equal" test "$old_d" = "$(digests "$tmp/new3")"
stop "$p3"

fi
if [[ " $parts_wanted " == *" faults "* ]]; then
# --- Power loss of the unit during the write and at the commit. ---
for step in restore-write:40 restore-commit:0 restore-commit:50 restore-commit:100; do
  u=pl-${step//:/-}
  mk "$u" "E2W-${u^^}" --fresh
  orig=$(digests "$tmp/$u")
  start "$u" "$tmp/$u" --listen tcp:127.0.0.1:0 --fault "power-loss=$step"; ppid_=$pid
  set +e; "$ar" --json restore "$uri" "$id" --overwrite --reconnect-timeout 1 >"$tmp/out" 2>"$tmp/err"; st=$?; set -e
  set +e; wait "$ppid_"; vst=$?; set -e
  check "power loss at $step: the unit died (serve exit $vst)" test "$vst" = 3
  check "power loss at $step: restore fails as a device error (exit $st)" test "$st" = 6
  now=$(digests "$tmp/$u")
  check "power loss at $step: old memory or new, never a mix" test "$now" = "$orig" -o "$now" = "$old_d"
  start "$u-2" "$tmp/$u" --listen tcp:127.0.0.1:0; p=$pid
  check "power loss at $step: no mix after power-up either" test "$(digests "$tmp/$u")" = "$orig" -o "$(digests "$tmp/$u")" = "$old_d"
  expect_exit 0 "power loss at $step: the restore then completes" "$ar" --json restore "$uri" "$id" --overwrite
  check "power loss at $step: memories equal" test "$old_d" = "$(digests "$tmp/$u")"
  stop "$p"
done

# --- Four units at once. ---
devs=(); tgts=()
for i in 1 2 3 4; do
  mk p$i "E2W-P$i" --memory 256K --seed $((i + 10))
  mk q$i "E2W-Q$i" --fresh
  start p$i "$tmp/p$i" --listen tcp:127.0.0.1:0; devs+=("$uri")
  start q$i "$tmp/q$i" --listen tcp:127.0.0.1:0; tgts+=("$uri")
done
expect_exit 0 "four units backed up in parallel" "$ar" --json --progress=json backup "${devs[@]}"
check "four results" test "$(json_get "$tmp/out" 'len(d["units"])')" = 4
check "progress lines name each unit" sh -c "grep -c '\"subject\"' '$tmp/err' >/dev/null && for s in E2W-P1 E2W-P2 E2W-P3 E2W-P4; do grep -q \"\$s\" '$tmp/err' || exit 1; done"
args=()
for i in 0 1 2 3; do args+=("${tgts[$i]}" "$(json_get "$tmp/out" "d[\"units\"][$i][\"id\"]")"); done
expect_exit 0 "four units restored in parallel" "$ar" --json restore "${args[@]}"
for i in 1 2 3 4; do
  check "unit P$i -> Q$i equal" test "$(digests "$tmp/p$i")" = "$(digests "$tmp/q$i")"
done
# A unit in use by another terminal session is busy.
start busy "$tmp/p1" --listen tcp:127.0.0.1:0 --fault busy
expect_exit 9 "a busy unit is BK_EBUSY" "$ar" --json backup "$uri"

fi
cleanup_servers
finish
