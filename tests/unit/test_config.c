/*
 * test_config: the pipeline file reader. A full file read into every field,
 * the defaults, typed params, the duration and size parsers, and errors
 * reported (all of them) at the right line and column.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/config.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_config.XXXXXX";

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
	f = &st->u.fetch;
	is_str(st->id, "users", "stage 0 id");
	is_int(st->pos.line, 16, "stage position line");
	is_int(st->pos.col, 3, "stage position col");
	is_str(st->description, "users, two pages", "stage description");
	is_int(st->type, STAGE_FETCH, "users is a fetch");
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
	f = &st->u.fetch;
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
	is_int(st->type, STAGE_TRANSFORM, "clean is a transform");
	is_int(st->n_needs, 2, "clean needs two");
	is_str(st->needs[1].s, "local", "needs[1]");
	is_int(st->needs[1].pos.col, 20, "needs[1] column");
	is_str(st->u.transform.jq.s, "select(.active)", "transform jq");
	is_str(st->u.transform.dedupe.s, ".id", "transform dedupe");

	st = &s->stages[3];
	is_int(st->type, STAGE_LOAD, "db is a load");
	is_int(st->n_needs, 1, "a single string need is a list of one");
	is_str(st->needs[0].s, "clean", "db needs clean");
	is_int(st->u.load.target, LOAD_SQLITE, "sqlite target");
	is_str(st->u.load.path.s, "out/x.db", "sqlite path");
	is_str(st->u.load.table.s, "users", "sqlite table");
	is_int(st->u.load.n_key, 2, "two key columns");
	is_str(st->u.load.key[1].s, "site", "key[1]");

	st = &s->stages[4];
	is_int(st->u.load.target, LOAD_FILE, "file target");
	is_str(st->u.load.path.s, "out/x.jsonl", "file path");
	is_int(st->u.load.format, FMT_JSONL, "file format");
	st = &s->stages[5];
	is_int(st->u.load.target, LOAD_STDOUT, "stdout target (null value)");
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

	/* a syntax error hides everything else */
	s = load("pipeline: demo\nstages: [a\nbogus: 1\npipeline: x\n", &d);
	ok(s == NULL, "syntax error gives NULL");
	is_int(d.n, 1, "only the syntax error");
	ok(d.n == 1 && strncmp(d.v[0].msg, "YAML syntax error: ", 19) == 0,
	   "message starts with YAML syntax error");
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
	diags_free(&d);
	s = load("---\n", &d);
	ok(s == NULL && d.n == 1 && strcmp(d.v[0].msg, "empty pipeline file") == 0,
	   "document with nothing in it");
	diags_free(&d);
	s = load("pipeline: a\nstages: {a: {fetch: {url: x}}}\n---\nfoo: 1\n", &d);
	diag_at(&d, "multiple YAML documents", 3, 1);
	is_int(d.n, 1, "second document is not read");
	diags_free(&d);
	spec_free(NULL);
	ok(1, "spec_free(NULL) is a no-op");
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
	unlink(write_file("pipeline.yaml", ""));
	rmdir(tmpdir);
	return done_testing();
}
