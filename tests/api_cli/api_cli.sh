#!/bin/bash
# aibo-restore's private-API commands (unit, ticket, reassign, enroll,
# cloud-backups, cloud-backup fetch/rewrap) against aibo-cloudsim on
# 127.0.0.1, over HTTP and HTTPS: results, exit codes and JSON error codes,
# retries, idempotency, and secrecy of the token.
set -euo pipefail
. "$BK_TEST_SOURCE_DIR/tests/cli/lib.sh"

AR=$AIBO_RESTORE
SIM=$BK_BUILD_DIR/tests/cloudsim/aibo-cloudsim
LABTOOL=$BK_BUILD_DIR/tests/apicli-lab
STATUS_SERVER=$BK_TEST_SOURCE_DIR/tests/api_cli/status_server.py
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- The lab and the simulator's database --------------------------------------
lab=$tmp/lab
"$LABTOOL" "$lab"
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/home/.config XDG_STATE_HOME=$tmp/home/.state
unset AIBO_RESTORE_API_TOKEN AIBO_RESTORE_API_URL AIBO_RESTORE_API_TOKEN_FILE || true
export AIBO_RESTORE_CONFIG=$lab/config
export AIBO_RESTORE_API_TIMEOUT=10 AIBO_RESTORE_API_CONNECT_TIMEOUT=5
TOKEN=$(cat "$lab/api.token")
RO_TOKEN=readonly-token-7Kq2
template=$tmp/template.db
"$SIM" register-unit --db "$template" --pki "$lab" --owner owner-42 "$lab/OLD1.cert" >/dev/null
for u in NEW1 NEW2 OTHER1; do "$SIM" register-unit --db "$template" --pki "$lab" "$lab/$u.cert" >/dev/null; done
"$SIM" register-unit --db "$template" --pki "$lab" --owner someone "$lab/BOUND1.cert" >/dev/null
for t in T-100 T-200 T-300 T-400; do "$SIM" add-ticket --db "$template" --old OLD1 "$t"; done
# A cloud backup of OLD1 (made by the lab tool: a depot-made backup encrypted
# to the cloud's escrow key, with its signed statement).
cp "$lab/old1.aibk" "$tmp/old1.aibk"
cp "$lab/old1.aibk.statement" "$tmp/old1.aibk.statement"
age -d -i "$lab/cloud-escrow.identity" -o "$tmp/plain" "$tmp/old1.aibk"
"$SIM" add-backup --db "$template" --serial OLD1 --id b-old1 --firmware 3.1.0 --schema 2 \
  "$tmp/old1.aibk" >/dev/null
# The same file with a statement that is not signed: fetching it must fail.
cp "$tmp/old1.aibk" "$tmp/bad.aibk"
sed 's/OLD1/OLD2/' "$tmp/old1.aibk.statement" >"$tmp/bad.aibk.statement"
"$SIM" add-backup --db "$template" --serial OLD1 --id b-bad "$tmp/bad.aibk" >/dev/null

# start_sim NAME [serve options...]: a simulator on a fresh copy of the
# database; sets URL and SIMPID.
start_sim() {
  local name=$1; shift
  cp "$template" "$tmp/$name.db"
  "$SIM" serve --db "$tmp/$name.db" --pki "$lab" --listen 127.0.0.1:0 \
    --token-file "$lab/api.token" --read-token "$RO_TOKEN" "$@" \
    >"$tmp/$name.sim.out" 2>"$tmp/$name.sim.err" &
  SIMPID=$!
  pids+=("$SIMPID")
  for _ in $(seq 100); do
    grep -q '^listening on ' "$tmp/$name.sim.out" 2>/dev/null && break
    sleep 0.05
  done
  URL=$(sed -n 's/^listening on //p' "$tmp/$name.sim.out")
  [ -n "$URL" ] || { echo "simulator $name did not start"; cat "$tmp/$name.sim.err"; exit 1; }
}
stop_sim() { kill "$1"; wait "$1" || true; }
stats() { curl -sk "$URL/_sim/stats" >"$tmp/stats.json"; json_get "$tmp/stats.json" "$1"; }
# jq-like checks on the last command's stdout
jv() { json_get "$tmp/out" "$1"; }
check_json() { # check_json NAME EXPR EXPECTED
  local got
  got=$(jv "$2" 2>/dev/null || echo "<unreadable>")
  if [ "$got" = "$3" ]; then ok "$1"; else bad "$1 (got '$got', wanted '$3')"; sed 's/^/    /' "$tmp/out" "$tmp/err" | head -10; fi
}

# --- Happy paths over HTTP on loopback ----------------------------------------
start_sim main
export AIBO_RESTORE_API_URL=$URL

expect_exit 0 "unit: exit 0" "$AR" --json unit OLD1
check_json "unit: one JSON object" "1 if d['version'] == 1 else 0" 1
check_json "unit: device id" "d['unit']['device_id']" dev-OLD1
check_json "unit: owner" "d['unit']['owner']" owner-42
check_json "unit: status" "d['unit']['status']" active
expect_exit 0 "unit: text" "$AR" unit NEW1
check "unit: text names the status" grep -q '^status  *stock' "$tmp/out"

expect_exit 0 "ticket: exit 0" "$AR" --json ticket T-100
check_json "ticket: old serial" "d['ticket']['old_serial']" OLD1
check_json "ticket: status" "d['ticket']['status']" open
check_json "ticket: no new serial yet" "d['ticket']['new_serial']" None

expect_exit 0 "cloud-backups: exit 0" "$AR" --json cloud-backups OLD1
check_json "cloud-backups: two backups" "len(d['backups'])" 2
check_json "cloud-backups: their ids" "sorted(b['id'] for b in d['backups'])" "['b-bad', 'b-old1']"
check_json "cloud-backups: size" "[b['size'] for b in d['backups'] if b['id'] == 'b-old1'][0]" "$(stat -c %s "$tmp/old1.aibk")"
expect_exit 0 "cloud-backups: text" "$AR" cloud-backups OLD1
check "cloud-backups: text lists it" grep -q '^b-old1 ' "$tmp/out"

expect_exit 0 "fetch: exit 0" "$AR" --json cloud-backup fetch -o "$tmp/f.aibk" b-old1
check "fetch: content byte for byte" cmp -s "$tmp/f.aibk" "$tmp/old1.aibk"
check "fetch: statement byte for byte" cmp -s "$tmp/f.aibk.statement" "$tmp/old1.aibk.statement"
check "fetch: no .part left" test ! -e "$tmp/f.aibk.part"
check_json "fetch: statement verified" "d['statement_verified']" True
check "fetch: decrypts with the escrow key" bash -c "age -d -i '$lab/cloud-escrow.identity' '$tmp/f.aibk' | cmp -s - '$tmp/plain'"
expect_exit 1 "fetch: refuses to replace a file" "$AR" --json cloud-backup fetch -o "$tmp/f.aibk" b-old1
check_json "fetch: file-exists" "d['error']['code']" file-exists
expect_exit 0 "fetch: --force replaces" "$AR" cloud-backup fetch --force -o "$tmp/f.aibk" b-old1
expect_exit 3 "fetch: unknown backup is exit 3" "$AR" --json cloud-backup fetch -o "$tmp/nope.aibk" b-nope
check "fetch: nothing written for an unknown backup" test ! -e "$tmp/nope.aibk" -a ! -e "$tmp/nope.aibk.part"

expect_exit 4 "fetch: a statement that does not verify is exit 4" \
  "$AR" --json cloud-backup fetch -o "$tmp/bad-f.aibk" b-bad
check_json "fetch: statement-invalid" "d['error']['code']" statement-invalid
check "fetch: nothing unverified left" test ! -e "$tmp/bad-f.aibk" -a ! -e "$tmp/bad-f.aibk.statement"

# Re-wrap by the cloud: NEW1 can open the file, the payload is unchanged.
expect_exit 0 "rewrap: exit 0" "$AR" --json cloud-backup rewrap --for-cert "$lab/NEW1.cert" -o "$tmp/r.aibk" b-old1
check "rewrap: NEW1's identity opens it" bash -c "age -d -i '$lab/NEW1.identity' '$tmp/r.aibk' | cmp -s - '$tmp/plain'"
check "rewrap: the escrow key no longer opens it" bash -c "! age -d -i '$lab/cloud-escrow.identity' '$tmp/r.aibk' >/dev/null 2>&1"
check "rewrap: payload bytes unchanged" python3 - "$tmp/old1.aibk" "$tmp/r.aibk" <<'PY'
import sys
def payload(p):
    d = open(p, 'rb').read()
    i = d.index(b'\n---')
    return d[d.index(b'\n', i + 1) + 1:]
assert payload(sys.argv[1]) == payload(sys.argv[2])
PY
check "rewrap: statement beside it" cmp -s "$tmp/r.aibk.statement" "$tmp/old1.aibk.statement"
check_json "rewrap: names the unit" "d['serial']" NEW1
check_json "rewrap: statement still verifies" "d['statement_verified']" True
check_json "rewrap: size is the file's" "d['size']" "$(stat -c %s "$tmp/r.aibk")"
expect_exit 4 "rewrap: a certificate from an unknown CA is refused (exit 4)" \
  "$AR" --json cloud-backup rewrap --for-cert "$lab/ROGUE1.cert" -o "$tmp/rogue.aibk" b-old1
check_json "rewrap: rogue certificate reason" "d['error']['code']" unknown-ca
check "rewrap: nothing written for a rogue certificate" test ! -e "$tmp/rogue.aibk"

# Reassign: prints and stores the verified bundle.
expect_exit 0 "reassign: exit 0" "$AR" --json reassign --ticket T-100 --to-serial NEW1 --to-cert "$lab/NEW1.cert"
check_json "reassign: old serial" "d['old_serial']" OLD1
check_json "reassign: new serial" "d['new_serial']" NEW1
check_json "reassign: device id" "d['device_id']" dev-OLD1
check_json "reassign: owner" "d['owner']" owner-42
check_json "reassign: bundle saved" "d['bundle_saved']" True
check "reassign: bundle in the catalog" python3 - "$lab/depot.db" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT ticket, old_serial, new_serial, device_id, owner, length(bundle) FROM identity_bundles").fetchall()
assert len(rows) == 1 and rows[0][:5] == ('T-100', 'OLD1', 'NEW1', 'dev-OLD1', 'owner-42') and rows[0][5] > 100, rows
PY
check "reassign: one reassignment applied" test "$(stats "d['reassignments']['T-100']")" = 1
expect_exit 0 "reassign again: same answer" "$AR" --json reassign --ticket T-100 --to-serial NEW1 --to-cert "$lab/NEW1.cert"
check_json "reassign again: new serial" "d['new_serial']" NEW1
check "reassign again: still one reassignment" test "$(stats "d['reassignments']['T-100']")" = 1
expect_exit 0 "ticket after reassign" "$AR" --json ticket T-100
check_json "ticket: now reassigned to NEW1" "d['ticket']['new_serial']" NEW1
expect_exit 0 "unit after reassign" "$AR" --json unit NEW1
check_json "unit: NEW1 carries the identity" "d['unit']['device_id']" dev-OLD1
expect_exit 2 "reassign: certificate of another serial (exit 2)" \
  "$AR" --json reassign --ticket T-200 --to-serial NEW2 --to-cert "$lab/NEW1.cert"
check_json "reassign: certificate-serial-mismatch" "d['error']['code']" certificate-serial-mismatch

# Enroll: a new key file (0600) and a certificate; never replaced silently.
tk=$tmp/term/terminal.key tc=$tmp/term/terminal.cert
expect_exit 0 "enroll: exit 0" env AIBO_RESTORE_DEPOT_TERMINAL_KEY="$tk" AIBO_RESTORE_DEPOT_TERMINAL_CERT="$tc" \
  "$AR" --json enroll --terminal-id bench-7
check_json "enroll: key created" "d['key_created']" True
check "enroll: key file mode 0600" test "$(stat -c %a "$tk")" = 600
check "enroll: certificate written" grep -q 'BEGIN AIBO CERTIFICATE' "$tc"
check_json "enroll: terminal id" "d['certificate']['subject']" bench-7
check_json "enroll: verified against the service CA" "d['verified_against_service_ca']" True
cp "$tc" "$tmp/term/first.cert"
expect_exit 1 "enroll: a valid certificate is kept" env AIBO_RESTORE_DEPOT_TERMINAL_KEY="$tk" \
  AIBO_RESTORE_DEPOT_TERMINAL_CERT="$tc" "$AR" --json enroll --terminal-id bench-7
check_json "enroll: terminal-cert-exists" "d['error']['code']" terminal-cert-exists
check "enroll: certificate untouched" cmp -s "$tc" "$tmp/term/first.cert"
expect_exit 0 "enroll: --force replaces it" env AIBO_RESTORE_DEPOT_TERMINAL_KEY="$tk" \
  AIBO_RESTORE_DEPOT_TERMINAL_CERT="$tc" "$AR" --json enroll --terminal-id bench-7 --force
check_json "enroll --force: existing key used" "d['key_created']" False
expect_exit 8 "enroll: another terminal's id is a conflict (exit 8)" env AIBO_RESTORE_DEPOT_TERMINAL_KEY="$tmp/term2/k" \
  AIBO_RESTORE_DEPOT_TERMINAL_CERT="$tmp/term2/c" "$AR" --json enroll --terminal-id bench-7
check_json "enroll: api-conflict" "d['error']['code']" api-conflict
check_json "enroll: service code" "d['api_error']['code']" terminal-enrolled

# --- Error classes (on a fresh database: OLD1 is still bound) -----------------
stop_sim "$SIMPID"
start_sim errors
export AIBO_RESTORE_API_URL=$URL
expect_exit 3 "404: exit 3" "$AR" --json unit NOPE
check_json "404: code" "d['error']['code']" api-not-found
check_json "404: service code" "d['api_error']['code']" unit-not-found
check_json "404: status" "d['api_error']['status']" 404
expect_exit 3 "404 ticket: exit 3" "$AR" --json ticket T-NOPE
expect_exit 7 "401: exit 7" env AIBO_RESTORE_API_TOKEN=wrong-token "$AR" --json unit OLD1
check_json "401: code" "d['error']['code']" api-unauthorized
expect_exit 7 "403: exit 7" env AIBO_RESTORE_API_TOKEN="$RO_TOKEN" \
  "$AR" --json reassign --ticket T-200 --to-serial NEW2 --to-cert "$lab/NEW2.cert"
check_json "403: code" "d['error']['code']" api-forbidden
check_json "403: service code" "d['api_error']['code']" forbidden
expect_exit 8 "409: exit 8" "$AR" --json reassign --ticket T-200 --to-serial BOUND1 --to-cert "$lab/BOUND1.cert"
check_json "409: code" "d['error']['code']" api-conflict
check_json "409: service code" "d['api_error']['code']" unit-bound
expect_exit 8 "422: exit 8" "$AR" --json reassign --ticket T-200 --to-serial OTHER1 --to-cert "$lab/OTHER1.cert"
check_json "422: code" "d['error']['code']" api-unprocessable
check_json "422: service code" "d['api_error']['code']" model-mismatch
check "no reassignment for refused requests" test "$(stats "d['reassignments'].get('T-200', 0)")" = 0
stop_sim "$SIMPID"

# 400 (the simulator cannot be made to send one to a well-formed client).
python3 "$STATUS_SERVER" 400 bad-request "the body is not a JSON object" >"$tmp/status.out" 2>/dev/null &
pids+=($!); status_server=$!
for _ in $(seq 100); do grep -q '^listening on ' "$tmp/status.out" && break; sleep 0.05; done
expect_exit 8 "400: exit 8" env AIBO_RESTORE_API_URL="$(sed -n 's/^listening on //p' "$tmp/status.out")" \
  "$AR" --json unit OLD1
check_json "400: code" "d['error']['code']" api-bad-request
check_json "400: service code" "d['api_error']['code']" bad-request
kill "$status_server"; wait "$status_server" 2>/dev/null || true

# --- Idempotency: the answer to a reassignment is lost after it applied ------
start_sim drop --fault drop-after-apply=reassign
export AIBO_RESTORE_API_URL=$URL
expect_exit 0 "drop-after-apply: reassign succeeds" "$AR" --json reassign --ticket T-300 --to-serial NEW2 --to-cert "$lab/NEW2.cert"
check_json "drop-after-apply: new serial" "d['new_serial']" NEW2
check "drop-after-apply: one reassignment" test "$(stats "d['reassignments']['T-300']")" = 1
check "drop-after-apply: the fault fired" test "$(stats "d['faults_fired']")" -ge 1
expect_exit 0 "drop-after-apply: the same command again" "$AR" --json reassign --ticket T-300 --to-serial NEW2 --to-cert "$lab/NEW2.cert"
check "drop-after-apply: still one reassignment" test "$(stats "d['reassignments']['T-300']")" = 1
stop_sim "$SIMPID"

# --- Retries: a 500 storm ends within the budget; Retry-After is honoured ----
start_sim storm --fault 500=1000
export AIBO_RESTORE_API_URL=$URL
t0=$(date +%s%N)
expect_exit 8 "500 storm: exit 8" env AIBO_RESTORE_API_RETRIES=2 "$AR" --json unit OLD1
t1=$(date +%s%N)
check_json "500 storm: api-unavailable" "d['error']['code']" api-unavailable
check "500 storm: message says it gave up" grep -q 'gave up retrying' "$tmp/err"
check "500 storm: exactly 3 attempts" test "$(stats "d['faults_fired']")" = 3
check "500 storm: ended quickly ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -lt 15000
stop_sim "$SIMPID"

start_sim slow --fault 429=1:2
export AIBO_RESTORE_API_URL=$URL
t0=$(date +%s%N)
expect_exit 0 "Retry-After: the call succeeds" "$AR" --json unit OLD1
t1=$(date +%s%N)
check "Retry-After: waited the 2 s asked ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -ge 1900
check "Retry-After: then answered" test "$(jv "d['unit']['serial']")" = OLD1

# --- Secrecy of the token ----------------------------------------------------
"$AR" -vv unit OLD1 >"$tmp/v.out" 2>"$tmp/v.err" || true
"$AR" -vvv reassign --ticket T-400 --to-serial NEW1 --to-cert "$lab/NEW1.cert" >>"$tmp/v.out" 2>>"$tmp/v.err" || true
"$AR" -vv --json cloud-backups OLD1 >>"$tmp/v.out" 2>>"$tmp/v.err" || true
AIBO_RESTORE_API_TOKEN="$TOKEN" "$AR" -vv --json unit NOPE >>"$tmp/v.out" 2>>"$tmp/v.err" || true
check "-vv: HTTP exchanges are traced" grep -q 'trace: api: > GET /v1/units/OLD1' "$tmp/v.err"
check "-vv: the Authorization header is redacted" grep -q 'Authorization: <redacted>' "$tmp/v.err"
check "-vv: the token appears nowhere" bash -c "! grep -qF -- '$TOKEN' '$tmp/v.out' '$tmp/v.err'"
stop_sim "$SIMPID"

cp "$lab/api.token" "$tmp/open.token"; chmod 644 "$tmp/open.token"
expect_exit 7 "token file 0644: refused (exit 7)" env AIBO_RESTORE_API_TOKEN_FILE="$tmp/open.token" \
  AIBO_RESTORE_API_URL=http://127.0.0.1:9 "$AR" unit OLD1
check "token file 0644: says how to fix it" grep -q 'chmod 600' "$tmp/err"
check "token file 0644: token not shown" bash -c "! grep -qF -- '$TOKEN' '$tmp/out' '$tmp/err'"

# --- Transport security --------------------------------------------------------
t0=$(date +%s%N)
expect_exit 2 "http:// to a non-loopback host: refused" env AIBO_RESTORE_API_URL=http://192.0.2.10:8080 \
  "$AR" --json unit OLD1
t1=$(date +%s%N)
check_json "http:// non-loopback: insecure-url" "d['error']['code']" insecure-url
check "http:// non-loopback: no connection attempted ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -lt 1500

pki=$tmp/tls
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 \
  -subj /CN=apicli-test-ca >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/other.key" -out "$pki/other.pem" -days 2 \
  -subj /CN=apicli-other-ca >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -keyout "$pki/server.key" -out "$pki/server.csr" \
  -subj /CN=127.0.0.1 >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -out "$pki/server.pem" -days 2 -extfile "$pki/ext" >/dev/null 2>&1
start_sim tls --tls-cert "$pki/server.pem" --tls-key "$pki/server.key"
check "https: the simulator serves https" bash -c "case '$URL' in https://*) true;; *) false;; esac"
export AIBO_RESTORE_API_URL=$URL
expect_exit 0 "https: unit" env AIBO_RESTORE_API_CA_FILE="$pki/ca.pem" "$AR" --json unit OLD1
check_json "https: device id" "d['unit']['device_id']" dev-OLD1
expect_exit 0 "https: reassign" env AIBO_RESTORE_API_CA_FILE="$pki/ca.pem" \
  "$AR" --json reassign --ticket T-400 --to-serial NEW1 --to-cert "$lab/NEW1.cert"
check_json "https: reassign new serial" "d['new_serial']" NEW1
expect_exit 0 "https: rewrap" env AIBO_RESTORE_API_CA_FILE="$pki/ca.pem" \
  "$AR" --json cloud-backup rewrap --for-cert "$lab/NEW2.cert" -o "$tmp/tls.aibk" b-old1
check "https: NEW2 opens the re-wrapped file" bash -c "age -d -i '$lab/NEW2.identity' '$tmp/tls.aibk' | cmp -s - '$tmp/plain'"
expect_exit 0 "https: fetch" env AIBO_RESTORE_API_CA_FILE="$pki/ca.pem" \
  "$AR" --json cloud-backup fetch -o "$tmp/tls-f.aibk" b-old1
check "https: fetched byte for byte" cmp -s "$tmp/tls-f.aibk" "$tmp/old1.aibk"
expect_exit 7 "https: wrong CA refused (exit 7)" env AIBO_RESTORE_API_CA_FILE="$pki/other.pem" \
  "$AR" --json unit OLD1
check_json "https: tls-verify-failed" "d['error']['code']" tls-verify-failed
stop_sim "$SIMPID"

finish
