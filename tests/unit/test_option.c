/*
 * test_option: the option walker (core/option.c) on a table of every type:
 * defaults, values, bounds, required keys, unknown keys with and without a
 * suggestion, wrong types, templates and jq checked as they are read, the
 * free of what it stored; and, through config_load, the choice of a kind
 * by its role and selector (flat fetch: {url}/{file}, nested load:
 * {sqlite: {...}}) with the messages built from the registry.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config_load.h"
#include "core/option.h"
#include "core/option_ctx.h"
#include "core/stage.h"
#include "core/yaml.h"
#include "tap.h"

struct all {
	struct sval str, tmpl, jq;
	int i, b, inh_b, e;
	long long l, size;
	double dur, inh_dur;
	struct sval word;
	struct sval *list;
	size_t n_list;
	struct sval *tlist;
	size_t n_tlist;
	int custom_calls, custom_absent;
	char *custom;
};

static void read_custom(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                        const struct ynode *v, void *field, void *opts)
{
	struct all *a = opts;
	char **out = field;

	(void)c;
	(void)o;
	a->custom_calls++;
	if (!k || !v) {
		a->custom_absent++;
		return;
	}
	free(*out);
	*out = xstrdup(v->kind == YN_SCALAR ? v->s : "?");
}

static void free_custom(void *field)
{
	char **p = field;

	free(*p);
	*p = NULL;
}

static const char *const colours[] = { "red", "green", "blue", NULL };

#define A(f) offsetof(struct all, f)
static const struct opt table[] = {
	{ .key = "str", .type = OPT_STRING, .offset = A(str), .def = "dflt", .doc = "a string" },
	{ .key = "tmpl", .type = OPT_TEMPLATE, .offset = A(tmpl), .doc = "a template" },
	{ .key = "jq", .type = OPT_JQ, .offset = A(jq), .doc = "a jq program" },
	{ .key = "count", .type = OPT_INT, .offset = A(i), .def = "7", .min = 1, .max = 10,
	  .doc = "an int" },
	{ .key = "big", .type = OPT_LONG, .offset = A(l), .doc = "a long" },
	{ .key = "flag", .type = OPT_BOOL, .offset = A(b), .def = "true", .doc = "a bool" },
	{ .key = "inh_flag", .type = OPT_BOOL, .offset = A(inh_b), .flags = OPT_INHERIT,
	  .doc = "an inherited bool" },
	{ .key = "wait", .type = OPT_DURATION, .offset = A(dur), .def = "2s", .doc = "a duration" },
	{ .key = "inh_wait", .type = OPT_DURATION, .offset = A(inh_dur), .flags = OPT_INHERIT,
	  .doc = "an inherited duration" },
	{ .key = "size", .type = OPT_SIZE, .offset = A(size), .def = "1KiB", .doc = "a size" },
	{ .key = "colour", .type = OPT_ENUM, .offset = A(e), .def = "green", .words = colours,
	  .doc = "an enum" },
	{ .key = "word", .type = OPT_ENUM, .offset = A(word), .words = colours,
	  .flags = OPT_WORD, .doc = "an enum kept as its word" },
	{ .key = "list", .type = OPT_STRING_LIST, .offset = A(list), .n_offset = A(n_list),
	  .doc = "strings" },
	{ .key = "tlist", .type = OPT_TEMPLATE_LIST, .offset = A(tlist), .n_offset = A(n_tlist),
	  .doc = "templates" },
	{ .key = "custom", .type = OPT_CUSTOM, .offset = A(custom), .read = read_custom,
	  .free = free_custom, .shape = "anything", .doc = "a custom one" },
	{ .key = "need", .type = OPT_STRING, .offset = A(str), .flags = OPT_REQUIRED,
	  .doc = "required" },
	{ .key = NULL },
};

/* Walks text (a YAML mapping under key "thing:") through table into *a;
 * diagnostics into d. Returns what option_walk returned. */
static bool walk(const char *text, struct all *a, struct diags *d)
{
	struct spec s;
	struct opt_ctx c;
	struct ynode *root;
	const struct ynode *k = NULL, *m;
	bool r = false;

	memset(&s, 0, sizeof(s));
	memset(&c, 0, sizeof(c));
	memset(a, 0, sizeof(*a));
	s.path = (char *)"t.yaml";
	s.text = (char *)text;
	s.text_len = strlen(text);
	c.s = &s;
	c.d = d;
	c.text.file = s.path;
	c.text.text = s.text;
	c.text.len = s.text_len;
	root = ytree_parse(&c.text, d, 64);
	if (root && (m = ynode_get(root, "thing", &k)))
		r = option_walk(&c, table, k, m, "\"thing\"", "in thing", false, a);
	ynode_free(root);
	opt_ctx_release(&c);
	return r;
}

/* True when d holds msg at line:col. */
static bool has(const struct diags *d, const char *msg, int line, int col)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (strcmp(d->v[i].msg, msg) == 0 && d->v[i].line == line && d->v[i].col == col)
			return true;
	for (i = 0; i < d->n; i++)
		printf("# have %d:%d: %s\n", d->v[i].line, d->v[i].col, d->v[i].msg);
	return false;
}

static void test_values(void)
{
	struct diags d = { 0 };
	struct all a;
	bool r = walk("thing:\n"
	              "  need: x\n"
	              "  tmpl: \"a/${params.p // 1}\"\n"
	              "  jq: .a | length\n"
	              "  count: 10\n"
	              "  big: -9000000000\n"
	              "  flag: false\n"
	              "  inh_flag: true\n"
	              "  wait: 250ms\n"
	              "  size: 2MiB\n"
	              "  colour: blue\n"
	              "  word: red\n"
	              "  list: [a, b, c]\n"
	              "  tlist: one\n"
	              "  custom: hello\n", &a, &d);

	ok(r, "a mapping is walked");
	is_int(d.n, 0, "no diagnostics for good values");
	is_str(a.str.s, "x", "string (the later option of the same field wins)");
	is_str(a.tmpl.s, "a/${params.p // 1}", "template");
	is_int(a.tmpl.pos.line, 3, "template keeps its line");
	is_int(a.tmpl.pos.col, 9, "template keeps its column");
	is_str(a.jq.s, ".a | length", "jq");
	is_int(a.i, 10, "int at its upper bound");
	ok(a.l == -9000000000LL, "long beyond int");
	is_int(a.b, 0, "bool false");
	is_int(a.inh_b, 1, "inherited bool given");
	ok(a.dur == 0.25, "duration 250ms");
	ok(a.inh_dur == -1, "inherited duration absent: -1");
	ok(a.size == 2 << 20, "size 2MiB");
	is_int(a.e, 2, "enum index");
	is_str(a.word.s, "red", "enum kept as its word");
	is_int(a.n_list, 3, "list of three");
	is_str(a.list[2].s, "c", "list item");
	is_int(a.n_tlist, 1, "a scalar is a list of one");
	is_str(a.custom, "hello", "custom read hook");
	is_int(a.custom_calls, 1, "the hook runs once");
	option_free(table, &a);
	ok(a.tmpl.s == NULL && a.list == NULL && a.n_list == 0 && a.custom == NULL,
	   "option_free frees strings, lists and custom fields");
	diags_free(&d);
}

static void test_defaults(void)
{
	struct diags d = { 0 };
	struct all a;
	bool r = walk("thing:\n  need: x\n", &a, &d);

	ok(r && d.n == 0, "defaults: no diagnostics");
	is_int(a.i, 7, "int default");
	is_int(a.b, 1, "bool default true");
	is_int(a.inh_b, -1, "inherited bool absent: -1");
	ok(a.dur == 2, "duration default 2s");
	ok(a.size == 1024, "size default 1KiB");
	is_int(a.e, 1, "enum default green");
	ok(a.word.s == NULL, "a word enum absent stays NULL");
	is_int(a.custom_absent, 1, "the custom hook is called once for an absent key");
	ok(a.tmpl.s == NULL && a.n_list == 0, "no default: unset");
	option_free(table, &a);
	diags_free(&d);

	r = walk("thing:\n", &a, &d);
	ok(r, "null reads as an empty mapping");
	ok(has(&d, "missing required key \"need\" in thing", 1, 1),
	   "a required key: missing, at the key of the empty mapping");
	option_free(table, &a);
	diags_free(&d);
}

static void test_errors(void)
{
	struct diags d = { 0 };
	struct all a;
	bool r = walk("thing:\n"
	              "  count: 11\n"
	              "  big: x\n"
	              "  flag: yes\n"
	              "  wait: 5\n"
	              "  size: 0\n"
	              "  colour: gren\n"
	              "  word: purple\n"
	              "  list: {a: 1}\n"
	              "  tmpl: \"${nope\"\n"
	              "  jq: \"(\"\n"
	              "  strr: 1\n"
	              "  zzzzzz: 1\n", &a, &d);

	ok(r, "a mapping with errors is still walked");
	ok(has(&d, "invalid value 11 for \"count\": expected an integer from 1 to 10", 2, 10),
	   "int above its bound");
	ok(has(&d, "expected an integer for \"big\", got a string", 3, 8), "long: wrong type");
	ok(has(&d, "expected a boolean (true or false) for \"flag\", got a string", 4, 9),
	   "bool: YAML 1.1 yes is no boolean");
	ok(has(&d, "invalid duration \"5\": expected a number followed by ms, s, m or h", 5, 9),
	   "duration without a unit");
	ok(has(&d, "invalid size \"0\": must be at least 1 byte", 6, 9), "size 0");
	ok(has(&d, "invalid colour \"gren\": expected one of red, green, blue "
	       "(did you mean \"green\"?)", 7, 11), "enum with a suggestion");
	ok(has(&d, "invalid word \"purple\": expected one of red, green, blue", 8, 9),
	   "enum without a suggestion");
	ok(has(&d, "expected a string or a sequence of strings for \"list\", got a mapping", 9, 9),
	   "list: wrong type");
	ok(d.n > 0 && has(&d, "unknown key \"strr\" in thing (did you mean \"str\"?)", 12, 3),
	   "unknown key with a suggestion");
	ok(has(&d, "unknown key \"zzzzzz\" in thing", 13, 3), "unknown key without one");
	ok(has(&d, "missing required key \"need\" in thing", 2, 3),
	   "missing required key at the mapping");
	{
		size_t i, tmpl = 0, jq = 0;
		for (i = 0; i < d.n; i++) {
			tmpl += strncmp(d.v[i].msg, "invalid template in \"tmpl\"", 26) == 0;
			jq += strncmp(d.v[i].msg, "invalid jq expression in \"jq\"", 29) == 0;
		}
		is_int(tmpl, 1, "a bad template is reported as it is read");
		is_int(jq, 1, "a bad jq expression is reported as it is read");
	}
	is_int(d.n, 13, "thirteen errors, nothing else");
	is_int(a.i, 7, "an invalid value leaves the default");
	option_free(table, &a);
	diags_free(&d);

	r = walk("thing: [1, 2]\n", &a, &d);
	ok(!r, "a sequence is no mapping: false");
	ok(has(&d, "expected a mapping for \"thing\", got a sequence", 1, 8), "and it says so");
	option_free(table, &a);
	diags_free(&d);
}

static char tmpdir[] = "/tmp/test_option.XXXXXX";

static struct spec *load(const char *text, struct diags *d)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/p.yaml", tmpdir);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
	return config_load(path, d);
}

static void test_selectors(void)
{
	struct diags d = { 0 };
	struct spec *s = load("pipeline: p\nstages:\n"
	                      "  a: {fetch: {url: http://x/}}\n"
	                      "  b: {fetch: {file: in.jsonl}}\n"
	                      "  t: {needs: a, transform: {jq: .}}\n"
	                      "  l: {needs: t, load: {sqlite: {path: o.db, table: x}}}\n"
	                      "  o: {needs: t, load: {stdout: }}\n", &d);
	const struct stage_kind *k;
	struct buf want;
	size_t i, n = 0, m = 0;

	if (ok(s != NULL, "flat and nested kinds read")) {
		is_str(s->stages[0].kind->name, "fetch.http", "fetch: {url} is fetch.http");
		is_str(s->stages[1].kind->name, "fetch.file", "fetch: {file} is fetch.file");
		is_str(s->stages[2].kind->name, "transform", "transform has no selector");
		is_str(s->stages[3].kind->name, "load.sqlite", "load: {sqlite: {...}} nests");
		is_str(s->stages[4].kind->name, "load.stdout", "load: {stdout: } (null) nests");
		ok(stage_kind_find("fetch", "url") == s->stages[0].kind, "found by role and selector");
		ok(stage_kind_by_name("load.sqlite") == s->stages[3].kind, "found by name");
	}
	spec_free(s);
	diags_free(&d);

	/* The message lists the registry's load selectors. */
	buf_init(&want);
	for (i = 0; stage_kinds[i]; i++)
		n += strcmp(stage_kinds[i]->role, "load") == 0;
	buf_adds(&want, "load needs one of ");
	for (i = 0; (k = stage_kinds[i]); i++) {
		if (strcmp(k->role, "load") != 0)
			continue;
		m++;
		buf_printf(&want, "%s\"%s\"", m == 1 ? "" : m == n ? " or " : ", ", k->selector);
	}
	s = load("pipeline: p\nstages:\n"
	         "  a: {fetch: {url: http://x/}}\n"
	         "  l:\n    needs: a\n    load: {}\n", &d);
	ok(s == NULL && d.n == 1 && strcmp(d.v[0].msg, want.data) == 0,
	   "no selector: \"%s\" (from the registry)", want.data);
	buf_free(&want);
	spec_free(s);
	diags_free(&d);

	s = load("pipeline: p\nstages:\n"
	         "  a: {fetch: {url: http://x/}}\n"
	         "  l: {needs: a, load: {sqlite: {path: o.db, tabel: x}}}\n", &d);
	ok(s == NULL && d.n == 2 && has(&d, "missing required key \"table\" in sqlite", 4, 32) &&
	   has(&d, "unknown key \"tabel\" in sqlite (did you mean \"table\"?)", 4, 45),
	   "a nested kind's keys are checked against its own table");
	spec_free(s);
	diags_free(&d);

	s = load("pipeline: p\nstages:\n"
	         "  a: {fetch: {file: in.jsonl, headers: {X: y}}}\n", &d);
	ok(s == NULL && d.n == 1 && has(&d, "\"headers\" is only allowed with \"url\"", 3, 31),
	   "a flat kind: another kind's key is only allowed with that kind's selector");
	spec_free(s);
	diags_free(&d);
}

static void test_json(void)
{
	json_t *all = stage_kinds_json(), *k, *o;
	size_t i, j, n_opts = 0;
	bool complete = true;

	is_int(json_array_size(all), (long long)({ size_t x = 0; while (stage_kinds[x]) x++; x; }),
	       "one entry per kind");
	json_array_foreach(all, i, k) {
		json_array_foreach(json_object_get(k, "options"), j, o) {
			n_opts++;
			if (!json_string_value(json_object_get(o, "key")) ||
			    !json_string_value(json_object_get(o, "type")) ||
			    !*json_string_value(json_object_get(o, "doc")))
				complete = false;
		}
	}
	ok(n_opts > 20 && complete, "every option has a key, a type and a doc (%zu options)",
	   n_opts);
	json_decref(all);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	test_values();
	test_defaults();
	test_errors();
	test_selectors();
	test_json();
	{
		char p[600];
		snprintf(p, sizeof(p), "%s/p.yaml", tmpdir);
		unlink(p);
		rmdir(tmpdir);
	}
	return done_testing();
}
