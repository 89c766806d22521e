/*
 * state_writer: the engine observer that records a run's progress in the
 * state database: a stage's row when it ends, every dirty stage row and the
 * requester's buffered attempts and events every PERSIST_INTERVAL, and
 * everything once more when the run has ended (before on_done). It sits
 * above the engine and the state store; the engine does not know it.
 */
#ifndef PIPECTL_STATE_WRITER_H
#define PIPECTL_STATE_WRITER_H

#include <stdint.h>
#include "core/engine.h"
#include "store/state.h"

struct state_writer;

/* A writer for run run_id in st (borrowed; it must outlive the writer).
 * Give its observer (state_writer_observer) to exactly one engine. Caller
 * destroys it, after the engine's run ended or the engine was destroyed. */
struct state_writer *state_writer_create(struct state *st, int64_t run_id);
/* The observer to list in engine_opts.observers (arg: w, borrowed). */
struct engine_observer state_writer_observer(struct state_writer *w);
void state_writer_destroy(struct state_writer *w);

#endif
