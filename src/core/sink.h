/*
 * sink: the engine's side of stage_kind.write: one batch at a time per
 * sink, kept until the sink answers; RETRY is tried again after the stage's
 * retry policy's backoff on an ev_timer (the loop never waits), FAIL and
 * used-up attempts go to the stage's on_error record by record. Used by
 * engine.c only; stages answer through engine_sink_answer (engine.h).
 */
#ifndef PIPECTL_SINK_H
#define PIPECTL_SINK_H

#include <stdbool.h>
#include "core/stage.h"

/* Writes batch (a reference is taken) with lineage lin (the caller's
 * reference is taken over) to st, whose kind has write. */
void sink_write(struct stage *st, json_t *batch, struct flow_set *lin);
/* True while st holds a batch (waiting for an answer or a retry). */
bool sink_busy(const struct stage *st);
/* Drops the batch st holds, unloaded (stop, failure, end of run): its
 * lineage is poisoned, a retry timer stopped. NULL-safe on idle stages. */
void sink_abandon(struct stage *st);

#endif
