#!/usr/bin/env bash
# Firmware signatures interoperate with minisign: a manifest signed by
# libbackup verifies with `minisign -V`, and one signed by minisign (key made
# with `minisign -G -W`) verifies with libbackup.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
fwtool=${FWTOOL:?}
command -v minisign >/dev/null || { echo "minisign is not installed"; exit 1; }
cd "$tmp"
head -c 300000 /dev/urandom >rootfs.img
printf 'kernel' >kernel.img

# Keys: one made by minisign, one by libbackup.
check "minisign -G -W makes a key" minisign -G -W -p mkey.pub -s mkey.key
check "libbackup makes a key" "$fwtool" keygen ours.key ours.pub

# libbackup signs (with either key), minisign verifies.
for k in mkey ours; do
  check "pack with $k.key" "$fwtool" pack "$k.aifw" "$k.key" 2.1.0-beta.1 rootfs.img kernel.img
  mkdir "x-$k"
  check "the first two entries are the manifest and its signature" \
    sh -c "tar -tf '$k.aifw' | head -2 | tr '\n' ' ' | grep -qx 'manifest.json manifest.json.minisig '"
  check "tar extracts the manifest and the signature ($k)" \
    tar -C "x-$k" -xf "$k.aifw" manifest.json manifest.json.minisig
  check "minisign -V accepts the signature by $k" \
    sh -c "minisign -V -p '$k.pub' -m 'x-$k/manifest.json' -x 'x-$k/manifest.json.minisig' >'$k.out'"
  check "minisign shows the trusted comment ($k)" grep -q 'version:2.1.0-beta.1' "$k.out"
  check "libbackup verifies its own bundle ($k)" "$fwtool" verify "$k.aifw" "$k.pub"
done
check "minisign -V refuses the other key" \
  sh -c "! minisign -V -p mkey.pub -m x-ours/manifest.json -x x-ours/manifest.json.minisig >/dev/null 2>&1"

# minisign signs, libbackup verifies: the same manifest re-signed with
# `minisign -S -t`, the bundle rebuilt with GNU tar (ustar).
mkdir re
cp x-mkey/manifest.json rootfs.img kernel.img re/
check "minisign -S signs the manifest" \
  minisign -S -s mkey.key -m re/manifest.json -x re/manifest.json.minisig -t "signed by the minisign tool"
check "GNU tar builds the bundle" \
  tar --format=ustar -C re -cf re.aifw manifest.json manifest.json.minisig rootfs.img kernel.img
check "libbackup verifies minisign's signature" sh -c "'$fwtool' verify re.aifw mkey.pub | grep -q '^ok 2.1.0-beta.1 '"
# minisign prints the id without leading zeros.
ours_id=$("$fwtool" verify re.aifw mkey.pub | cut -d' ' -f3 | sed 's/^0*//')
theirs_id=$(head -1 mkey.pub | awk '{print $NF}' | sed 's/^0*//')
check "the key id is the one minisign shows ($theirs_id)" test -n "$ours_id" -a "$ours_id" = "$theirs_id"
check "a key folder works too" sh -c "mkdir keys && cp mkey.pub ours.pub keys/ && '$fwtool' verify re.aifw keys >/dev/null"
check "libbackup refuses it with another key (unknown-key)" \
  sh -c "! '$fwtool' verify re.aifw ours.pub 2>err && grep -q '^unknown-key:' err"
# A manifest changed after minisign signed it.
sed -i 's/"version":"2.1.0-beta.1"/"version":"2.1.0-beta.2"/' re/manifest.json
tar --format=ustar -C re -cf bad.aifw manifest.json manifest.json.minisig rootfs.img kernel.img
check "libbackup refuses a changed manifest (bad-signature)" \
  sh -c "! '$fwtool' verify bad.aifw mkey.pub 2>err && grep -q '^bad-signature:' err"
check "so does minisign" \
  sh -c "! minisign -V -p mkey.pub -m re/manifest.json -x re/manifest.json.minisig >/dev/null 2>&1"
finish
