# Shared helpers for the bash tests: counting checks and the closing line.
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
# expect_exit CODE NAME COMMAND...: runs the command, stdout to $out, stderr
# to $err, and checks the exit status.
expect_exit() {
  local want=$1 name=$2; shift 2
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  set -e
  if [ "$got" -eq "$want" ]; then ok "$name"; else
    bad "$name (exit $got, wanted $want)"; sed 's/^/    /' "$tmp/out" "$tmp/err" | head -20
  fi
}
# json_get FILE EXPR: a value from a JSON file, via python3.
json_get() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"
}
# one_json FILE: the file holds exactly one JSON object with "version": 1.
one_json() {
  python3 -c '
import json, sys
text = open(sys.argv[1]).read()
obj = json.loads(text)
assert isinstance(obj, dict) and obj.get("version") == 1, obj
assert text.strip().count("\n") == 0
' "$1"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
