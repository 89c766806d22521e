/*
 * engine: runs one pipeline on a libev loop it is given.
 *
 * Scheduling is a dataflow firing rule evaluated in an ev_check watcher (run
 * once per loop iteration, after the poll): stages are visited sinks first,
 * so queues drain before sources refill them. Whenever a callback produces
 * work (emit, want_run, done), an ev_idle watcher is started so the next
 * iteration polls without blocking and the check watcher runs again; it is
 * stopped when no stage can make progress.
 *
 * A pass visits only the stages that were woken: by input (emit), by room
 * downstream (a queue popped or cleared, a stage ended), by an upstream
 * ending, by want_run or engine_kick, and, once per check callback, the
 * stages that had work but could not do it (a full queue downstream, a busy
 * sink, a kind not ready). The order is that of visiting every stage in
 * every pass, which made a pass cost the number of stages: a run of many
 * stages was quadratic.
 *
 * A run goes through phases, all driven by watchers (the engine never runs
 * the loop itself): RUNNING (the firing rule, until every stage is
 * terminal), DRAINING (transfers still in flight may finish for up to
 * DRAIN_GRACE so their answers are journaled; bodies being parsed are waited
 * for), DONE (observers hear RUN_FINISHED, then on_done). engine_stop
 * interrupts every stage; an abort also skips or ends the drain.
 *
 * Every watcher belongs to one engine and the engine keeps no static state,
 * so several engines run side by side on one loop.
 *
 * Invariants (asserted): a stage's queue only holds batches while the stage
 * is not terminal; a terminal stage never changes status and is never pushed
 * to; open_up never underflows; on_done is called exactly once; stages are
 * destroyed only after the HTTP client is gone, so no callback can reach a
 * freed stage.
 */
#include "core/engine.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/flow.h"
#include "net/http.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "net/request.h"
#include "base/secret.h"

/* Batches processed per check callback before yielding to I/O. */
#define SCHED_BUDGET 64
/* Seconds transfers still in flight at the end of a run (a failed stage,
 * a signal) may take to finish, so their answers reach the journal. */
#define DRAIN_GRACE 5.0

enum engine_phase {
	PHASE_IDLE = 0,                /* created, not started */
	PHASE_RUNNING,                 /* stages work */
	PHASE_DRAINING,                /* every stage terminal; transfers finish */
	PHASE_DONE,                    /* on_done called */
};

struct engine {
	const struct spec *spec;
	const struct dag *dag;
	struct ev_loop *loop;
	struct http *http;
	struct requester *rq;
	struct hostreg *hosts;         /* host pools: engine_opts.hosts, or own_hosts */
	struct hostreg *own_hosts;     /* made when the opts gave none */
	json_t *run_obj;
	struct expr_scope scope;
	json_t *path_run_obj;          /* run as sink paths see it (owned) */
	struct state *state;
	int64_t run_id;
	bool quiet;
	bool replaying;                /* a dlq replay: sinks add to what is there */

	struct stage *stages;          /* spec order */
	size_t n;
	size_t n_live;                 /* stages not terminal (from engine_start) */

	/* The scheduler's work list: a bit per position in the topological
	 * order (pos[i] is stage i's), set when the stage is woken. */
	uint64_t *woken;
	size_t *pos;
	struct stage **blocked;        /* had work it could not do: woken each check */
	bool *is_blocked;              /* by stage index */
	size_t n_blocked;
	uint64_t visits;               /* step() calls, told at debug level */
	struct flow *flow;             /* acknowledgements */

	struct engine_observer *obs;
	size_t n_obs;

	ev_check sched_check;
	ev_idle sched_idle;            /* keeps the loop from blocking */
	ev_prepare journal_prep;       /* group commit of the journal */
	ev_timer journal_timer;        /* ... when the group's time is up */
	ev_timer run_timer;            /* settings.run_timeout */
	ev_check drain_check;          /* DRAINING: is everything in flight done? */
	ev_timer drain_timer;          /* DRAINING: DRAIN_GRACE */
	bool run_timed_out;
	bool interrupted;              /* engine_stop was called */
	bool abort;                    /* stop waiting at once (no drain) */
	bool stopping;
	enum engine_phase phase;
	engine_done_fn on_done;
	void *done_arg;
	double started_mono;
};

static bool terminal(const struct stage *st)
{
	return st->status >= ST_SUCCEEDED;
}

static void kick(struct engine *e)
{
	if (e->phase == PHASE_RUNNING && !ev_is_active(&e->sched_idle))
		ev_idle_start(e->loop, &e->sched_idle);
}

/* Puts st on the scheduler's work list. */
static void wake(struct stage *st)
{
	struct engine *e = st->eng;
	size_t p = e->pos[st - e->stages];

	e->woken[p / 64] |= (uint64_t)1 << (p % 64);
}

/* Wakes the stages that feed st (st's queue has room, or st ended). */
static void wake_up(struct stage *st)
{
	struct engine *e = st->eng;
	size_t i = (size_t)(st - e->stages), j;

	for (j = 0; j < e->dag->n_up[i]; j++)
		wake(&e->stages[e->dag->up[i][j]]);
}

static void wake_all(struct engine *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		wake(&e->stages[i]);
}

/* Takes the woken stage of highest position below `below` off the work
 * list into *p. Returns false when there is none. */
static bool take_woken(struct engine *e, size_t below, size_t *p)
{
	size_t w;

	if (below == 0)
		return false;
	w = (below - 1) / 64;
	for (;;) {
		uint64_t bits = e->woken[w];
		size_t top = below - w * 64;       /* bits of word w below `below` */
		if (top < 64)
			bits &= ((uint64_t)1 << top) - 1;
		if (bits) {
			size_t b = 63 - (size_t)__builtin_clzll(bits);
			e->woken[w] &= ~((uint64_t)1 << b);
			*p = w * 64 + b;
			return true;
		}
		if (w == 0)
			return false;
		w--;
	}
}

/* ------------------------------------------------------------ observers */

static void notify(struct engine *e, struct engine_event *ev)
{
	size_t i;

	ev->engine = e;
	for (i = 0; i < e->n_obs; i++)
		e->obs[i].event(e->obs[i].arg, ev);
}

/* The requester's attempts, retries, breaker changes and pool waits, as
 * events of the stage the request belongs to. */
static void on_request_fact(void *arg, const struct request_fact *f)
{
	struct engine *e = arg;
	int i = spec_stage_index(e->spec, f->stage);
	struct engine_event ev = {
		.stage = i >= 0 ? &e->stages[i] : NULL,
		.attempt = f->attempt, .http_status = f->http_status, .delay = f->delay,
	};

	switch (f->type) {
	case REQUEST_FACT_ATTEMPT:
		ev.type = ENGINE_EV_ATTEMPT;
		ev.reason = f->error;
		break;
	case REQUEST_FACT_RETRY:
		ev.type = ENGINE_EV_RETRY;
		break;
	case REQUEST_FACT_BREAKER:
		ev.type = ENGINE_EV_BREAKER;
		ev.reason = f->message;
		break;
	case REQUEST_FACT_WAIT:
		ev.type = ENGINE_EV_WAIT;
		ev.reason = f->message;
		break;
	default:
		return;
	}
	if (ev.stage)
		ev.status = ev.stage->status;
	notify(e, &ev);
}

static void notify_stage(struct stage *st, enum engine_event_type type)
{
	struct engine_event ev = { .type = type, .stage = st, .status = st->status,
	                           .error = st->error };

	notify(st->eng, &ev);
}

static void notify_depth(struct stage *st)
{
	struct engine_event ev = { .type = ENGINE_EV_QUEUE_DEPTH, .stage = st,
	                           .status = st->status, .records = st->in.records,
	                           .batches = st->in.n };

	notify(st->eng, &ev);
}

void engine_batch_loaded(struct stage *st, size_t records)
{
	struct engine_event ev = { .type = ENGINE_EV_BATCH_LOADED, .stage = st,
	                           .status = st->status, .records = records };

	notify(st->eng, &ev);
}

void engine_retry_scheduled(struct stage *st, int attempt, double delay, const char *reason)
{
	struct engine_event ev = { .type = ENGINE_EV_RETRY, .stage = st, .status = st->status,
	                           .attempt = attempt, .delay = delay, .reason = reason };

	notify(st->eng, &ev);
}

/* st sent n records to every live stage downstream. */
static void notify_emitted(struct stage *st, size_t n)
{
	struct engine_event ev = { .type = ENGINE_EV_BATCH_EMITTED, .stage = st,
	                           .status = st->status, .records = n };
	size_t i;

	notify(st->eng, &ev);
	for (i = 0; i < st->n_down; i++)
		if (!terminal(st->down[i]))
			notify_depth(st->down[i]);
}

/* Drops st's input (it stops); observers see the queue empty. */
static void clear_input(struct stage *st)
{
	if (queue_empty(&st->in))
		return;
	queue_clear(&st->in);
	wake_up(st);
	notify_depth(st);
}

/* Group commit of the journal (with the attempts and events buffered
 * since the last one), checked before the loop polls again: once the
 * oldest buffered answer has waited REQUESTER_JOURNAL_GROUP, the group is
 * committed in one transaction; until then a timer is armed for that
 * moment, so an idle loop commits on time too. Answers arriving meanwhile
 * join the group: at most one commit per REQUESTER_JOURNAL_GROUP instead
 * of one per loop iteration (an idle-watcher loop iterates per answer or
 * two), each commit writing its pages once. Why this keeps the crash
 * contract (DESIGN.md section 4):
 * - an answer is committed at most REQUESTER_JOURNAL_GROUP (plus the
 *   iteration in progress) after it was buffered, and journal_add commits
 *   at once when the oldest has waited REQUESTER_JOURNAL_WINDOW while the
 *   loop is busy: a kill -9 loses only answers received within the
 *   window, the repeats the contract excuses;
 * - a stage's end is recorded only after its answers are committed
 *   (set_status), so a resume never takes a stage as done whose answers
 *   it would have to fetch again;
 * - records derived from an answer may reach a sink before the answer is
 *   committed, as before: a resume then fetches it again and the sink
 *   absorbs the repeat (upsert on key, temp-then-rename, delivery log);
 * - a commit is a write() to the WAL (synchronous=NORMAL, no fsync), and a
 *   killed process loses nothing it wrote. */
static void journal_group_commit(struct engine *e)
{
	double age;

	if (!e->rq || requester_journal_pending(e->rq) == 0) {
		ev_timer_stop(e->loop, &e->journal_timer);
		return;
	}
	age = requester_journal_age(e->rq);
	if (age >= REQUESTER_JOURNAL_GROUP) {
		ev_timer_stop(e->loop, &e->journal_timer);
		requester_commit(e->rq);
		return;
	}
	if (!ev_is_active(&e->journal_timer)) {
		ev_timer_set(&e->journal_timer, REQUESTER_JOURNAL_GROUP - age, 0.);
		ev_timer_start(e->loop, &e->journal_timer);
	}
}

static void journal_prep_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	journal_group_commit(w->data);
}

/* The group's time is up (the loop may have been idle meanwhile). */
static void journal_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = w->data;

	if (e->rq && requester_journal_pending(e->rq) > 0)
		requester_commit(e->rq);
}

static double stage_timeout_of(const struct stage *st)
{
	const struct spec *s = st->eng->spec;

	return st->spec->stage_timeout > 0 ? st->spec->stage_timeout : s->stage_timeout;
}

static void set_status(struct stage *st, enum run_status s)
{
	bool started = false;

	if (st->status == s)
		return;
	/* A terminal stage stays as it ended. */
	assert(!terminal(st));
	if (s == ST_RUNNING && st->started == 0) {
		st->started = now_wall();
		started = true;
		if (stage_timeout_of(st) > 0)
			ev_timer_start(st->eng->loop, &st->timeout);
	}
	if (s >= ST_SUCCEEDED) {
		/* Its queue no longer limits the stages feeding it. */
		st->eng->n_live--;
		wake_up(st);
		st->finished = now_wall();
		if (ev_is_active(&st->timeout))
			ev_timer_stop(st->eng->loop, &st->timeout);
	}
	st->status = s;
	st->dirty = true;
	if (started)
		notify_stage(st, ENGINE_EV_STAGE_STARTED);
	if (s >= ST_SUCCEEDED) {
		/* Nothing may wait in the queue of a stage that ended. */
		assert(queue_empty(&st->in));
		/* Its answers reach the journal before its end is recorded. */
		if (st->eng->rq && requester_journal_pending(st->eng->rq) > 0)
			requester_commit(st->eng->rq);
		notify_stage(st, ENGINE_EV_STAGE_FINISHED);
	}
}

/* ------------------------------------------------------------ stage API */

struct ev_loop *engine_loop(struct engine *e) { return e->loop; }
struct http *engine_http(struct engine *e) { return e->http; }
struct requester *engine_requester(struct engine *e) { return e->rq; }
const struct expr_scope *engine_scope(struct engine *e) { return &e->scope; }
const struct spec *engine_spec(struct engine *e) { return e->spec; }
int engine_batch_size(struct engine *e) { return e->spec->batch_size; }
bool engine_stopping(struct engine *e) { return e->stopping; }
bool engine_replaying(const struct engine *e) { return e->replaying; }
size_t engine_stage_count(const struct engine *e) { return e->n; }
struct state *engine_state(const struct engine *e) { return e->state; }
int64_t engine_run_id(const struct engine *e) { return e->run_id; }

struct stage *engine_stage_at(struct engine *e, size_t i)
{
	assert(i < e->n);
	return &e->stages[i];
}

/* Every live downstream queue is below its high watermark. */
static bool room_high(const struct stage *st)
{
	size_t i;

	for (i = 0; i < st->n_down; i++)
		if (!terminal(st->down[i]) && queue_full(&st->down[i]->in))
			return false;
	return true;
}

/* Every live downstream queue is at or below its low watermark. */
static bool room_low(const struct stage *st)
{
	size_t i;

	for (i = 0; i < st->n_down; i++)
		if (!terminal(st->down[i]) && !queue_low(&st->down[i]->in))
			return false;
	return true;
}

uint64_t engine_emit(struct stage *st, json_t *batch)
{
	return engine_emit_lineage(st, batch, st->lineage);
}

uint64_t engine_emit_lineage(struct stage *st, json_t *batch, struct flow_set *lin)
{
	size_t i, n = json_array_size(batch);
	uint64_t id = 0;

	if (n > 0 && terminal(st)) {
		flow_poison(lin);          /* records that go nowhere */
	} else if (n > 0) {
		/* A source's batch starts a lineage; others carry theirs on. */
		lin = st->spec->n_needs == 0 ? flow_new_batch(st->eng->flow, st, &id) :
		      flow_ref(lin);
		for (i = 0; i < st->n_down; i++) {
			/* A stage that succeeded (left out of a resume or a dlq
			 * replay) does not need the records; one that failed, was
			 * cancelled or interrupted never loads them. */
			if (st->down[i]->status > ST_SUCCEEDED)
				flow_poison(lin);
			else if (!terminal(st->down[i])) {
				queue_push_tagged(&st->down[i]->in, batch, flow_ref(lin));
				wake(st->down[i]);
			}
		}
		flow_release(lin);
		st->stats.records_out += (int64_t)n;
		st->dirty = true;
		notify_emitted(st, n);
		kick(st->eng);
	}
	json_decref(batch);
	return id;
}

struct flow_set *engine_hold(struct stage *st)
{
	return flow_ref(st->lineage);
}

void engine_release(struct flow_set *hold)
{
	flow_release(hold);
}

struct flow_set *engine_set_lineage(struct stage *st, struct flow_set *lin)
{
	struct flow_set *prev = st->lineage;

	st->lineage = lin;
	return prev;
}

void engine_retry_policy(const struct stage *st, struct retry_policy *out)
{
	const struct retry_spec *r = st->kind->retry ? st->kind->retry(st->spec) : NULL;

	if (!r || !r->set)
		r = st->eng->spec->retry.set ? &st->eng->spec->retry : NULL;
	if (r)
		*out = r->p;
	else
		retry_policy_default(out);
}

bool engine_may_emit(struct stage *st)
{
	if (st->eng->stopping || terminal(st))
		return false;
	if (room_high(st))
		return true;
	if (!st->want_run) {
		struct engine_event ev = { .type = ENGINE_EV_WAIT, .stage = st,
		                           .status = st->status,
		                           .reason = "downstream queue full" };
		log_debug("stage %s: paused, downstream queue full", st->spec->id);
		notify(st->eng, &ev);
	}
	st->want_run = true;
	wake(st);
	return false;
}

void engine_kick(struct stage *st)
{
	wake(st);
	kick(st->eng);
}

enum on_error engine_on_error(const struct stage *st)
{
	if (st->spec->on_error != ON_ERROR_UNSET)
		return st->spec->on_error;
	if (st->eng->spec->on_error != ON_ERROR_UNSET)
		return st->eng->spec->on_error;
	return ON_ERROR_FAIL;
}

int engine_record_failure(struct stage *st, const json_t *payload, const char *error,
                          const json_t *attempts)
{
	struct engine *e = st->eng;
	enum on_error oe = engine_on_error(st);
	char *msg, *p, *a;

	if (oe == ON_ERROR_FAIL) {
		engine_stage_fail(st, "%s", error);
		return -1;
	}
	msg = redact(error);
	st->stats.errors++;
	st->dirty = true;
	if (oe == ON_ERROR_DLQ) {
		p = payload ? jsonw_dumps(payload) : xstrdup("null");
		a = attempts ? jsonw_dumps(attempts) : xstrdup("[]");
		{
			/* The payload is what a replay sends again: secrets become
			 * ${env.NAME} placeholders, rendered again from the
			 * environment of the replaying process (never "***"). The
			 * attempts are a record of what happened: redacted. */
			char *sp = secret_seal(p, strlen(p), NULL), *ra = redact(a);
			free(p);
			free(a);
			p = sp;
			a = ra;
		}
		if (state_dlq_add(e->state, e->run_id, st->spec->id, p, msg, a, now_wall(),
		                  NULL) != 0) {
			free(p);
			free(a);
			engine_stage_fail(st, "cannot store a dead letter (%s): %s",
			                  state_errmsg(e->state), msg);
			free(msg);
			return -1;
		}
		log_warn("stage %s: dead-lettered: %s", st->spec->id, msg);
		free(p);
		free(a);
	} else {
		log_warn("stage %s: skipped: %s", st->spec->id, msg);
	}
	free(msg);
	return 0;
}

void engine_want_run(struct stage *st)
{
	st->want_run = true;
	wake(st);
	kick(st->eng);
}

void engine_stage_done(struct stage *st)
{
	struct engine *e = st->eng;
	size_t i;

	if (terminal(st))
		return;
	set_status(st, ST_SUCCEEDED);
	for (i = 0; i < st->n_down; i++) {
		/* Each stage upstream finishes once, and only those counted. */
		assert(st->down[i]->open_up > 0);
		st->down[i]->open_up--;
		wake(st->down[i]);
	}
	log_debug("stage %s: succeeded", st->spec->id);
	kick(e);
}

/* Cancels everything downstream of st that has not finished. */
static void cancel_down(struct stage *st, const char *cause)
{
	size_t i;

	for (i = 0; i < st->n_down; i++) {
		struct stage *d = st->down[i];
		if (terminal(d))
			continue;
		if (d->kind->stop)
			d->kind->stop(d);
		sink_abandon(d);
		source_abandon(d);
		clear_input(d);
		free(d->error);
		d->error = xasprintf("cancelled: stage %s failed", cause);
		set_status(d, ST_CANCELLED);
		cancel_down(d, cause);
	}
}

void engine_stage_fail(struct stage *st, const char *fmt, ...)
{
	va_list ap;
	char *raw;

	if (terminal(st))
		return;
	va_start(ap, fmt);
	raw = xvasprintf(fmt, ap);
	va_end(ap);
	free(st->error);
	st->error = redact(raw);
	free(raw);
	st->stats.errors++;
	if (st->kind->stop)
		st->kind->stop(st);
	sink_abandon(st);
	source_abandon(st);
	clear_input(st);
	set_status(st, ST_FAILED);
	log_error("stage %s failed: %s", st->spec->id, st->error);
	cancel_down(st, st->spec->id);
	kick(st->eng);
}

/* ------------------------------------------------------------ scheduling */

static bool all_terminal(const struct engine *e)
{
	return e->n_live == 0;
}

/* Calls a source's start or resume; one that did not ask for a retry made
 * progress (see engine_source_retry). */
static void call_source(struct stage *st, void (*fn)(struct stage *))
{
	st->src_asked = false;
	fn(st);
	if (!st->src_asked)
		st->src_attempt = 0;
	st->src_asked = false;
}

/* Lets st do one step of work. Returns true if it did anything. */
static bool step(struct engine *e, struct stage *st)
{
	if (terminal(st)) {
		assert(queue_empty(&st->in));
		return false;
	}
	if (!queue_empty(&st->in) && room_high(st) && !sink_busy(st) &&
	    (!st->kind->ready || st->kind->ready(st))) {
		void *lin = NULL;
		json_t *b = queue_pop_tagged(&st->in, &lin);
		wake_up(st);
		notify_depth(st);
		set_status(st, ST_RUNNING);
		st->stats.records_in += (int64_t)json_array_size(b);
		st->dirty = true;
		if (st->kind->write) {
			sink_write(st, b, lin);     /* keeps b and its lineage */
		} else {
			assert(!st->lineage);
			st->lineage = lin;
			st->kind->push(st, b);
			st->lineage = NULL;
			if (terminal(st) && st->status != ST_SUCCEEDED)
				flow_poison(lin);  /* failed on this batch */
			flow_release(lin);
		}
		json_decref(b);
		return true;
	}
	if (st->want_run && !e->stopping && room_low(st) && !ev_is_active(&st->src_retry)) {
		st->want_run = false;
		call_source(st, st->kind->resume);
		return true;
	}
	if (st->spec->n_needs > 0 && !st->finish_called && st->open_up == 0 &&
	    queue_empty(&st->in) && !sink_busy(st)) {
		st->finish_called = true;
		set_status(st, ST_RUNNING);
		st->kind->finish(st);
		return true;
	}
	return false;
}

static void run_ended(struct engine *e);

/* A stage that step() left with work it could not do: its obstacle (a
 * full queue, a busy sink, a kind not ready) may go away without a wake. */
static bool has_work(const struct stage *st)
{
	return !terminal(st) &&
	       (!queue_empty(&st->in) || st->want_run ||
	        (st->spec->n_needs > 0 && !st->finish_called && st->open_up == 0));
}

static void sched_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct engine *e = w->data;
	int budget = SCHED_BUDGET;
	bool progress = true;
	size_t k, p, i;

	for (i = 0; i < e->n_blocked; i++) {
		e->is_blocked[e->blocked[i] - e->stages] = false;
		wake(e->blocked[i]);
	}
	e->n_blocked = 0;
	while (progress && budget > 0) {
		progress = false;
		/* One pass, from the last position down, over the woken stages;
		 * a stage woken below the current position is seen in this pass,
		 * one at or above it in the next, as when every stage is visited. */
		for (k = e->n; budget > 0 && take_woken(e, k, &p); k = p) {
			struct stage *st = &e->stages[e->dag->order[p]];
			e->visits++;
			if (step(e, st)) {
				progress = true;
				budget--;
				wake(st);
			} else if (has_work(st) && !e->is_blocked[st - e->stages]) {
				e->is_blocked[st - e->stages] = true;
				e->blocked[e->n_blocked++] = st;
			}
		}
	}
	if (all_terminal(e)) {
		run_ended(e);
	} else if (budget > 0) {
		/* Nothing runnable: block in poll until I/O or a timer. */
		ev_idle_stop(loop, &e->sched_idle);
	} else {
		ev_idle_start(loop, &e->sched_idle);
	}
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	/* Only keeps the loop from blocking; the work happens in sched_cb and
	 * drain_check_cb. */
}

/* Stops every stage that is still running and marks it interrupted. */
static void interrupt_all(struct engine *e)
{
	size_t i;

	e->stopping = true;
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[i];
		if (terminal(st))
			continue;
		if (st->kind->stop)
			st->kind->stop(st);
		sink_abandon(st);
		source_abandon(st);
		clear_input(st);
		set_status(st, ST_INTERRUPTED);
	}
	/* Transfers in flight may finish (the drain waits for them for up to
	 * DRAIN_GRACE) so their answers are journaled; nothing new starts. */
	kick(e);
}

static void fmt_dur(double s, char *out, size_t n)
{
	if (s >= 60 && s == (double)(long long)s && (long long)s % 60 == 0)
		snprintf(out, n, "%lldm", (long long)s / 60);
	else if (s >= 1)
		snprintf(out, n, "%gs", s);
	else
		snprintf(out, n, "%gms", s * 1000);
}

static void stage_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stage *st = w->data;
	char d[32];

	fmt_dur(stage_timeout_of(st), d, sizeof(d));
	engine_stage_fail(st, "stage_timeout (%s) exceeded", d);
}

static void run_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = w->data;
	char d[32];
	size_t i;

	fmt_dur(e->spec->run_timeout, d, sizeof(d));
	log_error("run_timeout (%s) exceeded: stopping the run", d);
	e->run_timed_out = true;
	e->abort = true;               /* no grace for transfers in flight */
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[e->dag->order[i]];
		if (!terminal(st))
			engine_stage_fail(st, "run_timeout (%s) exceeded", d);
	}
}

/* The run is over: observers hear it, then on_done. Last thing a watcher
 * callback does: on_done may destroy e. */
static void finish(struct engine *e)
{
	struct engine_event ev = { .type = ENGINE_EV_RUN_FINISHED };
	enum run_status result = ST_SUCCEEDED;
	size_t i;

	assert(e->phase == PHASE_DRAINING);
	ev_check_stop(e->loop, &e->drain_check);
	ev_timer_stop(e->loop, &e->drain_timer);
	ev_idle_stop(e->loop, &e->sched_idle);
	ev_prepare_stop(e->loop, &e->journal_prep);
	ev_timer_stop(e->loop, &e->journal_timer);
	e->phase = PHASE_DONE;
	for (i = 0; i < e->n; i++) {
		enum run_status s = e->stages[i].status;
		if (s == ST_FAILED || s == ST_CANCELLED)
			result = ST_FAILED;
	}
	if (e->interrupted)
		result = ST_INTERRUPTED;
	ev.status = result;
	notify(e, &ev);
	assert(e->on_done);
	e->on_done(e, result, e->done_arg);
}

static bool drained(const struct engine *e)
{
	/* An answer whose body a worker still parses is journaled when the
	 * parse ends (also for a request cancelled meanwhile): wait for it as
	 * for a transfer. */
	return http_inflight(e->http) == 0 && requester_parsing(e->rq) == 0;
}

static void drain_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct engine *e = w->data;

	if (drained(e) || e->abort)
		finish(e);
}

static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = w->data;

	/* A parse is work of this process that ends (an abort stops waiting
	 * for it); a transfer may wait on a server forever. */
	if (http_inflight(e->http) == 0)
		return;
	log_warn("transfers still in flight after %.0fs: abandoning them", DRAIN_GRACE);
	finish(e);
}

/* Every stage is terminal: the run's own watchers stop, and transfers still
 * in flight may finish (up to DRAIN_GRACE), and bodies being parsed: their
 * stages no longer wait for them, but a successful answer is journaled, so
 * a resume neither asks for it nor delivers it again. */
static void run_ended(struct engine *e)
{
	size_t i;

	assert(e->phase == PHASE_RUNNING && all_terminal(e));
	log_debug("scheduler: %zu stages, %llu visits", e->n,
	          (unsigned long long)e->visits);
	ev_check_stop(e->loop, &e->sched_check);
	ev_idle_stop(e->loop, &e->sched_idle);
	ev_timer_stop(e->loop, &e->run_timer);
	for (i = 0; i < e->n; i++)
		ev_timer_stop(e->loop, &e->stages[i].timeout);
	e->phase = PHASE_DRAINING;
	if (e->abort || drained(e)) {
		finish(e);
		return;
	}
	log_debug("waiting for %zu transfers in flight and %zu bodies being parsed",
	          http_inflight(e->http), requester_parsing(e->rq));
	ev_check_start(e->loop, &e->drain_check);
	ev_timer_start(e->loop, &e->drain_timer);
}

/* ------------------------------------------------------------ lifecycle */

void engine_resume_plan(const struct dag *g, const bool *done, enum resume_action *act)
{
	size_t k, j;

	/* Sinks first: a stage runs if it did not succeed or if a stage it
	 * feeds runs (that one needs its records again). */
	for (k = g->n; k-- > 0; ) {
		size_t i = g->order[k];
		act[i] = done[i] ? RESUME_SKIP : RESUME_RUN;
		if (act[i] == RESUME_SKIP)
			for (j = 0; j < g->n_down[i]; j++)
				if (act[g->down[i][j]] != RESUME_SKIP)
					act[i] = RESUME_REPLAY;
	}
}

/* Resume: loads the stored stage rows and leaves out what need not run. */
static int setup_resume(struct engine *e, char **err)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(e->state, e->run_id, &rows), i;
	bool *done = xcalloc(e->n, sizeof(*done));
	enum resume_action *act = xcalloc(e->n, sizeof(*act));
	size_t k;

	if (n < 0) {
		*err = xasprintf("cannot read the stages of run %lld: %s", (long long)e->run_id,
		                 state_errmsg(e->state));
		free(done);
		free(act);
		return -1;
	}
	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(e->spec, rows[i].stage);
		if (idx >= 0 && rows[i].status == ST_SUCCEEDED) {
			struct stage *st = &e->stages[idx];
			done[idx] = true;
			st->stats = rows[i].stats;
			st->started = rows[i].started;
			st->finished = rows[i].finished;
		}
	}
	engine_resume_plan(e->dag, done, act);
	for (k = 0; k < e->n; k++) {
		struct stage *st = &e->stages[k];
		if (act[k] == RESUME_SKIP) {
			st->status = ST_SUCCEEDED;
			log_info("stage %s: succeeded before, not run again", st->spec->id);
		} else {
			memset(&st->stats, 0, sizeof(st->stats));
			st->started = st->finished = 0;
			st->dirty = true;
			if (act[k] == RESUME_REPLAY)
				log_info("stage %s: succeeded before; run again to feed what follows "
				         "(requests answered from the journal)", st->spec->id);
		}
	}
	stage_rows_free(rows, n);
	free(done);
	free(act);
	return 0;
}

/* Marks x and everything downstream of it. */
static void mark_down(struct engine *e, size_t x, bool *in)
{
	size_t j;

	if (in[x])
		return;
	in[x] = true;
	for (j = 0; j < e->dag->n_down[x]; j++)
		mark_down(e, e->dag->down[x][j], in);
}

/* A dlq replay runs stage x on the payloads, then what is downstream of it;
 * every other stage is left out (recorded as succeeded with no records). */
static void setup_replay(struct engine *e, size_t x, json_t *payloads)
{
	bool *in = xcalloc(e->n, sizeof(*in));
	size_t i, j, bs = (size_t)e->spec->batch_size;
	struct stage *xs = &e->stages[x];

	mark_down(e, x, in);
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[i];
		if (!in[i]) {
			st->status = ST_SUCCEEDED;   /* left out: no records */
			st->dirty = true;
			continue;
		}
		st->open_up = 0;
		for (j = 0; j < e->dag->n_up[i]; j++)
			if (in[e->dag->up[i][j]] && e->dag->up[i][j] != i && i != x)
				st->open_up++;
	}
	if (xs->spec->n_needs == 0) {
		xs->replay = json_incref(payloads);
	} else {
		json_t *batch = json_array(), *p;
		xs->replay_in = true;
		json_array_foreach(payloads, i, p) {
			json_array_append(batch, p);
			if (json_array_size(batch) >= bs) {
				queue_push(&xs->in, batch);
				json_decref(batch);
				batch = json_array();
			}
		}
		if (json_array_size(batch))
			queue_push(&xs->in, batch);
		json_decref(batch);
	}
	free(in);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct engine *engine_create(struct ev_loop *loop, const struct engine_opts *o, char **err)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	const struct spec *s = o->spec;
	size_t i, j;

	e->spec = s;
	e->dag = o->dag;
	e->state = o->state;
	e->run_id = o->run_id;
	e->quiet = o->quiet;
	e->loop = loop;
	if (o->n_observers > 0) {
		e->obs = xcalloc(o->n_observers, sizeof(*e->obs));
		memcpy(e->obs, o->observers, o->n_observers * sizeof(*e->obs));
		e->n_obs = o->n_observers;
	}
	e->http = http_create(e->loop, s->concurrency);
	{
		struct transport tr;
		http_transport(e->http, &tr);
		/* Runs sharing a registry share their hosts' limits and breakers. */
		e->hosts = o->hosts ? o->hosts : (e->own_hosts = hostreg_create(e->loop));
		e->rq = requester_create(e->loop, &tr, e->hosts, s->hosts, s->n_hosts, o->run_id);
	}
	if (o->paths_run_id > 0)
		requester_set_key_run(e->rq, o->paths_run_id);
	if (e->n_obs > 0)
		requester_listen(e->rq, on_request_fact, e);
	e->run_obj = engine_run_object(s, o->state, o->run_id);
	/* A dlq replay adds to the files the replayed run wrote: its sink
	 * paths are rendered with that run's id, start and date. */
	e->path_run_obj = o->paths_run_id > 0 && o->paths_run_id != o->run_id ?
	                  engine_run_object(s, o->state, o->paths_run_id) :
	                  json_incref(e->run_obj);
	e->scope.params = o->params;
	e->scope.run = e->run_obj;
	e->n = s->n_stages;
	e->stages = xcalloc(e->n, sizeof(*e->stages));
	e->flow = flow_create();
	e->woken = xcalloc(e->n / 64 + 1, sizeof(*e->woken));
	e->pos = xcalloc(e->n ? e->n : 1, sizeof(*e->pos));
	e->blocked = xcalloc(e->n ? e->n : 1, sizeof(*e->blocked));
	e->is_blocked = xcalloc(e->n ? e->n : 1, sizeof(*e->is_blocked));
	for (i = 0; i < e->n; i++)
		e->pos[e->dag->order[i]] = i;

	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[i];
		st->spec = &s->stages[i];
		st->index = i;
		st->eng = e;
		st->kind = o->kinds && o->kinds[i] ? o->kinds[i] : stage_kind_for(st->spec);
		st->status = ST_PENDING;
		queue_init(&st->in, (size_t)s->queue_high, (size_t)s->queue_low);
		st->in.drop_tag = flow_drop;
		st->n_down = e->dag->n_down[i];
		st->down = xcalloc(st->n_down ? st->n_down : 1, sizeof(*st->down));
		for (j = 0; j < st->n_down; j++)
			st->down[j] = &e->stages[e->dag->down[i][j]];
		st->open_up = e->dag->n_up[i];
		ev_timer_init(&st->timeout, stage_timeout_cb, stage_timeout_of(st), 0);
		st->timeout.data = st;
	}
	/* Rows in topological order, so `status` lists stages as they flow.
	 * The engine writes them itself, not an observer: a run whose rows
	 * cannot be recorded must not start (engine_create fails), and the
	 * resume plan below reads them. */
	state_begin(e->state);
	if (o->resume) {
		/* Stages added to the file since the run started (resume --force):
		 * the rows are read once and looked up by name. */
		struct stage_row *rows = NULL;
		int n = state_stages_list(e->state, e->run_id, &rows), k;
		const char **names = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*names));
		for (k = 0; k < n; k++)
			names[k] = rows[k].stage;
		qsort(names, n > 0 ? (size_t)n : 0, sizeof(*names), cmp_name);
		for (i = 0; i < e->n; i++) {
			const char *id = e->stages[i].spec->id;
			if (n > 0 && bsearch(&id, names, (size_t)n, sizeof(*names), cmp_name))
				e->stages[i].index = (size_t)-1;  /* row exists */
		}
		free(names);
		stage_rows_free(rows, n);
	}
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[e->dag->order[i]];
		if (st->index == (size_t)-1) {
			st->index = e->dag->order[i];
			continue;
		}
		if (state_stage_create(e->state, e->run_id, st->spec->id, st->kind->name) != 0) {
			*err = xasprintf("cannot record stage %s: %s", st->spec->id,
			                 state_errmsg(e->state));
			state_commit(e->state);
			engine_destroy(e);
			return NULL;
		}
	}
	state_commit(e->state);
	if (o->replay && o->replay_stage >= 0) {
		e->replaying = true;
		setup_replay(e, (size_t)o->replay_stage, o->replay);
	}
	requester_use_journal(e->rq, e->state, o->resume);
	if (o->resume && setup_resume(e, err) != 0) {
		engine_destroy(e);
		return NULL;
	}
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[e->dag->order[i]];
		char *msg = NULL;
		if (terminal(st))
			continue;              /* not part of a replay */
		if (st->kind->create(st, &msg) != 0) {
			char *r = redact(msg ? msg : "setup failed");
			*err = xasprintf("stage %s: %s", st->spec->id, r);
			free(r);
			free(msg);
			engine_destroy(e);
			return NULL;
		}
	}
	ev_check_init(&e->sched_check, sched_cb);
	e->sched_check.data = e;
	ev_idle_init(&e->sched_idle, idle_cb);
	ev_prepare_init(&e->journal_prep, journal_prep_cb);
	e->journal_prep.data = e;
	ev_timer_init(&e->journal_timer, journal_timer_cb, REQUESTER_JOURNAL_GROUP, 0.);
	e->journal_timer.data = e;
	ev_timer_init(&e->run_timer, run_timeout_cb, s->run_timeout > 0 ? s->run_timeout : 0, 0);
	e->run_timer.data = e;
	ev_check_init(&e->drain_check, drain_check_cb);
	e->drain_check.data = e;
	ev_timer_init(&e->drain_timer, drain_timer_cb, DRAIN_GRACE, 0);
	e->drain_timer.data = e;
	return e;
}

void engine_start(struct engine *e, engine_done_fn on_done, void *arg)
{
	struct engine_event ev = { .type = ENGINE_EV_RUN_STARTED };
	size_t i;

	assert(e->phase == PHASE_IDLE && on_done);
	e->on_done = on_done;
	e->done_arg = arg;
	e->phase = PHASE_RUNNING;
	e->started_mono = now_mono();
	e->n_live = 0;
	for (i = 0; i < e->n; i++)
		e->n_live += !terminal(&e->stages[i]);
	wake_all(e);
	/* The loop's time may be that of its last iteration, or of its
	 * creation (setting up the run takes a while): the timeouts count from
	 * now. */
	ev_now_update(e->loop);
	notify(e, &ev);
	ev_check_start(e->loop, &e->sched_check);
	ev_prepare_start(e->loop, &e->journal_prep);
	if (e->spec->run_timeout > 0)
		ev_timer_start(e->loop, &e->run_timer);

	for (i = 0; i < e->n && !e->stopping; i++) {
		struct stage *st = &e->stages[e->dag->order[i]];
		if ((st->spec->n_needs == 0 || st->replay) && !terminal(st)) {
			set_status(st, ST_RUNNING);
			call_source(st, st->kind->start);
		}
	}
	/* Stopped before it started: nothing ran, every stage is interrupted. */
	if (e->interrupted)
		interrupt_all(e);
	/* The firing rule, and the end of a run with nothing to do, happen on
	 * the loop: on_done is never called from in here. */
	kick(e);
}

void engine_stop(struct engine *e, enum engine_stop_how how)
{
	struct engine_event ev = { .type = ENGINE_EV_STOPPING,
	                           .abort = how == ENGINE_STOP_ABORT };

	if (e->phase == PHASE_DONE)
		return;
	notify(e, &ev);
	e->interrupted = true;
	wake_all(e);
	if (how == ENGINE_STOP_ABORT)
		e->abort = true;
	if (e->phase == PHASE_RUNNING) {
		interrupt_all(e);
	} else if (e->phase == PHASE_DRAINING && e->abort) {
		/* drain_check_cb ends the run on the next iteration; the idle
		 * watcher keeps the loop from blocking on transfers until then. */
		if (!ev_is_active(&e->sched_idle))
			ev_idle_start(e->loop, &e->sched_idle);
	} else if (e->phase == PHASE_IDLE) {
		e->stopping = true;    /* engine_start starts nothing */
	}
}

void engine_destroy(struct engine *e)
{
	size_t i;

	if (!e)
		return;
	/* The loop outlives the engine: none of its watchers may stay on it. */
	ev_check_stop(e->loop, &e->sched_check);
	ev_idle_stop(e->loop, &e->sched_idle);
	ev_prepare_stop(e->loop, &e->journal_prep);
	ev_timer_stop(e->loop, &e->journal_timer);
	ev_timer_stop(e->loop, &e->run_timer);
	ev_check_stop(e->loop, &e->drain_check);
	ev_timer_stop(e->loop, &e->drain_timer);
	for (i = 0; i < e->n; i++)
		ev_timer_stop(e->loop, &e->stages[i].timeout);
	flow_freeze(e->flow);          /* what is still held is not acked */
	/* Requests first (no callbacks into stages), then the transfers they
	 * had in flight, then the pools those transfers point at. */
	if (e->rq)
		requester_cancel_all(e->rq);
	http_destroy(e->http);
	e->http = NULL;
	requester_destroy(e->rq);
	e->rq = NULL;
	hostreg_destroy(e->own_hosts);
	e->hosts = e->own_hosts = NULL;
	for (i = 0; i < e->n; i++) {
		struct stage *st = &e->stages[i];
		if (st->kind)
			st->kind->destroy(st);
		sink_abandon(st);
		source_abandon(st);
		queue_clear(&st->in);
		json_decref(st->replay);
		free(st->down);
		free(st->error);
	}
	free(e->stages);
	free(e->woken);
	free(e->pos);
	free(e->blocked);
	free(e->is_blocked);
	free(e->obs);
	flow_destroy(e->flow);
	json_decref(e->run_obj);
	json_decref(e->path_run_obj);
	free(e);
}

/* ------------------------------------------------------------ reporting */

const char *engine_first_error(const struct engine *e, const char **stage)
{
	size_t i;

	for (i = 0; i < e->n; i++) {
		const struct stage *st = &e->stages[e->dag->order[i]];
		if (st->status == ST_FAILED && st->error) {
			*stage = st->spec->id;
			return st->error;
		}
	}
	return NULL;
}

json_t *engine_run_object(const struct spec *s, struct state *st, int64_t run_id)
{
	/* run.dir: absolute, so file:// URLs can be built from it. */
	char *abs = realpath(s->dir, NULL);
	struct run_row rr = { 0 };
	char started[32];
	json_t *run = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)run_id,
	                        "pipeline", s->name, "dir", abs ? abs : s->dir);

	free(abs);
	/* run.started and run.date: when the run was created, as recorded,
	 * so that a resumed run renders the same paths as its first part. */
	if (state_run_get(st, run_id, &rr) == 1 && rr.started > 0) {
		fmt_time(rr.started, started, sizeof(started));
		json_object_set_new(run, "started", json_string(started));
		started[10] = '\0';
		json_object_set_new(run, "date", json_string(started));
	}
	run_row_free(&rr);
	return run;
}

char *engine_render_sink_path(const struct spec *s, const json_t *params, const json_t *run,
                              const char *tmpl, char **err)
{
	struct expr_scope scope = { params, run };
	struct expr *t;
	char *msg = NULL, *rel;
	size_t off;

	/* Compiling a jq program costs milliseconds: a plain path needs none. */
	if (expr_template_is_const(tmpl) && !strstr(tmpl, "$${"))
		return path_join(s->dir, tmpl);
	t = expr_template(tmpl, &scope, &msg, &off);
	if (!t) {
		*err = xasprintf("invalid template in \"path\": %s", msg);
		free(msg);
		return NULL;
	}
	rel = expr_render(t, NULL, &msg);
	expr_free(t);
	if (!rel) {
		*err = xasprintf("cannot render \"path\" %s: %s", tmpl, msg);
		free(msg);
		return NULL;
	}
	if (!*rel) {
		*err = xasprintf("\"path\" %s renders as an empty string", tmpl);
		free(rel);
		return NULL;
	}
	{
		char *p = path_join(s->dir, rel);
		free(rel);
		return p;
	}
}

char *engine_render_path(struct engine *e, const char *tmpl, char **err)
{
	return engine_render_sink_path(e->spec, e->scope.params, e->path_run_obj, tmpl, err);
}

json_t *engine_sink_columns(struct stage *st, const char *table)
{
	struct engine *e = st->eng;
	char *text = NULL;
	json_t *cols = NULL;

	if (state_sink_columns_get(e->state, e->spec->name, st->spec->id, table, &text) == 1)
		cols = json_loads(text, 0, NULL);
	free(text);
	if (cols && !json_is_array(cols)) {
		json_decref(cols);
		cols = NULL;
	}
	return cols;
}

void engine_sink_columns_save(struct stage *st, const char *table, const json_t *cols)
{
	struct engine *e = st->eng;
	char *text = jsonw_dumps(cols);

	/* Only a later run without records needs this: a failure to record it
	 * is worth a warning, not the stage. */
	if (state_sink_columns_put(e->state, e->spec->name, st->spec->id, table, text,
	                           now_wall()) != 0)
		log_warn("stage %s: %s", st->spec->id, state_errmsg(e->state));
	free(text);
}
