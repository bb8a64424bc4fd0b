#!/bin/bash
# reassign --to DEVICE: the replacement's certificate comes from its verified
# handshake (aibo-vdev serve), never from a file the unit hands over.
set -euo pipefail
. "$BK_TEST_SOURCE_DIR/tests/cli/lib.sh"
AR=$AIBO_RESTORE
SIM=$BK_BUILD_DIR/tests/cloudsim/aibo-cloudsim
VDEV=$BK_BUILD_DIR/device/virtual/aibo-vdev
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/home/.config
unset AIBO_RESTORE_API_TOKEN || true

# start NAME COMMAND...: a server whose first line is "listening on URI".
start() {
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null && break
    sleep 0.05
  done
  listening=$(sed -n 's/^listening on //p' "$tmp/$name.out" | head -1)
  [ -n "$listening" ] || { echo "$name did not start"; cat "$tmp/$name.err"; exit 1; }
}

"$VDEV" pki init "$tmp/lab" >/dev/null
export AIBO_RESTORE_CONFIG=$tmp/lab/config
"$VDEV" create "$tmp/old" --pki "$tmp/lab" --serial OLD-1 --memory 64K >/dev/null
"$VDEV" create "$tmp/new" --pki "$tmp/lab" --serial NEW-1 --fresh >/dev/null
"$VDEV" create "$tmp/other" --pki "$tmp/lab" --serial OTHER-1 --model ERS-2000 --fresh >/dev/null
"$VDEV" cert "$tmp/old" >"$tmp/old.cert"
"$VDEV" cert "$tmp/new" >"$tmp/new.cert"
"$VDEV" cert "$tmp/other" >"$tmp/other.cert"
"$SIM" register-unit --db "$tmp/cloud.db" --owner owner-1 "$tmp/old.cert" >/dev/null
"$SIM" register-unit --db "$tmp/cloud.db" "$tmp/new.cert" >/dev/null
"$SIM" register-unit --db "$tmp/cloud.db" "$tmp/other.cert" >/dev/null
"$SIM" add-ticket --db "$tmp/cloud.db" T-7 --old OLD-1
start new "$VDEV" serve "$tmp/new" --listen tcp:127.0.0.1:0
new=$listening
start other "$VDEV" serve "$tmp/other" --listen tcp:127.0.0.1:0
other=$listening
start sim "$SIM" serve --pki "$tmp/lab" --db "$tmp/cloud.db" --listen 127.0.0.1:0 \
  --token-file "$tmp/lab/api.token"
export AIBO_RESTORE_API_URL=$listening
stats() { curl -s "$AIBO_RESTORE_API_URL/_sim/stats" >"$tmp/stats.json"; json_get "$tmp/stats.json" "$1"; }

expect_exit 2 "--to and --to-cert together" "$AR" reassign --ticket T-7 --to "$new" --to-cert "$tmp/new.cert"
expect_exit 2 "--to with another unit's serial" "$AR" --json reassign --ticket T-7 --to "$new" --to-serial NEW-9
check "serial mismatch named" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = certificate-serial-mismatch
check "nothing reassigned yet" test "$(stats 'd["reassignments"].get("T-7", 0)')" = 0
expect_exit 8 "a unit of another model is refused by the service" "$AR" reassign --ticket T-7 --to "$other"
expect_exit 0 "reassign --to DEVICE" "$AR" --json reassign --ticket T-7 --to "$new"
check "new serial from the handshake" test "$(json_get "$tmp/out" 'd["new_serial"]')" = NEW-1
check "old serial" test "$(json_get "$tmp/out" 'd["old_serial"]')" = OLD-1
check "bundle saved" test "$(json_get "$tmp/out" 'd["bundle_saved"]')" = True
check "one reassignment applied" test "$(stats 'd["reassignments"]["T-7"]')" = 1
expect_exit 0 "the same command again" "$AR" --json reassign --ticket T-7 --to "$new"
check "still one reassignment" test "$(stats 'd["reassignments"]["T-7"]')" = 1

# cloud-backup rewrap --for DEVICE: a backup the old unit made for the cloud's
# escrow key, re-wrapped by the cloud to the replacement's certificate key.
start old "$VDEV" serve "$tmp/old" --listen tcp:127.0.0.1:0
old=$listening
escrow=$(age-keygen -y "$tmp/lab/cloud-escrow.identity")
expect_exit 0 "the old unit backs up for the escrow key" "$AR" --progress=none backup "$old" -r "$escrow" -o "$tmp/cloud.aibk"
"$SIM" add-backup --db "$tmp/cloud.db" --serial OLD-1 --id cb-1 "$tmp/cloud.aibk" >/dev/null
# the simulator reads its database at start: restart it
kill "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
start sim2 "$SIM" serve --pki "$tmp/lab" --db "$tmp/cloud.db" --listen 127.0.0.1:0 \
  --token-file "$tmp/lab/api.token"
export AIBO_RESTORE_API_URL=$listening
expect_exit 0 "cloud-backup rewrap --for DEVICE" "$AR" --json cloud-backup rewrap cb-1 --for "$new" -o "$tmp/for-new.aibk"
check "the statement stays valid" "$AR" verify "$tmp/for-new.aibk" --quick
payload() { python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.index(b"\n--- "); sys.stdout.buffer.write(d[d.index(b"\n", i + 1) + 1:])' "$1"; }
check "the payload is unchanged" cmp <(payload "$tmp/cloud.aibk") <(payload "$tmp/for-new.aibk")
check "the header changed" sh -c "! cmp -s '$tmp/cloud.aibk' '$tmp/for-new.aibk'"
check "the escrow key no longer opens it" sh -c "! age -d -i '$tmp/lab/cloud-escrow.identity' '$tmp/for-new.aibk' >/dev/null 2>&1"

kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
expect_exit 6 "an unreachable unit" "$AR" reassign --ticket T-7 --to "$new"
finish
