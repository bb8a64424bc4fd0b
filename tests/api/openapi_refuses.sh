#!/usr/bin/env bash
# The OpenAPI checker must refuse a broken document for the right reason: a
# schema validation error, not a crash or a missing module.
set -uo pipefail
out=$(/usr/bin/python3 "$(dirname "$0")/openapi_check.py" "$(dirname "$0")/broken_openapi.yaml" 2>&1)
rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL checker exit $rc, wanted 1"; echo "0 passed, 1 failed"; exit 1; fi
if ! grep -q "ValidationError: 'version' is a required property" <<<"$out"; then
  echo "FAIL checker refused for another reason:"; echo "$out" | tail -3
  echo "0 passed, 1 failed"; exit 1
fi
echo "ok   broken document refused: 'version' is a required property"
echo "1 passed, 0 failed"
