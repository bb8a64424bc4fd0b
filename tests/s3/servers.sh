#!/usr/bin/env bash
# Starts or stops the S3 test servers in DIR: s3rver (npm, tests/s3/node_modules)
# on 127.0.0.1 behind s3front.py, which checks every SigV4 signature.
#   servers.sh start DIR   -> DIR/endpoint holds http://127.0.0.1:PORT of the front
#   servers.sh stop DIR
# Bucket: depot-bk; credentials S3RVER / S3RVER. Front log: DIR/front.log,
# refusals: DIR/front.err; DIR/ctl (a part number) stalls that part's upload once;
# DIR/getctl ("cut N" or "stall N") cuts or stalls the next backup download
# after N bytes (DIR/getctl.done records it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?start or stop}
dir=${2:?folder}

if [ "$cmd" = stop ]; then
  for f in front.pid s3rver.pid; do
    if [ -f "$dir/$f" ]; then
      kill "$(cat "$dir/$f")" 2>/dev/null || true
      rm -f "$dir/$f"
    fi
  done
  exit 0
fi

missing=""
command -v node >/dev/null 2>&1 || missing="$missing node (install nodejs and npm)"
[ -x "$here/node_modules/.bin/s3rver" ] ||
  missing="$missing s3rver (run: npm install --prefix tests/s3 --no-audit --no-fund, or scripts/deps.sh)"
/usr/bin/python3 -c 'import botocore.auth' 2>/dev/null ||
  missing="$missing python3-botocore (run scripts/deps.sh)"
if [ -n "$missing" ]; then
  echo "s3 test servers: missing:$missing" >&2
  exit 1
fi

mkdir -p "$dir/data"
rm -f "$dir/endpoint" "$dir/front.port"
# s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its legacy provider.
NODE_OPTIONS=--openssl-legacy-provider "$here/node_modules/.bin/s3rver" -d "$dir/data" -a 127.0.0.1 -p 0 \
  --configure-bucket depot-bk >"$dir/s3rver.log" 2>&1 &
echo $! >"$dir/s3rver.pid"
port=""
for _ in $(seq 100); do
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$dir/s3rver.log" 2>/dev/null | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "s3 test servers: s3rver did not start:" >&2
  cat "$dir/s3rver.log" >&2
  exit 1
fi
/usr/bin/python3 "$here/s3front.py" --upstream "127.0.0.1:$port" --port-file "$dir/front.port" \
  --data-dir "$dir/data" --log "$dir/front.log" --ctl "$dir/ctl" --get-ctl "$dir/getctl" \
  2>"$dir/front.err" &
echo $! >"$dir/front.pid"
for _ in $(seq 100); do
  [ -s "$dir/front.port" ] && break
  sleep 0.1
done
if [ ! -s "$dir/front.port" ]; then
  echo "s3 test servers: the signature-checking front did not start:" >&2
  cat "$dir/front.err" >&2
  exit 1
fi
echo "http://127.0.0.1:$(cat "$dir/front.port")" >"$dir/endpoint"
