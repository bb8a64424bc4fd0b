#!/usr/bin/env bash
# Channel benchmark: the Noise device channel over TCP loopback against
# libsodium's single-core AEAD and a raw TCP copy, in the same run.
# usage: tests/bench/channel.sh [BUILD_DIR] [MIB]   (defaults: build, 1024)
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
cmake --build "$build" --target bk-bench-channel -j "$(nproc)" >/dev/null
"$build/tests/bk-bench-channel" "$mib"
