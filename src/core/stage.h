/*
 * stage: the interface every stage kind implements, and the instance the
 * engine keeps for each stage of a run. One kind per file under stages/,
 * each exporting one `const struct stage_kind`; stage_kind_for() in
 * stages/registry.c picks the kind for a spec. The engine never knows what a
 * stage does; a stage touches the loop only through engine.h and http.h.
 */
#ifndef PIPECTL_STAGE_H
#define PIPECTL_STAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>
#include <jansson.h>
#include "core/spec.h"
#include "core/queue.h"
#include "store/state.h"

struct engine;
struct stage;
struct flow_set;

/* A sink's answer for one batch (see stage_kind.write). */
enum sink_result {
	SINK_OK = 0,                   /* committed (records it refused one by one went
	                                  through engine_record_failure) */
	SINK_RETRY,                    /* not committed, nothing of it left behind; a
	                                  transient cause (a lock, a 503): try again */
	SINK_FAIL,                     /* not committed, and trying again will not help */
	SINK_PENDING,                  /* the answer comes later: engine_sink_answer() */
};

struct stage_kind {
	const char *name;              /* "fetch.http", "transform", "load.sqlite", ... */
	const char *description;

	/* Prepares the instance: compile expressions, open files. Runs before the
	 * loop starts; returns 0, or -1 with *err (malloc'd) set. Required. */
	int (*create)(struct stage *st, char **err);

	/* Stages without `needs` (sources): begin producing. Called once. */
	void (*start)(struct stage *st);

	/* Sources: called by the engine when the stage asked to run again
	 * (engine_may_emit() said no, or engine_want_run()) and downstream has
	 * room. Produce a bounded amount of work, then ask again if needed. */
	void (*resume)(struct stage *st);

	/* Stages with `needs`: one batch of input (a json array, borrowed).
	 * Errors go through engine_stage_fail() or engine_record_failure(). */
	void (*push)(struct stage *st, json_t *batch);

	/* Optional: may the engine push another batch now? (A stage with work
	 * in flight, like a fan-out fetch, says no while it is busy; it calls
	 * engine_kick() when that changes.) NULL means always. */
	bool (*ready)(struct stage *st);

	/* All input has been pushed. Call engine_stage_done() (now or later,
	 * when in-flight work completes). */
	void (*finish)(struct stage *st);

	/* Stop at once (signal, cancellation, failure): abandon in-flight work,
	 * roll back partial output (e.g. remove temp files). Must not call back
	 * into the engine. Optional. */
	void (*stop)(struct stage *st);

	/* Frees ctx. NULL-safe with respect to a failed create. Required. */
	void (*destroy)(struct stage *st);

	/* Sinks, instead of push: commit one batch (a json array, borrowed; the
	 * engine keeps it until the answer). Returns SINK_OK, SINK_RETRY or
	 * SINK_FAIL (with *reason malloc'd: why), or SINK_PENDING and answers
	 * later with engine_sink_answer(). The engine writes no other batch to
	 * the stage before the answer; on RETRY it writes the same batch again
	 * after a backoff of the stage's retry policy (engine_retry_policy), on
	 * a timer; on FAIL, or when the attempts are used up, the stage's
	 * on_error takes each record of the batch. A sink whose output cannot
	 * go on at all (a half-written file) calls engine_stage_fail() itself
	 * and returns SINK_FAIL. Optional: NULL means push. */
	enum sink_result (*write)(struct stage *st, json_t *batch, char **reason);

	/* Sources, optional: every record derived from the batch that
	 * engine_emit() numbered batch_id was committed by every sink it
	 * reached (or skipped, dead-lettered or dropped by a transform). Called
	 * once per id, in emission order, from the loop; never for a batch
	 * whose records were lost (a failed or interrupted run). See core/flow.h. */
	void (*ack)(struct stage *st, uint64_t batch_id);
};

struct stage {
	const struct stage_kind *kind;
	void *ctx;                     /* the kind's own state */
	const struct stage_spec *spec;
	size_t index;                  /* in spec->stages */
	struct engine *eng;

	struct queue in;               /* input batches (stages with needs) */
	struct stage **down;           /* stages that need this one */
	size_t n_down;
	size_t open_up;                /* upstream stages not finished yet */

	enum run_status status;        /* ST_PENDING .. */
	struct stage_stats stats;
	double started, finished;      /* wall clock */
	char *error;                   /* why it failed, redacted */

	bool want_run;                 /* resume() wanted when there is room */
	bool finish_called;
	bool dirty;                    /* stats changed since last persisted */
	ev_timer timeout;              /* stage_timeout, armed when the stage starts */
	json_t *replay;                /* dlq replay of a source fetch: the requests
	                                  ({method, url, body}) to send instead of its
	                                  own; NULL otherwise */

	/* Acknowledgements: the lineage of the batch being pushed or written
	 * (NULL outside; see engine_hold). */
	struct flow_set *lineage;
	/* Sinks with write (core/sink.c): the batch waiting for its answer or
	 * for a retry (NULL: none), its lineage, the attempts made so far and
	 * their history ([{attempt, error, at}]). */
	json_t *sink_batch;
	struct flow_set *sink_lineage;
	int sink_attempt;
	bool sink_waiting;             /* write returned SINK_PENDING */
	json_t *sink_history;
	ev_timer sink_retry;
};

/* The kind that implements spec (never NULL for a valid spec). */
const struct stage_kind *stage_kind_for(const struct stage_spec *spec);

/* Every kind, for `pipectl kinds` style listings and tests. NULL-terminated. */
extern const struct stage_kind *const stage_kinds[];

#endif
