/*
 * test_config: the pipeline file reader. A full file read into every field,
 * the defaults, typed params, the duration, size and rate parsers, the
 * resilience keys (retry, on_error, hosts, pagination, fan-out) and errors
 * reported (all of them) at the right line and column.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config_load.h"
#include "core/option.h"
#include "core/stage.h"
#include "base/units.h"
#include "stages/http_opts.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_config.XXXXXX";

/* The field of option key in stage st's options, found through its kind's
 * table (the options structs of most kinds are private to their file). */
static void *opt_field(const struct stage_spec *st, const char *key)
{
	const struct opt *o = option_find(st->kind->options, key);

	if (!o) {
		printf("Bail out! kind %s has no option %s\n", st->kind->name, key);
		exit(1);
	}
	return (char *)st->opts + o->offset;
}

static const struct sval *opt_sval(const struct stage_spec *st, const char *key)
{
	return opt_field(st, key);
}

/* An OPT_ENUM option's word. */
static const char *opt_word(const struct stage_spec *st, const char *key)
{
	return option_find(st->kind->options, key)->words[*(int *)opt_field(st, key)];
}

static size_t opt_count(const struct stage_spec *st, const char *key)
{
	return *(size_t *)((char *)st->opts + option_find(st->kind->options, key)->n_offset);
}

static const struct sval *opt_item(const struct stage_spec *st, const char *key, size_t i)
{
	return &(*(struct sval **)opt_field(st, key))[i];
}

/* Writes text to a file in the scratch directory; returns its path (static). */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
	return path;
}

/* Loads text; returns the spec (or NULL) and leaves diagnostics in d. */
static struct spec *load(const char *text, struct diags *d)
{
	return config_load(write_file("pipeline.yaml", text), d);
}

/* Finds the diagnostic whose message contains needle; NULL if none. */
static const struct diag *find_diag(const struct diags *d, const char *needle)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (strstr(d->v[i].msg, needle))
			return &d->v[i];
	return NULL;
}

/* Checks that a diagnostic containing needle is at line:col. */
static void diag_at(const struct diags *d, const char *needle, int line, int col)
{
	const struct diag *g = find_diag(d, needle);

	if (!ok(g != NULL, "diagnostic \"%s\" reported", needle)) {
		size_t i;
		for (i = 0; i < d->n; i++)
			printf("#   have %d:%d: %s\n", d->v[i].line, d->v[i].col, d->v[i].msg);
		return;
	}
	is_int(g->line, line, "\"%s\" at line %d", needle, line);
	is_int(g->col, col, "\"%s\" at column %d", needle, col);
}

static const char full_yaml[] =
	"pipeline: full.test-1\n"                                   /* 1 */
	"description: Every key there is.\n"
	"params:\n"
	"  country: FR\n"
	"  limit: 5\n"                                              /* 5 */
	"settings:\n"
	"  concurrency: 8\n"
	"  queue: 101\n"
	"  batch_size: 50\n"
	"defaults:\n"                                               /* 10 */
	"  timeout: 2m\n"
	"  connect_timeout: 250ms\n"
	"  concurrency: 4\n"
	"  max_body: 1MiB\n"
	"stages:\n"                                                 /* 15 */
	"  users:\n"
	"    description: users, two pages\n"
	"    fetch:\n"
	"      url:\n"
	"        - https://api.example.com/users?page=1&c=${params.country}\n" /* 20 */
	"        - 'https://api.example.com/users?page=2'\n"
	"      format: jsonl\n"
	"      method: POST\n"
	"      headers:\n"
	"        Authorization: \"Bearer ${env.TOKEN}\"\n"           /* 25 */
	"        X-Run: ${run.id}\n"
	"      json: '{limit: params.limit}'\n"
	"      records: .users[]\n"
	"      timeout: 1.5s\n"
	"      connect_timeout: 1h\n"                               /* 30 */
	"      concurrency: 2\n"
	"      max_body: 10kB\n"
	"      tls_verify: false\n"
	"  local:\n"
	"    fetch:\n"                                              /* 35 */
	"      file: data/in.jsonl\n"
	"      body: ignored\n"
	"  clean:\n"
	"    needs: [users, local]\n"
	"    transform:\n"                                          /* 40 */
	"      jq: select(.active)\n"
	"      dedupe: .id\n"
	"  db:\n"
	"    needs: clean\n"
	"    load:\n"                                               /* 45 */
	"      sqlite: {path: out/x.db, table: users, key: [id, site]}\n"
	"  dump:\n"
	"    needs: clean\n"
	"    load:\n"
	"      file: {path: out/x.jsonl, format: jsonl}\n"          /* 50 */
	"  show:\n"
	"    needs: [clean]\n"
	"    load:\n"
	"      stdout:\n";

/* full_yaml is invalid only because `local` has a body with a file; this
 * is the same file without that line. */
static char *full_valid(void)
{
	const char *cut = strstr(full_yaml, "      body: ignored\n");
	char *s = xstrdup(full_yaml);

	memmove(s + (cut - full_yaml), cut + strlen("      body: ignored\n"),
	        strlen(cut + strlen("      body: ignored\n")) + 1);
	return s;
}

static void test_full(void)
{
	struct diags d = { 0 };
	char *text = full_valid();
	struct spec *s = load(text, &d);
	const struct stage_spec *st;
	const struct fetch_spec *f;
	char hash[65];

	if (!ok(s != NULL, "full file loads")) {
		diags_print(&d, stdout);
		free(text);
		diags_free(&d);
		return;
	}
	is_int(d.n, 0, "no diagnostics");
	is_str(s->name, "full.test-1", "pipeline name");
	is_str(s->description, "Every key there is.", "description");
	is_int(s->text_len, strlen(text), "text_len");
	ok(s->text && memcmp(s->text, text, s->text_len) == 0, "text is the file's bytes");
	sha256_hex(text, strlen(text), hash);
	is_str(s->hash, hash, "hash is the sha256 of the text");
	ok(strstr(s->path, "pipeline.yaml") != NULL, "path kept");
	is_str(s->dir, tmpdir, "dir is the file's directory");
	is_int(s->concurrency, 8, "settings.concurrency");
	is_int(s->queue_high, 101, "settings.queue");
	is_int(s->queue_low, 50, "queue low watermark is half");
	is_int(s->batch_size, 50, "settings.batch_size");
	ok(s->timeout == 120, "defaults.timeout 2m");
	ok(s->connect_timeout == 0.25, "defaults.connect_timeout 250ms");
	is_int(s->stage_concurrency, 4, "defaults.concurrency");
	is_int(s->max_body, 1 << 20, "defaults.max_body 1MiB");
	is_int(s->n_stages, 6, "six stages");

	st = &s->stages[0];
	f = st->opts;
	is_str(st->id, "users", "stage 0 id");
	is_int(st->pos.line, 16, "stage position line");
	is_int(st->pos.col, 3, "stage position col");
	is_str(st->description, "users, two pages", "stage description");
	is_str(st->kind->name, "fetch.http", "users is a fetch.http");
	is_int(st->type_pos.line, 18, "type_pos line");
	is_int(f->n_urls, 2, "two urls");
	is_str(f->urls[0].s, "https://api.example.com/users?page=1&c=${params.country}", "url 0");
	is_int(f->urls[0].pos.line, 20, "url 0 line");
	is_int(f->urls[0].pos.col, 11, "url 0 col");
	is_str(f->urls[1].s, "https://api.example.com/users?page=2", "url 1 unquoted");
	is_int(f->format, FMT_JSONL, "format jsonl");
	is_str(f->method.s, "POST", "method");
	is_int(f->n_headers, 2, "two headers");
	is_str(f->headers[0].name, "Authorization", "header 0 name");
	is_str(f->headers[0].value.s, "Bearer ${env.TOKEN}", "header 0 value");
	is_str(f->headers[1].name, "X-Run", "header 1 name");
	is_str(f->json.s, "{limit: params.limit}", "json");
	ok(f->body.s == NULL, "no body");
	is_str(f->records.s, ".users[]", "records");
	ok(f->timeout == 1.5, "timeout 1.5s");
	ok(f->connect_timeout == 3600, "connect_timeout 1h");
	is_int(f->concurrency, 2, "stage concurrency");
	is_int(f->max_body, 10000, "max_body 10kB");
	is_int(f->tls_verify, 0, "tls_verify false");
	ok(f->file.s == NULL, "no file with url");

	st = &s->stages[1];
	is_str(st->kind->name, "fetch.file", "a fetch with file is a fetch.file");
	f = st->opts;
	is_str(f->file.s, "data/in.jsonl", "file fetch path");
	is_int(f->n_urls, 0, "file fetch has no urls");
	is_int(f->format, FMT_JSON, "format defaults to json");
	ok(f->method.s == NULL, "method unset stays NULL");
	is_str(f->records.s, ".", "records defaults to .");
	ok(f->timeout == -1 && f->connect_timeout == -1, "unset durations are -1");
	is_int(f->concurrency, 0, "unset concurrency is 0");
	is_int(f->max_body, 0, "unset max_body is 0");
	is_int(f->tls_verify, -1, "unset tls_verify is -1");

	st = &s->stages[2];
	is_str(st->kind->name, "transform", "clean is a transform");
	is_int(st->n_needs, 2, "clean needs two");
	is_str(st->needs[1].s, "local", "needs[1]");
	is_int(st->needs[1].pos.col, 20, "needs[1] column");
	is_str(opt_sval(st, "jq")->s, "select(.active)", "transform jq");
	is_str(opt_sval(st, "dedupe")->s, ".id", "transform dedupe");

	st = &s->stages[3];
	is_str(st->kind->role, "load", "db is a load");
	is_int(st->n_needs, 1, "a single string need is a list of one");
	is_str(st->needs[0].s, "clean", "db needs clean");
	is_str(st->kind->name, "load.sqlite", "sqlite target");
	is_str(opt_sval(st, "path")->s, "out/x.db", "sqlite path");
	is_str(opt_sval(st, "table")->s, "users", "sqlite table");
	is_int((long long)opt_count(st, "key"), 2, "two key columns");
	is_str(opt_item(st, "key", 1)->s, "site", "key[1]");

	st = &s->stages[4];
	is_str(st->kind->name, "load.file", "file target");
	is_str(opt_sval(st, "path")->s, "out/x.jsonl", "file path");
	is_str(opt_word(st, "format"), "jsonl", "file format");
	st = &s->stages[5];
	is_str(st->kind->name, "load.stdout", "stdout target (null value)");
	is_int(spec_stage_index(s, "dump"), 4, "spec_stage_index finds dump");
	is_int(spec_stage_index(s, "nope"), -1, "spec_stage_index -1 for unknown");

	spec_free(s);
	diags_free(&d);
	free(text);

	/* the original, with a body on a file fetch, is an error */
	s = load(full_yaml, &d);
	ok(s == NULL, "body with file is rejected");
	diag_at(&d, "\"body\" is only allowed with \"url\"", 37, 7);
	is_int(d.n, 1, "only that error");
	diags_free(&d);
}

static void test_defaults_and_params(void)
{
	struct diags d = { 0 };
	struct spec *s = load(
		"pipeline: p\n"
		"params:\n"
		"  i: 5\n"
		"  neg: -12\n"
		"  r: 1.5\n"
		"  e: 2.0e3\n"
		"  b: true\n"
		"  f: FALSE\n"
		"  n: ~\n"
		"  empty:\n"
		"  qs: \"5\"\n"
		"  sq: 'true'\n"
		"  word: hello world\n"
		"  ver: 1.2.3\n"
		"stages:\n"
		"  a: {fetch: {url: 'http://x/'}}\n", &d);
	json_t *p;

	if (!ok(s != NULL, "params file loads")) {
		diags_print(&d, stdout);
		diags_free(&d);
		return;
	}
	is_int(s->concurrency, 64, "default concurrency 64");
	is_int(s->queue_high, 10000, "default queue 10000");
	is_int(s->queue_low, 5000, "default queue low 5000");
	is_int(s->batch_size, 500, "default batch 500");
	ok(s->timeout == 30, "default timeout 30s");
	ok(s->connect_timeout == 10, "default connect_timeout 10s");
	is_int(s->stage_concurrency, 16, "default stage concurrency 16");
	is_int(s->max_body, 64LL << 20, "default max_body 64MiB");
	ok(s->description == NULL, "no description");

	p = s->params;
	ok(json_is_integer(json_object_get(p, "i")) &&
	   json_integer_value(json_object_get(p, "i")) == 5, "plain 5 is an integer");
	ok(json_integer_value(json_object_get(p, "neg")) == -12, "negative integer");
	ok(json_is_real(json_object_get(p, "r")) &&
	   json_real_value(json_object_get(p, "r")) == 1.5, "plain 1.5 is a real");
	ok(json_real_value(json_object_get(p, "e")) == 2000, "2.0e3 is a real");
	ok(json_is_true(json_object_get(p, "b")), "true is a boolean");
	ok(json_is_false(json_object_get(p, "f")), "FALSE is a boolean");
	ok(json_is_null(json_object_get(p, "n")), "~ is null");
	ok(json_is_null(json_object_get(p, "empty")), "empty value is null");
	is_str(json_string_value(json_object_get(p, "qs")), "5", "quoted 5 is a string");
	is_str(json_string_value(json_object_get(p, "sq")), "true", "quoted true is a string");
	is_str(json_string_value(json_object_get(p, "word")), "hello world", "plain text");
	is_str(json_string_value(json_object_get(p, "ver")), "1.2.3", "1.2.3 is a string");
	is_int(json_object_size(p), 12, "twelve params");
	spec_free(s);
	diags_free(&d);
}

static void test_durations(void)
{
	static const struct {
		const char *s;
		double want;                   /* < 0: invalid */
	} t[] = {
		{ "250ms", 0.25 }, { "10s", 10 }, { "1.5s", 1.5 }, { "5m", 300 },
		{ "1h", 3600 }, { "0.5h", 1800 }, { "1ms", 0.001 }, { "007s", 7 },
		{ "10x", -1 }, { "-5s", -1 }, { "10", -1 }, { "", -1 }, { "s", -1 },
		{ "0s", -1 }, { "0ms", -1 }, { "1.s", -1 }, { ".5s", -1 }, { "1e3s", -1 },
		{ "10 s", -1 }, { " 10s", -1 }, { "10S", -1 }, { "10sec", -1 },
		{ "+5s", -1 }, { "5d", -1 }, { "0x10s", -1 }, { "1.5", -1 }, { "inf s", -1 },
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(t); i++) {
		double v = -42;
		int rc = parse_duration(t[i].s, &v);
		if (t[i].want < 0)
			ok(rc == -1 && v == -42, "duration \"%s\" rejected", t[i].s);
		else
			ok(rc == 0 && v > t[i].want - 1e-9 && v < t[i].want + 1e-9,
			   "duration \"%s\" = %g", t[i].s, t[i].want);
	}
	ok(parse_duration(NULL, &(double){ 0 }) == -1, "NULL duration rejected");
}

static void test_sizes(void)
{
	static const struct {
		const char *s;
		long long want;                /* < 0: invalid */
	} t[] = {
		{ "512", 512 }, { "1B", 1 }, { "10kB", 10000 }, { "5MB", 5000000 },
		{ "2GB", 2000000000LL }, { "64KiB", 65536 }, { "64MiB", 64LL << 20 },
		{ "1GiB", 1LL << 30 }, { "1.5KiB", 1536 }, { "0.5MB", 500000 },
		{ "9223372036854775807", 9223372036854775807LL },
		{ "0", -1 }, { "0B", -1 }, { "", -1 }, { "-1", -1 }, { "10XB", -1 },
		{ "64mb", -1 }, { "64 MiB", -1 }, { "1.5", -1 }, { "1.1KiB", -1 },
		{ "10KB", -1 }, { "10kiB", -1 }, { "9223372036854775808", -1 },
		{ "9999999999GiB", -1 }, { "MiB", -1 }, { "1e3", -1 }, { ".5kB", -1 },
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(t); i++) {
		long long v = -42;
		int rc = parse_size(t[i].s, &v);
		if (t[i].want < 0)
			ok(rc == -1 && v == -42, "size \"%s\" rejected", t[i].s);
		else
			ok(rc == 0 && v == t[i].want, "size \"%s\" = %lld", t[i].s, t[i].want);
	}
}

static void test_errors(void)
{
	struct diags d = { 0 };
	struct spec *s = load(
		"pipeline: demo\n"                                  /* 1 */
		"settings:\n"
		"  concurency: 8\n"
		"  batch_size: 0\n"
		"stages:\n"                                         /* 5 */
		"  a:\n"
		"    fetch:\n"
		"      url: \"http://x/${.a[}\"\n"
		"      timeout: 10x\n"
		"      records: '.[] |'\n"                          /* 10 */
		"      headers: {X-A: 'v=${'}\n"
		"  b:\n"
		"    needs: [a, aa, c]\n"
		"    transform: {jq: .}\n"
		"  c:\n"                                            /* 15 */
		"    needs: b\n"
		"    load:\n"
		"      sqlite: {path: x.db}\n"
		"  d:\n"
		"    fetch: {url: x}\n"                             /* 20 */
		"    load: {stdout: }\n"
		"pipeline: again\n", &d);

	ok(s == NULL, "a file with errors gives NULL");
	diag_at(&d, "unknown key \"concurency\" in settings (did you mean \"concurrency\"?)", 3, 3);
	diag_at(&d, "invalid value 0 for \"batch_size\"", 4, 15);
	diag_at(&d, "invalid template in \"url\": ", 8, 22);
	diag_at(&d, "invalid duration \"10x\": expected a number followed by ms, s, m or h", 9, 16);
	diag_at(&d, "invalid jq expression in \"records\": ", 10, 16);
	diag_at(&d, "invalid template in header \"X-A\": ", 11, 25);
	diag_at(&d, "unknown stage \"aa\" in needs of \"b\"", 13, 16);
	diag_at(&d, "cycle: b → c → b", 13, 20);
	diag_at(&d, "missing required key \"table\" in sqlite", 18, 15);
	diag_at(&d, "stage \"d\" has both fetch and load", 21, 5);
	diag_at(&d, "duplicate key \"pipeline\" (first defined at line 1)", 22, 1);
	is_int(d.n, 11, "all eleven errors reported, nothing else");
	spec_free(s);
	diags_free(&d);

	/* a syntax error hides everything else; an unclosed [ is reported both
	 * where it opened and where the parser noticed */
	s = load("pipeline: demo\nstages: [a\nbogus: 1\npipeline: x\n", &d);
	ok(s == NULL, "syntax error gives NULL");
	is_int(d.n, 2, "only the syntax error (both its ends)");
	ok(d.n == 2 && strncmp(d.v[0].msg, "YAML syntax error: ", 19) == 0 &&
	   strncmp(d.v[1].msg, "YAML syntax error: ", 19) == 0,
	   "messages start with YAML syntax error");
	diag_at(&d, "this [ is not closed (did not find expected ',' or ']' at line 3, column 6)",
	        2, 9);
	diag_at(&d, "(while parsing a flow sequence opened at line 2, column 9)", 3, 6);
	diags_free(&d);

	/* unclosed { and quotes: where they opened, and where it was noticed */
	s = load("pipeline: demo\nstages: {a: {fetch: {url: x}}\n", &d);
	diag_at(&d, "this { is not closed", 2, 9);
	diag_at(&d, "(while parsing a flow mapping opened at line 2, column 9)", 3, 1);
	is_int(d.n, 2, "unclosed {: two diagnostics");
	diags_free(&d);
	s = load("pipeline: demo\ndescription: 'it\n\n  goes on\nstages: {}\n", &d);
	diag_at(&d, "this quote is not closed (found unexpected end of stream at line 6, "
	        "column 1)", 2, 14);
	diag_at(&d, "(while scanning a quoted scalar opened at line 2, column 14)", 6, 1);
	diags_free(&d);
	s = load("pipeline: \"demo\nstages: {}\n", &d);
	diag_at(&d, "this quote is not closed", 1, 11);
	diags_free(&d);
	/* an error whose context is not something left open: one diagnostic */
	s = load("pipeline: demo\nstages:\n  a: 1\n b: 2\n", &d);
	is_int(d.n, 1, "a block mapping error is one diagnostic");
	ok(find_diag(&d, "not closed") == NULL, "not called unclosed");
	diags_free(&d);

	/* bytes that are not UTF-8: at the bad byte, counting characters */
	s = load("pipeline: caf\xe9s\nstages: {}\n", &d);
	diag_at(&d, "invalid UTF-8 (byte 0xE9)", 1, 14);
	diags_free(&d);
	s = load("pipeline: \xc3\xa9t\xe9t\nstages: {}\n", &d);
	diag_at(&d, "invalid UTF-8 (byte 0xE9)", 1, 13);
	diags_free(&d);
	s = load("pipeline: d\ndescription: \xe9\xa9x\n", &d);
	diag_at(&d, "invalid UTF-8 (byte 0xE9)", 2, 14);
	diags_free(&d);
	s = load("pipeline: ab\xff\n", &d);
	diag_at(&d, "invalid UTF-8 (byte 0xFF)", 1, 13);
	diags_free(&d);
	s = load("pipeline: caf\xe9", &d);
	diag_at(&d, "invalid UTF-8 (byte 0xE9)", 1, 14);
	diags_free(&d);

	/* a missing file */
	s = config_load("/nonexistent/dir/p.yaml", &d);
	ok(s == NULL && d.n == 1, "missing file is one error");
	ok(d.n == 1 && d.v[0].line == 0 && strstr(d.v[0].msg, "cannot read") != NULL,
	   "cannot read, without a position");
	diags_free(&d);

	/* templates: column of the ${ in each scalar style */
	s = load("pipeline: t\n"
	         "stages:\n"
	         "  a:\n"
	         "    fetch:\n"
	         "      url:\n"
	         "        - http://é/${ }\n"
	         "        - 'it''s ${'\n"
	         "        - \"a\\tb ${\"\n"
	         "        - x ${.a\n"
	         "          y}\n"
	         "        - |\n"
	         "          ${1 +}\n", &d);
	ok(s == NULL, "template errors");
	diag_at(&d, "empty \"${}\"", 6, 20);
	diag_at(&d, "in \"url\": unterminated", 7, 11);
	ok(d.n >= 3 && d.v[2].line == 8 && d.v[2].col == 11,
	   "escaped double-quoted scalar: the scalar's start");
	ok(d.n >= 4 && d.v[3].line == 9 && d.v[3].col == 11,
	   "multi-line plain scalar: the scalar's start");
	ok(d.n >= 5 && d.v[4].line == 11 && d.v[4].col == 11,
	   "block scalar: the scalar's start");
	is_int(d.n, 5, "five template errors");
	diags_free(&d);

	/* CRLF line ends count as one line each */
	s = load("pipeline: t\r\nstages:\r\n  a:\r\n    fetch:\r\n      url: 'a${'\r\n", &d);
	ok(s == NULL, "CRLF file with a bad template");
	diag_at(&d, "invalid template in \"url\"", 5, 14);
	diags_free(&d);

	/* aliases, empty files, several documents */
	s = load("pipeline: t\nx: &a 1\nstages:\n  a: *a\n", &d);
	diag_at(&d, "YAML aliases are not supported", 4, 6);
	ok(find_diag(&d, "expected a mapping") == NULL, "no follow-up error for the alias");
	diags_free(&d);
	s = load("", &d);
	ok(s == NULL && d.n == 1 && strcmp(d.v[0].msg, "empty pipeline file") == 0,
	   "empty file");
	diag_at(&d, "empty pipeline file", 1, 1);
	diags_free(&d);
	s = load("---\n", &d);
	ok(s == NULL && d.n == 1 && strcmp(d.v[0].msg, "empty pipeline file") == 0,
	   "document with nothing in it");
	diag_at(&d, "empty pipeline file", 1, 1);
	diags_free(&d);
	s = load("# only a comment\n\n", &d);
	diag_at(&d, "empty pipeline file", 1, 1);
	diags_free(&d);
	s = load("pipeline: a\nstages: {a: {fetch: {url: x}}}\n---\nfoo: 1\n", &d);
	diag_at(&d, "multiple YAML documents", 3, 1);
	is_int(d.n, 1, "second document is not read");
	diags_free(&d);
	lives_ok(spec_free(NULL), "spec_free(NULL) is a no-op");
}

static const char resilience_yaml[] =
	"pipeline: r\n"                                             /* 1 */
	"settings:\n"
	"  run_timeout: 10m\n"
	"defaults:\n"
	"  retry:\n"                                                /* 5 */
	"    attempts: 3\n"
	"    on: [5xx, \"429\", 503]\n"
	"  on_error: dlq\n"
	"  stage_timeout: 2m\n"
	"hosts:\n"                                                  /* 10 */
	"  api.example.com:\n"
	"    concurrency: 4\n"
	"    rate: 300/m\n"
	"    breaker: {failures: 5, cooldown: 1m, successes: 2}\n"
	"  fast:\n"                                                 /* 15 */
	"    rate: 2.5/s\n"
	"  burst_pool:\n"
	"    rate: 1000/h\n"
	"    burst: 7\n"
	"  bare:\n"                                                 /* 20 */
	"stages:\n"
	"  ids:\n"
	"    stage_timeout: 30s\n"
	"    fetch:\n"
	"      url: http://api.example.com/ids\n"                   /* 25 */
	"      paginate: {param: page, start: 0, step: 10, stop: '.ids == []', max_pages: 9}\n"
	"  details:\n"
	"    needs: ids\n"
	"    on_error: pass\n"
	"    fetch:\n"                                              /* 30 */
	"      url: http://api.example.com/ids/${.id}\n"
	"      method: POST\n"
	"      idempotent: true\n"
	"      pool: fast\n"
	"      retry:\n"                                            /* 35 */
	"        attempts: 7\n"
	"        backoff: linear\n"
	"        initial: 1s\n"
	"        max: 1m\n"
	"        jitter: none\n"                                    /* 40 */
	"        on: [connect, 4xx, 418]\n"
	"        when: .status == \"retry\"\n"
	"      paginate: {next: .next}\n"
	"      merge: '.record + .response'\n"
	"  linked:\n"                                               /* 45 */
	"    fetch:\n"
	"      url: http://api.example.com/l\n"
	"      paginate: {link: true}\n"
	"      retry:\n"
	"  out:\n"                                                  /* 50 */
	"    needs: [details, linked]\n"
	"    on_error: skip\n"
	"    load: {stdout: }\n";

static void test_resilience(void)
{
	struct diags d = { 0 };
	struct spec *s = load(resilience_yaml, &d);
	struct retry_policy def;
	const struct fetch_spec *f;
	const struct host_spec *h;

	retry_policy_default(&def);
	if (!ok(s != NULL, "resilience file loads")) {
		diags_print(&d, stdout);
		diags_free(&d);
		return;
	}
	ok(s->run_timeout == 600, "settings.run_timeout 10m");
	ok(s->retry.set, "defaults.retry is set");
	is_int(s->retry.pos.line, 5, "defaults.retry position");
	is_int(s->retry.p.attempts, 3, "defaults.retry.attempts");
	is_int(s->retry.p.backoff, def.backoff, "unset backoff keeps the default");
	ok(s->retry.p.initial == def.initial && s->retry.p.max == def.max,
	   "unset initial and max keep the defaults");
	is_int(s->retry.p.jitter, def.jitter, "unset jitter keeps the default");
	is_int(s->retry.p.on, RETRY_ON_5XX, "on: 5xx only (the list replaces the default)");
	is_int(s->retry.p.n_codes, 2, "two codes");
	ok(s->retry.p.codes[0] == 429 && s->retry.p.codes[1] == 503,
	   "quoted \"429\" and plain 503");
	ok(s->retry.when.s == NULL, "no when");
	is_int(s->on_error, ON_ERROR_DLQ, "defaults.on_error dlq");
	ok(s->stage_timeout == 120, "defaults.stage_timeout 2m");

	is_int(s->n_hosts, 4, "four hosts");
	h = &s->hosts[0];
	is_str(h->name, "api.example.com", "host 0 name");
	is_int(h->pos.line, 11, "host 0 line");
	is_int(h->concurrency, 4, "host concurrency");
	ok(h->rate == 5, "300/m is 5 per second");
	ok(h->burst == 5, "burst defaults to the rate per second");
	is_int(h->breaker_failures, 5, "breaker failures");
	ok(h->breaker_cooldown == 60, "breaker cooldown 1m");
	is_int(h->breaker_successes, 2, "breaker successes");
	h = &s->hosts[1];
	ok(h->rate == 2.5 && h->burst == 3, "2.5/s: burst rounded up to 3");
	is_int(h->concurrency, 0, "unset host concurrency is 0 (unlimited)");
	is_int(h->breaker_failures, 0, "no breaker");
	ok(h->breaker_cooldown == 30 && h->breaker_successes == 1, "breaker defaults filled");
	h = &s->hosts[2];
	ok(h->rate > 0.2777 && h->rate < 0.2778, "1000/h per second");
	ok(h->burst == 7, "explicit burst");
	h = &s->hosts[3];
	ok(h->rate == 0 && h->burst == 0 && h->concurrency == 0, "null entry: no limits");

	ok(s->stages[0].stage_timeout == 30, "stage_timeout 30s");
	is_int(s->stages[0].on_error, ON_ERROR_UNSET, "unset on_error stays UNSET");
	f = s->stages[0].opts;
	ok(!f->retry.set, "no retry: inherits (set is false)");
	is_int(f->idempotent, -1, "unset idempotent is -1");
	ok(f->pool.s == NULL, "no pool");
	ok(f->merge.s == NULL, "no merge");
	is_int(f->paginate.kind, PAGE_COUNTER, "param pagination");
	is_int(f->paginate.pos.line, 26, "paginate position");
	is_str(f->paginate.param.s, "page", "param");
	ok(f->paginate.start == 0 && f->paginate.step == 10, "start and step");
	is_str(f->paginate.stop.s, ".ids == []", "stop");
	is_int(f->paginate.max_pages, 9, "max_pages");

	is_int(s->stages[1].n_needs, 1, "fan-out stage has needs");
	is_int(s->stages[1].on_error, ON_ERROR_PASS, "on_error pass");
	ok(s->stages[1].stage_timeout == -1, "unset stage_timeout is -1");
	f = s->stages[1].opts;
	is_int(f->n_urls, 1, "one url template");
	is_int(f->idempotent, 1, "idempotent true");
	is_str(f->pool.s, "fast", "pool");
	is_int(f->pool.pos.line, 34, "pool position");
	ok(f->retry.set, "stage retry set");
	is_int(f->retry.pos.line, 35, "stage retry position");
	is_int(f->retry.p.attempts, 7, "attempts 7");
	is_int(f->retry.p.backoff, BACKOFF_LINEAR, "backoff linear");
	ok(f->retry.p.initial == 1 && f->retry.p.max == 60, "initial 1s, max 1m");
	is_int(f->retry.p.jitter, JITTER_NONE, "jitter none");
	is_int(f->retry.p.on, RETRY_ON_CONNECT | RETRY_ON_4XX, "on connect and 4xx");
	ok(f->retry.p.n_codes == 1 && f->retry.p.codes[0] == 418, "code 418");
	is_str(f->retry.when.s, ".status == \"retry\"", "when");
	is_int(f->paginate.kind, PAGE_NEXT, "next pagination");
	is_str(f->paginate.next.s, ".next", "next");
	ok(f->paginate.start == 1 && f->paginate.step == 1, "start and step default to 1");
	is_int(f->paginate.max_pages, 0, "max_pages unset is 0");
	is_str(f->merge.s, ".record + .response", "merge");

	f = s->stages[2].opts;
	is_int(f->paginate.kind, PAGE_LINK, "link pagination");
	ok(f->retry.set, "empty retry: is set");
	is_int(f->retry.p.attempts, 3, "empty retry keeps the default 3 attempts");
	is_int(f->retry.p.on, def.on, "empty retry keeps the default on");
	ok(f->retry.p.n_codes == 4 && f->retry.p.codes[0] == 429 && f->retry.p.codes[1] == 502 &&
	   f->retry.p.codes[2] == 503 && f->retry.p.codes[3] == 504,
	   "default codes: 429, 502, 503, 504");
	is_int(s->stages[3].on_error, ON_ERROR_SKIP, "load on_error skip");
	spec_free(s);
	diags_free(&d);

	/* without the keys: the defaults */
	s = load("pipeline: p\nstages:\n  a: {fetch: {url: 'http://x/'}}\n", &d);
	if (ok(s != NULL, "minimal file loads")) {
		ok(s->run_timeout == -1, "run_timeout unset is -1");
		ok(!s->retry.set, "defaults.retry not set");
		is_int(s->retry.p.attempts, 3, "default retry: 3 attempts");
		is_int(s->retry.p.on, def.on, "default retry: default on");
		is_int(s->on_error, ON_ERROR_FAIL, "default on_error is fail");
		ok(s->stage_timeout == -1, "defaults.stage_timeout unset is -1");
		is_int(s->n_hosts, 0, "no hosts");
		ok(s->hosts == NULL, "hosts NULL");
		is_int(((const struct fetch_spec *)s->stages[0].opts)->paginate.kind, PAGE_NONE, "no pagination");
	}
	spec_free(s);
	diags_free(&d);
}

static void test_rates(void)
{
	static const struct {
		const char *s;
		double want;                   /* < 0: invalid */
	} t[] = {
		{ "5/s", 5 }, { "300/m", 5 }, { "3600/h", 1 }, { "0.5/s", 0.5 }, { "90/m", 1.5 },
		{ "1000/h", 1000.0 / 3600 },
		{ "0/s", -1 }, { "0.0/m", -1 }, { "5", -1 }, { "5/sec", -1 }, { "5/S", -1 },
		{ "/s", -1 }, { "-5/s", -1 }, { "5 /s", -1 }, { "5/ s", -1 }, { "5/d", -1 },
		{ ".5/s", -1 }, { "5./s", -1 }, { "1e3/s", -1 }, { "", -1 }, { "5s", -1 },
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(t); i++) {
		double v = -42;
		int rc = parse_rate(t[i].s, &v);
		if (t[i].want < 0)
			ok(rc == -1 && v == -42, "rate \"%s\" rejected", t[i].s);
		else
			ok(rc == 0 && v > t[i].want - 1e-9 && v < t[i].want + 1e-9,
			   "rate \"%s\" = %g/s", t[i].s, t[i].want);
	}
	ok(parse_rate(NULL, &(double){ 0 }) == -1, "NULL rate rejected");
}

static void test_resilience_errors(void)
{
	struct diags d = { 0 };
	struct spec *s = load(
		"pipeline: e\n"                                     /* 1 */
		"settings: {run_timeout: 0s}\n"
		"defaults:\n"
		"  on_error: pass\n"
		"  retry: {attempts: 0, backof: linear, on: [5xxx, 600, connect, connect]}\n" /* 5 */
		"hosts:\n"
		"  main:\n"
		"    rate: 5/sec\n"
		"    breaker: {}\n"
		"  'a b':\n"                                        /* 10 */
		"    burst: 2\n"
		"stages:\n"
		"  src:\n"
		"    on_error: skp\n"
		"    stage_timeout: 10\n"                           /* 15 */
		"    fetch:\n"
		"      url: http://x/\n"
		"      pool: mian\n"
		"      merge: .\n"
		"      idempotent: maybe\n"                         /* 20 */
		"      paginate: {next: .n, param: p, step: 0}\n"
		"  fan:\n"
		"    needs: src\n"
		"    fetch:\n"
		"      url: ['http://x/${.id}']\n"                   /* 25 */
		"      retry: {when: '.a ==', jitter: ful}\n"
		"      paginate: {max_pages: 5}\n"
		"  fanfile:\n"
		"    needs: src\n"
		"    fetch: {file: x.json}\n"                       /* 30 */
		"  t:\n"
		"    needs: fan\n"
		"    on_error: pass\n"
		"    transform: {jq: .}\n"
		"  p:\n"                                            /* 35 */
		"    fetch:\n"
		"      url: http://x/\n"
		"      paginate: {param: p, start: 2}\n"
		"  q:\n"
		"    fetch: {file: x, paginate: {link: false}}\n", &d); /* 40 */

	ok(s == NULL, "resilience errors give NULL");
	diag_at(&d, "invalid duration \"0s\": must be greater than 0", 2, 25);
	diag_at(&d, "on_error: pass is only for fetch stages with needs", 4, 13);
	diag_at(&d, "invalid value 0 for \"attempts\"", 5, 21);
	diag_at(&d, "unknown key \"backof\" in retry (did you mean \"backoff\"?)", 5, 24);
	diag_at(&d, "invalid retry condition \"5xxx\" in \"on\": expected connect, timeout, "
	        "network, invalid_body, 5xx, 4xx or an HTTP status code (did you mean \"5xx\"?)",
	        5, 45);
	diag_at(&d, "invalid HTTP status code 600 in \"on\"", 5, 51);
	diag_at(&d, "duplicate \"connect\" in \"on\"", 5, 65);
	diag_at(&d, "invalid rate \"5/sec\": expected a number followed by /s, /m or /h", 8, 11);
	diag_at(&d, "missing required key \"failures\" in breaker", 9, 5);
	diag_at(&d, "invalid host or pool name \"a b\"", 10, 3);
	diag_at(&d, "\"burst\" is only allowed with \"rate\"", 11, 5);
	diag_at(&d, "invalid on_error \"skp\": expected one of fail, skip, dlq, pass "
	        "(did you mean \"skip\"?)", 14, 15);
	diag_at(&d, "invalid duration \"10\"", 15, 20);
	diag_at(&d, "unknown pool \"mian\" (did you mean \"main\"?)", 18, 13);
	diag_at(&d, "merge is only for fetch stages with needs", 19, 7);
	diag_at(&d, "expected a boolean (true or false) for \"idempotent\"", 20, 19);
	diag_at(&d, "paginate can have only one of next, link and param", 21, 28);
	diag_at(&d, "invalid value 0 for \"step\": must not be 0", 21, 44);
	diag_at(&d, "\"step\" is only allowed with \"param\" in paginate", 21, 38);
	diag_at(&d, "a fetch stage with needs takes one url template", 25, 12);
	diag_at(&d, "invalid jq expression in \"when\"", 26, 21);
	diag_at(&d, "invalid jitter \"ful\": expected one of none, full, equal "
	        "(did you mean \"full\"?)", 26, 38);
	diag_at(&d, "paginate needs one of next, link or param", 27, 17);
	diag_at(&d, "a file fetch cannot have needs", 29, 5);
	{
		size_t i, n_pass = 0;
		for (i = 0; i < d.n; i++)
			n_pass += strstr(d.v[i].msg, "pass is only") && d.v[i].line == 33 &&
			          d.v[i].col == 15;
		is_int(n_pass, 1, "pass on a transform reported at 33:15");
	}
	diag_at(&d, "paginate with param needs stop", 38, 18);
	diag_at(&d, "\"link\" can only be true", 40, 39);
	diag_at(&d, "\"paginate\" is only allowed with \"url\"", 40, 22);
	is_int(d.n, 28, "all 28 errors reported, nothing else");
	if (d.n != 28) {
		size_t i;
		for (i = 0; i < d.n; i++)
			printf("#   have %d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	}
	spec_free(s);
	diags_free(&d);

	/* at most 16 status codes; reported once, at the 17th */
	s = load("pipeline: c\n"
	         "defaults:\n"
	         "  retry:\n"
	         "    on: [500, 501, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511, 512, 513, "
	         "514, 515, 5xx, 516, 517]\n"
	         "stages:\n"
	         "  a: {fetch: {url: 'http://x/'}}\n", &d);
	ok(s == NULL, "17 codes rejected");
	diag_at(&d, "too many HTTP status codes in \"on\": at most 16", 4, 95);
	is_int(d.n, 1, "reported once");
	diags_free(&d);

	/* a fetch stage with needs (fan-out) is valid; `.` works in its templates */
	s = load("pipeline: f\n"
	         "stages:\n"
	         "  a: {fetch: {url: 'http://x/'}}\n"
	         "  b:\n"
	         "    needs: a\n"
	         "    fetch:\n"
	         "      url: 'http://x/${.id}'\n"
	         "      headers: {X-Id: '${.id | tostring}'}\n"
	         "      json: '{id: .id}'\n"
	         "  c: {needs: b, load: {stdout: }}\n", &d);
	ok(s != NULL && d.n == 0, "fan-out fetch stage with needs is valid");
	spec_free(s);
	diags_free(&d);
}

/* sqlite on_conflict and columns; templated sink paths. */
static void test_sqlite_keys(void)
{
	struct diags d = { 0 };
	struct spec *s = load(
		"pipeline: demo\n"
		"stages:\n"
		"  a:\n"
		"    fetch: {url: http://x/}\n"
		"  m:\n"                                            /* 5 */
		"    needs: a\n"
		"    load:\n"
		"      sqlite: {path: 'out/${run.date}.db', table: t, key: id, on_conflict: merge, columns: [Name, price]}\n"
		"  i:\n"
		"    needs: a\n"                                    /* 10 */
		"    load: {sqlite: {path: x.db, table: t, key: id, on_conflict: ignore, columns: one}}\n"
		"  r:\n"
		"    needs: a\n"
		"    load: {sqlite: {path: x.db, table: t, key: id}}\n", &d);
	const struct stage_spec *l;

	if (!ok(s != NULL, "on_conflict and columns parse")) {
		diags_free(&d);
		return;
	}
	l = &s->stages[1];
	is_str(opt_word(l, "on_conflict"), "merge", "on_conflict: merge");
	is_int((long long)opt_count(l, "columns"), 2, "two columns");
	is_str(opt_item(l, "columns", 0)->s, "Name", "columns keep their case");
	is_str(opt_sval(l, "path")->s, "out/${run.date}.db", "the path is kept as its template");
	l = &s->stages[2];
	is_str(opt_word(l, "on_conflict"), "ignore", "on_conflict: ignore");
	is_int((long long)opt_count(l, "columns"), 1, "one column as a string");
	is_str(opt_word(&s->stages[3], "on_conflict"), "replace", "replace is the default");
	spec_free(s);
	diags_free(&d);

	s = load(
		"pipeline: demo\n"
		"stages:\n"
		"  a:\n"
		"    fetch: {url: http://x/}\n"
		"  b:\n"                                            /* 5 */
		"    needs: a\n"
		"    load:\n"
		"      sqlite:\n"
		"        path: 'x-${run.id'\n"
		"        table: t\n"                                /* 10 */
		"        key: [id, ID]\n"
		"        on_conflict: upsert\n"
		"        columns: [a, '', A]\n"
		"  c:\n"
		"    needs: a\n"                                    /* 15 */
		"    load: {sqlite: {path: x.db, table: t, on_conflict: ignore}}\n", &d);
	ok(s == NULL, "bad on_conflict, columns, key and path give errors");
	diag_at(&d, "invalid template in \"path\": unterminated", 9, 18);
	diag_at(&d, "duplicate column \"ID\" in \"key\"", 11, 19);
	diag_at(&d, "invalid on_conflict \"upsert\"", 12, 22);
	diag_at(&d, "\"columns\" names must not be empty", 13, 22);
	diag_at(&d, "duplicate column \"A\" in \"columns\"", 13, 26);
	diag_at(&d, "\"on_conflict\" needs a \"key\"", 16, 56);
	is_int((long long)d.n, 6, "six errors, nothing else");
	spec_free(s);
	diags_free(&d);
}

/* retry_on: the list under a name no YAML version reads as a boolean; on is
 * its older name, still read; both at once is an error. */
static void test_retry_on(void)
{
	struct diags d = { 0 };
	struct retry_policy def;
	struct spec *s;

	retry_policy_default(&def);
	s = load("pipeline: r\n"
	         "defaults:\n"
	         "  retry: {attempts: 3, retry_on: [connect, 4xx, 503]}\n"
	         "stages:\n"
	         "  a:\n"                                             /* 5 */
	         "    fetch:\n"
	         "      url: http://x/\n"
	         "      retry: {on: [timeout, \"429\"]}\n"
	         "  b:\n"
	         "    fetch:\n"                                       /* 10 */
	         "      url: http://x/\n"
	         "      retry: {attempts: 2}\n", &d);
	if (!ok(s != NULL, "retry_on and on load")) {
		diags_print(&d, stdout);
		diags_free(&d);
		return;
	}
	is_int(s->retry.p.on, RETRY_ON_CONNECT | RETRY_ON_4XX, "retry_on: connect, 4xx");
	ok(s->retry.p.n_codes == 1 && s->retry.p.codes[0] == 503, "retry_on: 503");
	is_int(((const struct fetch_spec *)s->stages[0].opts)->retry.p.on, RETRY_ON_TIMEOUT, "on (older name): timeout");
	ok(((const struct fetch_spec *)s->stages[0].opts)->retry.p.n_codes == 1 &&
	   ((const struct fetch_spec *)s->stages[0].opts)->retry.p.codes[0] == 429, "on (older name): 429");
	is_int(((const struct fetch_spec *)s->stages[1].opts)->retry.p.on, def.on, "neither: the default list");
	spec_free(s);
	diags_free(&d);

	s = load("pipeline: r\n"
	         "defaults:\n"
	         "  retry:\n"
	         "    on: [5xx]\n"
	         "    retry_on: [5xx]\n"                              /* 5 */
	         "stages:\n"
	         "  a:\n"
	         "    fetch:\n"
	         "      url: http://x/\n"
	         "      retry: {retry_on: [timout, 600, 5xx, 5xx], on: []}\n", &d);  /* 10 */
	ok(s == NULL, "both names: an error");
	diag_at(&d, "retry cannot have both \"retry_on\" and \"on\" (the same list under "
	        "two names; use \"retry_on\")", 5, 5);
	is_int(d.n, 2, "both names: one error each, the lists are not read");
	ok(d.n == 2 && d.v[1].line == 10 && d.v[1].col == 50 &&
	   strncmp(d.v[1].msg, "retry cannot have both", 22) == 0,
	   "both names: reported at the later key (10:50)");
	diags_free(&d);

	s = load("pipeline: r\n"
	         "defaults:\n"
	         "  retry: {retry_on: [timout, 600, 5xx, 5xx]}\n"
	         "stages: {a: {fetch: {url: http://x/}}}\n", &d);
	diag_at(&d, "invalid retry condition \"timout\" in \"retry_on\"", 3, 22);
	diag_at(&d, "invalid HTTP status code 600 in \"retry_on\"", 3, 30);
	diag_at(&d, "duplicate \"5xx\" in \"retry_on\"", 3, 40);
	spec_free(s);
	diags_free(&d);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	test_full();
	test_defaults_and_params();
	test_durations();
	test_sizes();
	test_errors();
	test_resilience();
	test_rates();
	test_resilience_errors();
	test_sqlite_keys();
	test_retry_on();
	unlink(write_file("pipeline.yaml", ""));
	rmdir(tmpdir);
	return done_testing();
}
