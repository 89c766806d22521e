/*
 * queue: ring buffer of batches. Watermarks are advisory: the engine checks
 * them before it lets a stage produce, so a queue may overshoot `high` by at
 * most what one step of one producer emits.
 */
#include "core/queue.h"

#include <stdlib.h>
#include "base/util.h"

void queue_init(struct queue *q, size_t high, size_t low)
{
	q->ring = NULL;
	q->tags = NULL;
	q->drop_tag = NULL;
	q->head = q->n = q->cap = 0;
	q->records = q->peak = 0;
	q->high = high ? high : 1;
	q->low = low < q->high ? low : q->high - 1;
}

void queue_clear(struct queue *q)
{
	json_t *b;

	while ((b = queue_pop(q)) != NULL)
		json_decref(b);
	free(q->ring);
	free(q->tags);
	q->ring = NULL;
	q->tags = NULL;
	q->head = q->n = q->cap = 0;
}

void queue_push(struct queue *q, json_t *batch)
{
	queue_push_tagged(q, batch, NULL);
}

void queue_push_tagged(struct queue *q, json_t *batch, void *tag)
{
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 16, i;
		json_t **r = xmalloc(ncap * sizeof(*r));
		void **t = xmalloc(ncap * sizeof(*t));
		for (i = 0; i < q->n; i++) {
			r[i] = q->ring[(q->head + i) % q->cap];
			t[i] = q->tags[(q->head + i) % q->cap];
		}
		free(q->ring);
		free(q->tags);
		q->ring = r;
		q->tags = t;
		q->head = 0;
		q->cap = ncap;
	}
	q->tags[(q->head + q->n) % q->cap] = tag;
	q->ring[(q->head + q->n) % q->cap] = json_incref(batch);
	q->n++;
	q->records += json_array_size(batch);
	if (q->records > q->peak)
		q->peak = q->records;
}

json_t *queue_pop(struct queue *q)
{
	void *tag = NULL;
	json_t *b = queue_pop_tagged(q, &tag);

	if (tag && q->drop_tag)
		q->drop_tag(tag);
	return b;
}

json_t *queue_pop_tagged(struct queue *q, void **tag)
{
	json_t *b;

	*tag = NULL;
	if (q->n == 0)
		return NULL;
	b = q->ring[q->head];
	*tag = q->tags[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	q->records -= json_array_size(b);
	return b;
}
