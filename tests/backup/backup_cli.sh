#!/usr/bin/env bash
# The backup commands end to end: pack, inspect, verify, extract, rewrap,
# backups list/show/import/rm/gc; interoperability with age, zstd and tar;
# error codes and exit statuses for damaged files; concurrent packs.
set -euo pipefail
. "$(dirname "$0")/../cli/lib.sh"
ar=${AIBO_RESTORE:?}
labtool=${BK_TEST_LAB:?}
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg XDG_STATE_HOME=$tmp/state
unset AIBO_RESTORE_PASSPHRASE || true
cd "$tmp"
"$labtool" pki lab >/dev/null
export AIBO_RESTORE_CONFIG=$tmp/lab/config
"$labtool" memgen mem 300K 21
unit=(--serial ERS1-0001 --model ERS-1000 --fw-version 4.2.0 --schema 3 --hw-rev B)

# Into the store and the catalog.
expect_exit 0 "pack into the store" "$ar" --json pack "${unit[@]}" mem
one_json out && ok "pack: one JSON object" || bad "pack: one JSON object"
id=$(json_get out 'd["id"]')
file=$(json_get out 'd["file"]')
check "in the store" test -f "lab/backups/$id.aibk" -a -f "lab/backups/$id.aibk.statement"
check "no part left" test -z "$(ls lab/backups | grep '\.part$' || true)"
expect_exit 0 "backups list" "$ar" --json backups list
check "listed once" test "$(json_get out 'd["count"]')" = 1
check "listed id" test "$(json_get out 'd["backups"][0]["id"]')" = "$id"

# age, zstd and tar open it.
check "age -d | zstd -d | tar -t lists it" sh -c \
  "age -d -i lab/depot.identity '$file' | zstd -d | tar -t >listing"
check "MANIFEST.json first" test "$(head -1 listing)" = MANIFEST.json
check "domains below domains/" sh -c "tail -n +2 listing | grep -v '^domains/' | wc -l | grep -qx 0"

# inspect needs no key.
expect_exit 0 "inspect by id prefix" "$ar" --json inspect "${id:0:8}"
check "one X25519 stanza" test "$(json_get out 'd["header"]["stanza_types"]')" = "['X25519']"
check "statement valid" test "$(json_get out 'd["statement"]["valid"]')" = True
check "producer is the terminal" test "$(json_get out 'd["statement"]["producer"]')" = lab-terminal-1
expect_exit 0 "verify --quick" "$ar" --json verify --quick "$id"
check "quick recorded" test "$(json_get out 'd["recorded"]')" = True
expect_exit 0 "verify (full)" "$ar" --json verify "$file"
check "full ok" test "$(json_get out 'd["ok"]')" = True
expect_exit 0 "backups show" "$ar" --json backups show "${id:0:8}"
check "show: verified full" test "$(json_get out 'd["verified"]')" = full
expect_exit 0 "extract" "$ar" extract -C ex-out "$id"
check "extracted tree equals the source" diff -r mem ex-out

# -o FILE with explicit recipients.
age-keygen -o other.id 2>/dev/null
other=$(age-keygen -y other.id)
expect_exit 0 "pack -o -r" "$ar" pack -o own.aibk -r "$other" "${unit[@]}" mem
check "statement beside it" test -f own.aibk.statement
check "not in the catalog" sh -c "'$ar' --json backups list | grep -q '\"count\":1'"
check "age opens it with the other key" sh -c "age -d -i other.id own.aibk | zstd -d | tar -t >/dev/null"
expect_exit 7 "the depot identity does not" "$ar" --json verify own.aibk
check "no-identity-matched" test "$(json_get out 'd["error"]["code"]')" = no-identity-matched
expect_exit 0 "verify -i" "$ar" verify -i other.id own.aibk
expect_exit 1 "pack refuses to overwrite" "$ar" pack -o own.aibk "${unit[@]}" mem

# rewrap: header only, statement copied and still valid.
age-keygen -o new.id 2>/dev/null
new=$(age-keygen -y new.id)
expect_exit 0 "rewrap" "$ar" --json rewrap -i other.id -r "$new" -o re.aibk own.aibk
hl_old=$(python3 -c "d=open('own.aibk','rb').read(); print(d.index(b'\n---')+d[d.index(b'\n---')+1:].index(b'\n')+2)")
hl_new=$(python3 -c "d=open('re.aibk','rb').read(); print(d.index(b'\n---')+d[d.index(b'\n---')+1:].index(b'\n')+2)")
check "payload bytes identical" cmp <(tail -c +$((hl_old + 1)) own.aibk) <(tail -c +$((hl_new + 1)) re.aibk)
check "statement copied" cmp own.aibk.statement re.aibk.statement
expect_exit 0 "rewrapped: quick verify" "$ar" verify --quick re.aibk
expect_exit 0 "rewrapped: extract with the new identity" "$ar" extract -i new.id -C re-out re.aibk
check "rewrapped tree" diff -r mem re-out
expect_exit 7 "rewrapped: not with the old one" "$ar" extract -i other.id -C re-old re.aibk
check "rewrapped: nothing extracted" test ! -e re-old

# Damaged files: codes and exit statuses.
size=$(stat -c %s own.aibk)
head -c $((size - 70000)) own.aibk >trunc.aibk; cp own.aibk.statement trunc.aibk.statement
expect_exit 4 "truncated (quick)" "$ar" --json verify --quick trunc.aibk
check "payload-truncated" test "$(json_get out 'd["error"]["code"]')" = payload-truncated
expect_exit 4 "truncated (full)" "$ar" --json verify -i other.id trunc.aibk
check "payload-truncated (full)" test "$(json_get out 'd["error"]["code"]')" = payload-truncated
cp own.aibk flip.aibk; cp own.aibk.statement flip.aibk.statement
# XOR, so the byte always changes (writing a fixed value left it unchanged
# whenever it already held that value).
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1)[0]; f.seek(o); f.write(bytes([b ^ 0x55]))' flip.aibk $((size - 100))
expect_exit 4 "flipped payload (full)" "$ar" --json verify -i other.id flip.aibk
check "payload-corrupt" test "$(json_get out 'd["error"]["code"]')" = payload-corrupt
expect_exit 4 "flipped payload (quick)" "$ar" --json verify --quick flip.aibk
check "payload-corrupt (quick)" test "$(json_get out 'd["error"]["code"]')" = payload-corrupt
expect_exit 4 "flipped payload (extract)" "$ar" --json extract -i other.id -C flip-out flip.aibk
check "flipped: nothing extracted" test ! -e flip-out
cp own.aibk st.aibk; sed 's/"serial":"ERS1-0001"/"serial":"ERS1-0002"/' own.aibk.statement >st.aibk.statement
expect_exit 4 "altered statement" "$ar" --json verify --quick st.aibk
check "statement-invalid" test "$(json_get out 'd["error"]["code"]')" = statement-invalid
expect_exit 0 "inspect shows it" "$ar" --json inspect st.aibk
check "inspect: invalid" test "$(json_get out 'd["statement"]["valid"]')" = False

# Catalog: rm needs --yes; import; gc.
expect_exit 2 "rm without --yes" "$ar" --json backups rm "$id"
check "confirmation-required" test "$(json_get out 'd["error"]["code"]')" = confirmation-required
check "still listed" sh -c "'$ar' --json backups list | grep -q '\"count\":1'"
expect_exit 0 "import" "$ar" --json backups import own.aibk
check "imported" sh -c "'$ar' --json backups list | grep -q '\"count\":2'"
touch lab/backups/00000000-0000-4000-8000-000000000000.aibk.part
expect_exit 0 "gc" "$ar" --json backups gc
check "gc removed the leftover" test "$(json_get out 'len(d["removed_parts"])')" = 1
check "gc: no orphans" test "$(json_get out 'len(d["orphan_files"])')" = 0
check "leftover gone" test ! -e lab/backups/00000000-0000-4000-8000-000000000000.aibk.part
expect_exit 0 "rm --yes" "$ar" --json backups rm --yes "$id"
check "file removed" test ! -e "lab/backups/$id.aibk"
expect_exit 3 "gone from the catalog" "$ar" --json backups show "$id"

# Two processes pack at once: both land.
"$ar" --json pack "${unit[@]}" mem >c1 2>&1 &
p1=$!
"$ar" --json pack "${unit[@]}" mem >c2 2>&1 &
p2=$!
check "first concurrent pack" wait $p1
check "second concurrent pack" wait $p2
check "both listed" sh -c "'$ar' --json backups list | grep -q '\"count\":3'"
expect_exit 0 "gc after concurrency" "$ar" --json backups gc
check "store and catalog agree" test "$(json_get out 'len(d["orphan_files"]) + len(d["missing_files"])')" = 0
finish
