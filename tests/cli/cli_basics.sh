#!/usr/bin/env bash
# The command-line skeleton: version, help, exit codes, the JSON shapes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ar=${AIBO_RESTORE:?}
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg
unset AIBO_RESTORE_CONFIG || true

expect_exit 0 "--version" "$ar" --version
check "--version prints the version" grep -qE '^aibo-restore [0-9]+\.[0-9]+\.[0-9]+$' "$tmp/out"

expect_exit 0 "help" "$ar" help
check "help lists commands" grep -q "config show" "$tmp/out"
check "help lists version" grep -q "^  version" "$tmp/out"

expect_exit 2 "--json unknown command exits 2" "$ar" --json frobnicate
check "unknown command: one JSON object" one_json "$tmp/out"
check "unknown command: error code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = unknown-command
check "unknown command: message names it" grep -q frobnicate "$tmp/out"
check "unknown command: stderr line" grep -q "^aibo-restore: unknown command 'frobnicate'" "$tmp/err"

expect_exit 2 "--json after the command" "$ar" frobnicate --json
check "json after command: one JSON object" one_json "$tmp/out"

expect_exit 2 "unknown option" "$ar" version --frobnicate
check "unknown option: one line" test "$(wc -l <"$tmp/err")" -eq 1
expect_exit 2 "unknown option (json)" "$ar" --json version --frobnicate
check "unknown option: JSON code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = unknown-option
expect_exit 2 "unknown global option" "$ar" --frobnicate version
expect_exit 2 "missing option argument" "$ar" version --config
expect_exit 2 "extra argument" "$ar" version extra
expect_exit 2 "bad --progress value" "$ar" --progress=loud version
expect_exit 2 "no command" "$ar"
expect_exit 2 "group without subcommand" "$ar" config

expect_exit 0 "version --json" "$ar" version --json
check "version --json: one object" one_json "$tmp/out"
check "version --json: dependencies" grep -q libsodium "$tmp/out"
expect_exit 0 "options before or after" "$ar" --json version
check "global --json before the command" one_json "$tmp/out"

expect_exit 0 "option after a positional argument" "$ar" help version --json
check "option after a positional: one JSON object" one_json "$tmp/out"
check "option after a positional: the command" test "$(json_get "$tmp/out" 'd["command"]')" = version
expect_exit 0 "-- ends the options" "$ar" help -- version
check "-- ends the options: usage shown" grep -q "^usage: aibo-restore version" "$tmp/out"

expect_exit 0 "command --help" "$ar" version --help
check "--help shows usage" grep -q "^usage: aibo-restore version" "$tmp/out"
expect_exit 0 "help COMMAND" "$ar" help config show
check "help config show" grep -q "^usage: aibo-restore config show" "$tmp/out"

# Configuration: precedence and redaction through the CLI.
mkdir -p "$tmp/xdg/aibo-restore"
printf '[api]\nurl = https://api.test\ntoken = supersecret\n[depot]\ndb = d.db\n' >"$tmp/xdg/aibo-restore/config"
expect_exit 0 "config show" "$ar" config show --json
check "config show: token redacted" sh -c "! grep -q supersecret '$tmp/out'"
check "config show: origin" test "$(json_get "$tmp/out" 'd["config"]["api.url"]["origin"]')" = "$tmp/xdg/aibo-restore/config:2"
check "config show: relative path resolved" test "$(json_get "$tmp/out" 'd["config"]["depot.db"]["value"]')" = "$tmp/xdg/aibo-restore/d.db"
AIBO_RESTORE_API_URL=https://env.test expect_exit 0 "config show env" "$ar" config show --json
check "env beats file" test "$(json_get "$tmp/out" 'd["config"]["api.url"]["value"]')" = https://env.test
expect_exit 0 "--db flag" "$ar" --db /x/flag.db config show --json
check "--db beats file" test "$(json_get "$tmp/out" 'd["config"]["depot.db"]["value"]')" = /x/flag.db
printf '[depot]\nfrobnicate = 1\n' >"$tmp/bad.conf"
expect_exit 2 "bad config file" "$ar" --config "$tmp/bad.conf" --json config show
check "bad config: names file and line" grep -q "bad.conf:2" "$tmp/out"
check "bad config: code" test "$(json_get "$tmp/out" 'd["error"]["code"]')" = config-unknown-key
expect_exit 3 "missing --config file" "$ar" --config "$tmp/none.conf" config show

finish
