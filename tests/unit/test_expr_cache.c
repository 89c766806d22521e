/*
 * test_expr_cache: compiled jq programs are shared process-wide. The same
 * text compiles once whatever its scope; texts registered together compile
 * as one libjq program, with the same results and the same error messages
 * as each compiled alone; a file's validation and its run compile each
 * distinct program once, and an error is reported at its own stage and line.
 */
#include <stdlib.h>
#include <string.h>

#include "core/config_load.h"
#include "core/dag.h"
#include "core/engine.h"
#include "expr/expr.h"
#include "base/jsonw.h"
#include "base/util.h"
#include "store/state.h"
#include "tap.h"

static char *dir;

/* Writes text to the file name in the test's directory. */
static void put_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	if (!f) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	free(path);
}

/* Reads the file name in the test's directory (caller frees). */
static char *get_file(const char *name)
{
	char *path = xasprintf("%s/%s", dir, name), *s;
	size_t n;

	s = read_file_max(path, 1 << 20, &n);
	free(path);
	return s;
}

static void run_done(struct engine *e, enum run_status status, void *arg)
{
	*(enum run_status *)arg = status;
	ev_break(engine_loop(e), EVBREAK_ALL);
}

/* Validates and runs yaml (written as name) on a new state database, as
 * `pipectl run` does. Returns the run's status, or -1 when it did not
 * start. */
static int run_pipeline(const char *name, const char *yaml)
{
	static int n;
	struct diags d = { 0 };
	struct spec *s;
	struct dag *g = NULL;
	struct state *st = NULL;
	struct engine *e = NULL;
	enum run_status status = ST_FAILED;
	char *path, *db, *err = NULL;
	int64_t run_id = 0;
	int rc = -1;

	put_file(name, yaml);
	path = xasprintf("%s/%s", dir, name);
	db = xasprintf("%s/state%d.db", dir, ++n);
	s = config_load(path, &d);
	if (s)
		g = dag_build(s, &d);
	if (g)
		st = state_open(db, false, &err);
	if (st && state_run_create(st, s->name, path, s->hash, "{}", now_wall(), &run_id) == 0) {
		struct engine_opts o = { .spec = s, .dag = g, .params = s->params, .state = st,
		                         .run_id = run_id, .quiet = true, .replay_stage = -1 };
		e = engine_create(ev_default_loop(EVFLAG_AUTO), &o, &err);
	}
	if (e) {
		engine_start(e, run_done, &status);
		ev_run(engine_loop(e), 0);
		rc = (int)status;
	} else {
		diags_print(&d, stdout);
		printf("# setup failed: %s\n", err ? err : "");
	}
	engine_destroy(e);
	state_close(st);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	free(err);
	free(path);
	free(db);
	return rc;
}

/* Runs e on input text: jsonw text of the outputs, or "ERR:msg after
 * outputs". Caller frees. */
static char *run_on(struct expr *e, const char *input)
{
	json_error_t je;
	json_t *in = json_loads(input, JSON_DECODE_ANY, &je), *out = json_array();
	char *err = NULL, *o, *s;

	if (!in) {
		printf("Bail out! bad test JSON %s\n", input);
		exit(1);
	}
	o = expr_run(e, in, out, &err) < 0 ? err : NULL;
	s = jsonw_dumps(out);
	if (o) {
		char *t = xasprintf("ERR:%s after %s", o, s);
		free(s);
		free(o);
		s = t;
	}
	json_decref(in);
	json_decref(out);
	return s;
}

/* Compiles src (a template when tmpl) and runs it on input: its outputs,
 * or "COMPILE@off:msg". Caller frees. */
static char *outcome(const char *src, bool tmpl, const struct expr_scope *sc,
                     const char *input)
{
	char *err = NULL, *s;
	size_t off = 0;
	struct expr *e = tmpl ? expr_template(src, sc, &err, &off) : expr_compile(src, sc, &err);

	if (!e) {
		s = xasprintf("COMPILE@%zu:%s", off, err);
		free(err);
		return s;
	}
	s = run_on(e, input);
	expr_free(e);
	return s;
}

static void test_shared(void)
{
	json_t *pa = json_pack("{s:i}", "x", 1), *pb = json_pack("{s:i}", "x", 2);
	json_t *run = json_pack("{s:s}", "id", "r1");
	struct expr_scope a = { pa, run }, b = { pb, NULL };
	unsigned long c0;
	struct expr *e1, *e2, *e3;
	char *err = NULL, *s;

	expr_cache_clear();
	c0 = expr_compiles();
	e1 = expr_compile(".n + params.x", &a, &err);
	is_int(expr_compiles() - c0, 1, "a first program compiles once");
	e2 = expr_compile(".n + params.x", &b, &err);
	e3 = expr_compile(".n + params.x", NULL, &err);
	is_int(expr_compiles() - c0, 1, "the same text with other scopes: no compile");
	s = run_on(e1, "{\"n\":10}");
	is_str(s, "[11]", "each handle runs with its own scope (params.x = 1)");
	free(s);
	s = run_on(e2, "{\"n\":10}");
	is_str(s, "[12]", "... (params.x = 2)");
	free(s);
	s = run_on(e3, "{\"n\":10}");
	is_str(s, "[10]", "... (no params: null + 10)");
	free(s);
	expr_free(e2);
	s = run_on(e1, "{\"n\":5}");
	is_str(s, "[6]", "a handle outlives another on the same program");
	free(s);
	expr_free(e1);
	expr_free(e3);

	e1 = expr_compile("run.id", &a, &err);
	s = run_on(e1, "null");
	is_str(s, "[\"r1\"]", "run in scope");
	free(s);
	expr_free(e1);

	c0 = expr_compiles();
	is_int(expr_check("nosuchfn(1)", false, &err, NULL), -1, "an error is cached too");
	free(err);
	is_int(expr_check("nosuchfn(1)", false, &err, NULL), -1, "... asked again");
	is_str(err, "nosuchfn/1 is not defined at <top-level>, line 1", "... the same message");
	free(err);
	ok(expr_compiles() - c0 <= 2, "... not compiled again (%lu compiles)",
	   expr_compiles() - c0);
	/* libjq 1.6 would free a halt_error's message again at each start */
	expr_prepare("\"stop\\n\" | halt_error", false);
	expr_prepare(".n", false);
	e1 = expr_compile("\"stop\\n\" | halt_error", NULL, &err);
	e2 = expr_compile(".n", NULL, &err);
	for (int i = 0; i < 3; i++) {
		s = run_on(e1, "null");
		is_str(s, "ERR:stop after []", "halt_error, run %d", i + 1);
		free(s);
		s = run_on(e2, "{\"n\":1}");
		is_str(s, "[1]", "then another program of the same unit, run %d", i + 1);
		free(s);
	}
	expr_free(e1);
	expr_free(e2);
	json_decref(pa);
	json_decref(pb);
	json_decref(run);
}

/* Programs (and templates) with an input, the outputs jq gives for each
 * alone, and whether it is a template. Errors included: compile errors
 * keep jq's words, line numbers and, for templates, the offset. */
static const struct {
	const char *src, *input;
	bool tmpl;
} cases[] = {
	{ ".a", "{\"a\":1}", false },
	{ ".[] | select(. > 1)", "[1,2,3]", false },
	{ "{id, n: (.n * 2)}", "{\"id\":\"x\",\"n\":4,\"z\":0}", false },
	{ "1 +* 2", "null", false },
	{ ".a |\n  .b +* 2", "null", false },
	{ "nosuchfn(1)", "null", false },
	{ "$nope", "null", false },
	{ "params", "null", false },
	{ "def params: 1; params", "null", false },
	{ "def f: 1;", "{\"k\":1}", false },         /* definitions only: the input */
	{ "# a comment\n.a", "{\"a\":3}", false },
	{ ".a # a comment", "{\"a\":3}", false },
	{ "1) + (2", "null", false },                 /* cannot close its branch */
	{ "$__loc__", "null", false },
	{ "error(\"boom\")", "null", false },
	{ ".[] | if . == 2 then error(\"two\") else . end", "[1,2,3]", false },
	{ "1, halt, 2", "null", false },
	{ "\"out\\n\" | halt_error", "null", false },
	{ "reduce .[] as $x (0; . + $x)", "[1,2,3]", false },
	{ "label $f | .[] | if . > 1 then break $f else . end", "[1,2,3]", false },
	{ "{big, id}", "{\"id\":1,\"big\":9007199254740993}", false },
	{ "path(..)", "{\"a\":[1]}", false },
	{ "getpath([\"a\",\"b\"])", "{\"a\":{\"b\":7}}", false },
	{ "a${.x}b", "{\"x\":[1]}", true },
	{ "${.a} ${ nosuchfn }", "null", true },
	{ "x ${.a} ${ 1 +* 2 }", "null", true },
	{ "${ .x # note\n}", "{\"x\":5}", true },
	{ "ab${.x", "null", true },
	{ "${}", "null", true },
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static void test_combined(void)
{
	json_t *params = json_pack("{s:s}", "p", "P");
	struct expr_scope sc = { params, NULL };
	char *alone[N_CASES];
	unsigned long c0, lone = 0;
	size_t i;

	/* Each alone: a fresh cache, one text registered at a time. */
	for (i = 0; i < N_CASES; i++) {
		expr_cache_clear();
		c0 = expr_compiles();
		alone[i] = outcome(cases[i].src, cases[i].tmpl, &sc, cases[i].input);
		lone += expr_compiles() - c0;
	}
	/* All together: registered first, compiled at the first use. */
	expr_cache_clear();
	for (i = 0; i < N_CASES; i++)
		expr_prepare(cases[i].src, cases[i].tmpl);
	c0 = expr_compiles();
	for (i = 0; i < N_CASES; i++) {
		char *s = outcome(cases[i].src, cases[i].tmpl, &sc, cases[i].input);
		char *d = xstrdup(cases[i].src), *p;
		for (p = d; *p; p++)
			if (*p == '\n' || *p == '#')
				*p = '_';
		is_str(s, alone[i], "together as alone: %s", d);
		free(d);
		free(s);
	}
	(void)lone;
	/* Spot checks that "alone" is what jq says. */
	is_str(alone[0], "[1]", ".a");
	is_str(alone[3], "COMPILE@0:syntax error, unexpected '*' (Unix shell quoting issues?) "
	       "at <top-level>, line 1", "a syntax error in jq's words");
	is_str(alone[4], "COMPILE@0:syntax error, unexpected '*' (Unix shell quoting issues?) "
	       "at <top-level>, line 2", "its line");
	is_str(alone[5], "COMPILE@0:nosuchfn/1 is not defined at <top-level>, line 1",
	       "an undefined function");
	is_str(alone[7], "[{\"p\":\"P\"}]", "params");
	is_str(alone[9], "[{\"k\":1}]", "definitions only");
	ok(strncmp(alone[12], "COMPILE@0:syntax error", 22) == 0, "1) + (2 does not compile: %s",
	   alone[12]);
	is_str(alone[13], "[{\"file\":\"<top-level>\",\"line\":1}]", "$__loc__ says line 1");
	is_str(alone[20], "[{\"big\":9007199254740993,\"id\":1}]", "big integers kept");
	is_str(alone[24], "COMPILE@6:nosuchfn/0 is not defined at <top-level>, line 1",
	       "a template's error at its part");
	is_str(alone[25], "COMPILE@8:syntax error, unexpected '*' (Unix shell quoting issues?) "
	       "at <top-level>, line 1", "... the failing part");
	for (i = 0; i < N_CASES; i++)
		free(alone[i]);

	/* One bad text among good ones: all good ones still share units. */
	expr_cache_clear();
	expr_prepare(".a", false);
	expr_prepare(".b", false);
	expr_prepare(".c +* 1", false);
	expr_prepare(".d", false);
	c0 = expr_compiles();
	{
		char *err = NULL;
		is_int(expr_check(".a", false, &err, NULL), 0, "good before a bad one");
		is_int(expr_check(".c +* 1", false, &err, NULL), -1, "the bad one");
		ok(err && strstr(err, "unexpected '*'"), "... its message: %s", err ? err : "");
		free(err);
		is_int(expr_check(".d", false, &err, NULL), 0, "good after it");
	}
	ok(expr_compiles() - c0 < 8, "searched in halves (%lu compiles)", expr_compiles() - c0);
	json_decref(params);
}

/* A handle run many times gets a jq program of its own: same outputs,
 * errors and scope before and after, one more compile. */
static void test_hot(void)
{
	json_t *params = json_pack("{s:i}", "k", 100);
	struct expr_scope sc = { params, NULL };
	const char *src = "if .v == 3 then error(\"three\") else {id, w: (.v + params.k)} end";
	unsigned long c0, wrong = 0;
	struct expr *e, *other;
	char *err = NULL, *s, *want;
	int i;

	expr_cache_clear();
	expr_prepare(src, false);
	expr_prepare(".other", false);
	e = expr_compile(src, &sc, &err);
	other = expr_compile(".other", NULL, &err);
	c0 = expr_compiles();
	for (i = 0; i < EXPR_HOT_RUNS + 10; i++) {
		char *in = xasprintf("{\"id\":%d,\"v\":%d}", i, i % 7);
		s = run_on(e, in);
		want = i % 7 == 3 ? xstrdup("ERR:three after []")
		                  : xasprintf("[{\"id\":%d,\"w\":%d}]", i, i % 7 + 100);
		if (strcmp(s, want) != 0 && wrong++ == 0)
			printf("# run %d: got %s, want %s\n", i, s, want);
		free(s);
		free(want);
		free(in);
	}
	is_int(wrong, 0, "%d runs: the same outputs and errors throughout", EXPR_HOT_RUNS + 10);
	is_int(expr_compiles() - c0, 1, "one compile of its own after %d runs", EXPR_HOT_RUNS);
	s = run_on(other, "{\"other\":1}");
	is_str(s, "[1]", "the other program still runs in the shared one");
	free(s);
	expr_free(e);
	expr_free(other);
	json_decref(params);
}

static const char *pipeline =
	"pipeline: shared\n"
	"params: {min: 1}\n"
	"stages:\n"
	"  src:\n"
	"    fetch:\n"
	"      file: in.jsonl\n"
	"      format: jsonl\n"
	"      records: '{id, n}'\n"
	"  a:\n"
	"    needs: src\n"
	"    transform: {jq: '.n += 1'}\n"
	"  b:\n"
	"    needs: src\n"
	"    transform: {jq: '.n += 1'}\n"
	"  c:\n"
	"    needs: [a, b]\n"
	"    transform:\n"
	"      jq: 'select(.n > params.min) | .tag = \"r\\(run.id)\"'\n"
	"      dedupe: .id\n"
	"  out:\n"
	"    needs: c\n"
	"    load:\n"
	"      file: {path: 'out-${run.id}.jsonl'}\n";

static void test_pipeline(void)
{
	unsigned long c0;
	char *s;

	put_file("in.jsonl", "{\"id\":1,\"n\":0}\n{\"id\":2,\"n\":5}\n");
	expr_cache_clear();
	c0 = expr_compiles();
	is_int(run_pipeline("p.yaml", pipeline), ST_SUCCEEDED, "a pipeline validates and runs");
	is_int(expr_compiles() - c0, 1, "validation and run compile its programs once, together");
	s = get_file("out-1.jsonl");
	is_str(s, "{\"id\":2,\"n\":6,\"tag\":\"r1\"}\n",
	       "with the run's scope, not validation's");
	free(s);

	c0 = expr_compiles();
	is_int(run_pipeline("p.yaml", pipeline), ST_SUCCEEDED, "a second run in the same process");
	is_int(expr_compiles() - c0, 0, "... compiles nothing");
}

/* Loads yaml; returns its diagnostics as "line:col: message" lines. */
static char *load_diags(const char *yaml)
{
	struct diags d = { 0 };
	struct spec *s;
	char *path, *out = NULL;
	size_t len = 0, i;
	FILE *f;

	put_file("bad.yaml", yaml);
	path = xasprintf("%s/bad.yaml", dir);
	s = config_load(path, &d);
	spec_free(s);
	f = open_memstream(&out, &len);
	for (i = 0; i < d.n; i++)
		fprintf(f, "%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	fclose(f);
	diags_free(&d);
	free(path);
	return out;
}

static void test_attribution(void)
{
	char *s;

	expr_cache_clear();
	s = load_diags("pipeline: bad\n"
	               "stages:\n"
	               "  src:\n"
	               "    fetch: {file: in.jsonl, format: jsonl, records: '.a'}\n"
	               "  t1:\n"
	               "    needs: src\n"
	               "    transform: {jq: '.b | nosuchfn'}\n"
	               "  t2:\n"
	               "    needs: t1\n"
	               "    transform: {jq: '.c', dedupe: '.d +* 1'}\n"
	               "  t3:\n"
	               "    needs: t2\n"
	               "    transform: {jq: '.b | nosuchfn'}\n"
	               "  out:\n"
	               "    needs: t3\n"
	               "    load:\n"
	               "      file: {path: 'o-${ .x }-${ nosuch2 }.jsonl'}\n");
	is_str(s,
	       "7:21: invalid jq expression in \"jq\": nosuchfn/0 is not defined at <top-level>, "
	       "line 1\n"
	       "10:35: invalid jq expression in \"dedupe\": syntax error, unexpected '*' "
	       "(Unix shell quoting issues?) at <top-level>, line 1\n"
	       "13:21: invalid jq expression in \"jq\": nosuchfn/0 is not defined at <top-level>, "
	       "line 1\n"
	       "17:31: invalid template in \"path\": nosuch2/0 is not defined at <top-level>, "
	       "line 1\n",
	       "each error at its own stage, line and column, in jq's words");
	free(s);
}

/* A program the fast path runs (expr/project.h) costs no libjq compile to
 * check or to open; jq is compiled, once, only when an input needs it (an
 * error in jq's own words), and then shared by every handle. */
static void test_projection(void)
{
	unsigned long c0;
	struct expr *e1, *e2;
	char *err = NULL, *s;

	expr_cache_clear();
	c0 = expr_compiles();
	expr_prepare("{id, w: .m.w}", false);
	is_int(expr_check("{id, w: .m.w}", false, &err, NULL), 0, "projection: checks");
	e1 = expr_compile("{id, w: .m.w}", NULL, &err);
	e2 = expr_compile("{id, w: .m.w}", NULL, &err);
	ok(e1 && e2, "projection: opens");
	is_int(expr_compiles() - c0, 0, "projection: no libjq compile to check and open it");
	s = run_on(e1, "{\"id\":1,\"m\":{\"w\":\"x\"},\"z\":2}");
	is_str(s, "[{\"id\":1,\"w\":\"x\"}]", "projection: runs on the fast path");
	free(s);
	is_int(expr_compiles() - c0, 0, "projection: still no compile after a run");
	s = run_on(e1, "5");
	is_str(s, "ERR:Cannot index number with string \"id\" after []", "projection: jq's words for a number");
	free(s);
	is_int(expr_compiles() - c0, 1, "projection: jq compiled once, when an input needed it");
	s = run_on(e2, "[1]");
	ok(s && strncmp(s, "ERR:Cannot index array", 22) == 0,
	   "projection: the other handle falls back too (%s)", s ? s : "null");
	free(s);
	is_int(expr_compiles() - c0, 1, "projection: and shares that compile");
	expr_free(e1);
	expr_free(e2);
	expr_set_fast_path(false);
	e1 = expr_compile("{id, w: .m.w}", NULL, &err);
	is_int(expr_compiles() - c0, 1, "projection: with the fast path off, the cached compile");
	expr_free(e1);
	expr_set_fast_path(true);
}

int main(void)
{
	char tmpl[] = "/tmp/pipectl-expr-cache-XXXXXX", *cmd;

	dir = mkdtemp(tmpl);
	if (!dir) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	test_shared();
	test_combined();
	test_hot();
	test_pipeline();
	test_attribution();
	test_projection();
	expr_cache_clear();
	cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# cannot remove %s\n", dir);
	free(cmd);
	return done_testing();
}
