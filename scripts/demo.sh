#!/usr/bin/env bash
# The README's main job (`make demo`): builds a lab — a PKI, an old unit with
# a memory, a fresh replacement on older firmware, and the private-API
# simulator — runs aibo-restore against it from the lab's own configuration,
# prints what it did, and stops everything it started.
set -euo pipefail
build=${1:-build}
build=$(cd "$build" && pwd)
ar=$build/cli/aibo-restore
vdev=$build/device/virtual/aibo-vdev
sim=$build/tests/cloudsim/aibo-cloudsim
lab=${AIBO_DEMO_DIR:-$(mktemp -d /tmp/aibo-demo.XXXXXX)}
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

# start NAME COMMAND...: runs a server in the background and waits for its
# "listening on <uri>" line; the URI is left in $listening.
start() {
  local name=$1; shift
  "$@" >"$lab/$name.out" 2>"$lab/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do
    listening=$(sed -n 's/^listening on //p' "$lab/$name.out" | head -1)
    [ -n "$listening" ] && return 0
    sleep 0.1
  done
  echo "demo: $name did not start:" >&2
  cat "$lab/$name.err" >&2
  return 1
}

say "lab in $lab"
"$vdev" pki init "$lab/pki"
export AIBO_RESTORE_CONFIG=$lab/pki/config

say "an old unit with a memory, and a fresh replacement on older firmware"
"$vdev" create "$lab/old" --pki "$lab/pki" --serial ERS1000-OLD-0001 --fw-version 3.2.0 \
  --schema 3 --memory 8M --seed 42
"$vdev" create "$lab/new" --pki "$lab/pki" --serial ERS1000-NEW-0002 --fw-version 3.0.0 \
  --schema 2 --fresh
start old "$vdev" serve "$lab/old" --listen tcp:127.0.0.1:0
old=$listening
start new "$vdev" serve "$lab/new" --listen tcp:127.0.0.1:0
new=$listening

say "the private-API simulator, seeded as the factory and the call centre would"
"$vdev" cert "$lab/old" >"$lab/old.cert"
"$vdev" cert "$lab/new" >"$lab/new.cert"
"$sim" register-unit --db "$lab/cloud.db" "$lab/old.cert" --owner owner-7
"$sim" register-unit --db "$lab/cloud.db" "$lab/new.cert"
"$sim" add-ticket --db "$lab/cloud.db" T-1001 --old ERS1000-OLD-0001
start cloud "$sim" serve --pki "$lab/pki" --db "$lab/cloud.db" --listen 127.0.0.1:0 \
  --token-file "$lab/pki/api.token"
export AIBO_RESTORE_API_URL=$listening

say "units on the bench"
"$ar" devices --probe "$old" --probe "$new"

say "the old unit"
"$ar" info "$old"

say "the replacement"
"$ar" info "$new"

say "the ticket and the units in the cloud"
"$ar" ticket T-1001
"$ar" unit ERS1000-OLD-0001

say "memory digests of the old unit (aibo-vdev digest)"
"$vdev" digest "$lab/old"
