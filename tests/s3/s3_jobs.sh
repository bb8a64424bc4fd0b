#!/usr/bin/env bash
# Backup, restore, verify, backups list/show/rm and the repair job with the
# depot's store on S3 (s3rver behind the SigV4-checking front, servers.sh),
# against virtual units and the API simulator: downloads cut mid-way and
# killed mid-way resume with Range requests; refused credentials exit 7.
set -euo pipefail
BUILD=${BK_BUILD_DIR:?}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/../repair/lab.sh"
servers=$here/servers.sh
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg XDG_STATE_HOME=$tmp/state
trap 'lab_stop; bash "$servers" stop "$tmp/srv"; rm -rf "$tmp"' EXIT
if ! bash "$servers" start "$tmp/srv"; then
  bad "the S3 test servers start (see the message above)"
  finish
  exit 1
fi
endpoint=$(cat "$tmp/srv/endpoint")
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION || true
LAB_FW_SIZE=65536 lab_init
cat >>"$lab/pki/config" <<CONF

[store]
s3_endpoint = $endpoint
s3_region = us-east-1
s3_access_key = S3RVER
s3_secret_key = S3RVER
CONF
export AIBO_RESTORE_DEPOT_STORE=s3://depot-bk/depot
cache=$tmp/state/aibo-restore/s3-cache/depot-bk_depot
log=$tmp/srv/front.log
# objects ID: how many objects of backup ID the bucket holds (s3rver keeps
# each as KEY._S3rver_object).
objects() { find "$tmp/srv/data/depot-bk" -name "$1*._S3rver_object" -not -path '*/._S3rver_uploads/*' | wc -l; }
# digests UNIT: the unit's domain digests (aibo-vdev digest without the serial).
digests() { "$VDEV" digest "$1" | grep -v '"serial"'; }
# jv EXPR...: values from the last command's JSON output into ${J[@]}, one
# python start for all of them (the machine running the tests may be slow).
jv() {
  mapfile -t J < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for e in sys.argv[2:]:
    print(eval(e, {"d": d, "json": json}))' "$tmp/out" "$@")
}
wait_for() { for _ in $(seq 400); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# --- Backup from a unit into the bucket ----------------------------------------------
"$VDEV" create "$lab/src" --pki "$lab/pki" --serial S3J-SRC --memory 2M --seed 5 >/dev/null
"$VDEV" create "$lab/dst" --pki "$lab/pki" --serial S3J-DST --fresh >/dev/null
"$VDEV" create "$lab/dst2" --pki "$lab/pki" --serial S3J-DST2 --fresh >/dev/null
lab_up src
lab_up dst
lab_up dst2
expect_exit 0 "backup a unit into the s3 store" "$AR" --json --progress=none backup "${uri[src]}"
jv 'd["id"]' 'd["file_size"]' 'd["location"]' 'd["in_catalog"]'
id=${J[0]} size=${J[1]}
check "location is the object" test "${J[2]}" = "s3://depot-bk/depot/$id.aibk"
check "in the catalog" test "${J[3]}" = True
check "the object was PUT" grep -q "^PUT /depot-bk/depot/$id.aibk 200" "$log"
check "its statement was PUT" grep -q "^PUT /depot-bk/depot/$id.aibk.statement 200" "$log"
check "both are in the bucket" test "$(objects "$id")" = 2
check "the object has the file's size" test "$(find "$tmp/srv/data/depot-bk" -name "$id.aibk._S3rver_object" -printf %s)" = "$size"
check "no local part or copy left" test -z "$(ls "$cache" 2>/dev/null | grep "$id" || true)"

expect_exit 0 "backups list" "$AR" --json backups list
check "listed with its s3 location" grep -q "\"location\": *\"s3://depot-bk/depot/$id.aibk\"" "$tmp/out"
expect_exit 0 "backups show" "$AR" --json backups show "$id"
check "show: the s3 location" grep -q "s3://depot-bk/depot/$id.aibk" "$tmp/out"
check "show: the unit produced it" grep -q S3J-SRC "$tmp/out"

gets0=$(grep -c "^GET /depot-bk/depot/$id.aibk 200" "$log" || true)
expect_exit 0 "verify (full) from the store" "$AR" --json verify "$id"
check "verified" grep -q '"ok": *true' "$tmp/out"
check "verify downloaded the object" test "$(grep -c "^GET /depot-bk/depot/$id.aibk 200" "$log")" -gt "$gets0"
expect_exit 0 "verify --quick from the store" "$AR" --json verify --quick "$id"
check "quick: verified" grep -q '"ok": *true' "$tmp/out"

# --- Restore from the bucket; the download cut mid-way resumes in the command ---------
src_d=$(digests "$lab/src")
rm -f "$cache/$id.aibk"
echo "cut 300000" >"$tmp/srv/getctl"
expect_exit 0 "restore from the store onto a fresh unit (download cut)" \
  "$AR" --json --progress=none restore "${uri[dst]}" "$id"
check "restore: digests match" grep -q '"digests_match": *true' "$tmp/out"
check "the cut happened" grep -q "^cut 300000 /depot-bk/depot/$id.aibk" "$tmp/srv/getctl.done"
check "resumed with a Range request from the cut" \
  grep -q "^GET /depot-bk/depot/$id.aibk 206 range=bytes=300000-" "$log"
check "the new unit holds the same memory (aibo-vdev digest)" test "$src_d" = "$(digests "$lab/dst")"

# --- A restore killed during its download resumes it in the next command ------------
rm -f "$cache/$id.aibk" "$tmp/srv/getctl.done"
echo "stall 400000" >"$tmp/srv/getctl"
"$AR" --progress=none restore "${uri[dst2]}" "$id" >"$tmp/killed.out" 2>&1 &
kpid=$!
check "the download stalled" wait_for "$tmp/srv/getctl.done"
sleep 0.3
kill -9 "$kpid"
wait "$kpid" 2>/dev/null || true
check "a partial download is left" test -s "$cache/$id.aibk.dl"
have=$(stat -c %s "$cache/$id.aibk.dl" 2>/dev/null || echo 0)
check "nothing was sent to the unit" test "$(digests "$lab/dst2")" != "$src_d"
expect_exit 0 "restore again" "$AR" --json --progress=none restore "${uri[dst2]}" "$id"
check "the download resumed where the killed one stopped" \
  grep -q "^GET /depot-bk/depot/$id.aibk 206 range=bytes=$have-" "$log"
check "resumed from past the start" test "$have" -gt 0
check "the second unit holds the same memory" test "$src_d" = "$(digests "$lab/dst2")"
check "no partial download left" test ! -e "$cache/$id.aibk.dl"

# --- Refused credentials: exit 7, naming the cause, the secret never shown -----------
bad_secret=not-the-right-one
for cmd in "backup ${uri[src]}" "verify $id" "restore ${uri[dst]} $id --overwrite"; do
  rm -f "$cache/$id.aibk"
  # shellcheck disable=SC2086
  AIBO_RESTORE_STORE_S3_SECRET_KEY=$bad_secret expect_exit 7 "wrong secret: ${cmd%% *}" \
    "$AR" --json --progress=none $cmd
  check "wrong secret: ${cmd%% *}: s3-auth-refused" grep -q '"code": *"s3-auth-refused"' "$tmp/out"
  check "wrong secret: ${cmd%% *}: names the setting" grep -q "store.s3_secret_key" "$tmp/out"
  check "wrong secret: ${cmd%% *}: secret not printed" sh -c "! grep -q '$bad_secret' '$tmp/out' '$tmp/err'"
done
check "the front refused the signatures" grep -q "the signature does not match" "$tmp/srv/front.err"
AIBO_RESTORE_STORE_S3_ACCESS_KEY=NOBODY expect_exit 7 "unknown access key: verify" "$AR" verify "$id"
check "unknown access key: names the setting" grep -q "store.s3_access_key" "$tmp/err"

# --- backups rm removes the objects -----------------------------------------------------
expect_exit 0 "backups rm --yes" "$AR" --json backups rm --yes "$id"
check "object deleted" grep -q "^DELETE /depot-bk/depot/$id.aibk 204" "$log"
check "statement deleted" grep -q "^DELETE /depot-bk/depot/$id.aibk.statement 204" "$log"
check "gone from the bucket" test "$(objects "$id")" = 0
expect_exit 3 "verify a removed backup" "$AR" verify "$id"

# --- The repair job with the store on S3 ---------------------------------------------------
lab_pair 1 1M
puts0=$(grep -c '^PUT /depot-bk/depot/.*\.aibk 200' "$log")
expect_exit 0 "repair with the store on s3" "$AR" --json --progress=none repair --ticket T-1 \
  --from "${uri[old-1]}" --to "${uri[new-1]}"
jv 'd["state"]' 'd["report"]["verification"]["ok"]' 'd["report"]["backup"]["id"]'
rid=${J[2]}
check "repair: state complete" test "${J[0]}" = complete
check "repair: verification ok" test "${J[1]}" = True
check "repair: its backup went to the bucket" test "$(grep -c '^PUT /depot-bk/depot/.*\.aibk 200' "$log")" = $((puts0 + 1))
check "repair: the backup object is there" test "$(objects "$rid")" = 2
check "repair: the new unit holds the old unit's memory" test "$(digests "$lab/old-1")" = "$(digests "$lab/new-1")"
check "repair: the old unit's memory is unchanged" lab_old_unchanged 1
curl -fsS "$AIBO_RESTORE_API_URL/_sim/stats" >"$tmp/stats.json"
"$AR" --json ticket T-1 >"$tmp/out"
jv 'd["ticket"]["status"]' 'json.load(open("'"$tmp/stats.json"'"))["reassignments"].get("T-1", 0)'
check "repair: one reassignment (the simulator's /_sim/stats)" test "${J[1]}" = 1
check "repair: ticket completed" test "${J[0]}" = completed
finish
