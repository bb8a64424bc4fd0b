#!/usr/bin/env bash
# Installs the Debian 12 packages aibo-restore needs to build, test and run
# its demo. Idempotent: installs only what is missing, never prompts.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libsodium-dev libarchive-dev libcurl4-openssl-dev libsqlite3-dev sqlite3
  libusb-1.0-0-dev libjansson-dev libmicrohttpd-dev zlib1g-dev libzstd-dev
  libumockdev-dev umockdev
  age minisign zstd tar openssl python3 python3-jsonschema openapi-specification
  python3-botocore python3-yaml mandoc util-linux time zsh bash-completion
  restic borgbackup
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The S3-compatible server the store tests run (tests/s3/package.json pins it).
# A missing npm or registry only warns here; the s3 test then fails saying so.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -d "$root/tests/s3/node_modules" ]; then
  if command -v npm >/dev/null 2>&1; then
    if ! npm install --prefix "$root/tests/s3" --no-audit --no-fund >/dev/null 2>&1; then
      echo "deps: warning: npm install in tests/s3 failed; the s3 store test will fail" >&2
    fi
  else
    echo "deps: warning: npm not found; the s3 store test needs node and npm" >&2
  fi
fi
