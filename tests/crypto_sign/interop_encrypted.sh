# A secret key encrypted by minisign itself (scrypt at its full strength, 1 GiB:
# hence the "long" label) is opened by our reader given the passphrase, and
# our signature with it verifies with minisign. minisign reads passphrases
# from its terminal, so it is driven through script(1).
set -euo pipefail

tool=${BK_SIGN_TOOL:?BK_SIGN_TOOL not set}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

pass='lab passphrase'
# The writer waits for minisign to finish (the public key is written last).
(
	sleep 1; printf '%s\r' "$pass"; sleep 1; printf '%s\r' "$pass"
	for _ in $(seq 1 120); do [ -s ms.pub ] && break; sleep 0.5; done
	sleep 0.5
) | script -qec "minisign -G -p ms.pub -s ms.key" /dev/null >/dev/null 2>&1 || true
[ -s ms.key ] || { echo "FAIL: minisign did not create an encrypted key" >&2; exit 1; }
head -2 ms.key | tail -1 | base64 -d | head -c 4 | grep -q 'EdSc' ||
	{ echo "FAIL: the key is not scrypt-encrypted" >&2; exit 1; }

head -c 5000 /dev/urandom > msg
BK_SIGN_PASSPHRASE=$pass "$tool" sign ms.key msg msg.sig 'ours, minisign encrypted key'
minisign -V -q -p ms.pub -m msg -x msg.sig
rc=0
BK_SIGN_PASSPHRASE='not it' "$tool" sign ms.key msg bad.sig 2>err || rc=$?
[ "$rc" = 1 ] && grep -q wrong-passphrase err ||
	{ echo "FAIL: wrong passphrase not refused (exit $rc)" >&2; exit 1; }
echo "minisign-encrypted key opened and used"
