#!/usr/bin/env bash
# The repair job's crash matrix: aibo-restore is killed with SIGKILL at every
# step boundary (right after a step's start, right after its outcome was
# journaled) and at random points inside the transfers, then `resume` runs
# until the job completes. Every job must complete with exactly one
# reassignment, the replacement's memory equal to the old unit's, and the
# old unit's memory unchanged.
#
# repair_crash.sh [all | quick]   (default: all; quick runs a few points)
set -euo pipefail
BUILD=${BK_BUILD_DIR:-${2:?build folder}}
mode=${1:-all}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cli/lib.sh"
. "$here/lab.sh"
trap 'lab_stop; rm -rf "$tmp"' EXIT
export LAB_FW_SIZE=$((2 << 20))
lab_init

steps="preflight backup firmware reassign restore identity verify complete"
points=()
if [ "$mode" = quick ]; then
  points=(begin:backup done:firmware begin:restore done:reassign random random)
else
  for s in $steps; do points+=("begin:$s" "done:$s"); done
  for _ in $(seq 32); do points+=(random); done
fi
RANDOM=${REPAIR_CRASH_SEED:-4242}

# resume_until_done JOB N: resumes until complete (at most 6 runs).
resume_until_done() {
  local job=$1 n=$2 i
  for i in $(seq 6); do
    if "$AR" --json --progress=none resume "$job" >"$tmp/resume.json" 2>"$tmp/resume.err"; then
      return 0
    fi
    # The replacement may be rebooting after a flash cut short.
    sleep 0.5
  done
  echo "    resume of $job (pair $n) did not complete:" >&2
  cat "$tmp/resume.json" "$tmp/resume.err" >&2
  return 1
}

n=0
for point in "${points[@]}"; do
  n=$((n + 1))
  lab_units "$n" 4M
  # Slow enough links that random kills land inside the transfers.
  lab_up "old-$n" rate=8000000
  lab_up "new-$n" rate=8000000
  if [ "$point" = random ]; then
    delay=$(printf '0.%03d' $((RANDOM % 1000)))
    delay=$(python3 -c "print($((RANDOM % 5)) + $delay)")
    label="kill -9 after ${delay}s"
    "$AR" --json --progress=none repair --ticket "T-$n" --from "${uri[old-$n]}" \
      --to "${uri[new-$n]}" >"$tmp/repair.json" 2>"$tmp/repair.err" &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  else
    label="kill -9 at $point"
    set +e
    AIBO_RESTORE_CRASH_AFTER=$point "$AR" --json --progress=none repair --ticket "T-$n" \
      --from "${uri[old-$n]}" --to "${uri[new-$n]}" >"$tmp/repair.json" 2>"$tmp/repair.err"
    st=$?
    set -e
    check "$label: the process was killed" test "$st" -eq 137
  fi
  job=$(sqlite3 "$lab/pki/depot.db" "SELECT id FROM jobs WHERE ticket = 'T-$n'")
  if [ -z "$job" ]; then
    # Killed before the job was created: the repair starts afresh.
    expect_exit 0 "$label: repair again" "$AR" --json --progress=none repair --ticket "T-$n" \
      --from "${uri[old-$n]}" --to "${uri[new-$n]}"
  else
    state=$(sqlite3 "$lab/pki/depot.db" "SELECT state || '/' || step FROM jobs WHERE id = '$job'")
    if [ "$state" = complete/complete ]; then
      ok "$label: killed after the job completed"
    else
      check "$label ($state): resume completes" resume_until_done "$job" "$n"
    fi
  fi
  check "$label: job complete" test "$(sqlite3 "$lab/pki/depot.db" "SELECT state FROM jobs WHERE ticket = 'T-$n'")" = complete
  check "$label: one reassignment" test "$(lab_reassignments "$n")" = 1
  check "$label: same memory" lab_same_memory "$n"
  check "$label: old unit unchanged" lab_old_unchanged "$n"
  check "$label: audit intact" "$AR" -q job audit "$(sqlite3 "$lab/pki/depot.db" "SELECT id FROM jobs WHERE ticket = 'T-$n'")" --verify
  check "$label: no partial files" bash -c "! find '$lab/pki' -name '*.part' | grep -q ."
  lab_down "old-$n"
  lab_down "new-$n"
done
finish
