/*
 * test_project: the fast path for simple jq programs (expr/project.h)
 * against libjq. Each program of the subset runs on many inputs (hand-made
 * and random: missing keys, nulls, nesting, arrays, big integers, integral
 * reals, unicode and odd keys, invalid UTF-8, non-object inputs) once with
 * the fast path and once through jq (expr_set_fast_path(false)); outputs,
 * their order, number types and error texts must be the same. Programs
 * outside the subset must be rejected by the fast parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "expr/project.h"
#include "base/util.h"
#include "tap.h"

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);

	if (!v) {
		printf("Bail out! bad test JSON %s: %s\n", text, je.text);
		exit(1);
	}
	return v;
}

/* Exact text of a value: key order as is, 1.0 and 1 told apart. */
static char *dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));

	return s ? s : xstrdup("(undumpable)");
}

/* Runs e on in with expr_run and expr_eval1; returns a text holding both
 * results (outputs or error text). Caller frees. */
static char *run_both(struct expr *e, const json_t *in)
{
	json_t *out = json_array(), *one;
	char *err = NULL, *o, *r1, *s;
	int rc = expr_run(e, in, out, &err);

	o = dump(out);
	s = xasprintf("run:%d:%s:%s", rc, o, err ? err : "");
	free(o);
	free(err);
	err = NULL;
	one = expr_eval1(e, in, &err);
	r1 = one ? dump(one) : xasprintf("ERR %s", err);
	o = xasprintf("%s | eval1:%s", s, r1);
	free(s);
	free(r1);
	free(err);
	json_decref(one);
	json_decref(out);
	return o;
}

static json_t **inputs;
static size_t n_inputs;

static void add_input(json_t *v)
{
	static size_t cap;

	xgrow(&inputs, &cap, n_inputs + 1, sizeof(*inputs));
	inputs[n_inputs++] = v;
}

/* ------------------------------------------------------------ random */

static uint64_t rng = 88172645463325252ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static const char *const keys[] = {
	"a", "b", "c", "id", "items", "meta", "x", "k k", "\xc3\xa9t\xc3\xa9", "",
	"warehouse", "price",
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static json_t *rand_value(int depth)
{
	json_t *v;
	unsigned i, n;

	switch (rnd(depth > 3 ? 7 : 10)) {
	case 0: return json_null();
	case 1: return json_boolean(rnd(2));
	case 2: return json_integer((json_int_t)rnd(2000) - 1000);
	case 3:
		switch (rnd(6)) {
		case 0: return json_integer(9007199254740993LL);
		case 1: return json_integer(-9007199254740992LL);
		case 2: return json_integer(INT64_MAX);
		case 3: return json_integer(9007199254740991LL);
		case 4: return json_real(9007199254740992.0);
		default: return json_integer(1LL << 60);
		}
	case 4: return json_real((double)rnd(100) / 4.0);      /* integral or not */
	case 5: return json_real(-0.0);
	case 6: return json_string(keys[rnd(N_KEYS)]);
	case 7:
	case 8:
		v = json_object();
		n = rnd(5);
		for (i = 0; i < n; i++)
			json_object_set_new(v, keys[rnd(N_KEYS)], rand_value(depth + 1));
		return v;
	default:
		v = json_array();
		n = rnd(4);
		for (i = 0; i < n; i++)
			json_array_append_new(v, rand_value(depth + 1));
		return v;
	}
}

/* A random path of the subset appended to b; no [] when !iter. */
static void rand_path(struct buf *b, bool iter)
{
	unsigned n = rnd(4), i;
	const char *k;

	buf_addc(b, '.');
	for (i = 0; i < n; i++) {
		unsigned f = rnd(iter ? 5 : 4);
		k = keys[rnd(5)];
		if (f == 4) {
			buf_adds(b, "[]");
			continue;
		}
		if (f == 2)
			buf_printf(b, "[\"%s\"]", k);
		else if (f == 3)
			buf_printf(b, "%s\"%s\"", i ? "." : "", k);
		else
			buf_printf(b, "%s%s", i ? "." : "", k);
	}
}

/* A random program of the subset. Caller frees. */
static char *rand_program(void)
{
	struct buf b;
	unsigned terms = 1 + rnd(3), t, n, i;

	buf_init(&b);
	for (t = 0; t < terms; t++) {
		if (t)
			buf_adds(&b, rnd(2) ? " | " : "|");
		if (rnd(3) == 0) {
			n = rnd(4);
			buf_addc(&b, '{');
			for (i = 0; i < n; i++) {
				const char *k = keys[rnd(6)];
				if (i)
					buf_adds(&b, ", ");
				switch (rnd(3)) {
				case 0:
					buf_adds(&b, k);
					break;
				case 1:
					buf_printf(&b, "\"%s\": ", keys[rnd(N_KEYS)]);
					rand_path(&b, false);
					break;
				default:
					buf_printf(&b, "%s: ", k);
					rand_path(&b, false);
					break;
				}
			}
			buf_addc(&b, '}');
		} else {
			rand_path(&b, true);
		}
	}
	buf_addc(&b, '\0');
	return buf_steal(&b);
}

/* ------------------------------------------------------------ checks */

/* Compares the fast path and jq for src on every input. Returns true when
 * all agree; prints the first difference. */
static bool same_as_jq(const char *src)
{
	struct expr *fast, *slow;
	struct project *p;
	char *err = NULL;
	const char *q;
	size_t i;
	bool same = true, iter_then;

	expr_set_fast_path(false);
	slow = expr_compile(src, NULL, &err);
	expr_set_fast_path(true);
	if (!slow) {
		printf("#   jq does not compile %s: %s\n", src, err);
		free(err);
		return false;
	}
	fast = expr_compile(src, NULL, &err);
	p = project_parse(src);
	/* libjq 1.6 leaks a key when an error ends an iteration over an object
	 * (.[][] on {"a": 5}): a program that can fail after a [] runs only on
	 * inputs it handles without jq, so the sanitizer build stays quiet.
	 * Programs failing at or without [] cover the fallback. */
	iter_then = (q = strstr(src, "[]")) && q[2] != '\0' && strcmp(q + 2, " ") != 0;
	for (i = 0; fast && i < n_inputs && same; i++) {
		char *a, *b;
		if (iter_then && p) {
			json_t *tmp = json_array();
			int declined = project_run(p, inputs[i], tmp) != 0;
			json_decref(tmp);
			if (declined)
				continue;
		}
		a = run_both(fast, inputs[i]);
		b = run_both(slow, inputs[i]);
		if (strcmp(a, b) != 0) {
			char *in = dump(inputs[i]);
			printf("#   %s on %s\n#   fast: %s\n#   jq:   %s\n", src, in, a, b);
			free(in);
			same = false;
		}
		free(a);
		free(b);
	}
	expr_free(fast);
	expr_free(slow);
	project_free(p);
	return same;
}

static const char *const subset[] = {
	".", " . ", ".a", ".a.b", ".a.b.c", ".\"a\"", ".[\"a\"]", ".a[\"b\"]", ".a.\"b\"",
	".\"k k\"", ".[\"k k\"]", ".\"\xc3\xa9t\xc3\xa9\"", ".[\"\"]", ".and_more", ".id",
	".[]", ".items[]", ".a.b[]", ".a[][]", ".[][]", ".a[].b", ".items[].id",
	"{}", "{a}", "{a, b}", "{\"a\"}", "{\"k k\"}", "{a: .b}", "{a: .b.c, b: .a}",
	"{\"k\": .x}", "{id, sku, price, qty, warehouse: .meta.warehouse}",
	"{a, a: .b}", "{b: .a, a: .b, c}",
	"{x: .}", "{x: .[\"a\"], y: .a.\"b\"}", "{ a , b : .c }",
	". | .a", ".a | .b", ".items[] | {id, x}", "{a} | .a", "{a, b} | .[]",
	".[] | .a", ".items[] | .[]", "{a: .a} | {b: .a} | .b", ".a|.b|.c",
	"{items} | .items[]", ".\n|\n.a",
};

static const char *const outside[] = {
	"", "..", ".a?", ".[0]", ".a[0]", ".[\"a\"]?", ".a.[\"b\"]", ". a", ".a .b",
	".a []", ".[ ]", ".[ \"a\" ]", "{a: .b[]}", "{a: 1}", "{a: .b | .c}", "{$x}",
	"{(.a): 1}", "{@base64: .a}", "{a,}", "{,}", ".a, .b", "[.a]", ".a // 1",
	"map(.a)", "params", "run.id", "env.HOME", ".a as $x | $x", ".\"a\\\"b\"",
	".\"\\u00e9\"", "{\"a\\n\": .a}", ".if", "{if}", "{and: .a}", ".__loc__",
	"$__loc__", "{a::b}", ".a::b", ".a # comment", "# c\n.a", ".a | ", "| .a",
	".a |", "{a: .b,}", "{a b}", ".a | 1", "not", ".a and .b", "-.a", ".a + 1",
	"{\"a\": .b, c: .d[]}", ".1", ".a1.", ".a.", "{a: .}?", ".\"a", "{a",
	".a\x01", ".\"\x01\"", ".\"\xff\"", "empty", "error", ".a$x", ".a\"b\"",
};

static void test_parse(void)
{
	size_t i;

	for (i = 0; i < sizeof(subset) / sizeof(subset[0]); i++) {
		struct project *p = project_parse(subset[i]);
		char *d = xstrdup(subset[i]), *q;
		for (q = d; *q; q++)
			if (*q == '\n')
				*q = '_';
		ok(p != NULL, "in the subset: %s", d);
		free(d);
		project_free(p);
	}
	for (i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		struct project *p = project_parse(outside[i]);
		char *d = xstrdup(outside[i]), *q;
		for (q = d; *q; q++)
			if (*q == '#' || (unsigned char)*q < 0x20 || (unsigned char)*q >= 0x80)
				*q = '_';
		ok(p == NULL, "outside the subset: %s", d);
		free(d);
		project_free(p);
	}
}

static void add_inputs(void)
{
	static const char *const hand[] = {
		"null", "true", "1", "1.5", "\"s\"", "[]", "{}", "[1,2,3]",
		"{\"a\":1}", "{\"a\":null}", "{\"a\":{\"b\":2}}", "{\"a\":{\"b\":null}}",
		"{\"a\":{\"b\":{\"c\":[1,{\"d\":2}]}}}", "{\"a\":[1,2]}", "{\"a\":\"str\"}",
		"{\"a\":5,\"b\":[]}", "{\"b\":2,\"a\":1,\"c\":3}",
		"{\"a\":9007199254740993,\"b\":9007199254740992.0}",
"{\"a\":9223372036854775807}",
		"{\"a\":-9007199254740993,\"b\":1}", "{\"a\":1.0,\"b\":-0.0,\"c\":2.50,\"x\":1e300}",
		"{\"a\":[1.0,2.5,{\"b\":3.0}],\"b\":{\"c\":4.0,\"d\":\"x\"}}",
		"{\"items\":[{\"id\":1,\"x\":2},{\"id\":2},null,{\"id\":3.0}]}",
		"{\"items\":{\"q\":{\"id\":1},\"p\":{\"id\":2}}}",
		"{\"items\":[1,2]}", "{\"items\":null}", "{\"items\":\"no\"}",
		"{\"k k\":1,\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\",\"\":0}",
		"{\"a\":\"nul\\u0000in\",\"b\":\"\\ud83d\\ude00\"}",
		"{\"id\":7,\"sku\":\"SKU-0000007\",\"name\":\"Product 7\",\"price\":7.07,\"qty\":7,"
		"\"tags\":[\"x\",\"y\"],\"meta\":{\"warehouse\":\"w7\",\"updated\":\"2026\"}}",
		"{\"id\":0,\"price\":0.00,\"meta\":{}}", "{\"id\":1,\"meta\":null}",
		"{\"id\":1,\"meta\":[1]}",
		"{\"a\":{\"a\":{\"a\":{\"a\":1}}},\"b\":{\"b\":[[],[[]],{}]}}",
		"{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,"
		"\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,"
		"\"k16\":16,\"k17\":17,\"a\":{\"z\":1,\"y\":2,\"x\":3,\"w\":4,\"v\":5,\"u\":6,"
		"\"t\":7,\"s\":8,\"r\":9,\"q\":10}}",
		"[[1,2],[3]]", "[{\"a\":1},{\"a\":2}]", "[{\"a\":1},3]",
	};
	json_t *o;
	size_t i;

	for (i = 0; i < sizeof(hand) / sizeof(hand[0]); i++)
		add_input(J(hand[i]));
	/* Strings that are not valid UTF-8 (jq replaces the bad bytes). */
	o = json_object();
	json_object_set_new(o, "a", json_stringn_nocheck("ab\xff", 3));
	json_object_set_new(o, "b", json_stringn_nocheck("\xed\xa0\x80", 3));
	add_input(o);
	o = json_object();
	json_object_set_new_nocheck(o, "\xc0\xaf", json_integer(1));
	json_object_set_new(o, "a", json_integer(2));
	add_input(o);
	add_input(NULL);               /* NULL is null */
	for (i = 0; i < 300; i++)
		add_input(rand_value(0));
}

static void test_differential(void)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < sizeof(subset) / sizeof(subset[0]); i++) {
		char *d = xstrdup(subset[i]), *q;
		for (q = d; *q; q++)
			if (*q == '\n')
				*q = '_';
		ok(same_as_jq(subset[i]), "same as jq: %s", d);
		free(d);
	}
	/* Random programs of the subset. */
	for (i = 0; i < 150; i++) {
		char *src = rand_program();
		struct project *p = project_parse(src);
		if (!p) {
			printf("#   generated program rejected: %s\n", src);
			bad++;
		} else if (!same_as_jq(src)) {
			bad++;
		}
		project_free(p);
		free(src);
	}
	is_int(bad, 0, "150 random programs of the subset: accepted, same as jq");
	/* Programs outside the subset still run (through jq). */
	ok(same_as_jq(".a?"), "outside the subset runs through jq: .a?");
	ok(same_as_jq("{a: .b[]}"), "outside the subset runs through jq: {a: .b[]}");
}

/* The fast path really runs: outputs share the input's values (jq makes new
 * ones), and a wrong type gets jq's own error text. */
static void test_fast(void)
{
	json_t *in = J("{\"a\":{\"x\":[1,2]},\"b\":\"s\",\"n\":5}"), *out = json_array();
	char *err = NULL;
	struct expr *e = expr_compile("{a, b} | .a", NULL, &err);

	ok(e && expr_run(e, in, out, &err) == 0, "projection runs");
	ok(json_array_size(out) == 1 && json_array_get(out, 0) == json_object_get(in, "a"),
	   "output shares the input's value");
	expr_free(e);
	json_array_clear(out);
	e = expr_compile(".", NULL, &err);
	ok(e && expr_run(e, in, out, &err) == 0 && json_array_get(out, 0) == in,
	   "identity returns the input itself");
	expr_free(e);
	json_array_clear(out);
	e = expr_compile(".n.x", NULL, &err);
	ok(e && expr_run(e, in, out, &err) == -1, "indexing a number fails");
	is_str(err, "Cannot index number with string \"x\"", "with jq's error text");
	free(err);
	err = NULL;
	expr_free(e);
	e = expr_compile(".b[]", NULL, &err);
	ok(e && expr_run(e, in, out, &err) == -1, "iterating a string fails");
	is_str(err, "Cannot iterate over string (\"s\")", "with jq's error text");
	free(err);
	expr_free(e);
	json_decref(out);
	json_decref(in);
}

int main(void)
{
	size_t i;

	add_inputs();
	test_parse();
	test_fast();
	test_differential();
	for (i = 0; i < n_inputs; i++)
		json_decref(inputs[i]);
	free(inputs);
	return done_testing();
}
