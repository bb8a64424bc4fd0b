#!/bin/bash
# Starts the simulated USB unit (usb_echo_server), runs the USB transport
# tests against it in a separate process under umockdev's preload, stops the
# server and checks it left no test bed folder behind.
set -u
bin=${BK_BUILD_DIR:?}/tests
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bk-usb-XXXXXX")
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

serial="AIBO-USB-$$"
"$bin/usb_echo_server" --serial "$serial" --env-file "$tmp/env" --gone-ms 1500 \
	>"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
for _ in $(seq 100); do
	[ -s "$tmp/env" ] && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
if [ ! -s "$tmp/env" ]; then
	echo "usb_echo_server did not start"
	cat "$tmp/server.err"
	exit 1
fi
dir=$(sed -n 's/^UMOCKDEV_DIR=//p' "$tmp/env")
preload=$(sed -n 's/^LD_PRELOAD=//p' "$tmp/env")
echo "server environment: UMOCKDEV_DIR=$dir LD_PRELOAD=$preload"

UMOCKDEV_DIR="$dir" LD_PRELOAD="$preload" BK_USB_SERIAL="$serial" \
	BK_USB_SERVER_PID="$server_pid" "$bin/usb_client" "$@"
client_rc=$?

kill -TERM "$server_pid"
wait "$server_pid"
server_rc=$?
server_pid=
cat "$tmp/server.err"
if [ "$server_rc" -ne 0 ]; then
	echo "usb_echo_server exited with $server_rc"
	exit 1
fi
if [ -e "$dir" ]; then
	echo "the test bed folder $dir was left behind"
	exit 1
fi
exit "$client_rc"
