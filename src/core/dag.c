/*
 * dag: the stage graph of a spec. An edge i -> j means stage j needs stage i
 * (data flows from i to j). The order is Kahn's algorithm taking the ready
 * stage that comes first in the file; stages left over lie on or behind a
 * cycle, and a depth-first search over them reports each cycle once.
 */
#include "core/dag.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ min-heap */

struct heap {
	size_t *v;
	size_t n;
};

static void heap_push(struct heap *h, size_t x)
{
	size_t i = h->n++;

	while (i > 0 && h->v[(i - 1) / 2] > x) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = x;
}

static size_t heap_pop(struct heap *h)
{
	size_t top = h->v[0], x = h->v[--h->n], i = 0;

	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < h->n && h->v[l] < x)
			m = l;
		if (l + 1 < h->n && h->v[l + 1] < (m == i ? x : h->v[l]))
			m = l + 1;
		if (m == i)
			break;
		h->v[i] = h->v[m];
		i = m;
	}
	if (h->n > 0)
		h->v[i] = x;
	return top;
}

/* ------------------------------------------------------------ helpers */

/* Appends x to the list v of n entries (capacity *cap). */
static void add_edge(size_t **v, size_t *n, size_t *cap, size_t x)
{
	xgrow(v, cap, *n + 1, sizeof(**v));
	(*v)[(*n)++] = x;
}

/* The stage id closest to name, or NULL (same rule as unknown keys). */
static const char *dag_suggest(const struct spec *s, const char *name)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, i;

	for (i = 0; i < s->n_stages; i++) {
		const char *id = s->stages[i].id;
		size_t len = strlen(id);
		size_t lim = len / 3 > 2 ? len / 3 : 2;
		size_t d = edit_distance(name, id);
		if (d <= lim && d < len && d < strlen(name) && d < best_d) {
			best = id;
			best_d = d;
		}
	}
	return best;
}

/* ------------------------------------------------------------ cycles */

struct dfs {
	const struct spec *s;
	const struct dag *g;
	struct diags *d;
	const bool *left;              /* not placed by Kahn's algorithm */
	int *color;                    /* 0 white, 1 on the stack, 2 done */
	size_t *path;
	size_t *next;                  /* per depth: the next down edge of path[] */
	size_t depth;
};

/* Reports the cycle path[from..depth-1] -> path[from], rotated to start at
 * its first stage in file order, at that stage's needs entry that names the
 * stage before it. */
static void report_cycle(struct dfs *f, size_t from)
{
	size_t len = f->depth - from, start = 0, i, last, first;
	const struct stage_spec *st;
	struct pos p;
	struct buf b;

	for (i = 1; i < len; i++)
		if (f->path[from + i] < f->path[from + start])
			start = i;
	first = f->path[from + start];
	last = f->path[from + (start + len - 1) % len];
	buf_init(&b);
	for (i = 0; i < len; i++)
		buf_printf(&b, "%s → ", f->s->stages[f->path[from + (start + i) % len]].id);
	buf_adds(&b, f->s->stages[first].id);
	st = &f->s->stages[first];
	p = st->pos;
	for (i = 0; i < st->n_needs; i++)
		if (strcmp(st->needs[i].s, f->s->stages[last].id) == 0) {
			p = st->needs[i].pos;
			break;
		}
	diags_add(f->d, p, "cycle: %s", b.data);
	buf_free(&b);
}

/* A depth-first search from u over the stages left; iterative (path and
 * next hold the stack), so a long chain cannot overflow the C stack. */
static void dfs_visit(struct dfs *f, size_t u)
{
	f->color[u] = 1;
	f->path[f->depth] = u;
	f->next[f->depth++] = 0;
	while (f->depth > 0) {
		size_t top = f->depth - 1, x = f->path[top];
		if (f->next[top] == f->g->n_down[x]) {
			f->depth--;
			f->color[x] = 2;
			continue;
		}
		{
			size_t v = f->g->down[x][f->next[top]++];
			if (!f->left[v])
				continue;
			if (f->color[v] == 0) {
				f->color[v] = 1;
				f->path[f->depth] = v;
				f->next[f->depth++] = 0;
			} else if (f->color[v] == 1) {
				size_t from = f->depth;
				while (f->path[from - 1] != v)
					from--;
				report_cycle(f, from - 1);
			}
		}
	}
}

/* ------------------------------------------------------------ build */

/* A stage's id and index. Sorted by id (then index), they let each need be
 * found by binary search: looking every need up with spec_stage_index made a
 * file of many stages quadratic. */
struct stage_ref {
	const char *id;
	size_t i;
};

static int cmp_stage_ref(const void *a, const void *b)
{
	const struct stage_ref *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	return c ? c : x->i < y->i ? -1 : x->i > y->i;
}

/* The first stage (in file order) named id, or -1; by_id sorted by cmp_stage_ref. */
static int find_stage(const struct stage_ref *by_id, size_t n, const char *id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(by_id[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < n && strcmp(by_id[lo].id, id) == 0)
		return (int)by_id[lo].i;
	return -1;
}

struct dag *dag_build(const struct spec *s, struct diags *d)
{
	struct dag *g = xcalloc(1, sizeof(*g));
	size_t n = s->n_stages, i, j, placed = 0;
	size_t *indeg = xcalloc(n ? n : 1, sizeof(*indeg));
	struct heap h = { xcalloc(n ? n : 1, sizeof(size_t)), 0 };
	struct stage_ref *by_id = xcalloc(n ? n : 1, sizeof(*by_id));
	/* seen[k] == i + 1: stage k is already a need of stage i. Repeated
	 * needs are dropped in one step each, where searching the list made a
	 * stage of many needs (or a stage many need) quadratic. */
	size_t *seen = xcalloc(n ? n : 1, sizeof(*seen));
	size_t *cap_up = xcalloc(n ? n : 1, sizeof(*cap_up));
	size_t *cap_down = xcalloc(n ? n : 1, sizeof(*cap_down));
	bool failed = false;

	g->n = n;
	g->order = xcalloc(n ? n : 1, sizeof(*g->order));
	g->down = xcalloc(n ? n : 1, sizeof(*g->down));
	g->n_down = xcalloc(n ? n : 1, sizeof(*g->n_down));
	g->up = xcalloc(n ? n : 1, sizeof(*g->up));
	g->n_up = xcalloc(n ? n : 1, sizeof(*g->n_up));

	for (i = 0; i < n; i++) {
		by_id[i].id = s->stages[i].id;
		by_id[i].i = i;
	}
	qsort(by_id, n, sizeof(*by_id), cmp_stage_ref);
	for (i = 0; i < n; i++) {
		const struct stage_spec *st = &s->stages[i];
		for (j = 0; j < st->n_needs; j++) {
			int k = find_stage(by_id, n, st->needs[j].s);
			if (k < 0) {
				const char *m = dag_suggest(s, st->needs[j].s);
				if (m)
					diags_add(d, st->needs[j].pos, "unknown stage \"%s\" in needs of "
					          "\"%s\" (did you mean \"%s\"?)", st->needs[j].s, st->id, m);
				else
					diags_add(d, st->needs[j].pos,
					          "unknown stage \"%s\" in needs of \"%s\"",
					          st->needs[j].s, st->id);
				failed = true;
				continue;
			}
			if (seen[k] == i + 1)
				continue;
			seen[k] = i + 1;
			add_edge(&g->up[i], &g->n_up[i], &cap_up[i], (size_t)k);
		}
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < g->n_up[i]; j++)
			add_edge(&g->down[g->up[i][j]], &g->n_down[g->up[i][j]],
			         &cap_down[g->up[i][j]], i);
		indeg[i] = g->n_up[i];
	}
	/* down lists are in file order (i rises above), so traversals are
	 * deterministic */

	for (i = 0; i < n; i++)
		if (indeg[i] == 0)
			heap_push(&h, i);
	while (h.n > 0) {
		size_t u = heap_pop(&h);
		g->order[placed++] = u;
		for (j = 0; j < g->n_down[u]; j++)
			if (--indeg[g->down[u][j]] == 0)
				heap_push(&h, g->down[u][j]);
	}

	if (placed < n) {
		struct dfs f;
		bool *left = xcalloc(n, sizeof(*left));

		for (i = 0; i < n; i++)
			left[i] = true;
		for (i = 0; i < placed; i++)
			left[g->order[i]] = false;
		memset(&f, 0, sizeof(f));
		f.s = s;
		f.g = g;
		f.d = d;
		f.left = left;
		f.color = xcalloc(n, sizeof(*f.color));
		f.path = xcalloc(n, sizeof(*f.path));
		f.next = xcalloc(n, sizeof(*f.next));
		for (i = 0; i < n; i++)
			if (left[i] && f.color[i] == 0)
				dfs_visit(&f, i);
		free(f.color);
		free(f.path);
		free(f.next);
		free(left);
		failed = true;
	}
	free(seen);
	free(cap_up);
	free(cap_down);
	free(indeg);
	free(h.v);
	free(by_id);
	if (failed) {
		dag_free(g);
		return NULL;
	}
	return g;
}

void dag_free(struct dag *g)
{
	size_t i;

	if (!g)
		return;
	for (i = 0; i < g->n; i++) {
		free(g->down[i]);
		free(g->up[i]);
	}
	free(g->down);
	free(g->n_down);
	free(g->up);
	free(g->n_up);
	free(g->order);
	free(g);
}
