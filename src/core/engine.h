/*
 * engine: one run of a pipeline on a libev loop the caller owns. It owns the
 * stages, the queues between them and the HTTP client of the run. It never
 * runs the loop, never blocks and handles no signal: engine_start() returns
 * at once, the caller runs the loop and asks the engine to stop
 * (engine_stop()); on_done tells it the run has ended. Several engines may
 * share one loop. What happens is reported to observers (engine_observer);
 * the state writer (core/state_writer.h) is the one that records progress.
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
struct hostreg;

/* What an observer hears about. */
enum engine_event_type {
	ENGINE_EV_RUN_STARTED,         /* engine_start */
	ENGINE_EV_RUN_FINISHED,        /* the run ended (after the drain), status set;
	                                  just before on_done */
	ENGINE_EV_STAGE_STARTED,       /* stage running (its first work) */
	ENGINE_EV_STAGE_FINISHED,      /* stage terminal: status, error */
	ENGINE_EV_BATCH_EMITTED,       /* stage sent records downstream */
	ENGINE_EV_BATCH_LOADED,        /* a sink (a kind with write) committed a
	                                  batch (answered SINK_OK): records */
	ENGINE_EV_ATTEMPT,             /* a request attempt ended: attempt, http_status,
	                                  reason (the error; NULL when it succeeded) */
	ENGINE_EV_RETRY,               /* attempt is scheduled in delay seconds */
	ENGINE_EV_BREAKER,             /* a host's breaker changed: reason
	                                  ("circuit breaker for H: a -> b") */
	ENGINE_EV_QUEUE_DEPTH,         /* stage's input queue changed: records, batches */
	ENGINE_EV_WAIT,                /* stage waits: reason. A source pausing
	                                  ("downstream queue full") is told when
	                                  it starts (delay 0); a request's wait for
	                                  its host pool when it ends: reason "POOL:
	                                  rate|concurrency|breaker", delay the
	                                  seconds waited, attempt the one admitted */
	ENGINE_EV_STOPPING,            /* engine_stop was asked (abort: how) */
};

/* One event. Everything pointed to is borrowed for the duration of the call. */
struct engine_event {
	enum engine_event_type type;
	struct engine *engine;
	struct stage *stage;           /* NULL for run events */
	enum run_status status;        /* RUN_FINISHED, STAGE_FINISHED */
	const char *error;             /* STAGE_FINISHED: why it failed (redacted) */
	size_t records;                /* BATCH_*: records; QUEUE_DEPTH: records queued */
	size_t batches;                /* QUEUE_DEPTH: batches queued */
	const char *reason;            /* WAIT, BREAKER, ATTEMPT: in words */
	int attempt;                   /* ATTEMPT, RETRY, WAIT: number (from 1) */
	long http_status;              /* ATTEMPT: 0 when no answer */
	double delay;                  /* RETRY: seconds until it; WAIT: seconds waited */
	bool abort;                    /* STOPPING: abort rather than graceful */
};

/* An observer: event(arg, ev) is called on the loop, synchronously, as
 * things happen. It must not call back into the engine except through the
 * read-only accessors (engine_stage_at & co.) and must not destroy it. */
struct engine_observer {
	void (*event)(void *arg, const struct engine_event *ev);
	void *arg;
};

/* How engine_stop stops a run. */
enum engine_stop_how {
	/* Start nothing new, interrupt every stage, and let transfers in flight
	 * finish for up to the drain grace so their answers are journaled. */
	ENGINE_STOP_GRACEFUL,
	/* As graceful, but wait for nothing: the run ends on the next loop
	 * iteration. A second call during a graceful stop's drain ends it. */
	ENGINE_STOP_ABORT,
};

/* Called once when the run has ended (after the drain of transfers in
 * flight and the RUN_FINISHED event), from a watcher on the loop, never from
 * inside engine_start or engine_stop. status: ST_SUCCEEDED, ST_FAILED (a
 * stage failed or was cancelled) or ST_INTERRUPTED (engine_stop). The
 * callback may destroy e. */
typedef void (*engine_done_fn)(struct engine *e, enum run_status status, void *arg);

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
	/* Host pools, rate limits and breakers shared with other runs on the
	 * loop (borrowed; NULL = the engine makes its own). */
	struct hostreg *hosts;
	/* Per stage in spec order: the kind that runs it (NULL array or entry =
	 * the registry's kind); tests substitute fakes. Borrowed. */
	const struct stage_kind *const *kinds;
	/* Told about everything that happens (copied; their args borrowed). */
	const struct engine_observer *observers;
	size_t n_observers;
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

/* Builds the run on loop (borrowed; it must outlive the engine): creates
 * every stage (compiling expressions, opening sinks) and records the stage
 * rows. Nothing runs until engine_start. Returns the engine (the caller
 * destroys it), or NULL and *err (malloc'd) on a setup error. */
struct engine *engine_create(struct ev_loop *loop, const struct engine_opts *o, char **err);
/* The object templates see as run (id, pipeline, dir, and started and date
 * as recorded in st) for run run_id of s. Caller owns it. */
json_t *engine_run_object(const struct spec *s, struct state *st, int64_t run_id);
/* Renders the sink path template tmpl with params and run in scope (and
 * env), joined to s's directory. Returns the path (caller frees), or NULL
 * with *err set (malloc'd). */
char *engine_render_sink_path(const struct spec *s, const json_t *params, const json_t *run,
                              const char *tmpl, char **err);
/* Starts the run and returns at once; the caller runs the loop. on_done(e,
 * status, arg) is called exactly once when the run has ended. Call once. */
void engine_start(struct engine *e, engine_done_fn on_done, void *arg);
/* Asks a started run to stop (see engine_stop_how). Returns at once; the
 * run ends through on_done. Calls after the run ended are ignored. */
void engine_stop(struct engine *e, enum engine_stop_how how);
/* The first failure of the run in stage order: its message (borrowed) and
 * stage id in *stage; NULL when no stage failed. */
const char *engine_first_error(const struct engine *e, const char **stage);
/* Frees the run (NULL-safe): transfers still in flight are abandoned. Call
 * before engine_start, after on_done, or from on_done. */
void engine_destroy(struct engine *e);

/* ---- for observers ---- */
/* The stages, in spec order (engine_stage_at(e, i), i < engine_stage_count). */
size_t engine_stage_count(const struct engine *e);
struct stage *engine_stage_at(struct engine *e, size_t i);
/* The run's state database and id (as given in the opts). */
struct state *engine_state(const struct engine *e);
int64_t engine_run_id(const struct engine *e);

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
/* sink.c -> engine.c: st committed a batch of records records (tells the
 * observers BATCH_LOADED). */
void engine_batch_loaded(struct stage *st, size_t records);
/* For the sink and source retry paths (core/sink.c): observers hear that
 * attempt (from 1) of st comes in delay seconds, and why. */
void engine_retry_scheduled(struct stage *st, int attempt, double delay, const char *reason);

/*
 * Sources: st could not make progress for a transient reason (a locked
 * file; reason borrowed, e.g. "PATH: database is locked"). The engine calls
 * st->kind->resume() again after the backoff of the stage's retry policy
 * (engine_retry_policy, on an ev_timer: the loop never waits), logging
 * "stage ID: REASON, retry N/M in D" as the sink path does; resume() is not
 * called for anything else meanwhile. Once the policy's attempts are used
 * up the stage fails with "REASON (after N attempts)". The count is of
 * calls in a row: a start() or resume() call that returns without calling
 * engine_source_retry() made progress and resets it. Call it at most once
 * per start/resume call, from inside it or from a callback of the source.
 */
void engine_source_retry(struct stage *st, const char *reason);
/* core/sink.c, for engine.c: stops st's source retry timer (stop, failure,
 * end of run). */
void source_abandon(struct stage *st);

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
