/*
 * engine: one run of a pipeline on one libev loop. It owns the stages, the
 * queues between them, the HTTP client and the state rows of the run.
 *
 * Firing rule: a stage with input runs when every stage it feeds has room
 * (its queue is below the high watermark). Sources pause when any queue they
 * feed is full and resume once all are back at the low watermark. A stage is
 * finished when everything it needs finished, its queue is empty and it said
 * engine_stage_done(). A failed stage cancels every stage downstream of it;
 * other branches run to completion.
 */
#ifndef PIPECTL_ENGINE_H
#define PIPECTL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>
#include <jansson.h>
#include "core/spec.h"
#include "core/dag.h"
#include "expr/expr.h"
#include "core/stage.h"
#include "store/state.h"
#include "base/util.h"

struct engine;
struct http;

struct engine_opts {
	const struct spec *spec;
	const struct dag *dag;
	json_t *params;                /* effective params (borrowed) */
	struct state *state;           /* borrowed */
	int64_t run_id;
	bool quiet;                    /* no per-stage summary on stderr */
	/* dlq replay: run only stage replay_stage (an index, -1 = normal run)
	 * and what is downstream of it, on these payloads (borrowed array). */
	int replay_stage;
	json_t *replay;
	/* resume: run_id is an existing run; stages that succeeded and whose
	 * output nothing still needs are not run again, fetches are answered
	 * from the response journal where it holds the answer. */
	bool resume;
	/* dlq replay: the replayed run, whose files the sinks add to (their
	 * paths render run.id, run.started and run.date of it) and whose
	 * Idempotency-Key values requests send again; 0: run_id. */
	int64_t paths_run_id;
	const struct stage_kind *const *kinds;
};

/* What a resume of a run would do with each stage. */
enum resume_action {
	RESUME_SKIP = 0,     /* succeeded, output not needed: not run */
	RESUME_REPLAY,       /* succeeded, but a stage that runs needs its output:
	                        run again, fetches answered from the journal */
	RESUME_RUN,          /* did not succeed: run (again) */
};
/* Fills act[i] (spec order) from done[i] (stage i succeeded). */
void engine_resume_plan(const struct dag *g, const bool *done, enum resume_action *act);

/* Builds the run: creates every stage (compiling expressions, opening sinks).
 * Returns NULL and *err on a setup error (nothing ran). */
struct engine *engine_create(const struct engine_opts *o, char **err);
/* The object templates see as run (id, pipeline, dir, and started and date
 * as recorded in st) for run run_id of s. Caller owns it. */
json_t *engine_run_object(const struct spec *s, struct state *st, int64_t run_id);
/* Renders the sink path template tmpl with params and run in scope (and
 * env), joined to s's directory. Returns the path (caller frees), or NULL
 * with *err set (malloc'd). */
char *engine_render_sink_path(const struct spec *s, const json_t *params, const json_t *run,
                              const char *tmpl, char **err);
/* Runs the loop to completion. Returns the run's final status. */
enum run_status engine_run(struct engine *e);
/* The first failure of the run in stage order: its message (borrowed) and
 * stage id in *stage; NULL when no stage failed. */
const char *engine_first_error(const struct engine *e, const char **stage);
/* The signal that interrupted the run (0 when none). */
int engine_signal(const struct engine *e);
void engine_destroy(struct engine *e);

/* ---- for stages ---- */
struct ev_loop *engine_loop(struct engine *e);
struct http *engine_http(struct engine *e);
const struct expr_scope *engine_scope(struct engine *e);
const struct spec *engine_spec(struct engine *e);
int engine_batch_size(struct engine *e);
/* A sink's path: the template tmpl rendered in the run's scope (params,
 * run, env; `.` is null) and joined to the pipeline's directory. Returns it
 * malloc'd, or NULL with *err set (malloc'd). The same for every part of a
 * run, as run.started is when the run was created; in a dlq replay, run
 * is the replayed run (see engine_opts.paths_run_id). */
char *engine_render_path(struct engine *e, const char *tmpl, char **err);
/* SQLite sinks: the columns (a JSON array of names, new reference) that
 * table had when st last succeeded in a run of this pipeline, or NULL; and
 * recording them (cols borrowed; a failure is logged as a warning). */
json_t *engine_sink_columns(struct stage *st, const char *table);
void engine_sink_columns_save(struct stage *st, const char *table, const json_t *cols);
bool engine_stopping(struct engine *e);
/* True in a dlq replay: the records are added to those of the run replayed,
 * so a sink appends (a file sink keeps the target's lines) instead of
 * replacing its output. */
bool engine_replaying(const struct engine *e);

/* Sends batch (a json array, stolen) to every stage downstream. Empty batches
 * are dropped. Counts records_out. A source's batch gets an id (1, 2, ...
 * per source), returned, which the source's ack hook receives once its
 * records are loaded; a batch of a stage with needs inherits the lineage of
 * the batch being pushed (st->lineage). Returns 0 when no id was given (not
 * a source, an empty batch, a stage already finished). */
uint64_t engine_emit(struct stage *st, json_t *batch);
/* The same, with the lineage lin (borrowed; e.g. the union of holds a
 * stage that collects records of several inputs accumulated). */
uint64_t engine_emit_lineage(struct stage *st, json_t *batch, struct flow_set *lin);
/* A stage that keeps work of a batch after push returned (requests in
 * flight, buffered records) holds its lineage: the source batches it comes
 * from are not acked before engine_release(). Returns the hold (NULL when
 * nothing is tracked; engine_release accepts NULL). */
struct flow_set *engine_hold(struct stage *st);
void engine_release(struct flow_set *hold);
/* Makes lin (borrowed) the lineage of what st emits until the previous one,
 * returned, is put back: for callbacks that finish the work of a hold. */
struct flow_set *engine_set_lineage(struct stage *st, struct flow_set *lin);
/* A sink's late answer for the batch its write returned SINK_PENDING for
 * (reason: why, for RETRY and FAIL; borrowed). */
void engine_sink_answer(struct stage *st, enum sink_result r, const char *reason);
/* ---- sink batches: core/sink.c, for engine.c only. The engine holds one
 * batch per sink kind with write (see stage_kind.write): RETRY is written
 * again after the backoff of the stage's retry policy on an ev_timer (the
 * loop never waits), FAIL and used-up attempts go to on_error record by
 * record. sink_write takes a reference to batch and the caller's reference
 * to lin; sink_busy: st holds a batch (waiting for an answer or a retry);
 * sink_abandon drops it unloaded (stop, failure, end of run), poisoning its
 * lineage. */
void sink_write(struct stage *st, json_t *batch, struct flow_set *lin);
bool sink_busy(const struct stage *st);
void sink_abandon(struct stage *st);

/* The retry policy of st's batches and requests: the stage's own retry:
 * when its kind has one, else defaults.retry, else retry_policy_default(). */
void engine_retry_policy(const struct stage *st, struct retry_policy *out);
/* True when every stage downstream has room. When false, the engine calls
 * st->kind->resume() once there is room again. */
bool engine_may_emit(struct stage *st);
/* Asks for a resume() call on a later loop iteration (when there is room). */
void engine_want_run(struct stage *st);
/* The stage completed its work. */
void engine_stage_done(struct stage *st);
/* The stage failed: message is recorded (redacted) and printed; downstream
 * stages are cancelled. Safe to call more than once (first message wins). */
void engine_stage_fail(struct stage *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* The run's request runner (pools, retries, attempt records). */
struct requester *engine_requester(struct engine *e);
/* The stage's effective on_error (stage, else defaults, else fail). */
enum on_error engine_on_error(const struct stage *st);
/*
 * A record or request failed for good in st. Applies on_error: fail fails
 * the stage (returns -1); skip counts and logs it (returns 0); dlq stores
 * payload (borrowed JSON: the record or request), error and attempts
 * (borrowed JSON array, may be NULL) in the dead-letter queue (returns 0).
 * pass is the stage's own business and is treated as skip here.
 */
int engine_record_failure(struct stage *st, const json_t *payload, const char *error,
                          const json_t *attempts);
/* Something changed that may let st run (see stage_kind.ready). */
void engine_kick(struct stage *st);
/* Stats changed: persist on the next tick. */
static inline void engine_touch(struct stage *st) { st->dirty = true; }

#endif
