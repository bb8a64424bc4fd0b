#!/usr/bin/env bash
# The repair job under faults: a replacement whose link drops mid-restore, power
# cuts of the replacement during the restore and the firmware update and of the
# old unit during the backup, a service that answers 500, drops the answer of an
# applied reassignment or cuts a cloud backup's download. Every job ends
# complete (after resume where it stopped, the stop naming its step), with the
# old unit's memory on the replacement, the old unit unchanged, exactly one
# reassignment and the ticket completed.
set -euo pipefail
BUILD=${BK_BUILD_DIR:-${1:?build folder}}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/lab.sh"
trap 'lab_stop; rm -rf "$tmp"' EXIT
export LAB_FW_SIZE=$((192 << 10))
lab_init
db=$lab/pki/depot.db

# --- Helpers --------------------------------------------------------------------------

# repair_bg N ARGS...: starts `repair --ticket T-N ARGS...` in the background;
# its pid in $bg, its JSON result in $tmp/bg.json, its progress lines in
# $tmp/bg.err.
repair_bg() {
  local n=$1; shift
  "$AR" --json --progress=json repair --ticket "T-$n" "$@" >"$tmp/bg.json" 2>"$tmp/bg.err" &
  bg=$!
}

# repair_wait [SIGNAL]: waits for the background repair (sending SIGNAL first
# when given); its exit status in $bg_status, its JSON copied to $tmp/out.
repair_wait() {
  [ $# -eq 0 ] || kill "-$1" "$bg" 2>/dev/null || true
  set +e; wait "$bg"; bg_status=$?; set -e
  cp "$tmp/bg.json" "$tmp/out"
}

# reconnecting: the background repair reports that it is reconnecting to a
# unit (polls up to 30 s).
reconnecting() {
  for _ in $(seq 600); do
    grep -q '"step":"reconnect"' "$tmp/bg.err" && return 0
    kill -0 "$bg" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# died NAME STEP: unit NAME's `serve` exited with status 3 after a power loss
# at STEP (polls up to 60 s; a unit still alive then is stopped and fails).
died() {
  local name=$1 step=$2 p=${upid[$1]} st
  for _ in $(seq 1200); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$p" 2>/dev/null; then
    echo "    $name is still running: no power loss at $step" >&2
    lab_down "$name"
    return 1
  fi
  set +e; wait "$p"; st=$?; set -e
  upid[$name]=
  [ "$st" -eq 3 ] && grep -q "power lost at step $step" "$lab/$name.err"
}

# stopped FILE STEP STATE: a --json stop of the job at STEP in STATE, its
# message naming the step and its hint the resume command.
stopped() {
  python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
step, state = sys.argv[2], sys.argv[3]
assert d["step"] == step and d["state"] == state, (d.get("step"), d.get("state"), d.get("error"))
assert d["error"]["message"].startswith("step %s:" % step), d["error"]
assert d["hint"].endswith("aibo-restore resume " + d["job"]), d["hint"]
PY
}

audit_ok() { "$AR" job audit "$1" --verify >/dev/null; }
job_of() { json_get "$tmp/out" 'd["job"]'; }
complete() { test "$(json_get "$tmp/out" 'd["state"] + "/" + d["step"]')" = complete/complete; }

# outcome FILE STEP KEY: a value of a step's outcome in a --json result.
outcome() {
  json_get "$1" "[s.get('outcome') or {} for s in d['report']['steps'] if s['name'] == '$2'][0].get('$3')"
}
attempts() { json_get "$1" "[s['attempts'] for s in d['report']['steps'] if s['name'] == '$2'][0]"; }

sim_stat() { curl -fsS "$AIBO_RESTORE_API_URL/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# repaired N LABEL: the closing checks of pair N; its units are then stopped.
repaired() {
  local n=$1 l=$2
  check "$l: job complete" test "$(sqlite3 "$db" "SELECT state || '/' || step FROM jobs WHERE ticket = 'T-$n'")" = complete/complete
  check "$l: same memory" lab_same_memory "$n"
  check "$l: old unit unchanged" lab_old_unchanged "$n"
  check "$l: one reassignment" test "$(lab_reassignments "$n")" = 1
  check "$l: ticket completed" test "$(lab_ticket_status "$n")" = completed
  check "$l: audit chain intact" audit_ok "$(sqlite3 "$db" "SELECT id FROM jobs WHERE ticket = 'T-$n'")"
  check "$l: no partial file left" test -z "$(find "$lab/pki" -name '*.part')"
  lab_down "old-$n"
  lab_down "new-$n"
}

# resumed_ok FILE STEP: a --json result of a resumed job that completed, STEP
# having taken two attempts and every other step one.
resumed_ok() {
  python3 - "$@" <<'PY2'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["report"]
assert d["resumed"] is True and d["state"] == "complete", (d["resumed"], d["state"])
att = {s["name"]: s["attempts"] for s in r["steps"]}
want = {s: (2 if s == sys.argv[2] else 1) for s in att}
assert att == want, att
assert r["verification"]["ok"] is True, r["verification"]
assert r["new_unit"]["firmware_after"] == "3.2.0", r["new_unit"]
PY2
}

# power_cut N UNIT FAULT STEP HOW [MEMORY]: pair N with UNIT (old / new)
# losing its power at FAULT; the job stops at STEP, either by itself
# (HOW = exit status) or, while it keeps reconnecting to the dead unit, when
# the technician stops it (HOW = term: SIGTERM, exit 11, or reconnect: the
# same once it reports a reconnect). The unit is powered up again at a new
# address and `resume --from/--to` completes the job.
power_cut() {
  local n=$1 who=$2 fault=$3 step=$4 how=$5 mem=${6:-1M} l="power loss (${2} unit, ${3#power-loss=})"
  local death=${fault#power-loss=} job flag=--to
  death=${death%%:*}
  [ "$who" = new ] || flag=--from
  lab_units "$n" "$mem"
  if [ "$who" = old ]; then lab_up "old-$n" "$fault"; lab_up "new-$n"; else
    lab_up "old-$n"; lab_up "new-$n" "$fault"; fi
  repair_bg "$n" --from "${uri[old-$n]}" --to "${uri[new-$n]}"
  check "$l: serve exits 3 naming the step" died "$who-$n" "$death"
  case $how in
  term) repair_wait TERM; how=11 ;;
  reconnect)
    check "$l: the repair reconnects to the dead unit" reconnecting
    repair_wait TERM; how=11 ;;
  *) repair_wait ;;
  esac
  check "$l: the repair exits $how" test "$bg_status" -eq "$how"
  check "$l: stops interrupted at $step" stopped "$tmp/out" "$step" interrupted
  job=$(job_of)
  check "$l: the journal says interrupted at $step" test "$(sqlite3 "$db" "SELECT state || '/' || step FROM jobs WHERE id = '$job'")" = "interrupted/$step"
  # The power cycle: the same folder served again, on a new port.
  lab_up "$who-$n"
  expect_exit 0 "$l: resume $flag at the new address" "$AR" --json --progress=none \
    resume "$job" "$flag" "${uri[$who-$n]}"
  check "$l: resumed and complete, only $step repeated" resumed_ok "$tmp/out" "$step"
  cp "$tmp/out" "$tmp/last.json"
  repaired "$n" "$l"
}

# --- 1. The replacement's link drops mid-restore: the library reconnects ---------------
lab_units 1 2M
lab_up old-1
# The firmware session is < 400 KiB; the restore's session drops at 1 MiB.
lab_up new-1 disconnect-after=1M
expect_exit 0 "link drop mid-restore: repair completes" "$AR" --json --progress=none repair \
  --ticket T-1 --from "${uri[old-1]}" --to "${uri[new-1]}"
check "link drop: complete in one run" complete
check "link drop: the restore reconnected" test "$(outcome "$tmp/out" restore reconnects)" -ge 1
check "link drop: the restore was not restarted" test "$(attempts "$tmp/out" restore)" = 1
repaired 1 "link drop"

# --- 2. Power cuts ----------------------------------------------------------------------
# A restore cut at 60% of 4 MiB: the unit recorded at least 1 MiB of it.
power_cut 2 new power-loss=restore-write:60 restore reconnect 4M
check "restore cut mid-write: resumed from what the unit held" test "$(outcome "$tmp/last.json" restore resumed)" = True
power_cut 3 new power-loss=restore-commit:50 restore reconnect
power_cut 4 new power-loss=fw-write:50 firmware term
# Arming the slot is one call: the lost connection stops the job at once.
power_cut 5 new power-loss=fw-activate firmware 6
power_cut 6 new power-loss=reboot firmware term
power_cut 7 old power-loss=backup-read:50 backup reconnect

# --- 3. The service -----------------------------------------------------------------------
# 500 on reassign, within the retries.
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
lab_sim 500=3:reassign
lab_pair 8 1M
expect_exit 0 "500 x3 on reassign: repair completes" "$AR" --json --progress=none repair \
  --ticket T-8 --from "${uri[old-8]}" --to "${uri[new-8]}"
check "500 on reassign: complete" complete
check "500 on reassign: the faults fired" test "$(sim_stat faults_fired)" = 3
repaired 8 "500 on reassign"

# The reassignment is applied, its answer lost: the retry gets the stored answer.
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
lab_sim drop-after-apply=reassign
lab_pair 9 1M
expect_exit 0 "answer of reassign dropped: repair completes" "$AR" --json --progress=none repair \
  --ticket T-9 --from "${uri[old-9]}" --to "${uri[new-9]}"
check "dropped answer: complete" complete
check "dropped answer: the fault fired" test "$(sim_stat faults_fired)" = 1
check "dropped answer: the retry was answered from the idempotency store" test "$(sim_stat replays)" -ge 1
repaired 9 "dropped answer"

# 500 on complete beyond the retry budget: the job stops at complete.
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
lab_sim 500=20:complete
lab_pair 10 1M
expect_exit 8 "500 on complete beyond the retries: stops" env AIBO_RESTORE_API_RETRIES=1 \
  "$AR" --json --progress=none repair --ticket T-10 --from "${uri[old-10]}" --to "${uri[new-10]}"
j10=$(job_of)
check "500 on complete: stopped at step complete" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("     (stopped %s: %s)" % (d["state"], d["error"]["message"]))
assert d["step"] == "complete" and d["state"] in ("failed", "interrupted"), (d["step"], d["state"])
assert d["error"]["message"].startswith("step complete:"), d["error"]
assert d["hint"].endswith("aibo-restore resume " + d["job"]), d["hint"]
' "$tmp/out"
check "500 on complete: two attempts only" test "$(sim_stat faults_fired)" = 2
check "500 on complete: the identity moved once" test "$(lab_reassignments 10)" = 1
check "500 on complete: ticket still open" test "$(lab_ticket_status 10)" != completed
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
lab_sim
expect_exit 0 "500 on complete: resume completes" "$AR" --json --progress=none resume "$j10"
check "500 on complete: resumed, complete" test "$(json_get "$tmp/out" 'str(d["resumed"]) + d["state"]')" = Truecomplete
check "500 on complete: earlier steps not repeated" test "$(attempts "$tmp/out" restore)/$(attempts "$tmp/out" complete)" = 1/2
repaired 10 "500 on complete"

# A cloud backup whose download is cut short.
lab_units 11 1M
lab_up old-11
lab_up new-11
escrow=$(age-keygen -y "$lab/pki/cloud-escrow.identity")
expect_exit 0 "old-11 backs up for the cloud escrow key" "$AR" --progress=none backup \
  "${uri[old-11]}" -r "$escrow" -o "$tmp/cloud11.aibk"
"$SIM" add-backup --db "$lab/cloud.db" --serial OLD-11 --id cb-11 --schema 3 "$tmp/cloud11.aibk" >/dev/null
lab_down old-11
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
lab_sim cut-content=65536:2
set +e
"$AR" --json --progress=none repair --ticket T-11 --cloud-backup cb-11 --to "${uri[new-11]}" \
  >"$tmp/out" 2>"$tmp/err"
st=$?
set -e
check "cut download: the cuts happened" test "$(sim_stat faults_fired)" -ge 1
if [ "$st" -eq 0 ]; then
  echo "     (the cut download resumed within the backup step)"
else
  echo "     (the cut download stopped the job: exit $st)"
  # The download stopped: the job names the backup step; resume completes.
  check "cut download: stops interrupted at backup" stopped "$tmp/out" backup interrupted
  expect_exit 0 "cut download: resume completes" "$AR" --json --progress=none resume "$(job_of)"
fi
check "cut download: complete" complete
repaired 11 "cut download"

finish
