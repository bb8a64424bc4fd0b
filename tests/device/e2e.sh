#!/usr/bin/env bash
# End to end: aibo-vdev pki init/create/serve/digest/cert and
# aibo-restore devices/info over TCP, Unix and the simulated USB bus, with
# faults mapped to the right exit classes.
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

# start NAME ARGS...: runs aibo-vdev serve in the background, waits for its
# listening line; sets $uri and $pid.
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
stop() { kill -TERM "$1"; wait "$1" || true; }

"$vdev" pki init "$tmp/lab" >/dev/null
check "pki init writes a config" test -f "$tmp/lab/config"
cfg=$tmp/lab/config
check "create" "$vdev" create "$tmp/u1" --pki "$tmp/lab" --serial E2E-0001 --memory 256K --fw-version 3.1.0 --schema 3
expect_exit 2 "create refuses a missing --serial" "$vdev" create "$tmp/u2" --pki "$tmp/lab"
expect_exit 1 "create refuses an existing unit" "$vdev" create "$tmp/u1" --pki "$tmp/lab" --serial E2E-0001
"$vdev" cert "$tmp/u1" >"$tmp/cert"
check "cert prints the factory certificate" grep -q 'BEGIN AIBO CERTIFICATE' "$tmp/cert"

# TCP.
start tcp "$tmp/u1" --listen tcp:127.0.0.1:0
check "serve prints a tcp URI" grep -qE '^listening on tcp:127\.0\.0\.1:[0-9]+$' "$tmp/tcp.out"
expect_exit 0 "devices --probe (json)" "$ar" --config "$cfg" --json devices --probe "$uri"
check "devices: one JSON object" one_json "$tmp/out"
check "devices: the probed unit" test "$(json_get "$tmp/out" 'd["units"][0]["serial"]')" = E2E-0001
check "devices: its firmware" test "$(json_get "$tmp/out" 'd["units"][0]["firmware"]')" = 3.1.0
expect_exit 0 "devices --probe (text)" "$ar" --config "$cfg" devices --probe "$uri"
check "devices text names the unit" grep -q 'E2E-0001.*ERS-1000.*3.1.0.*idle' "$tmp/out"
expect_exit 0 "info --json" "$ar" --config "$cfg" --json info "$uri"
cp "$tmp/out" "$tmp/info.json"
check "info: one JSON object" one_json "$tmp/info.json"
check "info: serial" test "$(json_get "$tmp/info.json" 'd["serial"]')" = E2E-0001
check "info: schema range" test "$(json_get "$tmp/info.json" '(d["firmware"]["schema_min"], d["firmware"]["schema_max"])')" = "(1, 3)"
check "info: certificate valid" test "$(json_get "$tmp/info.json" 'd["certificate"]["status"]')" = valid
check "info: two slots" test "$(json_get "$tmp/info.json" 'len(d["slots"])')" = 2
"$vdev" digest "$tmp/u1" >"$tmp/digest.json"
check "digest while served equals INFO's domains" python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["serial"] == b["serial"] == "E2E-0001"
assert a["domains"] == b["domains"] and len(a["domains"]) == 6, (a, b)
' "$tmp/digest.json" "$tmp/info.json"
expect_exit 0 "info (text)" "$ar" --config "$cfg" info "$uri"
check "info text shows the domains" grep -q '^  personality' "$tmp/out"
# A name from [devices].
printf '\n[devices]\nbench1 = %s\n' "$uri" >>"$cfg"
expect_exit 0 "info by name" "$ar" --config "$cfg" --json info bench1
check "info by name: serial" test "$(json_get "$tmp/out" 'd["serial"]')" = E2E-0001
expect_exit 0 "devices lists the configured unit" "$ar" --config "$cfg" --json devices
check "devices: configured name" test "$(json_get "$tmp/out" '[u["name"] for u in d["units"] if u["source"] == "config"][0]')" = bench1
# Errors and their exit classes.
expect_exit 3 "info: unknown name" "$ar" --config "$cfg" --json info nosuchunit
check "info: unknown name is one JSON object" one_json "$tmp/out"
expect_exit 2 "info: bad URI" "$ar" --config "$cfg" info usb:bad/serial
expect_exit 6 "info: nothing listening" "$ar" --config "$cfg" --json info tcp:127.0.0.1:1
check "info: error code names the cause" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = connection-refused
expect_exit 6 "devices: a probe that does not answer" "$ar" --config "$cfg" --json devices --probe tcp:127.0.0.1:1
stop "$pid"

# Unix socket, and the faults that map to exit classes.
start unix "$tmp/u1" --listen "unix:$tmp/u1.sock" --fault busy
check "serve prints the unix URI" test "$uri" = "unix:$tmp/u1.sock"
expect_exit 9 "busy unit: exit 9" "$ar" --config "$cfg" --json info "$uri"
check "busy: error code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = busy
stop "$pid"
start unix2 "$tmp/u1" --listen "unix:$tmp/u1.sock"
expect_exit 0 "info over unix" "$ar" --config "$cfg" --json info "$uri"
check "info over unix: serial" test "$(json_get "$tmp/out" 'd["serial"]')" = E2E-0001
stop "$pid"
start refuse "$tmp/u1" --listen tcp:127.0.0.1:0 --fault refuse-handshake
expect_exit 7 "refused handshake: exit 7" "$ar" --config "$cfg" --json info "$uri"
check "refused: error code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = handshake-refused
stop "$pid"
start stall "$tmp/u1" --listen tcp:127.0.0.1:0 --fault stall=1
expect_exit 6 "stalled unit: timeout, exit 6" env AIBO_RESTORE_DEVICE_TIMEOUT=1 "$ar" --config "$cfg" --json info "$uri"
check "stall: error code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = timeout
stop "$pid"
start power "$tmp/u1" --listen tcp:127.0.0.1:0 --fault power-loss=info
expect_exit 6 "power loss during INFO: exit 6" "$ar" --config "$cfg" info "$uri"
set +e; wait "$pid"; st=$?; set -e
check "serve exits 3 after a power loss" test "$st" -eq 3
check "serve names the step" grep -q 'power lost at step info' "$tmp/power.err"
# Power cycle: the same folder serves again.
start again "$tmp/u1" --listen tcp:127.0.0.1:0
expect_exit 0 "after the power cycle" "$ar" --config "$cfg" --json info "$uri"
stop "$pid"

# USB through the simulated bus.
if "$vdev" serve "$tmp/u1" --usb >"$tmp/usb.out" 2>"$tmp/usb.err" & pid=$!; pids+=("$pid"); then :; fi
for _ in $(seq 100); do
  grep -q '^LD_PRELOAD=' "$tmp/usb.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if grep -q '^LD_PRELOAD=' "$tmp/usb.out"; then
  check "serve --usb prints the usb URI" grep -q '^listening on usb:E2E-0001$' "$tmp/usb.out"
  dir=$(sed -n 's/^UMOCKDEV_DIR=//p' "$tmp/usb.out")
  preload=$(sed -n 's/^LD_PRELOAD=//p' "$tmp/usb.out")
  expect_exit 0 "info over USB" env UMOCKDEV_DIR="$dir" LD_PRELOAD="$preload" "$ar" --config "$cfg" --json info usb:E2E-0001
  check "info over USB: serial" test "$(json_get "$tmp/out" 'd["serial"]')" = E2E-0001
  check "info over USB: digests" python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["domains"] == b["domains"]
' "$tmp/out" "$tmp/digest.json"
  expect_exit 0 "devices finds the USB unit" env UMOCKDEV_DIR="$dir" LD_PRELOAD="$preload" "$ar" --config "$cfg" --json devices
  check "devices: usb row" test "$(json_get "$tmp/out" '[u["serial"] for u in d["units"] if u["source"] == "usb"][0]')" = E2E-0001
  stop "$pid"
  check "the USB test bed is removed" test ! -e "$dir"
else
  bad "serve --usb did not start: $(cat "$tmp/usb.err")"
fi
finish
