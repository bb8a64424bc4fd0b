#!/usr/bin/env bash
# The completion scripts that `aibo-restore completion bash|zsh` prints load
# in their shells and complete commands, subcommands, options and files.
set -euo pipefail
. "${BK_TEST_SOURCE_DIR:?}/tests/cli/lib.sh"
: "${AIBO_RESTORE:?}" "${BK_BUILD_DIR:?}"

expect_exit 0 "completion bash prints a script" "$AIBO_RESTORE" completion bash
cp "$tmp/out" "$tmp/c.bash"
expect_exit 0 "completion zsh prints a script" "$AIBO_RESTORE" completion zsh
cp "$tmp/out" "$tmp/c.zsh"
expect_exit 2 "completion of an unknown shell is a usage error" "$AIBO_RESTORE" completion fish
check "the usage error names the shell" grep -q "unknown shell 'fish'" "$tmp/err"
expect_exit 0 "completion --json carries the script" "$AIBO_RESTORE" --json completion bash
check "the JSON script is the text one" sh -c "python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d[\"version\"] == 1 and d[\"shell\"] == \"bash\", d
assert d[\"script\"] == open(sys.argv[2]).read()
' '$tmp/out' '$tmp/c.bash'"
check "the build's bash completion file is up to date" cmp -s "$tmp/c.bash" "$BK_BUILD_DIR/completion/aibo-restore"
check "the build's zsh completion file is up to date" cmp -s "$tmp/c.zsh" "$BK_BUILD_DIR/completion/_aibo-restore"

# --- bash -----------------------------------------------------------------
check "the bash script loads without errors" sh -c "bash --norc --noprofile -c 'source \"$tmp/c.bash\" && complete -p aibo-restore' >'$tmp/b.out' 2>'$tmp/b.err'; s=\$?; cat '$tmp/b.err'; [ \$s -eq 0 ] && [ ! -s '$tmp/b.err' ] && grep -q '_aibo_restore' '$tmp/b.out'"
cat >"$tmp/bash_complete.sh" <<'SH'
# bash_complete.sh SCRIPT WORD...: the candidates the completion offers for
# the last word of `WORD...`, one per line.
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
_aibo_restore aibo-restore "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
SH
mkdir -p "$tmp/files/keys.d"
: >"$tmp/files/key-one"
bcomp() { (cd "$tmp/files" && bash --norc --noprofile "$tmp/bash_complete.sh" "$tmp/c.bash" aibo-restore "$@") 2>&1; }
offers() { # offers WANT... -- WORD...: every WANT is among the candidates
  local want=() w
  while [ "$1" != -- ]; do want+=("$1"); shift; done; shift
  local got; got=$("$comp" "$@")
  for w in "${want[@]}"; do
    if ! grep -qxF -- "$w" <<<"$got"; then echo "no '$w' for '$*' in:"; echo "$got" | head -30; return 1; fi
  done
}
lacks() { # lacks NOTWANT -- WORD...
  local nw=$1; shift 2
  ! "$comp" "$@" | grep -qxF -- "$nw"
}
comp=bcomp
check "bash: 'con' offers config" offers config -- con
check "bash: 'con' does not offer keygen" lacks keygen -- con
check "bash: 'keygen --' offers --signing" offers --signing --output --json -- keygen --
check "bash: 'keygen --' lacks other commands' options" lacks --dependencies -- keygen --
check "bash: 'config ' offers show" offers show -- config ''
check "bash: a command list when nothing is typed" offers help version keygen completion config -- ''
check "bash: 'keygen -o k' offers files" offers key-one keys.d -- keygen -o k
check "bash: 'keygen --output k' offers files" offers key-one -- keygen --output k
check "bash: '--config k' before the command offers files" offers key-one -- --config k
check "bash: '--progress ' offers the modes" offers auto tty json none -- --progress ''
check "bash: '--progress=j' offers --progress=json" offers --progress=json -- --progress=j
check "bash: 'completion ' offers the shells" offers bash zsh -- completion ''
check "bash: 'help config ' offers show" offers show -- help config ''
check "bash: options after global options" offers --signing -- --json keygen --sig
check "bash: an option's argument is not a command" lacks show -- keygen -o config ''

# --- zsh ------------------------------------------------------------------
if ! command -v zsh >/dev/null 2>&1; then
  bad "zsh is not installed: the Debian package zsh must be in scripts/deps.sh"
  finish
  exit 1
fi
check "the zsh script loads without errors in zsh -f" sh -c "zsh -f -c 'source \"$tmp/c.zsh\"' >'$tmp/z.out' 2>'$tmp/z.err'; s=\$?; cat '$tmp/z.err'; [ \$s -eq 0 ] && [ ! -s '$tmp/z.err' ]"
check "the zsh script registers with compinit" sh -c "[ \"\$(cd '$tmp' && zsh -f -c 'autoload -Uz compinit && compinit -u -D && source \"$tmp/c.zsh\" && print -r -- \$_comps[aibo-restore]' 2>&1)\" = _aibo-restore ]"
# The completion function is driven with zsh's completion primitives
# replaced by ones that print their candidates.
cat >"$tmp/zsh_complete.zsh" <<'ZSH'
source "$1"; shift
_describe() { local arr=${@[-1]} s; for s in ${(P)arr}; do print -r -- "${s%%:*}"; done; }
_files() { local f; for f in ${~PREFIX}*(N); do print -r -- $f; done; }
compadd() { [[ $1 == -a ]] && print -rl -- ${(P)2}; }
compset() { return 0; }
words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}
_aibo-restore
ZSH
zcomp() { (cd "$tmp/files" && zsh -f "$tmp/zsh_complete.zsh" "$tmp/c.zsh" aibo-restore "$@") 2>&1; }
comp=zcomp
check "zsh: a command list offers config" offers config help keygen -- con
check "zsh: 'keygen --' offers --signing" offers --signing --output --json -- keygen --
check "zsh: 'keygen --' lacks other commands' options" lacks --dependencies -- keygen --
check "zsh: 'config ' offers show" offers show -- config ''
check "zsh: 'keygen -o k' offers files" offers key-one -- keygen -o k
check "zsh: '--progress ' offers the modes" offers auto tty json none -- --progress ''
check "zsh: 'completion ' offers the shells" offers bash zsh -- completion ''
check "zsh: 'help config ' offers show" offers show -- help config ''
finish
