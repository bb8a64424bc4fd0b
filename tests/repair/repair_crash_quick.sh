#!/usr/bin/env bash
# A few points of the crash matrix (repair_crash.sh), for every build.
exec bash "$(dirname "$0")/repair_crash.sh" quick "$@"
