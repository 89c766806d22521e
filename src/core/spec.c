/*
 * spec: the lifetime of a spec read by config.c (see spec.h).
 */
#include "core/spec.h"

#include <stdlib.h>
#include <string.h>

static void sval_free(struct sval *v)
{
	free(v->s);
	v->s = NULL;
}

static void stage_free(struct stage_spec *st)
{
	size_t i;

	free(st->id);
	free(st->description);
	for (i = 0; i < st->n_needs; i++)
		sval_free(&st->needs[i]);
	free(st->needs);
	stage_opts_free(st->kind, st->opts);
	free(st->opts);
}

void spec_free(struct spec *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->n_stages; i++)
		stage_free(&s->stages[i]);
	free(s->stages);
	free(s->by_id);
	for (i = 0; i < s->n_hosts; i++)
		free(s->hosts[i].name);
	free(s->hosts);
	sval_free(&s->retry.when);
	json_decref(s->params);
	free(s->name);
	free(s->description);
	free(s->text);
	free(s->dir);
	free(s->path);
	free(s);
}

/* The stages being sorted (qsort passes no context). */
static const struct stage_spec *sorting;

static int cmp_by_id(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(sorting[x].id, sorting[y].id);

	return c ? c : x < y ? -1 : x > y;
}

int spec_stage_index(const struct spec *s, const char *id)
{
	/* The index is a cache: building it does not change what s says.
	 * Looking each name up by a scan of the stages made every caller
	 * that resolves all stages (the run summary, a resume) quadratic. */
	struct spec *w = (struct spec *)s;
	size_t i, lo = 0, hi = s->n_stages;

	if (s->n_by_id != s->n_stages || (!s->by_id && s->n_stages > 0)) {
		free(w->by_id);
		w->by_id = xcalloc(s->n_stages ? s->n_stages : 1, sizeof(*w->by_id));
		for (i = 0; i < s->n_stages; i++)
			w->by_id[i] = i;
		sorting = s->stages;
		qsort(w->by_id, s->n_stages, sizeof(*w->by_id), cmp_by_id);
		sorting = NULL;
		w->n_by_id = s->n_stages;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->stages[s->by_id[mid]].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->n_stages && strcmp(s->stages[s->by_id[lo]].id, id) == 0)
		return (int)s->by_id[lo];
	return -1;
}
