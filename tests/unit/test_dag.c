/*
 * test_dag: the stage graph built from hand-made specs (independent of the
 * YAML reader): topological order, fan-in and fan-out, deduplicated edges,
 * unknown needs and the text and position of cycle reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dag.h"
#include "core/stage.h"
#include "tap.h"

/*
 * Builds a spec from lines "id:need,need". Stage i is at line 10*(i+1),
 * column 3; its j-th needs entry at that line, column 20+5*j.
 */
static struct spec *mkspec(const char *const *lines, size_t n)
{
	struct spec *s = xcalloc(1, sizeof(*s));
	size_t i;

	s->path = xstrdup("p.yaml");
	s->params = json_object();
	s->stages = xcalloc(n, sizeof(*s->stages));
	s->n_stages = n;
	for (i = 0; i < n; i++) {
		struct stage_spec *st = &s->stages[i];
		const char *colon = strchr(lines[i], ':');
		const char *p = colon + 1;

		st->id = xstrndup(lines[i], (size_t)(colon - lines[i]));
		st->pos = (struct pos){ s->path, 10 * (int)(i + 1), 3 };
		st->kind = stage_kind_by_name("transform");
		while (*p) {
			size_t len = strcspn(p, ",");
			st->needs = xrealloc(st->needs, (st->n_needs + 1) * sizeof(*st->needs));
			st->needs[st->n_needs].s = xstrndup(p, len);
			st->needs[st->n_needs].pos =
				(struct pos){ s->path, 10 * (int)(i + 1), 20 + 5 * (int)st->n_needs };
			st->n_needs++;
			p += len + (p[len] == ',');
		}
	}
	return s;
}

/* The order as "a b c". */
static char *order_text(const struct spec *s, const struct dag *g)
{
	struct buf b;
	size_t i;

	buf_init(&b);
	for (i = 0; i < g->n; i++)
		buf_printf(&b, "%s%s", i ? " " : "", s->stages[g->order[i]].id);
	return buf_steal(&b);
}

static void check_order(const char *const *lines, size_t n, const char *want,
                        const char *what)
{
	struct spec *s = mkspec(lines, n);
	struct diags d = { 0 };
	struct dag *g = dag_build(s, &d);

	if (ok(g != NULL && d.n == 0, "%s: builds", what)) {
		char *o = order_text(s, g);
		is_str(o, want, "%s: order", what);
		free(o);
	}
	dag_free(g);
	spec_free(s);
	diags_free(&d);
}

static void test_order(void)
{
	static const char *const linear[] = { "load:t", "t:f", "f:" };
	static const char *const indep[] = { "c:", "a:", "b:" };
	static const char *const stable[] = { "x:z", "y:", "z:" };
	static const char *const diamond[] = {
		"src:", "left:src", "right:src", "join:left,right", "out:join",
	};
	static const char *const fanin[] = { "u:", "v:", "w:", "all:w,u,v", "late:" };

	check_order(linear, 3, "f t load", "linear chain written backwards");
	check_order(indep, 3, "c a b", "independent stages keep file order");
	check_order(stable, 3, "y z x", "ready stages are taken in file order");
	check_order(diamond, 5, "src left right join out", "diamond");
	check_order(fanin, 5, "u v w all late",
	            "fan-in: ready once its last upstream is placed");
}

static void test_edges(void)
{
	static const char *const lines[] = { "a:", "b:a,a", "c:a", "d:b,c,a" };
	struct spec *s = mkspec(lines, 4);
	struct diags d = { 0 };
	struct dag *g = dag_build(s, &d);

	if (!ok(g != NULL, "graph builds")) {
		spec_free(s);
		diags_free(&d);
		return;
	}
	is_int(g->n, 4, "n");
	is_int(g->n_up[1], 1, "duplicate needs give one edge");
	is_int(g->n_up[3], 3, "d has three upstreams");
	is_int(g->up[3][0], 1, "up[d][0] is b (needs order)");
	is_int(g->up[3][2], 0, "up[d][2] is a");
	is_int(g->n_down[0], 3, "a feeds three stages");
	is_int(g->down[0][0], 1, "down[a] in file order: b");
	is_int(g->down[0][1], 2, "down[a] in file order: c");
	is_int(g->down[0][2], 3, "down[a] in file order: d");
	is_int(g->n_down[3], 0, "d feeds nothing");
	is_int(g->n_up[0], 0, "a needs nothing");
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	lives_ok(dag_free(NULL), "dag_free(NULL) is a no-op");
}

/* Fetch stages may have needs (fan-out): they are ordered and checked like
 * any other stage. */
static void test_fanout(void)
{
	static const char *const lines[] = { "out:details", "details:ids", "ids:" };
	static const char *const loop[] = { "a:c", "b:a", "c:b" };
	struct spec *s = mkspec(lines, 3);
	struct diags d = { 0 };
	struct dag *g;
	char *o;

	s->stages[1].kind = stage_kind_by_name("fetch.http");
	s->stages[2].kind = stage_kind_by_name("fetch.http");
	g = dag_build(s, &d);
	if (ok(g != NULL && d.n == 0, "fan-out fetch stage: builds")) {
		o = order_text(s, g);
		is_str(o, "ids details out", "fan-out fetch stage comes after its upstream");
		free(o);
		is_int(g->n_up[1], 1, "the fetch stage has one upstream");
		is_int(g->up[1][0], 2, "its upstream is ids");
		is_int(g->n_down[2], 1, "ids feeds the fetch stage");
	}
	dag_free(g);
	spec_free(s);
	diags_free(&d);

	s = mkspec(loop, 3);
	s->stages[0].kind = stage_kind_by_name("fetch.http");
	g = dag_build(s, &d);
	ok(g == NULL && d.n == 1 && strcmp(d.v[0].msg, "cycle: a → b → c → a") == 0,
	   "a cycle through a fetch stage is reported");
	dag_free(g);
	spec_free(s);
	diags_free(&d);
}

/* Builds lines; expects NULL and exactly the messages want[] (in report
 * order) at the given lines and columns. */
static void check_errors(const char *const *lines, size_t n, const char *const *want,
                         const int *at, size_t n_want, const char *what)
{
	struct spec *s = mkspec(lines, n);
	struct diags d = { 0 };
	struct dag *g = dag_build(s, &d);
	size_t i;

	ok(g == NULL, "%s: no graph", what);
	is_int(d.n, n_want, "%s: %zu diagnostics", what, n_want);
	for (i = 0; i < n_want && i < d.n; i++) {
		is_str(d.v[i].msg, want[i], "%s: message %zu", what, i);
		is_int(d.v[i].line, at[2 * i], "%s: line of %zu", what, i);
		is_int(d.v[i].col, at[2 * i + 1], "%s: column of %zu", what, i);
		is_str(d.v[i].file, "p.yaml", "%s: file of %zu", what, i);
	}
	dag_free(g);
	spec_free(s);
	diags_free(&d);
}

static void test_errors(void)
{
	{
		static const char *const l[] = { "orders:", "clean:order", "save:clean,zzz" };
		static const char *const w[] = {
			"unknown stage \"order\" in needs of \"clean\" (did you mean \"orders\"?)",
			"unknown stage \"zzz\" in needs of \"save\"",
		};
		static const int at[] = { 20, 20, 30, 25 };
		check_errors(l, 3, w, at, 2, "unknown needs");
	}
	{
		static const char *const l[] = { "a:", "b:a,b" };
		static const char *const w[] = { "cycle: b → b" };
		static const int at[] = { 20, 25 };
		check_errors(l, 2, w, at, 1, "self need");
	}
	{
		/* data flows a -> b -> c -> a; reported at a's needs entry "c" */
		static const char *const l[] = { "src:", "a:src,c", "b:a", "c:b", "tail:c" };
		static const char *const w[] = { "cycle: a → b → c → a" };
		static const int at[] = { 20, 25 };
		check_errors(l, 5, w, at, 1, "three-cycle");
	}
	{
		/* the cycle is printed from its first stage in the file */
		static const char *const l[] = { "x:", "c:b", "a:c", "b:a,x" };
		static const char *const w[] = { "cycle: c → a → b → c" };
		static const int at[] = { 20, 20 };
		check_errors(l, 4, w, at, 1, "cycle starting at its first stage");
	}
	{
		static const char *const l[] = { "p:q", "q:p", "r:s", "s:r" };
		static const char *const w[] = { "cycle: p → q → p", "cycle: r → s → r" };
		static const int at[] = { 10, 20, 30, 20 };
		check_errors(l, 4, w, at, 2, "two separate cycles");
	}
	{
		static const char *const l[] = { "a:b", "b:a,nope" };
		static const char *const w[] = {
			"unknown stage \"nope\" in needs of \"b\"",
			"cycle: a → b → a",
		};
		static const int at[] = { 20, 25, 10, 20 };
		check_errors(l, 2, w, at, 2, "unknown need and a cycle");
	}
}

/* Lines of n stages: each needs `need(i)` (a malloc'd "a,b" list). */
static char **big_lines(size_t n, char *(*need)(size_t))
{
	char **l = xcalloc(n, sizeof(*l));
	size_t i;

	for (i = 0; i < n; i++) {
		char *x = need(i);
		l[i] = xasprintf("s%zu:%s", i, x);
		free(x);
	}
	return l;
}

static void free_lines(char **l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

#define BIG 20000

/* s0 is needed by every stage, each stage also needs the one before it,
 * twice: one fan-out of BIG - 1 and BIG - 1 repeated needs. */
static char *need_star_chain(size_t i)
{
	return i == 0 ? xstrdup("") : i == 1 ? xstrdup("s0,s0") :
	       xasprintf("s0,s%zu,s%zu", i - 1, i - 1);
}

/* A chain whose first stage needs its last. */
static char *need_ring(size_t i)
{
	return xasprintf("s%zu", i == 0 ? (size_t)BIG / 4 - 1 : i - 1);
}

static void test_big(void)
{
	char **l = big_lines(BIG, need_star_chain);
	struct spec *s = mkspec((const char *const *)l, BIG);
	struct diags d = { 0 };
	struct dag *g = dag_build(s, &d);
	size_t i, bad_order = 0, bad_up = 0, bad_down = 0;

	ok(g != NULL && d.n == 0, "big graph: built without diagnostics");
	if (g) {
		for (i = 0; i < BIG; i++) {
			bad_order += g->order[i] != i;
			if (i > 1)
				bad_up += g->n_up[i] != 2 || g->up[i][0] != 0 || g->up[i][1] != i - 1;
			if (i > 0 && i + 1 < BIG)
				bad_down += g->n_down[i] != 1 || g->down[i][0] != i + 1;
		}
		is_int(bad_order, 0, "big graph: file order is the topological order");
		is_int(g->n_up[1], 1, "big graph: a need repeated is one edge");
		is_int(bad_up, 0, "big graph: needs resolved by name, repeats dropped, in order");
		is_int(g->n_down[0], BIG - 1, "big graph: the root feeds every stage");
		for (i = 0; i + 1 < g->n_down[0] && g->down[0][i] == i + 1; i++)
			;
		is_int(i, BIG - 2, "big graph: the root's down list is in file order");
		is_int(bad_down, 0, "big graph: each stage feeds the next");
	}
	for (i = bad_order = 0; i < BIG; i += 7) {
		char id[32];
		snprintf(id, sizeof(id), "s%zu", i);
		bad_order += spec_stage_index(s, id) != (int)i;
	}
	is_int(bad_order, 0, "big graph: spec_stage_index finds stages by name");
	is_int(spec_stage_index(s, "s"), -1, "big graph: spec_stage_index of no stage");
	is_int(spec_stage_index(s, "s200000"), -1, "big graph: nor of one past the ids");
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	free_lines(l, BIG);

	/* A ring of BIG / 4 stages (a deep search), then stages behind it. */
	l = big_lines(BIG, need_ring);
	s = mkspec((const char *const *)l, BIG);
	memset(&d, 0, sizeof(d));
	g = dag_build(s, &d);
	{
		struct buf want;
		buf_init(&want);
		buf_adds(&want, "cycle: ");
		for (i = 0; i < BIG / 4; i++)
			buf_printf(&want, "s%zu → ", i);
		buf_adds(&want, "s0");
		ok(g == NULL, "big ring: no graph");
		is_int(d.n, 1, "big ring: one cycle reported");
		if (d.n >= 1) {
			is_str(d.v[0].msg, want.data, "big ring: the path of the cycle");
			is_int(d.v[0].line, 10, "big ring: at the first stage's need");
			is_int(d.v[0].col, 20, "big ring: column of that need");
		}
		buf_free(&want);
	}
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	free_lines(l, BIG);
}

/* The first stage of a name in file order, as the scan that came before. */
static void test_index(void)
{
	static const char *const l[] = { "b:", "a:", "c:a", "a:b" };
	struct spec *s = mkspec(l, 4);

	is_int(spec_stage_index(s, "a"), 1, "spec_stage_index: the first of two \"a\"");
	is_int(spec_stage_index(s, "b"), 0, "spec_stage_index: \"b\"");
	is_int(spec_stage_index(s, "c"), 2, "spec_stage_index: \"c\"");
	is_int(spec_stage_index(s, "d"), -1, "spec_stage_index: no \"d\"");
	is_int(spec_stage_index(s, ""), -1, "spec_stage_index: no empty name");
	spec_free(s);
}

int main(void)
{
	test_index();
	test_order();
	test_edges();
	test_fanout();
	test_errors();
	test_big();
	return done_testing();
}
