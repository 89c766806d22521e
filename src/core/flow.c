/*
 * flow: tokens per source batch, lineages (sets of tokens) per derived
 * batch, and the in-order acks. See flow.h.
 *
 * Invariants: a token's refs count the live lineages that contain it; a
 * token leaves its source's FIFO (and is freed) only when acked, so a live
 * lineage never points at a freed token; tokens still queued are freed by
 * flow_destroy, after every lineage was released.
 */
#include "core/flow.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct flow_token {
	struct flow_src *src;
	uint64_t id;
	size_t refs;                   /* lineages holding it */
	bool done;                     /* refs reached 0 */
	bool poisoned;                 /* records lost: never acked */
	struct flow_token *next;       /* FIFO of its source, emission order */
};

/* The tokens of one source stage not acked yet. */
struct flow_src {
	struct flow *f;
	struct stage *st;
	uint64_t last_id;
	struct flow_token *head, *tail;
	bool acking;                   /* inside advance(): an ack may release */
	struct flow_src *next;
};

struct flow {
	struct flow_src *srcs;
	bool frozen;
};

struct flow_set {
	size_t refs;
	size_t n;
	struct flow_token *tok[];
};

struct flow *flow_create(void)
{
	return xcalloc(1, sizeof(struct flow));
}

void flow_freeze(struct flow *f)
{
	if (f)
		f->frozen = true;
}

void flow_destroy(struct flow *f)
{
	struct flow_src *s, *ns;
	struct flow_token *t, *nt;

	if (!f)
		return;
	for (s = f->srcs; s; s = ns) {
		ns = s->next;
		for (t = s->head; t; t = nt) {
			nt = t->next;
			free(t);
		}
		free(s);
	}
	free(f);
}

static struct flow_src *src_of(struct flow *f, struct stage *st)
{
	struct flow_src *s;

	for (s = f->srcs; s; s = s->next)
		if (s->st == st)
			return s;
	s = xcalloc(1, sizeof(*s));
	s->f = f;
	s->st = st;
	s->next = f->srcs;
	f->srcs = s;
	return s;
}

/* Acks the done tokens at the head of s's FIFO, in order. An ack may
 * release lineages (and so finish more tokens): the outer call goes on. */
static void advance(struct flow_src *s)
{
	if (s->acking)
		return;
	s->acking = true;
	while (s->head && s->head->done && !s->head->poisoned && !s->f->frozen) {
		struct flow_token *t = s->head;
		s->head = t->next;
		if (!s->head)
			s->tail = NULL;
		if (s->st->kind->ack)
			s->st->kind->ack(s->st, t->id);
		free(t);
	}
	s->acking = false;
}

struct flow_set *flow_new_batch(struct flow *f, struct stage *src, uint64_t *id)
{
	struct flow_src *s = src_of(f, src);
	struct flow_token *t = xcalloc(1, sizeof(*t));
	struct flow_set *set = xmalloc(sizeof(*set) + sizeof(set->tok[0]));

	t->src = s;
	t->id = ++s->last_id;
	t->refs = 1;
	if (s->tail)
		s->tail->next = t;
	else
		s->head = t;
	s->tail = t;
	set->refs = 1;
	set->n = 1;
	set->tok[0] = t;
	*id = t->id;
	return set;
}

struct flow_set *flow_ref(struct flow_set *s)
{
	if (s)
		s->refs++;
	return s;
}

void flow_release(struct flow_set *s)
{
	size_t i;

	if (!s)
		return;
	assert(s->refs > 0);
	if (--s->refs > 0)
		return;
	for (i = 0; i < s->n; i++) {
		struct flow_token *t = s->tok[i];
		assert(t->refs > 0 && !t->done);
		if (--t->refs == 0) {
			t->done = true;
			advance(t->src);
		}
	}
	free(s);
}

void flow_poison(struct flow_set *s)
{
	size_t i;

	for (i = 0; s && i < s->n; i++)
		s->tok[i]->poisoned = true;
}

void flow_drop(void *s)
{
	flow_poison(s);
	flow_release(s);
}

static bool has_token(const struct flow_set *s, const struct flow_token *t)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->tok[i] == t)
			return true;
	return false;
}

struct flow_set *flow_union(struct flow_set *acc, struct flow_set *add)
{
	struct flow_set *u;
	size_t i, missing = 0;

	if (!add || acc == add)
		return acc;
	if (!acc)
		return flow_ref(add);
	for (i = 0; i < add->n; i++)
		missing += !has_token(acc, add->tok[i]);
	if (missing == 0)
		return acc;
	u = xmalloc(sizeof(*u) + (acc->n + missing) * sizeof(u->tok[0]));
	u->refs = 1;
	u->n = 0;
	for (i = 0; i < acc->n; i++) {
		u->tok[u->n++] = acc->tok[i];
		acc->tok[i]->refs++;
	}
	for (i = 0; i < add->n; i++)
		if (!has_token(acc, add->tok[i])) {
			u->tok[u->n++] = add->tok[i];
			add->tok[i]->refs++;
		}
	flow_release(acc);
	return u;
}

size_t flow_size(const struct flow_set *s)
{
	return s ? s->n : 0;
}
