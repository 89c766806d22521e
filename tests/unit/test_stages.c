/*
 * test_stages: the stage kinds that run without a network, each through a
 * small pipeline: fetch.file (json and jsonl, records:, a missing file,
 * a bad line, an empty file), transform (jq giving 0..n records, dedupe,
 * errors with on_error fail and skip), load.file (compact JSON lines, a
 * new directory, a failed run keeping the previous file and leaving no
 * temporary file) and load.stdout (JSON lines on standard output).
 *
 * Each pipeline is written as YAML to a temporary directory, loaded with
 * config_load and run through the engine with a state database in that
 * directory. run_yaml() is the only code that calls the config, DAG and
 * engine API, and no test reads a field of the spec, so a change of those
 * APIs is adapted in one place.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/diag.h"
#include "base/util.h"
#include "core/dag.h"
#include "core/engine.h"
#include "core/config_load.h"
#include "core/spec.h"
#include "store/state.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_stages.XXXXXX";

/* tmpdir/name (static buffer, valid until the next call). */
static const char *in_tmp(const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(in_tmp(name), "w");

	if (!f || fputs(text, f) == EOF || fclose(f) != 0) {
		printf("Bail out! cannot write %s\n", in_tmp(name));
		exit(1);
	}
}

/* The contents of tmpdir/name (malloc'd), or NULL when it cannot be read. */
static char *read_tmp(const char *name)
{
	FILE *f = fopen(in_tmp(name), "r");
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;
	int c;

	if (!f)
		return NULL;
	mem = open_memstream(&buf, &len);
	while ((c = getc(f)) != EOF)
		putc(c, mem);
	fclose(f);
	fclose(mem);
	return buf;
}

/* The result of one run. */
struct result {
	int status;        /* enum run_status, or -1: the pipeline did not load */
	char *error;       /* the diagnostics, or "stage: message" of the first
	                      failure; NULL when none */
	char *out;         /* what the run wrote to standard output */
};

static void result_free(struct result *r)
{
	free(r->error);
	free(r->out);
	memset(r, 0, sizeof(*r));
}

/* The run ended: its status, and the loop can return. */
static void run_done(struct engine *e, enum run_status status, void *arg)
{
	*(int *)arg = (int)status;
	ev_break(engine_loop(e), EVBREAK_ALL);
}

/*
 * Writes yaml as tmpdir/pipeline.yaml, loads it, and runs it through the
 * engine with no params, quietly, on tmpdir/state.db; standard output is
 * captured for the length of the run. The one place that uses the config,
 * DAG and engine API.
 */
static struct result run_yaml(const char *yaml)
{
	struct result r = { -1, NULL, NULL };
	struct diags d = { 0 };
	struct spec *s;
	struct dag *g = NULL;
	struct state *st = NULL;
	struct engine *e = NULL;
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
	json_t *params = json_object();
	char *err = NULL;
	int64_t run_id = 0;
	int saved = -1, fd;

	write_file("pipeline.yaml", yaml);
	s = config_load(in_tmp("pipeline.yaml"), &d);
	if (s)
		g = dag_build(s, &d);
	if (!s || !g) {
		size_t len = 0;
		FILE *mem = open_memstream(&r.error, &len);

		diags_print(&d, mem);
		fclose(mem);
		goto out;
	}
	st = state_open(in_tmp("state.db"), false, &err);
	if (!st || state_run_create(st, "test", in_tmp("pipeline.yaml"), "hash", "{}",
	                            now_wall(), &run_id) != 0) {
		r.error = xasprintf("state: %s", st ? state_errmsg(st) : err);
		goto out;
	}
	{
		struct engine_opts o = { .spec = s, .dag = g, .params = params, .state = st,
		                         .run_id = run_id, .quiet = true, .replay_stage = -1 };
		e = engine_create(loop, &o, &err);
	}
	if (!e) {
		r.error = xasprintf("create: %s", err);
		r.status = ST_FAILED;
		goto out;
	}
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	fd = open(in_tmp("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (saved < 0 || fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
		printf("Bail out! cannot capture standard output\n");
		exit(1);
	}
	close(fd);
	engine_start(e, run_done, &r.status);
	ev_run(loop, 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	r.out = read_tmp("stdout");
	{
		const char *stage = NULL;
		const char *msg = engine_first_error(e, &stage);

		if (msg)
			r.error = xasprintf("%s: %s", stage, msg);
	}
out:
	engine_destroy(e);
	state_close(st);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	json_decref(params);
	free(err);
	return r;
}

static bool contains(const char *s, const char *part)
{
	return s && strstr(s, part) != NULL;
}

/* The names in tmpdir/dir that start with prefix, counted. */
static int count_prefixed(const char *dir, const char *prefix)
{
	DIR *dp = opendir(in_tmp(dir));
	struct dirent *de;
	int n = 0;

	if (!dp)
		return -1;
	while ((de = readdir(dp)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(dp);
	return n;
}

/* ------------------------------------------------------------------ fetch.file */

static void test_fetch_file(void)
{
	struct result r;
	char *got;

	write_file("doc.json", "{\"items\": [{\"id\": 1, \"x\": \"a\"}, {\"id\": 2}, {\"id\": 3}]}");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: doc.json, records: '.items[] | {id}'}\n"
	             "  out:\n"
	             "    needs: src\n"
	             "    load: {file: {path: out.jsonl}}\n");
	is_int(r.status, ST_SUCCEEDED, "fetch.file json: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	got = read_tmp("out.jsonl");
	is_str(got, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n",
	       "fetch.file json: records: turns one document into three records");
	free(got);
	result_free(&r);

	write_file("lines.jsonl", "{\"n\": 1, \"ok\": true}\n\n{\"n\": 2, \"ok\": false}\r\n"
	           "{\"n\": 3, \"ok\": true}");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: lines.jsonl, format: jsonl, records: 'select(.ok) | .n'}\n"
	             "  out:\n"
	             "    needs: src\n"
	             "    load: {file: {path: out.jsonl}}\n");
	is_int(r.status, ST_SUCCEEDED, "fetch.file jsonl: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	got = read_tmp("out.jsonl");
	is_str(got, "1\n3\n", "fetch.file jsonl: each line a document, blank lines skipped");
	free(got);
	result_free(&r);

	write_file("empty.jsonl", "");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: empty.jsonl, format: jsonl}\n"
	             "  out:\n"
	             "    needs: src\n"
	             "    load: {file: {path: empty-out.jsonl}}\n");
	is_int(r.status, ST_SUCCEEDED, "fetch.file: an empty jsonl file is a run without records");
	got = read_tmp("empty-out.jsonl");
	is_str(got, "", "load.file: no records still writes the (empty) file");
	free(got);
	result_free(&r);

	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: nosuch.json}\n"
	             "  out:\n"
	             "    needs: src\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_FAILED, "fetch.file: a missing file fails the run");
	ok(contains(r.error, "src: ") && contains(r.error, "nosuch.json"),
	   "fetch.file: the failure names the stage and the file: %s",
	   r.error ? r.error : "(null)");
	result_free(&r);

	write_file("bad.jsonl", "{\"n\": 1}\n{\"n\": \n");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: bad.jsonl, format: jsonl}\n"
	             "  out:\n"
	             "    needs: src\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_FAILED, "fetch.file: a bad JSON line fails the run");
	ok(contains(r.error, "bad.jsonl: line 2: invalid JSON"),
	   "fetch.file: the failure names the file and line: %s", r.error ? r.error : "(null)");
	result_free(&r);
}

/* A JSON-lines file of many chunks and items (a line longer than the
 * read chunk, blank and CRLF lines, the last without its newline) reads
 * whole and in order; a bad line far into it is reported by its number. */
static void test_fetch_file_large(void)
{
	struct buf in, want;
	struct result r;
	char *got, *pad = xcalloc(1, 300 * 1024 + 1);
	int i, lines = 0, bad = -1;

	memset(pad, 'p', 300 * 1024);
	for (int round = 0; round < 2; round++) {
		buf_init(&in);
		buf_init(&want);
		lines = 0;
		for (i = 1; i <= 4000; i++) {
			if (i % 97 == 0) {
				buf_adds(&in, i % 2 ? "\n" : "  \r\n");
				lines++;
			}
			if (round == 1 && i == 3500) {
				buf_adds(&in, "{\"n\": 3500,\n");
				bad = ++lines;
				continue;
			}
			buf_printf(&in, "{\"n\": %d, \"s\": \"%s\"}%s", i,
			           i == 1500 ? pad : "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
			           i == 4000 ? "" : i % 3 ? "\n" : "\r\n");
			lines++;
			buf_printf(&want, "%d\n", i);
		}
		buf_addc(&in, '\0');
		write_file("large.jsonl", in.data);
		r = run_yaml("pipeline: t\n"
		             "settings: {batch_size: 7}\n"
		             "stages:\n"
		             "  src:\n"
		             "    fetch: {file: large.jsonl, format: jsonl, records: '.n'}\n"
		             "  out:\n"
		             "    needs: src\n"
		             "    load: {file: {path: large-out.jsonl}}\n");
		if (round == 0) {
			is_int(r.status, ST_SUCCEEDED, "fetch.file large jsonl: the run succeeds (%s)",
			       r.error ? r.error : "no error");
			got = read_tmp("large-out.jsonl");
			ok(got && strcmp(got, want.data) == 0,
			   "fetch.file large jsonl: all %d lines' records, in order", lines);
			free(got);
		} else {
			char *w = xasprintf("large.jsonl: line %d: invalid JSON", bad);
			is_int(r.status, ST_FAILED, "fetch.file large jsonl: a bad line fails the run");
			ok(contains(r.error, w), "fetch.file large jsonl: the failure names line %d: %s",
			   bad, r.error ? r.error : "(null)");
			free(w);
		}
		result_free(&r);
		buf_free(&in);
		buf_free(&want);
	}
	free(pad);
}

/* ------------------------------------------------------------------ transform */

static void test_transform(void)
{
	struct result r;
	char *got;

	write_file("in.jsonl", "{\"id\": 1, \"tags\": [\"a\", \"b\"]}\n"
	           "{\"id\": 2, \"tags\": []}\n"
	           "{\"id\": 3, \"tags\": [\"a\"]}\n");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: in.jsonl, format: jsonl}\n"
	             "  tags:\n"
	             "    needs: src\n"
	             "    transform: {jq: '.id as $i | .tags[] | {id: $i, tag: .}'}\n"
	             "  out:\n"
	             "    needs: tags\n"
	             "    load: {file: {path: tags.jsonl}}\n");
	is_int(r.status, ST_SUCCEEDED, "transform: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	got = read_tmp("tags.jsonl");
	is_str(got, "{\"id\":1,\"tag\":\"a\"}\n{\"id\":1,\"tag\":\"b\"}\n{\"id\":3,\"tag\":\"a\"}\n",
	       "transform: a record becomes 2, 0 and 1 records, in order");
	free(got);
	result_free(&r);

	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: in.jsonl, format: jsonl}\n"
	             "  first:\n"
	             "    needs: src\n"
	             "    transform: {jq: '{id, tag: .tags[0]}', dedupe: .tag}\n"
	             "  out:\n"
	             "    needs: first\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_SUCCEEDED, "transform dedupe: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	is_str(r.out, "{\"id\":1,\"tag\":\"a\"}\n{\"id\":2,\"tag\":null}\n",
	       "transform dedupe: the first record per key passes (after jq)");
	result_free(&r);

	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: in.jsonl, format: jsonl}\n"
	             "  pick:\n"
	             "    needs: src\n"
	             "    transform: {jq: 'if .id == 2 then error(\"no two\") else .id end'}\n"
	             "  out:\n"
	             "    needs: pick\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_FAILED, "transform: an error fails the run (on_error fail)");
	ok(contains(r.error, "pick: ") && contains(r.error, "no two"),
	   "transform: the failure names the stage and jq's message: %s",
	   r.error ? r.error : "(null)");
	result_free(&r);

	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: in.jsonl, format: jsonl}\n"
	             "  pick:\n"
	             "    needs: src\n"
	             "    on_error: skip\n"
	             "    transform: {jq: 'if .id == 2 then error(\"no two\") else .id end'}\n"
	             "  out:\n"
	             "    needs: pick\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_SUCCEEDED, "transform on_error skip: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	is_str(r.out, "1\n3\n", "transform on_error skip: the failing record is dropped");
	result_free(&r);
}

/* ------------------------------------------------------------------ load.file, load.stdout */

static void test_loads(void)
{
	struct result r;
	char *got;

	write_file("rows.jsonl", "{\"b\": 2, \"a\": [1, 2], \"s\": \"x y\"}\n{\"c\": null}\n");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: rows.jsonl, format: jsonl}\n"
	             "  file:\n"
	             "    needs: src\n"
	             "    load: {file: {path: new/dir/rows.jsonl}}\n"
	             "  show:\n"
	             "    needs: src\n"
	             "    load: {stdout: {}}\n");
	is_int(r.status, ST_SUCCEEDED, "loads: the run succeeds (%s)",
	       r.error ? r.error : "no error");
	got = read_tmp("new/dir/rows.jsonl");
	is_str(got, "{\"b\":2,\"a\":[1,2],\"s\":\"x y\"}\n{\"c\":null}\n",
	       "load.file: compact JSON lines, keys in order, in a directory it created");
	free(got);
	is_str(r.out, "{\"b\":2,\"a\":[1,2],\"s\":\"x y\"}\n{\"c\":null}\n",
	       "load.stdout: the same records as JSON lines on standard output");
	is_int(count_prefixed("new/dir", "rows.jsonl.tmp"), 0,
	       "load.file: no temporary file is left after success");
	result_free(&r);

	write_file("keep.jsonl", "old\n");
	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: rows.jsonl, format: jsonl}\n"
	             "  boom:\n"
	             "    needs: src\n"
	             "    transform: {jq: 'if .c == null and has(\"c\") then error(\"late\") else . end'}\n"
	             "  file:\n"
	             "    needs: boom\n"
	             "    load: {file: {path: keep.jsonl}}\n");
	is_int(r.status, ST_FAILED, "load.file: a run failing upstream fails");
	got = read_tmp("keep.jsonl");
	is_str(got, "old\n", "load.file: a failed run leaves the previous file untouched");
	free(got);
	is_int(count_prefixed(".", "keep.jsonl.tmp"), 0,
	       "load.file: no temporary file is left after a failure");
	result_free(&r);

	r = run_yaml("pipeline: t\n"
	             "stages:\n"
	             "  src:\n"
	             "    fetch: {file: rows.jsonl, format: jsonl}\n"
	             "  file:\n"
	             "    needs: src\n"
	             "    load: {file: {path: out.jsonl, format: csv}}\n");
	is_int(r.status, -1, "load.file: an unknown format does not load");
	ok(contains(r.error, "pipeline.yaml:7:"),
	   "load.file: the error points at its line: %s", r.error ? r.error : "(null)");
	result_free(&r);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp failed\n");
		return 1;
	}
	test_fetch_file();
	test_fetch_file_large();
	test_transform();
	test_loads();
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return done_testing();
}
