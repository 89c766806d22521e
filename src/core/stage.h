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
#include <ev.h>
#include <jansson.h>
#include "core/spec.h"
#include "core/queue.h"
#include "store/state.h"

struct engine;
struct stage;

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
	bool dirty;                    /* stats changed since the state writer last
	                                  recorded them (it clears the flag) */
	ev_timer timeout;              /* stage_timeout, armed when the stage starts */
	json_t *replay;                /* dlq replay of a source fetch: the requests
	                                  ({method, url, body}) to send instead of its
	                                  own; NULL otherwise */
};

/* The kind that implements spec (never NULL for a valid spec). */
const struct stage_kind *stage_kind_for(const struct stage_spec *spec);

/* Every kind, for `pipectl kinds` style listings and tests. NULL-terminated. */
extern const struct stage_kind *const stage_kinds[];

#endif
