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

say "the ticket and the old unit in the cloud"
"$ar" ticket T-1001
"$ar" unit ERS1000-OLD-0001

say "a signed firmware bundle that holds memory schema 3, in the lab's firmware folder"
mkdir -p "$lab/pki/firmware"
head -c 4M /dev/urandom >"$lab/rootfs.img"
"$ar" firmware pack --key "$lab/pki/firmware.key" --model ERS-1000 --version 3.2.0 \
  --security-counter 2 --schema 1:3 "$lab/rootfs.img" -o "$lab/pki/firmware/ers1000-3.2.0.aifw"

say "the repair: backup, firmware, reassign, restore, identity, verify, complete"
"$ar" --progress=none repair --ticket T-1001 --from "$old" --to "$new"

say "the replacement now holds the old unit's memory"
"$vdev" digest "$lab/old" >"$lab/old.digest"
"$vdev" digest "$lab/new" >"$lab/new.digest"
python3 - "$lab/old.digest" "$lab/new.digest" <<'PY'
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:3])
for name, d in sorted(old["domains"].items()):
    same = new["domains"].get(name) == d
    print(f"  {name:12} {d['items']:5} items {d['bytes']:10} bytes  {'equal' if same else 'DIFFERENT'}")
if old["domains"] != new["domains"]:
    sys.exit("demo: the memories differ")
print(f"  {old['serial']} -> {new['serial']}: every domain digest is equal")
PY
"$ar" ticket T-1001
