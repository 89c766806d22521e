/*
 * diag: collects diagnostics and prints them sorted by position, the way a
 * compiler does, so users can jump from one to the next.
 */
#include "base/diag.h"

#include <stdlib.h>
#include <string.h>

void diags_add(struct diags *d, struct pos p, const char *fmt, ...)
{
	va_list ap;
	struct diag *g;

	xgrow(&d->v, &d->cap, d->n + 1, sizeof(*d->v));
	g = &d->v[d->n++];
	g->file = xstrdup(p.file ? p.file : "");
	g->line = p.line;
	g->col = p.col;
	va_start(ap, fmt);
	g->msg = xvasprintf(fmt, ap);
	va_end(ap);
}

static int diag_before(const struct diag *a, const struct diag *b)
{
	int c = strcmp(a->file, b->file);

	if (c)
		return c < 0;
	if (a->line != b->line)
		return a->line < b->line;
	return a->col < b->col;
}

/* Stable merge sort of v[0..n) using tmp (n entries): a file can yield a
 * diagnostic per key, so the list may be long and must not sort in O(n^2). */
static void diag_sort(struct diag *v, struct diag *tmp, size_t n)
{
	size_t mid = n / 2, i = 0, j = mid, k = 0;

	if (n < 2)
		return;
	diag_sort(v, tmp, mid);
	diag_sort(v + mid, tmp, n - mid);
	while (i < mid && j < n)
		tmp[k++] = diag_before(&v[j], &v[i]) ? v[j++] : v[i++];
	while (i < mid)
		tmp[k++] = v[i++];
	/* v[j..n) is already in place */
	memcpy(v, tmp, k * sizeof(*v));
}

void diags_print(struct diags *d, FILE *out)
{
	size_t i;

	if (d->n > 1) {
		struct diag *tmp = xcalloc(d->n, sizeof(*tmp));
		diag_sort(d->v, tmp, d->n);
		free(tmp);
	}
	for (i = 0; i < d->n; i++) {
		const struct diag *g = &d->v[i];
		if (g->line > 0)
			fprintf(out, "%s:%d:%d: %s\n", g->file, g->line, g->col, g->msg);
		else if (*g->file)
			fprintf(out, "%s: %s\n", g->file, g->msg);
		else
			fprintf(out, "%s\n", g->msg);
	}
}

void diags_free(struct diags *d)
{
	size_t i;

	for (i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}
