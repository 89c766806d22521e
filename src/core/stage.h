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
#include <stdio.h>
#include <stdint.h>
#include <ev.h>
#include <jansson.h>
#include "core/spec.h"
#include "core/option.h"
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

/* What a text a stage refers to is used for (a bit set): the callers that
 * walk a spec's texts through the refs hook pick by it. */
enum stage_ref_use {
	REF_SECRETS = 1u << 0,         /* the env variables it reads are secrets */
	REF_ENV = 1u << 1,             /* an unset env variable without a default is
	                                  an error before the run starts */
	REF_PARAM = 1u << 2,           /* where the stage reads from or writes to
	                                  depends on it: a changed param matters on
	                                  resume */
};

/* Called by a refs hook for each text (s NULL: skip) of a stage: tmpl true
 * for a ${...} template, false for a jq program; label names it in messages
 * ("\"url\"", "a header"); use is a set of enum stage_ref_use. */
typedef void (*stage_ref_fn)(void *arg, const struct sval *text, bool tmpl, unsigned use,
                             const char *label);

struct stage_kind {
	const char *name;              /* unique: the role, a dot, what it does with it */
	const char *description;

	/* ---- how the kind is written in a pipeline file */

	const char *role;              /* the stage key it appears under: "fetch",
	                                  "transform" or "load" */
	const char *selector;          /* the key that picks the kind in the role's
	                                  mapping ("url", "file", "sqlite"); NULL for
	                                  the only kind of its role */
	bool nested;                   /* options under the selector (load: {sqlite:
	                                  {path}}) rather than beside it (fetch: {url,
	                                  headers}) */
	bool sink;                     /* writes records out of the run (a load) */
	bool source;                   /* may run without needs (a fetch) */
	bool journaled;                /* its answers are journaled: a resume replays
	                                  them instead of asking again */
	const struct opt *options;  /* NULL-key-terminated */
	size_t opts_size;              /* of the options struct the walker fills */

	/* Optional: cross-field rules after the walk (url vs file, body vs json,
	 * fan-out rules); m is the mapping the options were read from, k its
	 * key. Reports through opt_error(). */
	void (*check)(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
	              const struct ynode *m);

	/* Optional: frees what the kind's custom readers stored in opts beyond
	 * what option_free() knows (the struct itself is freed by the caller). */
	void (*free_opts)(void *opts);

	/* Optional: the stage's own `retry:` setting (NULL, or one whose set is
	 * false: the engine uses defaults.retry, else the default policy). The
	 * engine applies it to the batches a sink answers SINK_RETRY and to a
	 * source's engine_source_retry(). */
	const struct retry_spec *(*retry)(const struct stage_spec *sp);

	/* Optional: calls fn for every template and jq program the spec refers
	 * to, with what each is used for. */
	void (*refs)(const struct stage_spec *sp, stage_ref_fn fn, void *arg);

	/* Optional (sinks): prints to out where the records went and how to look
	 * at them, after a run in which the stage succeeded (records: how many
	 * it wrote). */
	void (*describe)(const struct stage_spec *sp, struct engine *e, struct state *st,
	                 const struct spec *s, long long records, FILE *out);

	/* Optional (sinks): the template of the local file the stage writes,
	 * which a run leases so two runs never write it at once; NULL when none. */
	const struct sval *(*writes)(const struct stage_spec *sp);

	/* ---- what it does in a run */

	/* Prepares the instance: compile expressions, open files. Runs before the
	 * loop starts; returns 0, or -1 with *err (malloc'd) set. Required. */
	int (*create)(struct stage *st, char **err);

	/* Stages without `needs` (sources): begin producing. Called once. */
	void (*start)(struct stage *st);

	/* Sources: called by the engine when the stage asked to run again
	 * (engine_may_emit() said no, or engine_want_run()) and downstream has
	 * room, or after the backoff of engine_source_retry(). Produce a bounded
	 * amount of work, then ask again if needed. */
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
	bool dirty;                    /* stats changed since the state writer last
	                                  recorded them (it clears the flag) */
	ev_timer timeout;              /* stage_timeout, armed when the stage starts */
	json_t *replay;                /* dlq replay of a source fetch: the requests
	                                  ({method, url, body}) to send instead of its
	                                  own; NULL otherwise */
	bool replay_in;                /* dlq replay of a stage with needs: its
	                                  input is its dead letters */

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
	/* Sources (core/sink.c, engine_source_retry): the attempts that could
	 * not make progress in a row (0: the last start/resume call did), and
	 * the timer of the retry (resume() is not called while it is armed). */
	int src_attempt;
	bool src_asked;                /* the current start/resume call asked */
	ev_timer src_retry;
};

/* The kind that implements spec (never NULL for a valid spec). */
const struct stage_kind *stage_kind_for(const struct stage_spec *spec);

/* Every kind, for `pipectl kinds` style listings and tests. NULL-terminated.
 * Defined in stages/registry.c, the one list of kinds. */
extern const struct stage_kind *const stage_kinds[];

/* The kind named name (see stage_kinds), or NULL. */
const struct stage_kind *stage_kind_by_name(const char *name);

/* The kind of role ("fetch", "load") picked by key selector ("url",
 * "sqlite"; NULL for a role with one kind and no selector), or NULL. */
const struct stage_kind *stage_kind_find(const char *role, const char *selector);

/* True when role is the stage key of some kind. */
bool stage_role_known(const char *role);

/*
 * Every kind's options as JSON: [{"kind", "role", "selector", "nested",
 * "options": [{"key", "type", "default", "min", "max", "words",
 * "required", "inherit", "doc"}]}]. New reference.
 */
json_t *stage_kinds_json(void);

#endif
