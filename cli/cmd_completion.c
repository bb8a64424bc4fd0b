/* aibo-restore completion bash|zsh: a shell completion script generated from
 * the command table, so it always matches the program that prints it. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The global options. This duplicates global_long in main.c (which is
 * file-local there); keep the two lists in step. */
static const cli_opt global_opts[] = {
    {"json", 0, NULL, "one JSON object on stdout, errors included"},
    {"config", 0, "FILE", "read FILE instead of the default config files"},
    {"db", 0, "FILE", "use FILE as the catalog and journal database"},
    {"progress", 0, "auto|tty|json|none", "how to report progress"},
    {"no-color", 0, NULL, "no colours in terminal output"},
    {"help", 'h', NULL, "describe the command"},
    {"version", 0, NULL, "print the version"},
    {"verbose", 'v', NULL, "more diagnostics on stderr (repeatable)"},
    {"quiet", 'q', NULL, "only errors on stderr"},
    {0},
};

/* A word that can go into a shell script unquoted and into a single-quoted
 * string: letters, digits, '.', '_', '-'. */
static bool safe_word(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A command name: one word, or two separated by one space. */
static bool safe_command_name(const char *name)
{
	const char *sp = strchr(name, ' ');
	if (sp == NULL)
		return safe_word(name, strlen(name));
	return safe_word(name, (size_t)(sp - name)) && safe_word(sp + 1, strlen(sp + 1));
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t l = strlen(suffix);
	return n >= l && memcmp(s + n - l, suffix, l) == 0;
}

/* The completion of an argument named `s` (n bytes), as a short code the
 * scripts understand: "f" file names, "d" folders, "c" command names,
 * "w:a|b|c" one of these words, "n" nothing to offer. Writes into `out`. */
static void arg_kind(const char *s, size_t n, char *out, size_t cap)
{
	static const char *const files[] = {"FILE", "KEY",    "IDENTITY", "PATH",
	                                    "CERT", "BACKUP", "BUNDLE",   NULL};
	for (size_t i = 0; files[i]; i++) {
		if (n == strlen(files[i]) && memcmp(s, files[i], n) == 0) {
			snprintf(out, cap, "f");
			return;
		}
	}
	if ((n == 3 && memcmp(s, "DIR", 3) == 0) || ends_with(s, n, "_DIR")) {
		snprintf(out, cap, "d");
		return;
	}
	if (ends_with(s, n, "FILE")) {
		snprintf(out, cap, "f");
		return;
	}
	if (n == 7 && memcmp(s, "COMMAND", 7) == 0) {
		snprintf(out, cap, "c");
		return;
	}
	/* "bash|zsh": lower-case alternatives. */
	if (memchr(s, '|', n) != NULL && n + 3 <= cap) {
		bool ok = true;
		for (size_t a = 0, b; a <= n && ok; a = b + 1) {
			for (b = a; b < n && s[b] != '|'; b++)
				;
			ok = safe_word(s + a, b - a);
			for (size_t k = a; k < b && ok; k++)
				ok = !(s[k] >= 'A' && s[k] <= 'Z');
		}
		if (ok) {
			snprintf(out, cap, "w:%.*s", (int)n, s);
			return;
		}
	}
	snprintf(out, cap, "n");
}

/* The kinds of a command's positional arguments from its synopsis
 * ("FILE [FILE...]", "[COMMAND]", "bash|zsh"): one code per position,
 * space-separated, with a final "+" when the last one repeats. */
static void positional_kinds(const char *args, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = '\0';
	for (const char *p = args ? args : ""; *p;) {
		while (*p == ' ' || *p == '[' || *p == ']')
			p++;
		if (*p == '\0')
			break;
		const char *e = p;
		while (*e && *e != ' ' && *e != '[' && *e != ']')
			e++;
		size_t n = (size_t)(e - p);
		bool repeat = n >= 3 && memcmp(e - 3, "...", 3) == 0;
		if (repeat)
			n -= 3;
		char kind[128];
		arg_kind(p, n, kind, sizeof(kind));
		int w = snprintf(out + len, cap - len, "%s%s%s", len ? " " : "", kind,
		                 repeat ? " +" : "");
		if (w < 0 || (size_t)w >= cap - len) {
			out[len] = '\0';
			return;
		}
		len += (size_t)w;
		if (repeat)
			return;
		p = e;
	}
}

/* Writes `s` inside single quotes for a shell (newlines are kept). */
static void put_quoted(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	}
	fputc('\'', f);
}

/* Writes a description on one line. */
static void put_text(FILE *f, const char *s)
{
	for (; s && *s; s++)
		fputc(*s == '\n' || *s == '\t' || *s == '\r' ? ' ' : *s, f);
}

/* Whether the first word of cli_commands[i] already appeared before i. */
static bool first_word_seen(size_t i)
{
	const char *name = cli_commands[i]->name;
	size_t l = strcspn(name, " ");
	for (size_t j = 0; j < i; j++) {
		const char *o = cli_commands[j]->name;
		if (strcspn(o, " ") == l && strncmp(o, name, l) == 0)
			return true;
	}
	return false;
}

/* Every option in `opts` as "--name -s" words separated by spaces. */
static void put_option_words(FILE *f, const cli_opt *opts)
{
	bool first = true;
	for (const cli_opt *o = opts; o && o->name; o++) {
		fprintf(f, "%s--%s", first ? "" : " ", o->name);
		first = false;
		if (o->short_name)
			fprintf(f, " -%c", o->short_name);
	}
}

static void put_bash_argkinds(FILE *f, const char *cmd, const cli_opt *opts)
{
	for (const cli_opt *o = opts; o && o->name; o++) {
		if (o->arg == NULL)
			continue;
		char kind[160];
		arg_kind(o->arg, strlen(o->arg), kind, sizeof(kind));
		fprintf(f, "\t\t['%s/--%s']='%s'\n", cmd, o->name, kind);
		if (o->short_name)
			fprintf(f, "\t\t['%s/-%c']='%s'\n", cmd, o->short_name, kind);
	}
}

/* Checks that every name can go into a script as is. */
static int check_names(cli_ctx *ctx)
{
	for (const cli_command *const *c = cli_commands; *c; c++) {
		if (!safe_command_name((*c)->name))
			return cli_error(ctx, BK_ERROR, "unsafe-command-name",
			                 "command '%s' has a name a completion script cannot carry",
			                 (*c)->name);
		for (const cli_opt *o = (*c)->opts; o && o->name; o++) {
			bool short_ok = o->short_name == 0 ||
			                (o->short_name > 0 && o->short_name < 128 &&
			                 safe_word((const char[]){(char)o->short_name}, 1));
			if (!safe_word(o->name, strlen(o->name)) || !short_ok)
				return cli_error(
				    ctx, BK_ERROR, "unsafe-option-name",
				    "option '%s' of '%s' has a name a completion script "
				    "cannot carry",
				    o->name, (*c)->name);
		}
	}
	return 0;
}

/* The shared walk over the words before the cursor, in bash and zsh syntax
 * alike: finds the command, whether the last word was an option waiting for
 * its argument, and the positional arguments after the command. `W` is the
 * expression of word i. */
static void put_walk(FILE *f, const char *first_index, const char *end, const char *W)
{
	fprintf(f,
	        "\tlocal cmd='' group='' expect='' w i ddash=0 npos=0 lastpos=''\n"
	        "\tfor ((i = %s; i < %s; i++)); do\n"
	        "\t\tw=%s\n"
	        "\t\tif [[ $w == = ]]; then continue; fi\n"
	        "\t\tif [[ -n $expect ]]; then expect=''; continue; fi\n"
	        "\t\tif ((ddash == 0)) && [[ $w == -- ]]; then ddash=1; continue; fi\n"
	        "\t\tif ((ddash == 0)) && [[ $w == -?* ]]; then\n"
	        "\t\t\t[[ $w == --*=* ]] && continue\n"
	        "\t\t\tif [[ -n ${argkind[$cmd/$w]-} || -n ${argkind[/$w]-} ]]; then\n"
	        "\t\t\t\texpect=$w\n"
	        "\t\t\tfi\n"
	        "\t\t\tcontinue\n"
	        "\t\tfi\n"
	        "\t\tif [[ -z $cmd ]]; then\n"
	        "\t\t\tif [[ -n $group ]]; then\n"
	        "\t\t\t\tcmd=\"$group $w\"\n"
	        "\t\t\telif [[ -n ${groups[:$w]-} ]]; then\n"
	        "\t\t\t\tgroup=$w\n"
	        "\t\t\telse\n"
	        "\t\t\t\tcmd=$w\n"
	        "\t\t\tfi\n"
	        "\t\t\tcontinue\n"
	        "\t\tfi\n"
	        "\t\tnpos=$((npos + 1))\n"
	        "\t\tlastpos=$w\n"
	        "\tdone\n",
	        first_index, end, W);
}

static void gen_bash(FILE *f)
{
	fprintf(f, "# bash completion for aibo-restore\n"
	           "# Generated by 'aibo-restore completion bash' from the program's own command\n"
	           "# table; regenerate it rather than editing it.\n\n"
	           "_aibo_restore()\n{\n"
	           "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=''\n"
	           "\t((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}\n"
	           "\tlocal firsts=");
	/* First words of every command. */
	fputc('\'', f);
	bool first = true;
	for (size_t i = 0; cli_commands[i]; i++) {
		if (first_word_seen(i))
			continue;
		const char *name = cli_commands[i]->name;
		fprintf(f, "%s%.*s", first ? "" : " ", (int)strcspn(name, " "), name);
		first = false;
	}
	fprintf(f, "'\n\tlocal -A groups=(\n");
	for (size_t i = 0; cli_commands[i]; i++) {
		const char *name = cli_commands[i]->name;
		size_t l = strcspn(name, " ");
		if (first_word_seen(i) || name[l] != ' ')
			continue;
		fprintf(f, "\t\t[':%.*s']='", (int)l, name);
		bool any = false;
		for (size_t j = i; cli_commands[j]; j++) {
			const char *o = cli_commands[j]->name;
			if (strncmp(o, name, l) == 0 && o[l] == ' ') {
				fprintf(f, "%s%s", any ? " " : "", o + l + 1);
				any = true;
			}
		}
		fprintf(f, "'\n");
	}
	fprintf(f, "\t)\n\tlocal -A opts=(\n\t\t[':']='");
	put_option_words(f, global_opts);
	fprintf(f, "'\n");
	for (const cli_command *const *c = cli_commands; *c; c++) {
		fprintf(f, "\t\t[':%s']='", (*c)->name);
		put_option_words(f, (*c)->opts);
		fprintf(f, "'\n");
	}
	fprintf(f, "\t)\n\tlocal -A argkind=(\n");
	put_bash_argkinds(f, "", global_opts);
	for (const cli_command *const *c = cli_commands; *c; c++)
		put_bash_argkinds(f, (*c)->name, (*c)->opts);
	fprintf(f, "\t)\n\tlocal -A poskind=(\n");
	for (const cli_command *const *c = cli_commands; *c; c++) {
		char kinds[512];
		positional_kinds((*c)->args, kinds, sizeof(kinds));
		fprintf(f, "\t\t[':%s']='%s'\n", (*c)->name, kinds);
	}
	fprintf(f, "\t)\n");
	put_walk(f, "1", "COMP_CWORD", "${COMP_WORDS[i]}");
	fprintf(f, "\tlocal opt='' pre='' kind=''\n"
	           "\tCOMPREPLY=()\n"
	           "\tif [[ -n $expect ]]; then\n"
	           "\t\topt=$expect\n"
	           "\t\t[[ $cur == = ]] && cur=''\n"
	           "\telif ((ddash == 0)) && [[ $cur == --*=* ]]; then\n"
	           "\t\topt=${cur%%%%=*} pre=\"${cur%%%%=*}=\" cur=${cur#*=}\n"
	           "\tfi\n"
	           "\tif [[ -n $opt ]]; then\n"
	           "\t\tkind=${argkind[$cmd/$opt]-${argkind[/$opt]-n}}\n"
	           "\telif ((ddash == 0)) && [[ $cur == -* ]]; then\n"
	           "\t\tkind=\"o:${opts[:]} ${opts[:$cmd]-}\"\n"
	           "\telif [[ -z $cmd && -n $group ]]; then\n"
	           "\t\tkind=\"o:${groups[:$group]}\"\n"
	           "\telif [[ -z $cmd ]]; then\n"
	           "\t\tkind=\"o:$firsts\"\n"
	           "\telse\n"
	           "\t\tlocal -a pk=(${poskind[:$cmd]-})\n"
	           "\t\tif ((npos < ${#pk[@]})); then\n"
	           "\t\t\tkind=${pk[npos]}\n"
	           "\t\telif ((${#pk[@]} > 0)) && [[ ${pk[${#pk[@]} - 1]} == + ]]; then\n"
	           "\t\t\tkind=${pk[${#pk[@]} - 2]}\n"
	           "\t\telse\n"
	           "\t\t\tkind=n\n"
	           "\t\tfi\n"
	           "\t\t[[ $kind == + ]] && kind=n\n"
	           "\t\t# After a command group's name, its subcommands (\"help config show\").\n"
	           "\t\tif ((npos > 0)) && [[ ${pk[0]-} == c && -n ${groups[:$lastpos]-} ]]; then\n"
	           "\t\t\tkind=\"o:${groups[:$lastpos]}\"\n"
	           "\t\telif [[ $kind == c ]]; then\n"
	           "\t\t\tkind=\"o:$firsts\"\n"
	           "\t\tfi\n"
	           "\tfi\n"
	           "\tlocal IFS=$'\\n'\n"
	           "\tcase $kind in\n"
	           "\tf)\n"
	           "\t\tcompopt -o filenames 2>/dev/null\n"
	           "\t\tCOMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
	           "\td)\n"
	           "\t\tcompopt -o filenames 2>/dev/null\n"
	           "\t\tCOMPREPLY=($(compgen -d -- \"$cur\")) ;;\n"
	           "\tw:*)\n"
	           "\t\tCOMPREPLY=($(IFS='|'; compgen -W \"${kind#w:}\" -- \"$cur\")) ;;\n"
	           "\to:*)\n"
	           "\t\tCOMPREPLY=($(IFS=' '; compgen -W \"${kind#o:}\" -- \"$cur\")) ;;\n"
	           "\tesac\n"
	           "\tif [[ -n $pre ]]; then\n"
	           "\t\tCOMPREPLY=(\"${COMPREPLY[@]/#/$pre}\")\n"
	           "\tfi\n"
	           "\treturn 0\n"
	           "}\n\n"
	           "complete -F _aibo_restore aibo-restore\n");
}

/* Returns false when out of memory. */
static bool gen_zsh(FILE *f)
{
	fprintf(f, "#compdef aibo-restore\n"
	           "# zsh completion for aibo-restore\n"
	           "# Generated by 'aibo-restore completion zsh' from the program's own command\n"
	           "# table; regenerate it rather than editing it.\n\n"
	           "_aibo-restore() {\n"
	           "\temulate -L zsh\n"
	           "\tsetopt extended_glob\n"
	           "\tlocal -a firsts\n"
	           "\tfirsts=(\n");
	for (size_t i = 0; cli_commands[i]; i++) {
		if (first_word_seen(i))
			continue;
		const char *name = cli_commands[i]->name;
		size_t l = strcspn(name, " ");
		char *spec = NULL;
		size_t slen = 0;
		FILE *m = open_memstream(&spec, &slen);
		if (m == NULL)
			return false;
		if (name[l] == ' ')
			fprintf(m, "%.*s:%.*s commands", (int)l, name, (int)l, name);
		else {
			fprintf(m, "%s:", name);
			put_text(m, cli_commands[i]->summary);
		}
		fclose(m);
		fprintf(f, "\t\t");
		put_quoted(f, spec ? spec : "");
		free(spec);
		fprintf(f, "\n");
	}
	fprintf(f, "\t)\n\tlocal -A groups opts argkind poskind\n\tgroups=(\n");
	for (size_t i = 0; cli_commands[i]; i++) {
		const char *name = cli_commands[i]->name;
		size_t l = strcspn(name, " ");
		if (first_word_seen(i) || name[l] != ' ')
			continue;
		fprintf(f, "\t\t':%.*s' ", (int)l, name);
		/* "sub:summary" lines. */
		char *buf = NULL;
		size_t blen = 0;
		FILE *m = open_memstream(&buf, &blen);
		if (m == NULL)
			return false;
		bool any = false;
		for (size_t j = i; cli_commands[j]; j++) {
			const char *o = cli_commands[j]->name;
			if (strncmp(o, name, l) == 0 && o[l] == ' ') {
				fprintf(m, "%s%s:", any ? "\n" : "", o + l + 1);
				put_text(m, cli_commands[j]->summary);
				any = true;
			}
		}
		fclose(m);
		put_quoted(f, buf ? buf : "");
		free(buf);
		fprintf(f, "\n");
	}
	fprintf(f, "\t)\n\topts=(\n");
	/* Option specs per command, one "name:help" per line. */
	for (int k = -1; k < 0 || cli_commands[k]; k++) {
		const cli_opt *o = k < 0 ? global_opts : cli_commands[k]->opts;
		char *buf = NULL;
		size_t blen = 0;
		FILE *m = open_memstream(&buf, &blen);
		if (m == NULL)
			return false;
		for (bool any = false; o && o->name; o++) {
			fprintf(m, "%s--%s:", any ? "\n" : "", o->name);
			put_text(m, o->help);
			if (o->short_name) {
				fprintf(m, "\n-%c:", o->short_name);
				put_text(m, o->help);
			}
			any = true;
		}
		fclose(m);
		fprintf(f, "\t\t':%s' ", k < 0 ? "" : cli_commands[k]->name);
		put_quoted(f, buf ? buf : "");
		free(buf);
		fprintf(f, "\n");
	}
	fprintf(f, "\t)\n\targkind=(\n");
	for (int k = -1; k < 0 || cli_commands[k]; k++) {
		const cli_opt *opts = k < 0 ? global_opts : cli_commands[k]->opts;
		const char *cmd = k < 0 ? "" : cli_commands[k]->name;
		for (const cli_opt *o = opts; o && o->name; o++) {
			if (o->arg == NULL)
				continue;
			char kind[160];
			arg_kind(o->arg, strlen(o->arg), kind, sizeof(kind));
			fprintf(f, "\t\t'%s/--%s' '%s'\n", cmd, o->name, kind);
			if (o->short_name)
				fprintf(f, "\t\t'%s/-%c' '%s'\n", cmd, o->short_name, kind);
		}
	}
	fprintf(f, "\t)\n\tposkind=(\n");
	for (const cli_command *const *c = cli_commands; *c; c++) {
		char kinds[512];
		positional_kinds((*c)->args, kinds, sizeof(kinds));
		fprintf(f, "\t\t':%s' '%s'\n", (*c)->name, kinds);
	}
	fprintf(f, "\t)\n");
	put_walk(f, "2", "CURRENT", "${words[i]}");
	fprintf(f, "\tlocal cur=${words[CURRENT]} opt='' kind=''\n"
	           "\tif [[ -n $expect ]]; then\n"
	           "\t\topt=$expect\n"
	           "\telif ((ddash == 0)) && [[ $cur == --*=* ]]; then\n"
	           "\t\topt=${cur%%%%=*}\n"
	           "\t\tcompset -P '*='\n"
	           "\tfi\n"
	           "\tif [[ -n $opt ]]; then\n"
	           "\t\tkind=${argkind[$cmd/$opt]-${argkind[/$opt]-n}}\n"
	           "\telif ((ddash == 0)) && [[ $cur == -* ]]; then\n"
	           "\t\tlocal -a specs\n"
	           "\t\tspecs=(${(f)opts[:]} ${(f)opts[:$cmd]-})\n"
	           "\t\t_describe -t options option specs\n"
	           "\t\treturn\n"
	           "\telif [[ -z $cmd && -n $group ]]; then\n"
	           "\t\tlocal -a specs\n"
	           "\t\tspecs=(${(f)groups[:$group]})\n"
	           "\t\t_describe -t commands \"$group command\" specs\n"
	           "\t\treturn\n"
	           "\telif [[ -z $cmd ]]; then\n"
	           "\t\t_describe -t commands command firsts\n"
	           "\t\treturn\n"
	           "\telse\n"
	           "\t\tlocal -a pk\n"
	           "\t\tpk=(${=poskind[:$cmd]-})\n"
	           "\t\tif ((npos < ${#pk})); then\n"
	           "\t\t\tkind=${pk[npos + 1]}\n"
	           "\t\telif ((${#pk} > 1)) && [[ ${pk[-1]} == + ]]; then\n"
	           "\t\t\tkind=${pk[-2]}\n"
	           "\t\telse\n"
	           "\t\t\tkind=n\n"
	           "\t\tfi\n"
	           "\t\t[[ $kind == + ]] && kind=n\n"
	           "\t\tif ((npos > 0)) && [[ ${pk[1]-} == c && -n ${groups[:$lastpos]-} ]]; then\n"
	           "\t\t\tlocal -a specs\n"
	           "\t\t\tspecs=(${(f)groups[:$lastpos]})\n"
	           "\t\t\t_describe -t commands \"$lastpos command\" specs\n"
	           "\t\t\treturn\n"
	           "\t\telif [[ $kind == c ]]; then\n"
	           "\t\t\t_describe -t commands command firsts\n"
	           "\t\t\treturn\n"
	           "\t\tfi\n"
	           "\tfi\n"
	           "\tcase $kind in\n"
	           "\tf) _files ;;\n"
	           "\td) _files -/ ;;\n"
	           "\tw:*)\n"
	           "\t\tlocal -a words_\n"
	           "\t\twords_=(${(s:|:)kind#w:})\n"
	           "\t\tcompadd -a words_ ;;\n"
	           "\t*) return 1 ;;\n"
	           "\tesac\n"
	           "}\n\n"
	           "if [[ ${funcstack[1]-} == _aibo-restore ]]; then\n"
	           "\t_aibo-restore \"$@\"\n"
	           "elif (($+functions[compdef])); then\n"
	           "\tcompdef _aibo-restore aibo-restore\n"
	           "fi\n");
	return true;
}

static int run(cli_ctx *ctx)
{
	const char *shell = ctx->argv[0];
	char *script = NULL;
	size_t len = 0;
	int rc = 0;
	FILE *m = NULL;

	if (strcmp(shell, "bash") != 0 && strcmp(shell, "zsh") != 0) {
		rc = cli_error(ctx, BK_EUSER, "unknown-shell",
		               "completion: unknown shell '%s' (bash or zsh)", shell);
		goto done;
	}
	rc = check_names(ctx);
	if (rc)
		goto done;
	m = open_memstream(&script, &len);
	if (m == NULL) {
		rc = cli_error(ctx, BK_ENOMEM, "out-of-memory", "completion: out of memory");
		goto done;
	}
	bool ok = true;
	if (strcmp(shell, "bash") == 0)
		gen_bash(m);
	else
		ok = gen_zsh(m);
	if (fclose(m) != 0 || script == NULL || !ok) {
		m = NULL;
		rc = cli_error(ctx, BK_ENOMEM, "out-of-memory", "completion: out of memory");
		goto done;
	}
	m = NULL;
	if (ctx->json) {
		cli_set(ctx, "shell", json_string(shell));
		cli_set(ctx, "script", json_string(script));
	} else if (fwrite(script, 1, len, stdout) != len || fflush(stdout) != 0) {
		rc = cli_error(ctx, BK_EIO, "write-failed", "completion: cannot write the script");
		goto done;
	}
done:
	if (m)
		fclose(m);
	free(script);
	return rc;
}

static const cli_opt opts[] = {{0}};

const cli_command cmd_completion = {
    .name = "completion",
    .args = "bash|zsh",
    .summary = "print a shell completion script for bash or zsh",
    .opts = opts,
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
