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

int spec_stage_index(const struct spec *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->n_stages; i++)
		if (strcmp(s->stages[i].id, id) == 0)
			return (int)i;
	return -1;
}
