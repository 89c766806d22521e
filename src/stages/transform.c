/*
 * transform: per-record jq (0..n outputs each) followed by an optional
 * dedupe on a jq key. Dedupe remembers only the compact JSON text of each key
 * it has seen, never the records, so its memory grows with distinct keys.
 */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "expr/expr.h"
#include "base/jsonw.h"
#include "base/util.h"
#include "core/yaml.h"

struct transform_opts {
	struct sval jq;                /* per-record expression, 0..n outputs (optional) */
	struct sval dedupe;            /* key expression: keep the first record per key (optional) */
};

struct transform {
	struct expr *jq;               /* NULL: records pass unchanged */
	struct expr *dedupe;           /* NULL: no dedupe */
	json_t *seen;                  /* object used as a set of key texts */
	struct buf key;
	size_t max;                    /* batch size */
	int64_t n;                     /* records seen, for messages */
};

static struct expr *compile(struct stage *st, const struct sval *v, const char *what,
                            char **err)
{
	char *msg = NULL;
	struct expr *x;

	if (!v->s)
		return NULL;
	x = expr_compile(v->s, engine_scope(st->eng), &msg);
	if (!x) {
		*err = xasprintf("invalid jq expression in \"%s\": %s", what, msg);
		free(msg);
	}
	return x;
}

static int tr_create(struct stage *st, char **err)
{
	const struct transform_opts *t = st->spec->opts;
	struct transform *c = xcalloc(1, sizeof(*c));

	st->ctx = c;
	buf_init(&c->key);
	c->max = (size_t)engine_batch_size(st->eng);
	c->jq = compile(st, &t->jq, "jq", err);
	if (t->jq.s && !c->jq)
		return -1;
	c->dedupe = compile(st, &t->dedupe, "dedupe", err);
	if (t->dedupe.s && !c->dedupe)
		return -1;
	if (c->dedupe)
		c->seen = json_object();
	return 0;
}

/* Appends rec (borrowed) to out unless its key was seen. Returns 0, or -1
 * when the stage failed (a key that cannot be computed, on_error: fail). */
static int tr_dedupe(struct stage *st, json_t *rec, json_t *out)
{
	struct transform *c = st->ctx;
	char *msg = NULL;
	json_t *k = expr_eval1(c->dedupe, rec, &msg);

	if (!k) {
		char *e = xasprintf("record %lld: dedupe key: %s", (long long)c->n, msg);
		int rc = engine_record_failure(st, rec, e, NULL);
		free(e);
		free(msg);
		return rc;
	}
	buf_reset(&c->key);
	jsonw_append(&c->key, k);
	json_decref(k);
	if (json_object_getn(c->seen, c->key.data, c->key.len))
		return 0;
	json_object_setn_new_nocheck(c->seen, c->key.data, c->key.len, json_true());
	json_array_append(out, rec);
	return 0;
}

static void tr_push(struct stage *st, json_t *batch)
{
	struct transform *c = st->ctx;
	json_t *out = json_array(), *tmp = json_array(), *rec;
	size_t i, j;

	json_array_foreach(batch, i, rec) {
		c->n++;
		json_array_clear(tmp);
		if (c->jq) {
			char *msg = NULL;
			if (expr_run(c->jq, rec, tmp, &msg) != 0) {
				/* on_error: fail stops here; skip and dlq drop the
				 * record's outputs and go on. */
				char *e = xasprintf("record %lld: jq: %s", (long long)c->n, msg);
				int rc = engine_record_failure(st, rec, e, NULL);
				free(e);
				free(msg);
				if (rc != 0)
					goto out;
				continue;
			}
		} else {
			json_array_append(tmp, rec);
		}
		for (j = 0; j < json_array_size(tmp); j++) {
			json_t *r = json_array_get(tmp, j);
			if (c->dedupe) {
				if (tr_dedupe(st, r, out) != 0)
					goto out;
			} else {
				json_array_append(out, r);
			}
		}
		if (json_array_size(out) >= c->max) {
			engine_emit(st, out);
			out = json_array();
		}
	}
	engine_emit(st, out);
	out = NULL;
out:
	json_decref(out);
	json_decref(tmp);
}

static void tr_finish(struct stage *st)
{
	engine_stage_done(st);
}

static void tr_destroy(struct stage *st)
{
	struct transform *c = st->ctx;

	if (!c)
		return;
	expr_free(c->jq);
	expr_free(c->dedupe);
	json_decref(c->seen);
	buf_free(&c->key);
	free(c);
	st->ctx = NULL;
}

static void tr_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                     const struct ynode *m)
{
	(void)sp;
	if (!opt_get(m, "jq", NULL) && !opt_get(m, "dedupe", NULL))
		opt_error(c, opt_map_pos(c, k, m),
		          "transform needs at least one of \"jq\" or \"dedupe\"");
}

static void tr_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct transform_opts *t = sp->opts;

	fn(arg, &t->jq, false, REF_SECRETS, "\"jq\"");
	fn(arg, &t->dedupe, false, REF_SECRETS, "\"dedupe\"");
}

static const struct opt tr_options[] = {
	{ .key = "jq", .type = OPT_JQ, .offset = offsetof(struct transform_opts, jq),
	  .doc = "jq per record: 0..n outputs each" },
	{ .key = "dedupe", .type = OPT_JQ, .offset = offsetof(struct transform_opts, dedupe),
	  .doc = "jq key: keep the first record per key" },
	{ .key = NULL },
};

const struct stage_kind stage_transform = {
	.name = "transform",
	.description = "jq per record (0..n outputs), then optional dedupe by a jq key",
	.role = "transform",
	.options = tr_options,
	.opts_size = sizeof(struct transform_opts),
	.check = tr_check,
	.refs = tr_refs,
	.create = tr_create,
	.push = tr_push,
	.finish = tr_finish,
	.destroy = tr_destroy,
};
