/*
 * flow: acknowledgements. Every non-empty batch a source emits gets a token
 * (its id: 1, 2, ... per source stage). The batches derived from it carry a
 * lineage: a refcounted set of tokens (a batch built from records of several
 * source batches carries all of theirs). A lineage is held by each queue it
 * waits in, by the engine while a stage is pushed it, by a sink until it
 * answered, and by any stage that keeps work after push returned
 * (engine_hold). When the last lineage holding a token goes, every record
 * derived from that source batch was committed, skipped, dead-lettered or
 * dropped by a transform, and the source kind's ack(st, id) runs.
 *
 * Order: acks of one source run in the order its batches were emitted; a
 * token that is done waits for every earlier one (acks are held back, never
 * reordered). A poisoned token (its records were lost: a failed, cancelled or
 * interrupted stage dropped them) is never acked, and neither is any later
 * token of that source, so "acked up to N" always means "nothing up to N is
 * lost". After flow_freeze (the run is over) nothing is acked.
 */
#ifndef PIPECTL_FLOW_H
#define PIPECTL_FLOW_H

#include <stdint.h>
#include "core/stage.h"

struct flow;
struct flow_set;

/* A flow for one run. Caller frees with flow_destroy. */
struct flow *flow_create(void);
/* No ack runs after this (the run ended; what is still held stays unacked). */
void flow_freeze(struct flow *f);
/* Frees every token. Every lineage must have been released. NULL-safe. */
void flow_destroy(struct flow *f);

/* A new token for a batch source src emits: returns a lineage holding only
 * it (one reference, the caller's), its id in *id. */
struct flow_set *flow_new_batch(struct flow *f, struct stage *src, uint64_t *id);
/* Adds a reference to s and returns it (NULL-safe). */
struct flow_set *flow_ref(struct flow_set *s);
/* Drops a reference (NULL-safe); the last one releases its tokens, which
 * may run acks. */
void flow_release(struct flow_set *s);
/* The records of s are lost: its tokens are never acked (NULL-safe). */
void flow_poison(struct flow_set *s);
/* flow_poison + flow_release, for a lineage whose batch is dropped unloaded
 * (the queue's drop_tag). */
void flow_drop(void *s);
/* A lineage holding the tokens of acc and add: consumes the caller's
 * reference to acc (may be NULL), borrows add (may be NULL); returns acc
 * itself when it already holds every token of add. */
struct flow_set *flow_union(struct flow_set *acc, struct flow_set *add);
/* Number of tokens of s (0 for NULL), for tests and asserts. */
size_t flow_size(const struct flow_set *s);

#endif
