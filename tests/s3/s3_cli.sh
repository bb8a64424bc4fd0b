#!/usr/bin/env bash
# The commands on an s3:// store (s3rver behind the SigV4-checking front):
# pack (simple and multipart), backups list/gc/rm, a pack killed mid-upload
# and cleaned up by gc, and refused credentials (exit 7).
set -euo pipefail
. "$(dirname "$0")/../cli/lib.sh"
ar=${AIBO_RESTORE:?}
labtool=${BK_TEST_LAB:?}
servers=$(cd "$(dirname "$0")" && pwd)/servers.sh
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg XDG_STATE_HOME=$tmp/state
trap 'bash "$servers" stop "$tmp/srv"; rm -rf "$tmp"' EXIT
if ! bash "$servers" start "$tmp/srv"; then
  bad "the S3 test servers start (see the message above)"
  finish
  exit 1
fi
endpoint=$(cat "$tmp/srv/endpoint")
cd "$tmp"
"$labtool" pki lab >/dev/null
export AIBO_RESTORE_CONFIG=$tmp/lab/config
cat >>lab/config <<CONF

[store]
s3_endpoint = $endpoint
s3_access_key = S3RVER
s3_secret_key = S3RVER
CONF
export AIBO_RESTORE_DEPOT_STORE=s3://depot-bk/depot
export AIBO_RESTORE_S3_PART_SIZE=5M
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION || true
"$labtool" memgen mem 300K 21
unit=(--serial ERS1-0001 --model ERS-1000 --fw-version 4.2.0 --schema 3 --hw-rev B)
cache=$tmp/state/aibo-restore/s3-cache/depot-bk_depot

expect_exit 0 "pack into the s3 store" "$ar" --json pack "${unit[@]}" mem
id=$(json_get out 'd["id"]')
check "location is the object" test "$(json_get out 'd["location"]')" = "s3://depot-bk/depot/$id.aibk"
check "one simple PUT" test "$(grep -c "^PUT /depot-bk/depot/$id.aibk 200" srv/front.log)" = 1
check "statement stored" grep -q "^PUT /depot-bk/depot/$id.aibk.statement 200" srv/front.log
check "no local part left" test -z "$(ls "$cache" | grep '\.part' || true)"
expect_exit 0 "backups list" "$ar" --json backups list
check "listed with its location" test "$(json_get out 'd["backups"][0]["location"]')" = "s3://depot-bk/depot/$id.aibk"
expect_exit 0 "backups gc: nothing to do" "$ar" --json backups gc
check "no orphans" test "$(json_get out 'len(d["orphan_files"])')" = 0
check "nothing missing" test "$(json_get out 'len(d["missing_files"])')" = 0
expect_exit 0 "verify by id (read from the store)" "$ar" --json verify "$id"
check "verified" test "$(json_get out 'd["ok"]')" = True
expect_exit 0 "extract by id" "$ar" extract -C ex-out "$id"
check "extracted tree equals the source" diff -r mem ex-out

# Multipart: a 12 MiB incompressible file makes three 5 MiB parts.
head -c 12M /dev/urandom >mem/photos/noise.bin
expect_exit 0 "pack a multipart backup" "$ar" --json pack "${unit[@]}" mem
big=$(json_get out 'd["id"]')
check "upload started once" test "$(grep -c "^POST /depot-bk/depot/$big.aibk?uploads= 200" srv/front.log)" = 1
check "three parts" test "$(grep -c "^PUT /depot-bk/depot/$big.aibk?partNumber=" srv/front.log)" = 3
check "upload completed" grep -q "^POST /depot-bk/depot/$big.aibk?uploadId=.* 200" srv/front.log
expect_exit 0 "verify the multipart backup by id" "$ar" --json verify "$big"
check "verified" test "$(json_get out 'd["ok"]')" = True
rm -rf ex-big
expect_exit 0 "extract it" "$ar" extract -C ex-big "$big"
check "its tree equals the source" diff -r mem ex-big

# Killed mid-upload: the part stays local until gc; packing again works.
echo 2 >srv/ctl
"$ar" pack "${unit[@]}" mem >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do [ -f srv/ctl.stalled ] && break; sleep 0.05; done
check "upload stalled at part 2" test -f srv/ctl.stalled
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
check "its part is left" test "$(ls "$cache" | grep -c '\.aibk\.part$')" = 1
check "with its upload journal" test "$(ls "$cache" | grep -c '\.part\.upload$')" = 1
expect_exit 0 "backups gc removes the dead part" "$ar" --json backups gc
check "one part removed" test "$(json_get out 'len(d["removed_parts"])')" = 1
check "cache clean" test -z "$(ls "$cache" | grep '\.part' || true)"
expect_exit 0 "pack again" "$ar" --json pack "${unit[@]}" mem
expect_exit 0 "backups list" "$ar" --json backups list
check "three backups" test "$(json_get out 'd["count"]')" = 3

# Wrong credentials: refused by the front, exit 7, secret never shown.
AIBO_RESTORE_STORE_S3_SECRET_KEY=not-the-right-one expect_exit 7 "wrong secret" \
  "$ar" --json pack "${unit[@]}" mem
check "s3-auth-refused" test "$(json_get out 'd["error"]["code"]')" = s3-auth-refused
check "the front refused it" grep -q "the signature does not match" srv/front.err
check "secret not printed" sh -c "! grep -q not-the-right-one '$tmp/out' '$tmp/err'"
AIBO_RESTORE_STORE_S3_SECRET_KEY=not-the-right-one expect_exit 7 "wrong secret: backups gc" \
  "$ar" backups gc

# backups rm removes both objects.
expect_exit 0 "backups rm" "$ar" --json backups rm --yes "$id"
check "object deleted" grep -q "^DELETE /depot-bk/depot/$id.aibk 204" srv/front.log
check "statement deleted" grep -q "^DELETE /depot-bk/depot/$id.aibk.statement 204" srv/front.log
check "gone from the server" test -z "$(find srv/data/depot-bk -name "$id*" | head -1)"
expect_exit 0 "backups list" "$ar" --json backups list
check "two backups" test "$(json_get out 'd["count"]')" = 2
expect_exit 3 "verify a removed backup" "$ar" verify "$id"
finish
