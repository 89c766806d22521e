/*
 * state_writer: stage rows and progress counters, recorded from engine
 * events. Writes are batched: a stage row is written when the stage ends
 * (status tells what a resume must do), in one transaction with the rows of
 * the other stages that ended in the same loop iteration, before the loop
 * polls again; counters are written in one transaction per tick.
 */
#include "core/state_writer.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"
#include "net/request.h"

/* Seconds between persisted progress updates (stage counters, attempts,
 * events). The journal does not wait for them: the engine commits it on
 * every loop iteration that received answers. */
#define PERSIST_INTERVAL 0.25

struct state_writer {
	struct state *state;
	int64_t run_id;
	struct engine *engine;         /* the run observed, from RUN_STARTED */
	struct ev_loop *loop;
	ev_timer timer;
	ev_prepare ended_prep;         /* writes the rows of ended stages */
	struct stage **ended;          /* stages ended in this loop iteration */
	size_t n_ended, cap_ended;
};

static void persist_stage(struct state_writer *w, struct stage *st)
{
	if (state_stage_update(w->state, w->run_id, st->spec->id, st->status,
	                       &st->stats, st->started, st->finished, st->error) != 0)
		log_warn("cannot record progress of stage %s: %s", st->spec->id,
		         state_errmsg(w->state));
	st->dirty = false;
}

static void persist_dirty(struct state_writer *w)
{
	struct engine *e = w->engine;
	struct requester *rq = engine_requester(e);
	size_t i, n = engine_stage_count(e);
	bool any = false;
	/* Journaled answers still buffered go out with this transaction: its
	 * commit says so like the journal's own (the crash tests order it
	 * after the answers it holds). */
	size_t jn = rq ? requester_journal_pending(rq) : 0;

	for (i = 0; i < n; i++)
		any |= engine_stage_at(e, i)->dirty;
	state_begin(w->state);
	/* Attempts and events, batched: one transaction per tick. */
	if (rq)
		requester_flush(rq, w->state);
	if (!any) {
		if (state_commit(w->state) == 0 && jn > 0)
			log_debug("journal: committed %zu responses", jn);
		return;
	}
	for (i = 0; i < n; i++)
		if (engine_stage_at(e, i)->dirty)
			persist_stage(w, engine_stage_at(e, i));
	if (state_commit(w->state) != 0)
		log_warn("cannot record progress: %s", state_errmsg(w->state));
	else if (jn > 0)
		log_debug("journal: committed %zu responses", jn);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	persist_dirty(t->data);
}

/* The rows of the stages that ended since the last call, in one
 * transaction: a commit per ended stage made a run of many stages spend its
 * time committing. */
static void persist_ended(struct state_writer *w)
{
	size_t i;

	if (w->n_ended == 0)
		return;
	state_begin(w->state);
	for (i = 0; i < w->n_ended; i++)
		persist_stage(w, w->ended[i]);
	if (state_commit(w->state) != 0)
		log_warn("cannot record progress: %s", state_errmsg(w->state));
	w->n_ended = 0;
}

static void ended_prep_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct state_writer *w = p->data;

	ev_prepare_stop(loop, p);
	persist_ended(w);
}

static void on_event(void *arg, const struct engine_event *ev)
{
	struct state_writer *w = arg;
	size_t i;

	switch (ev->type) {
	case ENGINE_EV_RUN_STARTED:
		w->engine = ev->engine;
		w->loop = engine_loop(ev->engine);
		ev_timer_start(w->loop, &w->timer);
		break;
	case ENGINE_EV_STAGE_FINISHED:
		if (!w->loop) {            /* before the run started */
			persist_stage(w, ev->stage);
			break;
		}
		xgrow(&w->ended, &w->cap_ended, w->n_ended + 1, sizeof(*w->ended));
		w->ended[w->n_ended++] = ev->stage;
		ev_prepare_start(w->loop, &w->ended_prep);
		break;
	case ENGINE_EV_RUN_FINISHED:
		ev_timer_stop(w->loop, &w->timer);
		ev_prepare_stop(w->loop, &w->ended_prep);
		w->n_ended = 0;           /* written below with every other row */
		for (i = 0; i < engine_stage_count(w->engine); i++)
			engine_stage_at(w->engine, i)->dirty = true;
		persist_dirty(w);
		break;
	default:
		break;
	}
}

struct state_writer *state_writer_create(struct state *st, int64_t run_id)
{
	struct state_writer *w = xcalloc(1, sizeof(*w));

	w->state = st;
	w->run_id = run_id;
	ev_timer_init(&w->timer, timer_cb, PERSIST_INTERVAL, PERSIST_INTERVAL);
	w->timer.data = w;
	ev_prepare_init(&w->ended_prep, ended_prep_cb);
	w->ended_prep.data = w;
	return w;
}

struct engine_observer state_writer_observer(struct state_writer *w)
{
	return (struct engine_observer){ on_event, w };
}

void state_writer_destroy(struct state_writer *w)
{
	if (!w)
		return;
	if (w->loop) {
		ev_timer_stop(w->loop, &w->timer);
		ev_prepare_stop(w->loop, &w->ended_prep);
	}
	free(w->ended);
	free(w);
}
