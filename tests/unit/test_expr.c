/*
 * test_expr: jq programs and ${...} templates — compile and runtime errors,
 * output counts, params/run/env scope, template parsing and offsets, and
 * the jansson <-> jq number and string conversions.
 */
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "base/jsonw.h"
#include "tap.h"

/* Parses JSON text (test input); aborts the test on bad text. */
static json_t *J(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &je);

	if (!v) {
		printf("Bail out! bad test JSON %s: %s\n", text, je.text);
		exit(1);
	}
	return v;
}

/* A copy of s fit for a TAP description: no newlines, tabs or '#'.
 * Caller frees. */
static char *tap_safe(const char *s)
{
	char *t = xstrdup(s), *p;

	for (p = t; *p; p++) {
		if (*p == '\n' || *p == '\t' || *p == '\r' || *p == '#')
			*p = '_';
	}
	return t;
}

/* Runs src on input text; returns jsonw text of the output array, or
 * "ERR:<message>". Caller frees. */
static char *run_text(const char *src, const struct expr_scope *scope, const char *input)
{
	char *err = NULL, *s;
	json_t *in, *out;
	struct expr *e = expr_compile(src, scope, &err);

	if (!e) {
		s = xasprintf("COMPILE:%s", err);
		free(err);
		return s;
	}
	in = J(input);
	out = json_array();
	if (expr_run(e, in, out, &err) < 0) {
		char *o = jsonw_dumps(out);
		s = xasprintf("ERR:%s after %s", err, o);
		free(o);
		free(err);
	} else {
		s = jsonw_dumps(out);
	}
	json_decref(in);
	json_decref(out);
	expr_free(e);
	return s;
}

#define check_run(src, scope, input, want) do { \
	char *r_ = run_text(src, scope, input), *d_ = tap_safe(src); \
	is_str(r_, want, "run %s on %s", d_, input); \
	free(r_); \
	free(d_); \
} while (0)

/* Renders template src on input text; returns the text, "ERR@off:msg" for a
 * compile error or "RUNERR:msg". Caller frees. */
static char *render_text(const char *src, const char *input)
{
	char *err = NULL, *s;
	size_t off = 12345;
	struct expr *e = expr_template(src, NULL, &err, &off);
	json_t *in;

	if (!e) {
		s = xasprintf("ERR@%zu:%s", off, err);
		free(err);
		return s;
	}
	in = J(input);
	s = expr_render(e, in, &err);
	if (!s) {
		s = xasprintf("RUNERR:%s", err);
		free(err);
	}
	json_decref(in);
	expr_free(e);
	return s;
}

#define check_render(src, input, want) do { \
	char *r_ = render_text(src, input), *d_ = tap_safe(src); \
	is_str(r_, want, "template %s", d_); \
	free(r_); \
	free(d_); \
} while (0)

static void test_compile(void)
{
	char *err = (char *)"unset";
	struct expr *e;

	e = expr_compile(".a", NULL, &err);
	ok(e != NULL, "simple program compiles");
	ok(err == NULL, "no error on success");
	expr_free(e);

	e = expr_compile("1 +* 2", NULL, &err);
	ok(e == NULL, "syntax error fails");
	ok(err && strstr(err, "syntax error, unexpected '*'"), "jq's words: %s",
	   err ? err : "");
	ok(err && strstr(err, "at <top-level>, line 1") &&
	   err[strlen(err) - 1] == '1', "ends with the line: %s", err ? err : "");
	ok(err && strncmp(err, "jq:", 3) != 0 && !strchr(err, '\n') &&
	   !strstr(err, "compile error"), "no jq: prefix, summary or source line");
	free(err);

	e = expr_compile(".a |\n  .b +* 2", NULL, &err);
	ok(e == NULL && err && strstr(err, "line 2"), "line numbers unaffected: %s",
	   err ? err : "");
	free(err);

	e = expr_compile("nosuchfn(1)", NULL, &err);
	is_str(err, "nosuchfn/1 is not defined at <top-level>, line 1", "undefined function");
	ok(e == NULL, "undefined function fails");
	free(err);

	e = expr_compile("$nope", NULL, &err);
	is_str(err, "$nope is not defined at <top-level>, line 1", "undefined variable");
	free(err);
	lives_ok(expr_free(NULL), "expr_free(NULL) is a no-op");
}

static void test_run(void)
{
	check_run(".", NULL, "{\"a\":1}", "[{\"a\":1}]");
	check_run("empty", NULL, "1", "[]");
	check_run(".[]", NULL, "[1,\"two\",[3]]", "[1,\"two\",[3]]");
	check_run(".[] | select(. > 1)", NULL, "[1,2,3]", "[2,3]");
	{
		/* jq 1.6 builds differ: 'with "b"' or 'with string "b"' */
		char *r = run_text(".a.b", NULL, "{\"a\":5}");
		ok(strncmp(r, "ERR:Cannot index number with ", 29) == 0 &&
		   strstr(r, "\"b\" after []"), "runtime error message: %s", r);
		free(r);
	}
	check_run(".[] | if . == 3 then error(\"three\") else . end", NULL, "[1,2,3,4]",
	          "ERR:three after [1,2]");
	check_run("error({\"code\":7})", NULL, "null",
	          "ERR:{\"code\":7} (not a string) after []");
	check_run("1, halt, 2", NULL, "null", "[1]");
	check_run("\"stopped\\n\" | halt_error", NULL, "null", "ERR:stopped after []");
	check_run("{} | halt_error(0)", NULL, "null", "[]");
	check_run("try error(\"x\") catch .", NULL, "null", "[\"x\"]");
}

static void test_eval1(void)
{
	char *err = NULL;
	struct expr *e = expr_compile(".[]", NULL, &err);
	json_t *in, *r;

	in = J("[]");
	r = expr_eval1(e, in, &err);
	ok(r == NULL, "zero outputs is an error");
	ok(err && strstr(err, "no output"), "message: %s", err ? err : "");
	free(err);
	json_decref(in);

	in = J("[1,2]");
	r = expr_eval1(e, in, &err);
	ok(r == NULL, "two outputs is an error");
	ok(err && strstr(err, "more than one"), "message: %s", err ? err : "");
	free(err);
	json_decref(in);

	in = J("[{\"x\":true}]");
	r = expr_eval1(e, in, &err);
	ok(r && json_is_object(r) && json_is_true(json_object_get(r, "x")),
	   "one output returned");
	ok(err == NULL, "no error");
	json_decref(r);
	json_decref(in);

	in = J("[\"again\"]");
	r = expr_eval1(e, in, &err);
	is_str(json_string_value(r), "again", "same expression runs again");
	json_decref(r);
	json_decref(in);

	in = J("5");
	r = expr_eval1(e, in, &err);
	ok(r == NULL && err && strstr(err, "Cannot iterate over number"),
	   "runtime error from eval1: %s", err ? err : "");
	free(err);
	json_decref(in);
	expr_free(e);
}

static void test_scope(void)
{
	struct expr_scope sc;
	json_t *params = J("{\"country\":\"de\",\"n\":3}");
	json_t *run = J("{\"id\":\"r-42\",\"pipeline\":\"orders\"}");
	const char *home;
	char *want;

	sc.params = params;
	sc.run = run;
	check_run("params.country + \"-\" + run.id + \"-\" + run.pipeline", &sc, "null",
	          "[\"de-r-42-orders\"]");
	check_run("params.n * .", &sc, "2", "[6]");
	check_run("[params, run]", NULL, "null", "[[{},{}]]");
	sc.params = NULL;
	check_run("params | length", &sc, "null", "[0]");
	check_run("def params: 1; params", &sc, "null", "[1]");

	setenv("PIPECTL_TEST_VAR", "v4lue", 1);
	check_run("env.PIPECTL_TEST_VAR", NULL, "null", "[\"v4lue\"]");
	check_run("$ENV.PIPECTL_TEST_VAR", NULL, "null", "[\"v4lue\"]");
	home = getenv("HOME");
	if (home) {
		want = xasprintf("[\"%s\"]", home);
		check_run("env.HOME", NULL, "null", want);
		free(want);
	} else {
		check_run("env.HOME", NULL, "null", "[null]");
	}
	json_decref(params);
	json_decref(run);
}

static void test_templates(void)
{
	ok(expr_template_is_const("plain text"), "plain text is constant");
	ok(expr_template_is_const("cost $5 and $${x}"), "$${ is constant");
	ok(!expr_template_is_const("a${.x}"), "${ is not constant");
	ok(!expr_template_is_const("$${a}${.x}"), "${ after $${ is not constant");
	ok(expr_template_is_const(""), "empty template is constant");

	check_render("hello", "null", "hello");
	check_render("", "null", "");
	check_render("${.}", "\"whole\"", "whole");
	check_render("a${.x}b${.y}c", "{\"x\":1,\"y\":\"s\"}", "a1bsc");
	check_render("n=${.n} f=${.f} b=${.b} z=${.z}", "{\"n\":42,\"f\":19.99,\"b\":true,\"z\":null}",
	             "n=42 f=19.99 b=true z=null");
	check_render("o=${.o}", "{\"o\":{\"k\":[1,\"x\"]}}", "o={\"k\":[1,\"x\"]}");
	check_render("q\"uote \\back\\n ${.x}\n\tend \\(.x)", "{\"x\":1}",
	             "q\"uote \\back\\n 1\n\tend \\(.x)");
	check_render("cost $5 $${.x} $$ $", "{\"x\":1}", "cost $5 ${.x} $$ $");
	check_render("$${.x}=${.x}", "{\"x\":2}", "${.x}=2");
	check_render("caf\xc3\xa9 ${.x} \xe2\x82\xac", "{\"x\":\"\xc3\xbc\"}",
	             "caf\xc3\xa9 \xc3\xbc \xe2\x82\xac");
	check_render("[${ {a:\"}\"} | .a }]", "null", "[}]");
	check_render("${ \"q\\\"}\" }", "null", "q\"}");
	check_render("${ \"a\\(\"}\" + \"{\")b\" }", "null", "a}{b");
	check_render("${ .x # a comment }", "{\"x\":7}", "7");
	check_render("${ [.[] | {v: .}] | length }", "[1,2]", "2");
	check_render("${params.a}${run.b}", "null", "nullnull");

	check_render("ab${.x", "null", "ERR@2:unterminated \"${\" in template");
	check_render("ok ${.x} then ${ \"}", "null",
	             "ERR@14:unterminated \"${\" in template");
	check_render("x ${}", "null", "ERR@2:empty \"${}\" in template");
	check_render("x ${.a} ${ \t }", "null", "ERR@8:empty \"${}\" in template");
	{
		char *r = render_text("a${.x} b${.y +* 2} c${.z}", "null");
		ok(strncmp(r, "ERR@8:syntax error, unexpected '*'", 34) == 0,
		   "compile error points at its part: %s", r);
		free(r);
		r = render_text("${nosuch(1)}", "null");
		is_str(r, "ERR@0:nosuch/1 is not defined at <top-level>, line 1",
		       "single failing part");
		free(r);
	}
	{
		struct expr_scope sc = { NULL, NULL };
		json_t *run = J("{\"id\":\"r7\"}");
		char *err = NULL, *s;
		size_t off;
		struct expr *e;

		sc.run = run;
		e = expr_template("run ${run.id} in=${.}", &sc, &err, &off);
		s = e ? expr_render(e, NULL, &err) : NULL;
		is_str(s, "run r7 in=null", "NULL input renders as null");
		free(s);
		free(err);
		expr_free(e);
		json_decref(run);
	}
	{
		char *r = render_text("${.a.b}", "{\"a\":1}");
		ok(strncmp(r, "RUNERR:Cannot index number with ", 32) == 0,
		   "runtime error in a template: %s", r);
		free(r);
	}
	check_render("${.[]}", "[1,2]", "RUNERR:expression produced more than one output");
	{
		char *err = NULL;
		struct expr *e = expr_compile("{a: 1}", NULL, &err);
		json_t *in = json_null();
		char *s = expr_render(e, in, &err);

		ok(s == NULL && err && strstr(err, "not a string"),
		   "render of a non-string result fails: %s", err ? err : "");
		free(s);
		free(err);
		expr_free(e);
	}
}

static void test_numbers(void)
{
	char *err = NULL, *s;
	struct expr *e = expr_compile(".", NULL, &err);
	json_t *in, *r;

	in = json_real(19.99);
	r = expr_eval1(e, in, &err);
	ok(json_is_real(r), "19.99 stays a real");
	s = jsonw_dumps(r);
	is_str(s, "19.99", "19.99 round trip through jq");
	free(s);
	json_decref(r);
	json_decref(in);

	in = json_real(3.0);
	r = expr_eval1(e, in, &err);
	ok(json_is_integer(r) && json_integer_value(r) == 3, "integral double becomes integer");
	json_decref(r);
	json_decref(in);

	in = json_integer(9007199254740992LL);
	r = expr_eval1(e, in, &err);
	ok(json_is_integer(r) && json_integer_value(r) == 9007199254740992LL,
	   "2^53 stays an integer");
	json_decref(r);
	json_decref(in);

	in = json_real(1e20);
	r = expr_eval1(e, in, &err);
	ok(json_is_real(r) && json_real_value(r) == 1e20, "1e20 stays a real");
	json_decref(r);
	json_decref(in);

	in = json_integer(-7);
	r = expr_eval1(e, in, &err);
	ok(json_is_integer(r) && json_integer_value(r) == -7, "negative integer");
	json_decref(r);
	json_decref(in);
	expr_free(e);

	check_run(".a * 100 | round / 100", NULL, "{\"a\":19.99}", "[19.99]");
	check_run(".[0] + .[1]", NULL, "[0.1,0.2]", "[0.30000000000000004]");
	check_run("1.5 * 2, 7 / 2", NULL, "null", "[3,3.5]");
	check_run("[nan, infinite, -infinite]", NULL, "null", "[[null,null,null]]");
	check_run("9007199254740993", NULL, "null", "[9007199254740992]");
	check_run("pow(2;53) + 2", NULL, "null", "[9007199254740994]");
	/* Integers beyond 2^53 that pass through jq unchanged are restored. */
	check_run("{big, id}", NULL, "{\"id\":1,\"big\":9007199254740993}",
	          "[{\"big\":9007199254740993,\"id\":1}]");
	check_run(".[]", NULL, "[-9223372036854775807,1234567890123456789]",
	          "[-9223372036854775807,1234567890123456789]");
	/* Arithmetic on them is jq's double arithmetic. */
	check_run(".big + 2", NULL, "{\"big\":9007199254740993}", "[9007199254740994]");
	/* Two originals that round to the same double: left rounded. */
	check_run(".[0]", NULL, "[9007199254740993,9007199254740992]", "[9007199254740992]");
}

static void test_strings_objects(void)
{
	char *err = NULL, *s;
	struct expr *e = expr_compile(".", NULL, &err);
	json_t *in, *r;

	in = json_stringn("a\0b", 3);
	r = expr_eval1(e, in, &err);
	ok(json_is_string(r) && json_string_length(r) == 3 &&
	   memcmp(json_string_value(r), "a\0b", 3) == 0, "embedded NUL survives jq");
	json_decref(r);
	json_decref(in);

	in = json_object();
	json_object_setn_new(in, "k\0x", 3, json_integer(1));
	r = expr_eval1(e, in, &err);
	ok(r && json_object_getn(r, "k\0x", 3) != NULL, "key with NUL survives jq");
	json_decref(r);
	json_decref(in);

	in = J("{\"zeta\":1,\"alpha\":{\"y\":2,\"b\":3},\"mid\":[true,false,null]}");
	r = expr_eval1(e, in, &err);
	s = jsonw_dumps(r);
	is_str(s, "{\"zeta\":1,\"alpha\":{\"y\":2,\"b\":3},\"mid\":[true,false,null]}",
	       "key order and nesting kept");
	free(s);
	json_decref(r);
	json_decref(in);
	expr_free(e);

	check_run(". + {c: 3} | .zz = 1", NULL, "{\"b\":1,\"a\":2}",
	          "[{\"b\":1,\"a\":2,\"c\":3,\"zz\":1}]");
	check_run("\"\\u00e9\\u0000x\" | length", NULL, "null", "[3]");
	check_run(". | length", NULL, "\"caf\\u00e9\"", "[4]");
}

static void test_env_refs(void)
{
	json_t *names = json_array();
	char *s;

	expr_env_refs("${env.API_KEY} $ENV.TOKEN env[\"X_Y\"] $ENV[ \"Z1\" ] "
	              "env.API_KEY .env.NOT_ME myenv.NOPE envx.NO env . "
	              "${ env.API_KEY + $ENV.TOKEN }", names);
	s = jsonw_dumps(names);
	is_str(s, "[\"API_KEY\",\"TOKEN\",\"X_Y\",\"Z1\"]", "env refs found, distinct");
	free(s);
	expr_env_refs("env.TOKEN env.NEW", names);
	s = jsonw_dumps(names);
	is_str(s, "[\"API_KEY\",\"TOKEN\",\"X_Y\",\"Z1\",\"NEW\"]",
	       "appends only new names");
	free(s);
	json_decref(names);

	names = json_array();
	expr_env_refs("no refs here: .environment, $ENVIRON, env[.x]", names);
	is_int(json_array_size(names), 0, "no false positives");
	json_decref(names);
}

static void test_env_undefaulted(void)
{
	json_t *names = json_array();
	char *s;

	expr_env_undefaulted("a=${env.A}&b=${env.B // \"\"}&c=${$ENV.C | @uri}"
	                     "&d=${env.D // env.E}", true, names);
	s = jsonw_dumps(names);
	is_str(s, "[\"A\",\"C\",\"E\"]", "template: refs without a default");
	free(s);
	json_decref(names);
	names = json_array();
	expr_env_undefaulted("{token: env.T, opt: (env.O // null)}", false, names);
	s = jsonw_dumps(names);
	is_str(s, "[\"T\"]", "jq program: refs without a default");
	free(s);
	json_decref(names);
}

static void test_input_ref(void)
{
	is_int((long)expr_input_ref("http://x/${.id}", true), 11, "${.id}: at its dot");
	is_int((long)expr_input_ref("a${params.x}b${\"p\" + .name}", true), 21,
	       "second part: .name");
	is_int((long)expr_input_ref("${[.a, .b]}", true), 3, "in an array");
	is_int((long)expr_input_ref("${..}", true), 2, "recurse");
	is_int((long)expr_input_ref("{id: .id}", false), 5, "jq program: in an object");
	ok(expr_input_ref("${params.x}${env.Y}${run.id}${$ENV.Z}", true) == (size_t)-1,
	   "params, env, run: no record");
	ok(expr_input_ref("${params.list | map(.x) | join(\",\")}", true) == (size_t)-1,
	   "after a pipe and in arguments: not the record");
	ok(expr_input_ref("${\".id\"}${1.5}${(params).x}${params[\"a\"].b}", true) ==
	   (size_t)-1, "strings, numbers, postfix paths: not the record");
	ok(expr_input_ref("plain $${.id}", true) == (size_t)-1, "escaped $${ is text");
}

int main(void)
{
	test_env_undefaulted();
	test_input_ref();
	test_compile();
	test_run();
	test_eval1();
	test_scope();
	test_templates();
	test_numbers();
	test_strings_objects();
	test_env_refs();
	return done_testing();
}
