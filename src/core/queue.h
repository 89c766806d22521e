/*
 * queue: a bounded FIFO of record batches between stages. A batch is a
 * jansson array of records, shared read-only (one reference per queue it
 * sits in). Bounds are soft watermarks counted in records: producers ask
 * queue_full() before producing more; a paused producer is resumed once the
 * queue drains to the low watermark.
 */
#ifndef PIPECTL_QUEUE_H
#define PIPECTL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct queue {
	json_t **ring;
	void **tags;                   /* per batch, parallel to ring (NULL: none) */
	void (*drop_tag)(void *tag);   /* what queue_clear does with a tag left */
	size_t head, n, cap;           /* batches */
	size_t records;                /* records in all batches */
	size_t high, low;              /* watermarks (records) */
	size_t peak;                   /* highest `records` seen */
};

void queue_init(struct queue *q, size_t high, size_t low);
/* Drops every batch left. */
void queue_clear(struct queue *q);
/* Appends batch (a json array), taking a new reference. */
void queue_push(struct queue *q, json_t *batch);
/* Removes the oldest batch; the caller owns the returned reference. NULL when empty. */
json_t *queue_pop(struct queue *q);
/* The same with a tag (an opaque pointer travelling with the batch, owned
 * by the queue while the batch is in it: queue_clear hands a tag left to
 * drop_tag). queue_pop drops the tag of what it returns the same way. */
void queue_push_tagged(struct queue *q, json_t *batch, void *tag);
json_t *queue_pop_tagged(struct queue *q, void **tag);
static inline bool queue_empty(const struct queue *q) { return q->n == 0; }
/* At or above the high watermark. */
static inline bool queue_full(const struct queue *q) { return q->records >= q->high; }
/* At or below the low watermark. */
static inline bool queue_low(const struct queue *q) { return q->records <= q->low; }

#endif
