#!/usr/bin/env bash
# End to end: aibo-restore firmware pack/inspect/verify/list/flash against
# aibo-vdev serve over TCP: a good update, refusals, a boot failure rolled
# back (exit 12), a power loss at first boot, and a transfer resumed after a
# dropped connection.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
vdev=${BK_BUILD_DIR:?}/device/virtual/aibo-vdev
ar=${AIBO_RESTORE:?}
pids=()
cleanup_servers() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup_servers; rm -rf "$tmp"' EXIT

start() {
  local name=$1; shift
  "$vdev" serve "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  uri=$(sed -n 's/^listening on //p' "$tmp/$name.out")
  [ -n "$uri" ] || { cat "$tmp/$name.err"; return 1; }
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" || true; }
# jcheck NAME EXPR...: $tmp/out is one JSON object ("version": 1) and every
# EXPR (python, over d) holds; one interpreter for all of them.
jcheck() {
  local name=$1; shift
  check "$name" python3 -c '
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)
assert isinstance(d, dict) and d.get("version") == 1 and text.strip().count("\n") == 0
for e in sys.argv[2:]:
    if not eval(e, {"d": d}):
        print("    false:", e, "in", text[:400]); sys.exit(1)
' "$tmp/out" "$@"
}

"$vdev" pki init "$tmp/lab" >/dev/null
cfg=$tmp/lab/config
key=$tmp/lab/firmware.key
head -c 300000 /dev/urandom >"$tmp/rootfs.img"
head -c 100000 /dev/urandom >"$tmp/kernel.img"
mkdir -p "$tmp/fw"

expect_exit 0 "firmware pack" "$ar" --config "$cfg" --json firmware pack --key "$key" \
  --model ERS-1000 --model ERS-1100 --version 4.0.0 --security-counter 2 --schema 1:3 \
  --hw-rev 1:2 "$tmp/rootfs.img" "$tmp/kernel.img" -o "$tmp/fw/fw-4.0.0.aifw"
jcheck "pack: two payloads" 'len(d["payloads"]) == 2' 'd["fw_version"] == "4.0.0"'
expect_exit 0 "firmware pack (older)" "$ar" --config "$cfg" firmware pack --key "$key" \
  --model ERS-1000 --version 2.0.0 --security-counter 0 --schema 1:2 "$tmp/rootfs.img" \
  -o "$tmp/fw/fw-2.0.0.aifw"
expect_exit 0 "firmware pack (other model)" "$ar" --config "$cfg" firmware pack --key "$key" \
  --model ERS-2000 --version 4.0.0 --security-counter 2 --schema 1:3 "$tmp/rootfs.img" \
  -o "$tmp/fw/other-model.aifw"
expect_exit 2 "pack without --key is a usage error" "$ar" --config "$cfg" firmware pack \
  --model ERS-1000 --version 1.0.0 --security-counter 1 --schema 1:2 "$tmp/rootfs.img" -o "$tmp/x.aifw"

expect_exit 0 "firmware inspect" "$ar" --config "$cfg" --json firmware inspect "$tmp/fw/fw-4.0.0.aifw"
jcheck "inspect: signature, key id, version" 'd["signature"]["status"] == "valid"' \
  'len(d["signature"]["key_id"]) == 16' 'd["fw_version"] == "4.0.0"'
expect_exit 0 "firmware verify" "$ar" --config "$cfg" --json firmware verify "$tmp/fw/fw-4.0.0.aifw"
jcheck "verify: ok" 'd["ok"] is True'
# A tampered payload byte.
cp "$tmp/fw/fw-4.0.0.aifw" "$tmp/tampered.aifw"
python3 - "$tmp/tampered.aifw" "$tmp/rootfs.img" <<'PY'
import sys
data = bytearray(open(sys.argv[1], 'rb').read())
img = open(sys.argv[2], 'rb').read()
at = data.find(img[:64])
data[at + 1000] ^= 0x55
open(sys.argv[1], 'wb').write(data)
PY
expect_exit 4 "verify refuses a tampered payload" "$ar" --config "$cfg" --json firmware verify "$tmp/tampered.aifw"
jcheck "tampered: reason" 'd["error"]["code"] == "payload-digest-mismatch"'
# A revoked key (trust.revoked_keys in a second config).
expect_exit 0 "inspect for the key id" "$ar" --config "$cfg" --json firmware inspect "$tmp/fw/fw-4.0.0.aifw"
kid=$(json_get "$tmp/out" 'd["signature"]["key_id"]')
sed "s/^\[trust\]$/[trust]\nrevoked_keys = $kid/" "$cfg" >"$tmp/lab/revoked.config"
expect_exit 4 "verify refuses a revoked key" "$ar" --config "$tmp/lab/revoked.config" --json firmware verify "$tmp/fw/fw-4.0.0.aifw"
jcheck "revoked: reason" 'd["error"]["code"] == "key-revoked"'
expect_exit 0 "firmware list" "$ar" --config "$cfg" --json firmware list "$tmp/fw"
jcheck "list: three bundles, ascending" '[b["fw_version"] for b in d["bundles"]] == ["2.0.0", "4.0.0", "4.0.0"]'
expect_exit 0 "firmware list --model --min-schema" "$ar" --config "$cfg" --json firmware list "$tmp/fw" --model ERS-1000 --min-schema 3
jcheck "list: filtered" '[b["file"].split("/")[-1] for b in d["bundles"]] == ["fw-4.0.0.aifw"]'

"$vdev" create "$tmp/u1" --pki "$tmp/lab" --serial FL-E2E-1 --memory 64K --fw-version 3.0.0 \
  --fw-security-counter 1 --schema 2 >/dev/null
start u1 "$tmp/u1" --listen tcp:127.0.0.1:0 --boot-time 200
expect_exit 0 "verify --for the unit" "$ar" --config "$cfg" --json firmware verify "$tmp/fw/fw-4.0.0.aifw" --for "$uri"
jcheck "verify --for: unit serial" 'd["unit"]["serial"] == "FL-E2E-1"'
expect_exit 5 "verify --for refuses another model" "$ar" --config "$cfg" --json firmware verify "$tmp/fw/other-model.aifw" --for "$uri"
jcheck "other model: reason" 'd["error"]["code"] == "wrong-model"'
expect_exit 5 "flash refuses an older security counter" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-2.0.0.aifw" --yes
jcheck "older counter: reason" 'd["error"]["code"] == "security-counter-rollback"'
expect_exit 4 "flash refuses a tampered payload" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/tampered.aifw" --yes
expect_exit 2 "flash without a terminal needs --yes" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" </dev/null
jcheck "no --yes: reason" 'd["error"]["code"] == "confirmation-needed"'
expect_exit 0 "firmware flash" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" --yes
jcheck "flash: slot B written, running, good" 'd["slot"] == "B"' 'd["previous_slot"] == "A"' \
  'd["running_slot"] == "B"' 'd["boot_result"] == "good"' 'd["sent"] == d["bytes"] == 400000'
expect_exit 0 "info after the flash" "$ar" --config "$cfg" --json info "$uri"
jcheck "info: firmware 4.0.0, counter 2" 'd["firmware"]["version"] == "4.0.0"' \
  'd["firmware"]["security_counter"] == 2' 'd["firmware"]["slot"] == "B"'
stop "$pid"

# Boot failure: the unit falls back, the tool says rollback (exit 12).
"$vdev" create "$tmp/u2" --pki "$tmp/lab" --serial FL-E2E-2 --memory 64K >/dev/null
start u2 "$tmp/u2" --listen tcp:127.0.0.1:0 --boot-time 100 --fault boot-fail
expect_exit 12 "boot failure is a rollback" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" --yes
jcheck "rollback: code, slot A, counter kept" 'd["error"]["code"] == "firmware-rolled-back"' \
  'd["running_slot"] == "A"' 'd["security_counter"] == 1' 'd["rolled_back"] is True'
stop "$pid"

# Power loss at first boot: serve exits; powered up again the unit runs A;
# the flash then completes.
"$vdev" create "$tmp/u3" --pki "$tmp/lab" --serial FL-E2E-3 --memory 64K >/dev/null
start u3 "$tmp/u3" --listen tcp:127.0.0.1:0 --boot-time 100 --fault power-loss=boot
expect_exit 6 "power loss at boot: unit not back" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" --yes --boot-timeout 2
jcheck "power loss: unit-not-back" 'd["error"]["code"] == "unit-not-back"'
set +e; wait "$pid"; st=$?; set -e
check "serve exits on power loss (3)" test "$st" -eq 3
start u3b "$tmp/u3" --listen tcp:127.0.0.1:0 --boot-time 100
expect_exit 0 "info after the power loss" "$ar" --config "$cfg" --json info "$uri"
jcheck "after power loss: runs A, B abandoned" 'd["firmware"]["slot"] == "A"' \
  '[s["state"] for s in d["slots"]] == ["active", "empty"]'
expect_exit 0 "flash again completes" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" --yes
jcheck "flash again: running B" 'd["running_slot"] == "B"' 'd["boot_result"] == "good"'
stop "$pid"

# A dropped connection mid-write: the transfer resumes from the unit's offset.
"$vdev" create "$tmp/u4" --pki "$tmp/lab" --serial FL-E2E-4 --memory 64K >/dev/null
start u4 "$tmp/u4" --listen tcp:127.0.0.1:0 --boot-time 100 --fault disconnect-after=250000
expect_exit 0 "flash survives a dropped connection" "$ar" --config "$cfg" --json firmware flash "$uri" "$tmp/fw/fw-4.0.0.aifw" --yes
jcheck "resumed once, running B" 'd["resumes"] == 1' 'd["running_slot"] == "B"' \
  'd["sent"] < 2 * d["bytes"]'
stop "$pid"
finish
