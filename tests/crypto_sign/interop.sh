# Signatures made by minisign verify with ours and the other way round; a
# flipped byte in the message, the signature or the trusted comment is
# rejected by both. Needs minisign(1) and script(1).
set -euo pipefail

tool=${BK_SIGN_TOOL:?BK_SIGN_TOOL not set}
command -v minisign >/dev/null || { echo "minisign not installed" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# Replaces the character at column COL (0-based) of line LINE of FILE.
flip_char() {
	local file=$1 line=$2 col=$3
	awk -v L="$line" -v C="$col" '
		NR == L { c = substr($0, C + 1, 1); r = (c == "A") ? "B" : "A";
			  $0 = substr($0, 1, C) r substr($0, C + 2) }
		{ print }' "$file" > "$file.tmp" && mv "$file.tmp" "$file"
}

# Expects our verifier to reject with a reason.
expect_reject() {
	local what=$1 reason=$2 pub=$3 msg=$4 sig=$5
	local rc=0
	"$tool" verify "$pub" "$msg" "$sig" >out 2>err || rc=$?
	if [ "$rc" -ne 4 ]; then
		fail "$what: ours exit $rc, expected 4"; cat err >&2
	elif ! grep -q ": $reason: " err; then
		fail "$what: ours rejected for another reason: $(cat err)"
	else
		ok "$what rejected by ours ($reason)"
	fi
}
expect_minisign_reject() {
	local what=$1 pub=$2 msg=$3 sig=$4
	if minisign -V -q -p "$pub" -m "$msg" -x "$sig" >/dev/null 2>&1; then
		fail "$what: minisign accepted it"
	else
		ok "$what rejected by minisign"
	fi
}

head -c 200000 /dev/urandom > msg

# --- minisign signs, we verify ---------------------------------------------
minisign -G -W -p ms.pub -s ms.key >/dev/null
minisign -S -W -s ms.key -m msg -x msg.ms.sig -t 'made by minisign' >/dev/null
if out=$("$tool" verify ms.pub msg msg.ms.sig) && [ "$out" = "made by minisign" ]; then
	ok "minisign ED signature verified by ours"
else
	fail "minisign ED signature not verified by ours"
fi
minisign -S -W -l -s ms.key -m msg -x msg.legacy.sig -t 'legacy by minisign' >/dev/null
if out=$("$tool" verify ms.pub msg msg.legacy.sig) && [ "$out" = "legacy by minisign" ]; then
	ok "minisign legacy Ed signature verified by ours"
else
	fail "minisign legacy signature not verified by ours"
fi
# minisign's own secret key file read by us: our signature, checked by minisign.
"$tool" sign ms.key msg msg.ours-ms-key.sig 'ours with minisign key'
if minisign -V -q -p ms.pub -m msg -x msg.ours-ms-key.sig >/dev/null; then
	ok "ours signed with a minisign -W secret key, minisign verified"
else
	fail "signature with minisign's secret key rejected by minisign"
fi

# --- we sign, minisign verifies ---------------------------------------------
"$tool" keygen our.pub our.key
[ "$(stat -c %a our.key)" = 600 ] || fail "our secret key is not mode 600"
"$tool" sign our.key msg msg.our.sig 'made by aibo-restore'
if minisign -V -p our.pub -m msg -x msg.our.sig | grep -qx 'Trusted comment: made by aibo-restore'; then
	ok "our ED signature verified by minisign"
else
	fail "our signature not verified by minisign"
fi
# Our unencrypted secret key file used by minisign itself.
minisign -S -W -s our.key -m msg -x msg.ms-our-key.sig -t 'minisign with our key' >/dev/null
if out=$("$tool" verify our.pub msg msg.ms-our-key.sig) && [ "$out" = "minisign with our key" ]; then
	ok "minisign signed with our secret key file"
else
	fail "minisign could not use our secret key file"
fi
"$tool" sign-legacy our.key msg msg.our-legacy.sig 'legacy by us'
if minisign -V -q -p our.pub -m msg -x msg.our-legacy.sig >/dev/null; then
	ok "our legacy Ed signature verified by minisign"
else
	fail "our legacy signature not verified by minisign"
fi
# Empty message.
: > empty
"$tool" sign our.key empty empty.sig
minisign -V -q -p our.pub -m empty -x empty.sig >/dev/null && ok "empty message" ||
	fail "empty message signature rejected by minisign"

# --- flipped bytes are rejected by both ---------------------------------------
for signer in ms our; do
	sig=msg.$signer.sig
	pub=$signer.pub
	cp msg msg.flip
	printf '\xff' | dd of=msg.flip bs=1 seek=12345 conv=notrunc status=none
	if cmp -s msg msg.flip; then
		printf '\x00' | dd of=msg.flip bs=1 seek=12345 conv=notrunc status=none
	fi
	expect_reject "$signer: flipped message byte" bad-signature "$pub" msg.flip "$sig"
	expect_minisign_reject "$signer: flipped message byte" "$pub" msg.flip "$sig"

	cp "$sig" sig.flip
	flip_char sig.flip 2 40
	expect_reject "$signer: flipped signature byte" bad-signature "$pub" msg sig.flip
	expect_minisign_reject "$signer: flipped signature byte" "$pub" msg sig.flip

	cp "$sig" tc.flip
	sed -i '3s/made by/made bY/' tc.flip
	cmp -s "$sig" tc.flip && fail "trusted comment not changed"
	expect_reject "$signer: changed trusted comment" bad-trusted-comment "$pub" msg tc.flip
	expect_minisign_reject "$signer: changed trusted comment" "$pub" msg tc.flip

	cp "$sig" gsig.flip
	flip_char gsig.flip 4 20
	expect_reject "$signer: flipped global signature" bad-trusted-comment "$pub" msg gsig.flip
	expect_minisign_reject "$signer: flipped global signature" "$pub" msg gsig.flip
done
# Signed by the other key.
expect_reject "signature by another key" wrong-key-id our.pub msg msg.ms.sig
expect_minisign_reject "signature by another key" our.pub msg msg.ms.sig

# --- encrypted secret keys -------------------------------------------------------
# Ours, with light scrypt limits, opened by minisign (which reads the
# passphrase from its terminal: driven through script(1)).
BK_SIGN_PASSPHRASE='depot pass' "$tool" keygen enc.pub enc.key
if BK_SIGN_PASSPHRASE='depot pass' "$tool" sign enc.key msg msg.enc.sig 'encrypted key' &&
	minisign -V -q -p enc.pub -m msg -x msg.enc.sig >/dev/null; then
	ok "signature with our encrypted key verified by minisign"
else
	fail "our encrypted key"
fi
rc=0
"$tool" sign enc.key msg x.sig 2>err || rc=$?
[ "$rc" = 1 ] && grep -q passphrase-required err && ok "encrypted key needs a passphrase" ||
	fail "encrypted key without passphrase: exit $rc"
rc=0
BK_SIGN_PASSPHRASE='wrong' "$tool" sign enc.key msg x.sig 2>err || rc=$?
[ "$rc" = 1 ] && grep -q wrong-passphrase err && ok "wrong passphrase refused" ||
	fail "wrong passphrase: exit $rc"
if command -v script >/dev/null; then
	(
		sleep 1; printf 'depot pass\r'
		for _ in $(seq 1 40); do [ -s msg.ms-enc.sig ] && break; sleep 0.25; done
		sleep 0.25
	) |
		script -qec "minisign -S -s enc.key -m msg -x msg.ms-enc.sig -t 'minisign, our encrypted key'" /dev/null >/dev/null 2>&1 || true
	if [ -s msg.ms-enc.sig ] && out=$("$tool" verify enc.pub msg msg.ms-enc.sig) &&
		[ "$out" = "minisign, our encrypted key" ]; then
		ok "minisign opened our encrypted key"
	else
		fail "minisign could not open our encrypted key"
	fi
fi

# A secret key readable by others is refused.
chmod 644 our.key
rc=0
"$tool" sign our.key msg x.sig 2>err || rc=$?
[ "$rc" = 1 ] && grep -q key-file-permissions err && ok "0644 secret key refused" ||
	fail "0644 secret key: exit $rc"

if [ "$fails" -ne 0 ]; then
	echo "$fails failure(s)" >&2
	exit 1
fi
echo "all interop checks passed"
