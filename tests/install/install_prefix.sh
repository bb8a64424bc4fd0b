#!/usr/bin/env bash
# Installs the current build into a temporary prefix and uses it the way a
# packager or a program author would: only through pkg-config and the
# installed files.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
: "${BK_BUILD_DIR:?}"
here=$(dirname "$0")
cc=${BK_CC:-cc}
san=()
if [ -n "${BK_SANITIZE:-}" ]; then
  san=(-fsanitize="$BK_SANITIZE" -fno-omit-frame-pointer)
fi
prefix=$tmp/prefix

check "cmake --install succeeds" sh -c "cmake --install '$BK_BUILD_DIR' --prefix '$prefix' >'$tmp/install.log' 2>&1 || { cat '$tmp/install.log'; exit 1; }"

pc=$(find "$prefix" -name libbackup.pc -path '*/pkgconfig/*' | head -1)
check "libbackup.pc is installed under lib/pkgconfig" test "$pc" = "$prefix/lib/pkgconfig/libbackup.pc"
libdir=$prefix/lib
export PKG_CONFIG_PATH=$libdir/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR || true

# Programs.
check "aibo-restore is installed" test -x "$prefix/bin/aibo-restore"
if [ -x "$BK_BUILD_DIR/device/virtual/aibo-vdev" ]; then
  check "aibo-vdev is installed" test -x "$prefix/bin/aibo-vdev"
fi
if [ -x "$BK_BUILD_DIR/tests/cloudsim/aibo-cloudsim" ]; then
  check "aibo-cloudsim is installed" test -x "$prefix/bin/aibo-cloudsim"
fi
check "the installed aibo-restore runs" sh -c "'$prefix/bin/aibo-restore' version | grep -q '^aibo-restore '"
for b in "$prefix"/bin/*; do
  check "$(basename "$b") carries no path of the build folder" \
    sh -c "! readelf -d '$b' | grep -E 'RPATH|RUNPATH' | grep -qF '$BK_BUILD_DIR'"
done

# Libraries and headers.
version=$(pkg-config --modversion libbackup)
major=${version%%.*}
check "pkg-config knows libbackup $version" test -n "$version"
header_version=$(sed -n 's/^#define BK_VERSION_STRING "\(.*\)"$/\1/p' "$BK_TEST_SOURCE_DIR/libbackup/include/libbackup/version.h")
check "the .pc version is the library's ($header_version)" test "$version" = "$header_version"
check "libbackup.a is installed" test -f "$libdir/libbackup.a"
check "libbackup.so.$version is installed" test -f "$libdir/libbackup.so.$version"
check "libbackup.so -> libbackup.so.$major" test "$(readlink "$libdir/libbackup.so")" = "libbackup.so.$major"
check "libbackup.so.$major -> libbackup.so.$version" test "$(readlink "$libdir/libbackup.so.$major")" = "libbackup.so.$version"
check "the SONAME is libbackup.so.$major" sh -c "readelf -d '$libdir/libbackup.so.$version' | grep -q 'SONAME.*\\[libbackup.so.$major\\]'"
for h in "$BK_TEST_SOURCE_DIR"/libbackup/include/libbackup/*.h; do
  check "header $(basename "$h") is installed" cmp -s "$h" "$prefix/include/libbackup/$(basename "$h")"
done
check "the .pc names the private dependencies" sh -c '
  req=$(pkg-config --print-requires-private libbackup | awk "{print \$1}" | sort | tr "\n" " ")
  [ "$req" = "jansson libarchive libcurl libsodium libusb-1.0 sqlite3 " ] || { echo "Requires.private: $req"; exit 1; }
  libs=" $(pkg-config --static --libs libbackup) "
  for l in -lbackup -lsodium -larchive -lcurl -lsqlite3 -lusb-1.0 -ljansson -pthread; do
    case $libs in *" $l "*) ;; *) echo "missing $l in: $libs"; exit 1 ;; esac
  done'

# A program against the shared library, with pkg-config only.
cflags=$(pkg-config --cflags libbackup)
libs=$(pkg-config --libs libbackup)
# shellcheck disable=SC2086
check "a program builds against the shared library" sh -c "'$cc' -std=c17 -Wall -Wextra -Werror ${san[*]} '$here/prog.c' -o '$tmp/prog' $cflags $libs 2>&1"
check "the program needs libbackup.so.$major" sh -c "readelf -d '$tmp/prog' | grep -q 'NEEDED.*\\[libbackup.so.$major\\]'"
run_prog() { # run_prog NAME PROGRAM [ENV...]
  local name=$1 prog=$2; shift 2
  set +e
  env "$@" "$prog" "/nonexistent/$name.aibk" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  set -e
  check "$name: runs" sh -c "[ $rc -eq 0 ] || { cat '$tmp/$name.out' '$tmp/$name.err'; exit 1; }"
  check "$name: bk_version() is $version" grep -qx "version $version" "$tmp/$name.out"
  check "$name: the header says $version" grep -qx "header $version" "$tmp/$name.out"
  check "$name: the error is BK_ENOTFOUND" grep -qx "rc -4 BK_ENOTFOUND" "$tmp/$name.out"
  check "$name: bk_error_last() names the file" grep -q "^message .*/nonexistent/$name.aibk" "$tmp/$name.out"
}
run_prog shared "$tmp/prog" LD_LIBRARY_PATH="$libdir"

# The same program against libbackup.a: libbackup.pc's private requirements
# supply everything the static library needs.
privs=$(pkg-config --print-requires-private libbackup | awk '{print $1}' | tr '\n' ' ')
scflags=$(pkg-config --static --cflags libbackup)
# shellcheck disable=SC2086
deplibs=$(pkg-config --libs $privs)
check "a program builds against libbackup.a" sh -c "'$cc' -std=c17 -Wall -Wextra -Werror ${san[*]} '$here/prog.c' -o '$tmp/prog_static' $scflags '$libdir/libbackup.a' $deplibs -pthread 2>&1"
check "the static program does not need libbackup.so" sh -c "! readelf -d '$tmp/prog_static' | grep -q 'NEEDED.*libbackup'"
run_prog static "$tmp/prog_static"

# Manual pages, every one in its section.
for page in "$BK_TEST_SOURCE_DIR"/man/*.[1-8]; do
  name=$(basename "$page")
  check "man page $name is installed in man${name##*.}" cmp -s "$page" "$prefix/share/man/man${name##*.}/$name"
done

# Shell completion, generated from the installed program's command table.
bash_c=$prefix/share/bash-completion/completions/aibo-restore
zsh_c=$(find "$prefix/share/zsh" -name _aibo-restore 2>/dev/null | head -1)
check "bash completion is installed" test -s "$bash_c"
check "zsh completion is installed" test -n "$zsh_c"
"$prefix/bin/aibo-restore" completion bash >"$tmp/c.bash"
"$prefix/bin/aibo-restore" completion zsh >"$tmp/c.zsh"
check "the bash completion matches the program" cmp -s "$tmp/c.bash" "$bash_c"
check "the zsh completion matches the program" cmp -s "$tmp/c.zsh" "${zsh_c:-/nonexistent}"

# The udev rule.
rule=$prefix/lib/udev/rules.d/70-aibo-restore.rules
vp=$(echo "${BK_USB_VID_PID:-1209:0001}" | tr 'A-F' 'a-f')
want="SUBSYSTEM==\"usb\", ATTR{idVendor}==\"${vp%%:*}\", ATTR{idProduct}==\"${vp##*:}\", MODE=\"0660\", GROUP=\"plugdev\""
check "the udev rule is installed" test -f "$rule"
check "the udev rule gives plugdev the units ($vp)" grep -qxF "$want" "$rule"
check "the udev rule has no other rule line" sh -c "[ \$(grep -vc -e '^#' -e '^\$' '$rule') -eq 1 ]"
finish
