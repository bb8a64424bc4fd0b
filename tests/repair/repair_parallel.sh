#!/usr/bin/env bash
# Four repairs at once, one process each, sharing the depot database and the
# service: all complete, each ticket with exactly one reassignment, each
# replacement holding its own old unit's memory.
set -euo pipefail
BUILD=${BK_BUILD_DIR:-${1:?build folder}}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/lab.sh"
trap 'lab_stop; rm -rf "$tmp"' EXIT
export LAB_FW_SIZE=$((192 << 10))
lab_init
db=$lab/pki/depot.db
pairs="1 2 3 4"

for n in $pairs; do lab_pair "$n" 1M; done
declare -A rpid
for n in $pairs; do
  "$AR" --json --progress=none repair --ticket "T-$n" --from "${uri[old-$n]}" \
    --to "${uri[new-$n]}" >"$tmp/r$n.json" 2>"$tmp/r$n.err" &
  rpid[$n]=$!
done
for n in $pairs; do
  set +e; wait "${rpid[$n]}"; st=$?; set -e
  if [ "$st" -eq 0 ]; then ok "T-$n: repair exits 0"; else
    bad "T-$n: repair exits 0 (exit $st)"; sed 's/^/    /' "$tmp/r$n.json" "$tmp/r$n.err" | head -20
  fi
done

for n in $pairs; do
  check "T-$n: one JSON result" one_json "$tmp/r$n.json"
  check "T-$n: complete" test "$(json_get "$tmp/r$n.json" 'd.get("state", "?") + "/" + d.get("step", "?")')" = complete/complete
  check "T-$n: not a resumed job" test "$(json_get "$tmp/r$n.json" 'd.get("resumed")')" = False
  check "T-$n: the report names its own units" test "$(json_get "$tmp/r$n.json" 'd["report"]["old_unit"]["serial"] + ">" + d["report"]["new_unit"]["serial"]')" = "OLD-$n>NEW-$n"
  check "T-$n: same memory" lab_same_memory "$n"
  check "T-$n: old unit unchanged" lab_old_unchanged "$n"
  check "T-$n: one reassignment" test "$(lab_reassignments "$n")" = 1
  check "T-$n: ticket completed" test "$(lab_ticket_status "$n")" = completed
  expect_exit 0 "T-$n: audit chain intact" "$AR" --json job audit "$(json_get "$tmp/r$n.json" 'd["job"]')" --verify
done
check "the four jobs ran at the same time" python3 - "$tmp"/r{1,2,3,4}.json <<'PY'
import json, sys
rs = [json.load(open(p))["report"] for p in sys.argv[1:]]
assert max(r["created"] for r in rs) <= min(r["updated"] for r in rs), [(r["created"], r["updated"]) for r in rs]
PY
# Four seeds, four memories: no replacement got another pair's memory.
check "the four memories differ" python3 - "$lab"/old-{1,2,3,4}.digest <<'PY'
import json, sys
ds = [json.dumps(json.load(open(p))["domains"], sort_keys=True) for p in sys.argv[1:]]
assert len(set(ds)) == 4
PY

expect_exit 0 "jobs --json" "$AR" --json jobs
check "jobs: four complete jobs, one per ticket" python3 - "$tmp/out" "$tmp"/r{1,2,3,4}.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ids = {json.load(open(p))["job"] for p in sys.argv[2:]}
jobs = d["jobs"]
assert len(jobs) == 4, jobs
assert {j["id"] for j in jobs} == ids and len(ids) == 4, (jobs, ids)
assert sorted(j["ticket"] for j in jobs) == ["T-1", "T-2", "T-3", "T-4"], jobs
assert all(j["state"] == "complete" and j["step"] == "complete" for j in jobs), jobs
assert all(not j.get("holder") for j in jobs), jobs
PY
expect_exit 0 "jobs --state running: none" "$AR" --json jobs --state running
check "no job left running" test "$(json_get "$tmp/out" 'len(d["jobs"])')" = 0

finish
