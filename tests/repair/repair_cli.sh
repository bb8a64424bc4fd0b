#!/usr/bin/env bash
# The repair job end to end: aibo-restore repair against virtual units and the
# API simulator, from a unit, from a backup file and from a cloud backup;
# re-running a ticket, stops and resume, abort, held backups, locks, the
# audit chain, and the refusals preflight makes.
set -euo pipefail
BUILD=${BK_BUILD_DIR:-${1:?build folder}}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/lab.sh"
trap 'lab_stop; rm -rf "$tmp"' EXIT
lab_init

job_of() { json_get "$tmp/out" 'd["job"]'; }

# --- 1. From a unit, over TCP -------------------------------------------------------
lab_pair 1
expect_exit 0 "repair from a unit" "$AR" --json --progress=none repair --ticket T-1 \
  --from "${uri[old-1]}" --to "${uri[new-1]}"
j1=$(job_of)
cp "$tmp/out" "$tmp/r1.json"
check "result: state complete" test "$(json_get "$tmp/r1.json" 'd["state"]')" = complete
check "report: verification ok" test "$(json_get "$tmp/r1.json" 'd["report"]["verification"]["ok"]')" = True
check "report: firmware before and after" test "$(json_get "$tmp/r1.json" 'd["report"]["new_unit"]["firmware_before"] + ">" + d["report"]["new_unit"]["firmware_after"]')" = "3.0.0>3.2.0"
check "report: every step done, timed" python3 - "$tmp/r1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
names = [s["name"] for s in r["steps"]]
assert names == ["preflight", "backup", "firmware", "reassign", "restore", "identity", "verify", "complete"], names
assert all(s["state"] == "done" and s["seconds"] >= 0 for s in r["steps"]), r["steps"]
assert r["old_unit"]["serial"] == "OLD-1" and r["new_unit"]["serial"] == "NEW-1"
assert len(r["backup"]["payload_digest"]) == 64 and len(r["backup"]["manifest_digest"]) == 64
PY
check "the new unit holds the old unit's memory" lab_same_memory 1
check "the old unit's memory is unchanged" lab_old_unchanged 1
check "one reassignment" test "$(lab_reassignments 1)" = 1
check "ticket completed" test "$(lab_ticket_status 1)" = completed
check "the unit reports the installed identity" bash -c "'$AR' --json info '${uri[new-1]}' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"identity\"][\"installed\"] and d[\"identity\"][\"serial\"] == \"NEW-1\"'"

expect_exit 0 "jobs --json" "$AR" --json jobs
check "jobs: the documented shape" python3 - "$tmp/out" "$j1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 1
j = [x for x in d["jobs"] if x["id"] == sys.argv[2]][0]
assert j["ticket"] == "T-1" and j["state"] == "complete" and j["step"] == "complete", j
PY
expect_exit 0 "jobs --state complete" "$AR" --json jobs --state complete
check "jobs --state filters" test "$(json_get "$tmp/out" 'len(d["jobs"])')" = 1
expect_exit 0 "jobs --state running: none" "$AR" --json jobs --state running
check "jobs --state running: empty" test "$(json_get "$tmp/out" 'len(d["jobs"])')" = 0
expect_exit 2 "jobs --state nonsense" "$AR" --json jobs --state sleeping
expect_exit 0 "job show" "$AR" --json job show "$j1"
check "job show: the saved report" test "$(json_get "$tmp/out" 'd["report"]["verification"]["ok"]')" = True
expect_exit 0 "job show (text)" "$AR" job show "$j1"
check "job show text names the steps" grep -q '^  restore ' "$tmp/out"
expect_exit 0 "job audit --verify" "$AR" --json job audit "$j1" --verify
check "audit: intact" test "$(json_get "$tmp/out" 'd["intact"]')" = True
expect_exit 0 "job audit" "$AR" --json job audit "$j1"
nev=$(json_get "$tmp/out" 'len(d["events"])')
check "audit: events of every step" test "$nev" -ge 17
expect_exit 2 "resume of a complete job" "$AR" --json resume "$j1"
check "resume of a complete job: reason" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = job-finished
expect_exit 3 "job show of an unknown job" "$AR" --json job show J-0000000000000000

# The audit chain: an edited, a removed and a swapped event are detected.
db=$lab/pki/depot.db
cp "$db" "$tmp/db.orig"
sqlite3 "$db" "UPDATE job_events SET message = 'restore done (edited)' WHERE job_id = '$j1' AND kind = 'step-done' AND step = 'restore'"
expect_exit 4 "an edited audit event is detected" "$AR" --json job audit "$j1" --verify
check "edited: reason audit-broken" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = audit-broken
cp "$tmp/db.orig" "$db"
sqlite3 "$db" "DELETE FROM job_events WHERE job_id = '$j1' AND seq = 3"
expect_exit 4 "a removed audit event is detected" "$AR" --json job audit "$j1" --verify
cp "$tmp/db.orig" "$db"
sqlite3 "$db" "DELETE FROM job_events WHERE job_id = '$j1' AND seq = (SELECT max(seq) FROM job_events WHERE job_id = '$j1')"
expect_exit 4 "a removed last event is detected" "$AR" --json job audit "$j1" --verify
cp "$tmp/db.orig" "$db"
sqlite3 "$db" "UPDATE job_events SET seq = seq + 1000 WHERE job_id = '$j1' AND seq IN (4, 5); UPDATE job_events SET seq = CASE seq WHEN 1004 THEN 5 ELSE 4 END WHERE job_id = '$j1' AND seq > 1000"
expect_exit 4 "swapped audit events are detected" "$AR" --json job audit "$j1" --verify
cp "$tmp/db.orig" "$db"
rm -f "$db-wal" "$db-shm"
expect_exit 0 "the restored log verifies again" "$AR" --json job audit "$j1" --verify

# --- 2. From a backup file -----------------------------------------------------------
lab_pair 2
expect_exit 0 "a backup of old-2 to a file" "$AR" --progress=none backup "${uri[old-2]}" -o "$tmp/old2.aibk"
lab_down old-2
expect_exit 0 "repair from the backup file (the old unit is gone)" "$AR" --json --progress=none \
  repair --ticket T-2 --backup "$tmp/old2.aibk" --to "${uri[new-2]}"
check "file: complete" test "$(json_get "$tmp/out" 'd["state"]')" = complete
check "file: same memory" lab_same_memory 2
check "file: the backup file is unchanged" "$AR" verify "$tmp/old2.aibk"

# --- 3. From a cloud backup ----------------------------------------------------------
lab_pair 3
escrow=$(age-keygen -y "$lab/pki/cloud-escrow.identity")
expect_exit 0 "old-3 backs up for the cloud escrow key" "$AR" --progress=none backup "${uri[old-3]}" -r "$escrow" -o "$tmp/cloud3.aibk"
"$SIM" add-backup --db "$lab/cloud.db" --serial OLD-3 --id cb-3 --schema 3 "$tmp/cloud3.aibk" >/dev/null
lab_down old-3
expect_exit 0 "repair from the cloud backup" "$AR" --json --progress=none \
  repair --ticket T-3 --cloud-backup cb-3 --to "${uri[new-3]}"
check "cloud: complete" test "$(json_get "$tmp/out" 'd["state"]')" = complete
check "cloud: same memory" lab_same_memory 3
check "cloud: one reassignment" test "$(lab_reassignments 3)" = 1

# --- 4. Stop, repair again (continues), locks, holds, abort -------------------------
lab_pair 4
expect_exit 11 "a job stopped after its backup step" env AIBO_RESTORE_TEST_STOP_AFTER=backup \
  "$AR" --json --progress=none repair --ticket T-4 --from "${uri[old-4]}" --to "${uri[new-4]}"
j4=$(job_of)
check "stopped job: a job id" test -n "$j4"
bk4=$(sqlite3 "$db" "SELECT json_extract(data, '\$.backup_id') FROM jobs WHERE id = '$j4'")
check "the job recorded its backup" test -n "$bk4"
expect_exit 9 "backups rm refuses a backup an unfinished job uses" "$AR" --json backups rm --yes "$bk4"
expect_exit 0 "jobs lists it interrupted" "$AR" --json jobs --state interrupted
check "interrupted: the job" test "$(json_get "$tmp/out" '[j["id"] for j in d["jobs"]][0]')" = "$j4"
expect_exit 0 "repair again for the ticket continues the job" "$AR" --json --progress=none \
  repair --ticket T-4 --from "${uri[old-4]}" --to "${uri[new-4]}"
check "the same job, resumed" test "$(job_of)/$(json_get "$tmp/out" 'd["resumed"]')" = "$j4/True"
check "continued: complete" test "$(json_get "$tmp/out" 'd["state"]')" = complete
check "continued: one backup step" test "$(json_get "$tmp/out" '[s["attempts"] for s in d["report"]["steps"] if s["name"] == "backup"][0]')" = 1
check "continued: same memory" lab_same_memory 4
check "continued: one reassignment" test "$(lab_reassignments 4)" = 1
check "the backup is released" "$AR" --json backups show "$bk4"

lab_pair 5
expect_exit 11 "stopped after reassign" env AIBO_RESTORE_TEST_STOP_AFTER=reassign \
  "$AR" --json --progress=none repair --ticket T-5 --from "${uri[old-5]}" --to "${uri[new-5]}"
j5=$(job_of)
# Another unit answers at the replacement's address: the job refuses it.
lab_down new-5
lab_up new-1
expect_exit 7 "resume with another unit at --to: serial checked" "$AR" --json --progress=none resume "$j5" --to "${uri[new-1]}"
check "wrong unit: names the step" bash -c "grep -q 'step restore' '$tmp/out'"
lab_down new-1
lab_up new-5
expect_exit 0 "resume at the unit's new address" "$AR" --json --progress=none resume "$j5" --to "${uri[new-5]}"
check "resumed: complete" test "$(json_get "$tmp/out" 'd["state"]')" = complete
check "resumed: same memory" lab_same_memory 5
check "resumed: one reassignment" test "$(lab_reassignments 5)" = 1

lab_pair 6
expect_exit 11 "stopped after backup (to abort)" env AIBO_RESTORE_TEST_STOP_AFTER=backup \
  "$AR" --json --progress=none repair --ticket T-6 --from "${uri[old-6]}" --to "${uri[new-6]}"
j6=$(job_of)
bk6=$(sqlite3 "$db" "SELECT json_extract(data, '\$.backup_id') FROM jobs WHERE id = '$j6'")
expect_exit 0 "job abort" "$AR" --json job abort "$j6"
check "abort: state aborted" test "$(json_get "$tmp/out" 'd["state"]')" = aborted
check "abort: the report says what was done" test "$(json_get "$tmp/out" '[s["state"] for s in d["report"]["steps"]][:2]')" = "['done', 'done']"
check "abort: the backup is kept" "$AR" --json backups show "$bk6"
expect_exit 2 "abort: resume refused" "$AR" --json resume "$j6"
expect_exit 2 "abort twice" "$AR" --json job abort "$j6"
check "abort: the old unit is unchanged" lab_old_unchanged 6
check "abort: no reassignment" test "$(lab_reassignments 6)" = 0

# --- 5. Preflight refusals -------------------------------------------------------------
lab_pair 7
expect_exit 4 "a ticket for another unit" "$AR" --json --progress=none repair --ticket T-6 \
  --from "${uri[old-7]}" --to "${uri[new-7]}"
check "ticket mismatch: reason" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = ticket-mismatch
check "ticket mismatch: names the step and a hint" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["error"]["message"].startswith("step preflight:"), d
assert "resume" in d["hint"] and d["step"] == "preflight" and d["state"] == "failed"
' "$tmp/out"
jbad=$(job_of)
"$AR" job abort "$jbad" >/dev/null
expect_exit 2 "the same unit as old and new" "$AR" --json --progress=none repair --ticket T-7 \
  --from "${uri[old-7]}" --to "${uri[old-7]}"
check "same unit: reason" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = same-unit
"$VDEV" create "$lab/other" --pki "$lab/pki" --serial OTHER-1 --model ERS-2000 --fresh >/dev/null
lab_up other
expect_exit 5 "a replacement of another model" "$AR" --json --progress=none repair --ticket T-7 \
  --from "${uri[old-7]}" --to "${uri[other]}"
check "model mismatch: reason" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = model-mismatch
"$AR" job abort "$(job_of)" >/dev/null
expect_exit 2 "two sources" "$AR" --json repair --ticket T-7 --from "${uri[old-7]}" --backup x --to "${uri[new-7]}"
expect_exit 2 "no replacement" "$AR" --json repair --ticket T-7 --from "${uri[old-7]}"
check "usage errors are JSON" test "$(json_get "$tmp/out" 'd["error"]["exit"]')" = 2
check "the refused repairs left the old unit alone" lab_old_unchanged 7

# --- 6. Locks: a second process on the same ticket gets BK_EBUSY ----------------------
lab_units 8
lab_up old-8
lab_up new-8 rate=1000000
"$AR" --json --progress=none repair --ticket T-8 --from "${uri[old-8]}" --to "${uri[new-8]}" \
  >"$tmp/first.json" 2>"$tmp/first.err" &
first=$!
for _ in $(seq 400); do
  [ -n "$(sqlite3 "$db" "SELECT id FROM jobs WHERE ticket = 'T-8' AND step IN ('firmware', 'restore')" 2>/dev/null)" ] && break
  sleep 0.05
done
# Frozen mid-job, the first process keeps its locks.
kill -STOP "$first"
expect_exit 9 "a second process on the same ticket: busy" "$AR" --json --progress=none repair \
  --ticket T-8 --from "${uri[old-8]}" --to "${uri[new-8]}"
check "busy: names the holder" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["error"]["message"]
assert "pid %s" % sys.argv[2] in m, m
' "$tmp/out" "$first"
j8=$(sqlite3 "$db" "SELECT id FROM jobs WHERE ticket = 'T-8'")
expect_exit 9 "resume of a running job: busy" "$AR" --json --progress=none resume "$j8"
expect_exit 0 "jobs shows it running with its holder" "$AR" --json jobs --state running
check "running: holder" test "$(json_get "$tmp/out" '[j["holder"] for j in d["jobs"]][0]')" = "pid $first on $(hostname)"
lab_units 9
lab_up old-9
expect_exit 9 "another ticket with a unit in use: busy" "$AR" --json --progress=none repair \
  --ticket T-9 --from "${uri[old-9]}" --to "${uri[new-8]}"
check "unit busy: the job stops at preflight" test "$(json_get "$tmp/out" 'd["step"]')" = preflight
"$AR" job abort "$(job_of)" >/dev/null
kill -CONT "$first"
set +e; wait "$first"; st=$?; set -e
check "the first process completes" test "$st" -eq 0
check "locked run: same memory" lab_same_memory 8

# --- A unit that went away: --reconnect-timeout bounds each step's wait ---------------
lab_units 10 2M
lab_up old-10
lab_up new-10 power-loss=restore-write:50
expect_exit 2 "--reconnect-timeout 0: usage" "$AR" --json --progress=none repair --ticket T-10 \
  --from "${uri[old-10]}" --to "${uri[new-10]}" --reconnect-timeout 0
t0=$(date +%s)
expect_exit 6 "power cut mid-restore, --reconnect-timeout 2: the job stops by itself" \
  "$AR" --json --progress=none repair --ticket T-10 --from "${uri[old-10]}" \
  --to "${uri[new-10]}" --reconnect-timeout 2
t1=$(date +%s)
check "it gave up within the timeout, not the default minute" test $((t1 - t0)) -lt 30
check "stopped interrupted at restore" test \
  "$(json_get "$tmp/out" 'd["state"] + "/" + d["step"]')" = interrupted/restore
j10=$(job_of)
lab_up new-10
expect_exit 0 "resume --to the unit's new address" "$AR" --json --progress=none resume "$j10" \
  --to "${uri[new-10]}" --reconnect-timeout 5
check "resumed: complete" test "$(json_get "$tmp/out" 'd["state"]')" = complete
check "resumed: same memory" lab_same_memory 10

finish
