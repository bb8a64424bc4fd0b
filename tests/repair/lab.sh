# A repair lab for the job tests (sourced): a PKI and its config, a firmware
# bundle that holds memory schema 3, the private-API simulator, and pairs of
# units (an old one with a memory, a fresh replacement on firmware that holds
# schema 2 only), each with its ticket. Everything listens on 127.0.0.1 and is
# stopped by lab_stop (called on exit).
#
# Needs: $BUILD (the build folder), $tmp (a scratch folder).
AR=$BUILD/cli/aibo-restore
VDEV=$BUILD/device/virtual/aibo-vdev
SIM=$BUILD/tests/cloudsim/aibo-cloudsim
lab=$tmp/lab
lab_pids=()

lab_stop() {
  local p
  for p in "${lab_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${lab_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  lab_pids=()
}

# lab_serve NAME COMMAND...: starts a server, waits for "listening on URI";
# the URI is left in $listening and the pid in $served.
lab_serve() {
  local name=$1; shift
  "$@" >"$lab/$name.out" 2>"$lab/$name.err" &
  served=$!
  lab_pids+=("$served")
  listening=
  for _ in $(seq 200); do
    listening=$(sed -n 's/^listening on //p' "$lab/$name.out" | head -1)
    [ -n "$listening" ] && return 0
    kill -0 "$served" 2>/dev/null || break
    sleep 0.05
  done
  echo "lab: $name did not start: $(cat "$lab/$name.err")" >&2
  return 1
}

# lab_init [SIM_FAULT...]: the PKI, the firmware bundle, the simulator.
lab_init() {
  mkdir -p "$lab"
  "$VDEV" pki init "$lab/pki" >/dev/null
  export AIBO_RESTORE_CONFIG=$lab/pki/config
  mkdir -p "$lab/pki/firmware"
  head -c "${LAB_FW_SIZE:-1048576}" /dev/urandom >"$lab/rootfs.img"
  "$AR" firmware pack --key "$lab/pki/firmware.key" --model ERS-1000 --version 3.2.0 \
    --security-counter 2 --schema 1:3 "$lab/rootfs.img" \
    -o "$lab/pki/firmware/ers1000-3.2.0.aifw" >/dev/null
  lab_sim "$@"
}

# lab_sim [FAULT...]: (re)starts the simulator on the lab's database.
lab_sim() {
  local args=() f
  for f in "$@"; do args+=(--fault "$f"); done
  lab_serve cloud "$SIM" serve --pki "$lab/pki" --db "$lab/cloud.db" --listen 127.0.0.1:0 \
    --token-file "$lab/pki/api.token" "${args[@]}"
  sim_pid=$served
  export AIBO_RESTORE_API_URL=$listening
}

# lab_units N [MEMORY]: creates old-N and new-N (not served), registers them
# with the service and opens ticket T-N for old-N.
lab_units() {
  local n=$1 mem=${2:-2M}
  "$VDEV" create "$lab/old-$n" --pki "$lab/pki" --serial "OLD-$n" --fw-version 3.2.0 \
    --schema 3 --memory "$mem" --seed "$n" >/dev/null
  "$VDEV" create "$lab/new-$n" --pki "$lab/pki" --serial "NEW-$n" --fw-version 3.0.0 \
    --schema 2 --fresh >/dev/null
  "$VDEV" cert "$lab/old-$n" >"$lab/old-$n.cert"
  "$VDEV" cert "$lab/new-$n" >"$lab/new-$n.cert"
  "$SIM" register-unit --db "$lab/cloud.db" "$lab/old-$n.cert" --owner "owner-$n" >/dev/null
  "$SIM" register-unit --db "$lab/cloud.db" "$lab/new-$n.cert" >/dev/null
  "$SIM" add-ticket --db "$lab/cloud.db" "T-$n" --old "OLD-$n" >/dev/null
  "$VDEV" digest "$lab/old-$n" >"$lab/old-$n.digest0"
}

# lab_up NAME [FAULT...]: serves unit NAME (old-N / new-N) on TCP; its URI in
# ${uri[NAME]}, its pid in ${upid[NAME]}.
declare -A uri upid
lab_up() {
  local name=$1 args=() f; shift
  for f in "$@"; do args+=(--fault "$f"); done
  lab_serve "$name" "$VDEV" serve "$lab/$name" --listen tcp:127.0.0.1:0 "${args[@]}"
  uri[$name]=$listening
  upid[$name]=$served
}

lab_down() {
  local p=${upid[$1]:-}
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  upid[$1]=
}

# lab_pair N [MEMORY]: units of pair N created and both served.
lab_pair() {
  lab_units "$@"
  lab_up "old-$1"
  lab_up "new-$1"
}

# Checks of a finished repair of pair N.
lab_same_memory() { # the new unit's digests equal the old unit's
  "$VDEV" digest "$lab/old-$1" >"$lab/old-$1.digest"
  "$VDEV" digest "$lab/new-$1" >"$lab/new-$1.digest"
  python3 - "$lab/old-$1.digest" "$lab/new-$1.digest" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a["domains"] == b["domains"] and a["domains"] else 1)
PY
}
lab_old_unchanged() { # the old unit's memory is as it was created
  "$VDEV" digest "$lab/old-$1" | cmp -s - "$lab/old-$1.digest0"
}
lab_reassignments() { # how many reassignments the service applied for T-N
  curl -fsS "$AIBO_RESTORE_API_URL/_sim/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["reassignments"].get(sys.argv[1], 0))' "T-$1"
}
lab_ticket_status() {
  "$AR" --json ticket "T-$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"]["status"])'
}
