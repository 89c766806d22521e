/*
 * spec: the lifetime of a spec read by config.c (see spec.h).
 */
#include "core/spec.h"
#include "core/stage.h"

#include <stdlib.h>
#include <string.h>

static void sval_free(struct sval *v)
{
	free(v->s);
	v->s = NULL;
}

static void fetch_spec_free(struct fetch_spec *f)
{
	size_t i;

	for (i = 0; i < f->n_urls; i++)
		sval_free(&f->urls[i]);
	free(f->urls);
	sval_free(&f->file);
	sval_free(&f->method);
	for (i = 0; i < f->n_headers; i++) {
		free(f->headers[i].name);
		sval_free(&f->headers[i].value);
	}
	free(f->headers);
	sval_free(&f->body);
	sval_free(&f->json);
	sval_free(&f->records);
	sval_free(&f->retry.when);
	sval_free(&f->pool);
	sval_free(&f->paginate.next);
	sval_free(&f->paginate.param);
	sval_free(&f->paginate.stop);
	sval_free(&f->merge);
	for (i = 0; i < f->n_allow_hosts; i++)
		sval_free(&f->allow_hosts[i]);
	free(f->allow_hosts);
}

static void stage_free(struct stage_spec *st)
{
	size_t i;

	free(st->id);
	free(st->description);
	for (i = 0; i < st->n_needs; i++)
		sval_free(&st->needs[i]);
	free(st->needs);
	if (st->kind && st->opts) {
		option_free(st->kind->options, st->opts);
		free(st->opts);
	}
	switch (st->type) {
	case STAGE_FETCH:
		fetch_spec_free(&st->u.fetch);
		break;
	case STAGE_TRANSFORM:
		sval_free(&st->u.transform.jq);
		sval_free(&st->u.transform.dedupe);
		break;
	case STAGE_LOAD:
		fetch_spec_free(&st->u.load.http);
		sval_free(&st->u.load.path);
		sval_free(&st->u.load.table);
		for (i = 0; i < st->u.load.n_key; i++)
			sval_free(&st->u.load.key[i]);
		free(st->u.load.key);
		for (i = 0; i < st->u.load.n_columns; i++)
			sval_free(&st->u.load.columns[i]);
		free(st->u.load.columns);
		break;
	}
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
