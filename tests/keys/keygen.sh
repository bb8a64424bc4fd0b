#!/usr/bin/env bash
# keygen: identities other tools accept, signing keys minisign accepts,
# passphrases, refusal to overwrite and to read shared key files.
set -euo pipefail
. "$(dirname "$0")/../cli/lib.sh"
ar=${AIBO_RESTORE:?}
pty="python3 $(dirname "$0")/ttyrun.py"
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg
unset AIBO_RESTORE_CONFIG AIBO_RESTORE_PASSPHRASE || true
cd "$tmp"

expect_exit 0 "keygen -o" "$ar" keygen -o id1
check "prints the recipient" grep -qE '^age1[0-9a-z]{58}$' out
cp out id1.recipient
check "mode 0600" test "$(stat -c %a id1)" = 600
check "age-keygen -y accepts our identity" sh -c "age-keygen -y id1 | cmp - id1.recipient"
expect_exit 0 "keygen -y" "$ar" keygen -y id1
check "keygen -y matches" cmp out id1.recipient
echo "memory of a good dog" >msg
age -r "$(cat id1.recipient)" -o msg.age msg
check "age encrypts to it, age decrypts with it" sh -c "age -d -i id1 msg.age | cmp - msg"
expect_exit 1 "refuses to overwrite" "$ar" keygen -o id1
check "overwrite message" grep -q "refusing to overwrite" err
check "the old key is intact" sh -c "age-keygen -y id1 | cmp - id1.recipient"
chmod 644 id1
expect_exit 7 "refuses a shared identity file" "$ar" keygen -y id1
check "says how to fix it" grep -q "chmod 600" err
expect_exit 7 "refuses a shared identity file (json)" "$ar" --json keygen -y id1
check "json reason" test "$(json_get out 'd["error"]["code"]')" = key-file-permissions
chmod 600 id1

# The configured identity is the default output.
printf '[depot]\nidentity = conf.identity\n' >cfg
expect_exit 0 "keygen into the configured identity" "$ar" --config cfg keygen --json
check "configured path used" test -f conf.identity
check "json recipient" test "$(json_get out 'd["recipient"]')" = "$(age-keygen -y conf.identity)"

# Passphrase-protected identities are age files with one scrypt stanza.
AIBO_RESTORE_PASSPHRASE='correct horse' expect_exit 0 "keygen --passphrase (env)" "$ar" keygen -o id2 --passphrase
cp out id2.recipient
check "protected file is an age scrypt file" sh -c "head -2 id2 | grep -q '^-> scrypt '"
check "age -d opens it with the passphrase" sh -c "$pty 'correct horse' age -d -o id2.plain id2 2>/dev/null && age-keygen -y id2.plain | cmp - id2.recipient"
AIBO_RESTORE_PASSPHRASE='correct horse' expect_exit 0 "keygen -y on a protected identity" "$ar" keygen -y id2
check "its recipient" cmp out id2.recipient
AIBO_RESTORE_PASSPHRASE='wrong' expect_exit 7 "wrong passphrase" "$ar" keygen -y id2
expect_exit 2 "no passphrase source without a terminal" "$ar" keygen -y id2 </dev/null
printf 'from a file\n' >pass.txt
expect_exit 0 "--passphrase-file" "$ar" keygen -o id3 --passphrase-file pass.txt
cp out id3.recipient
check "age -d opens it with the file's passphrase" sh -c "$pty 'from a file' age -d -o id3.plain id3 2>/dev/null && age-keygen -y id3.plain | cmp - id3.recipient"
check "a prompt on a terminal works" sh -c "$pty 'typed here' '$ar' keygen -o id4 --passphrase >/dev/null 2>&1 && $pty 'typed here' age -d -o id4.plain id4 2>/dev/null && test -s id4.plain"
check "passphrase never on the command line" sh -c "! '$ar' keygen --help | grep -qE -- '--passphrase [A-Z]'"

# Signing keys.
expect_exit 0 "keygen --signing" "$ar" --json keygen --signing -o sign.key
check "secret key mode 0600" test "$(stat -c %a sign.key)" = 600
check "public key written" test -s sign.key.pub
check "json key id" test "$(json_get out 'len(d["key_id"])')" = 16
echo "firmware manifest" >m
check "minisign signs with our key" sh -c "minisign -S -s sign.key -m m -t 'trusted' >/dev/null 2>&1"
check "minisign -V verifies with our public key" sh -c "minisign -V -m m -p sign.key.pub >/dev/null"
echo "tampered" >>m
check "minisign rejects a tampered message" sh -c "! minisign -V -m m -p sign.key.pub >/dev/null 2>&1"
AIBO_RESTORE_PASSPHRASE='sig pass' expect_exit 0 "keygen --signing --passphrase" "$ar" keygen --signing -o sign2.key --passphrase
echo "bundle" >m2
check "minisign opens our encrypted signing key" sh -c "$pty 'sig pass' minisign -S -s sign2.key -m m2 -t t >/dev/null 2>&1 && minisign -V -m m2 -p sign2.key.pub >/dev/null"
expect_exit 2 "--signing needs -o" "$ar" keygen --signing
expect_exit 2 "-y with -o" "$ar" keygen -y id1 -o x

finish
