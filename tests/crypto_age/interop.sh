#!/bin/bash
# Interoperability with the reference age CLI: files age writes decrypt with
# ours and the reverse (X25519 and passphrase, binary and armored, sizes
# around the chunk boundary), our identity files are accepted by
# age-keygen -y, passphrase-protected identity files from `age -p` load, and
# a re-wrapped file opens with `age -d` under the new identity only, with
# its payload bytes unchanged.
set -euo pipefail

TOOL=${BK_AGE_TOOL:-${BK_BUILD_DIR:-.}/tests/bk-age-tool}
command -v age >/dev/null || { echo "FAIL: age is not installed"; exit 1; }
command -v age-keygen >/dev/null || { echo "FAIL: age-keygen is not installed"; exit 1; }
[ -x "$TOOL" ] || { echo "FAIL: $TOOL not built"; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/bk-age-interop.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
checks=0
pass() { checks=$((checks + 1)); }
fail() { echo "FAIL: $*"; exit 1; }

# Runs `age` with a passphrase typed on a terminal (age reads it only from
# /dev/tty): script(1) gives it a pty fed from our stdin; PW holds the
# passphrase, given twice (encryption asks for a confirmation).
age_tty() {
	local cmd="age"
	for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
	printf '%s\n%s\n' "$PW" "$PW" | script -qec "$cmd" /dev/null >/dev/null
}

# Identities: one from age-keygen, one of ours.
age-keygen -o age_id.txt 2>/dev/null
AGE_R=$(age-keygen -y age_id.txt)
OUR_R=$("$TOOL" keygen -o our_id.txt)
[ "$(age-keygen -y our_id.txt)" = "$OUR_R" ] || fail "age-keygen -y disagrees with our recipient"
pass
[ "$("$TOOL" recipients age_id.txt)" = "$AGE_R" ] || fail "our recipient of an age-keygen identity differs"
pass
[ "$(stat -c %a our_id.txt)" = 600 ] || fail "identity file is not mode 0600"
pass

for size in 0 1 65535 65536 65537 $((10 * 1024 * 1024 + 1)); do
	head -c "$size" /dev/urandom > "p$size"
	# age -> ours (X25519)
	age -r "$OUR_R" -o "a$size.age" "p$size"
	"$TOOL" decrypt -i our_id.txt -o "d$size" "a$size.age"
	cmp -s "p$size" "d$size" || fail "size $size: age -> ours differs"
	pass
	# ours -> age (X25519)
	"$TOOL" encrypt -r "$AGE_R" -o "o$size.age" "p$size"
	age -d -i age_id.txt "o$size.age" > "e$size"
	cmp -s "p$size" "e$size" || fail "size $size: ours -> age differs"
	pass
	# armored both ways
	age -a -r "$OUR_R" -o "a$size.asc" "p$size"
	"$TOOL" decrypt -i our_id.txt -o "d$size.a" "a$size.asc"
	cmp -s "p$size" "d$size.a" || fail "size $size: armored age -> ours differs"
	"$TOOL" encrypt -a -r "$AGE_R" -o "o$size.asc" "p$size"
	head -1 "o$size.asc" | grep -qx -- '-----BEGIN AGE ENCRYPTED FILE-----' || fail "no armor"
	age -d -i age_id.txt "o$size.asc" > "e$size.a"
	cmp -s "p$size" "e$size.a" || fail "size $size: armored ours -> age differs"
	pass
	# passphrase: age -p -> ours, ours -> age -d (passphrase on a terminal)
	PW="pass $size"
	age_tty -p -o "s$size.age" "p$size" >/dev/null
	BK_AGE_PASSPHRASE="$PW" "$TOOL" decrypt -p -o "ds$size" "s$size.age"
	cmp -s "p$size" "ds$size" || fail "size $size: age -p -> ours differs"
	pass
	BK_AGE_PASSPHRASE="$PW" "$TOOL" encrypt -p -w 16 -o "os$size.age" "p$size"
	age_tty -d -o "es$size" "os$size.age" >/dev/null
	touch "es$size" # age creates no output file for an empty plaintext
	cmp -s "p$size" "es$size" || fail "size $size: ours -p -> age differs"
	pass
	rm -f "d$size" "e$size" "d$size.a" "e$size.a" "ds$size" "es$size"
done

# A passphrase-protected identity file as `age -p` writes it.
PW="identity secret"
age_tty -p -o age_id.age age_id.txt >/dev/null
chmod 600 age_id.age
BK_AGE_PASSPHRASE="$PW" "$TOOL" decrypt -i age_id.age -o d.enc_id o65537.age
cmp -s p65537 d.enc_id || fail "passphrase-protected identity file"
pass
if BK_AGE_PASSPHRASE="wrong" "$TOOL" decrypt -i age_id.age -o d.bad o65537.age 2>err.txt; then
	fail "wrong identity-file passphrase accepted"
fi
grep -q no-identity-matched err.txt || fail "wrong passphrase not reported as no match: $(cat err.txt)"
pass

# Re-wrap: a file age wrote for age_id becomes readable by a new identity.
age-keygen -o new_id.txt 2>/dev/null
NEW_R=$(age-keygen -y new_id.txt)
size=$((10 * 1024 * 1024 + 1))
"$TOOL" rewrap -i age_id.txt -r "$NEW_R" -o rw.age "o$size.age" 2>/dev/null
age -d -i new_id.txt rw.age > rw.plain
cmp -s "p$size" rw.plain || fail "re-wrapped file does not decrypt with age under the new identity"
pass
if age -d -i age_id.txt rw.age > rw.old 2>/dev/null; then
	fail "re-wrapped file still opens with the old identity"
fi
pass
old_h=$("$TOOL" header-len "o$size.age")
new_h=$("$TOOL" header-len rw.age)
cmp -s <(tail -c +$((old_h + 1)) "o$size.age") <(tail -c +$((new_h + 1)) rw.age) ||
	fail "payload bytes changed by the re-wrap"
pass
# Re-wrap of an armored file written by age, to an armored output.
"$TOOL" rewrap -i our_id.txt -r "$NEW_R" -a -o rw.asc a65537.asc 2>/dev/null
age -d -i new_id.txt rw.asc > rw2.plain
cmp -s p65537 rw2.plain || fail "armored re-wrap"
pass

# Damage is reported by class.
cp o65537.age bad.age
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1)[0]; f.seek(o); f.write(bytes([b ^ 1]))' bad.age $(($(stat -c %s bad.age) - 5))
if "$TOOL" decrypt -i age_id.txt -o bad.out bad.age 2>err.txt; then fail "corrupt payload accepted"; fi
grep -q payload-corrupt err.txt || fail "corruption not reported as payload-corrupt: $(cat err.txt)"
[ ! -e bad.out ] || fail "output left behind after a failure"
pass
head -c $(($(stat -c %s o65537.age) - 100)) o65537.age > cut.age
if "$TOOL" decrypt -i age_id.txt -o cut.out cut.age 2>err.txt; then fail "truncated file accepted"; fi
grep -q payload- err.txt || fail "truncation not reported as a payload failure: $(cat err.txt)"
pass

echo "$checks passed, 0 failed, 0 skipped"
