/*
 * sink: one retry path for sink batches (declared in engine.h, used by
 * engine.c; stages answer through engine_sink_answer). The backoff is the
 * one requests use (retry_delay of the stage's retry policy, jitter from
 * drand48); each attempt is logged with its reason, and the history of the
 * attempts goes with a dead letter as a request's does.
 *
 * Invariant: st->sink_batch != NULL exactly while the stage holds a batch;
 * then either the sink owes an answer (sink_waiting) or the retry timer is
 * armed, never both.
 *
 * Sources take the same path for what keeps them from making progress
 * (engine_source_retry): the same policy, backoff and log line, with
 * resume() called again instead of write().
 */
#include <assert.h>
#include <stdlib.h>

#include "core/engine.h"
#include "core/flow.h"
#include "base/log.h"
#include "base/policy.h"
#include "base/util.h"

static bool terminal(const struct stage *st)
{
	return st->status >= ST_SUCCEEDED;
}

static void attempt(struct stage *st);

/* Logs a retry of st as both paths do and tells the observers; returns the
 * delay (seconds) before attempt next of policy p. */
static double retry_log(struct stage *st, const struct retry_policy *p, int next,
                        const char *reason)
{
	double d = retry_delay(p, next, drand48());

	engine_retry_scheduled(st, next, d, reason);
	log_warn("stage %s: %s, retry %d/%d in %.*f%s", st->spec->id, reason, next,
	         p->attempts, d < 1 ? 0 : 1, d < 1 ? d * 1000 : d, d < 1 ? "ms" : "s");
	return d;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stage *st = w->data;

	if (st->sink_batch && !terminal(st))
		attempt(st);
}

/* The batch is out of the sink's hands: loaded, or on_error had it. */
static void release(struct stage *st)
{
	json_decref(st->sink_batch);
	json_decref(st->sink_history);
	st->sink_batch = NULL;
	st->sink_history = NULL;
	flow_release(st->sink_lineage);
	st->sink_lineage = NULL;
	st->sink_attempt = 0;
	st->sink_waiting = false;
}

void sink_abandon(struct stage *st)
{
	if (ev_is_active(&st->sink_retry))
		ev_timer_stop(engine_loop(st->eng), &st->sink_retry);
	if (!st->sink_batch)
		return;
	flow_poison(st->sink_lineage);
	release(st);
}

bool sink_busy(const struct stage *st)
{
	return st->sink_batch != NULL;
}

static void answer(struct stage *st, enum sink_result r, const char *reason)
{
	struct retry_policy p;
	json_t *rec;
	size_t i;
	char *msg;

	assert(st->sink_batch && !ev_is_active(&st->sink_retry));
	st->sink_waiting = false;
	if (terminal(st)) {            /* the sink failed the stage itself */
		sink_abandon(st);
		return;
	}
	if (r == SINK_OK) {
		/* Told before release(): observers hear of the load before the
		 * source hears of its ack. */
		engine_batch_loaded(st, json_array_size(st->sink_batch));
		release(st);
		engine_kick(st);
		return;
	}
	if (!reason || !*reason)
		reason = r == SINK_RETRY ? "temporary failure" : "failed";
	json_array_append_new(st->sink_history,
	                      json_pack("{s:i, s:s, s:f}", "attempt", st->sink_attempt,
	                                "error", reason, "at", now_wall()));
	engine_retry_policy(st, &p);
	if (r == SINK_RETRY && st->sink_attempt < p.attempts) {
		double d = retry_log(st, &p, st->sink_attempt + 1, reason);
		ev_timer_set(&st->sink_retry, d, 0);
		ev_timer_start(engine_loop(st->eng), &st->sink_retry);
		return;
	}
	msg = r == SINK_RETRY && st->sink_attempt > 1 ?
	      xasprintf("%s (after %d attempts)", reason, st->sink_attempt) : xstrdup(reason);
	json_array_foreach(st->sink_batch, i, rec)
		if (engine_record_failure(st, rec, msg, st->sink_history) != 0)
			break;                 /* on_error: fail */
	free(msg);
	if (terminal(st)) {
		sink_abandon(st);
		return;
	}
	release(st);
	engine_kick(st);
}

static void attempt(struct stage *st)
{
	struct flow_set *prev = st->lineage;
	json_t *b = json_incref(st->sink_batch);   /* a sink may answer inside */
	char *reason = NULL;
	enum sink_result r;

	st->sink_attempt++;
	st->sink_waiting = true;
	st->lineage = st->sink_lineage;
	r = st->kind->write(st, b, &reason);
	json_decref(b);
	st->lineage = prev;
	engine_touch(st);
	if (r != SINK_PENDING && st->sink_batch)
		answer(st, r, reason);
	free(reason);
}

void sink_write(struct stage *st, json_t *batch, struct flow_set *lin)
{
	assert(!st->sink_batch && st->kind->write);
	st->sink_batch = json_incref(batch);
	st->sink_lineage = lin;
	st->sink_history = json_array();
	st->sink_attempt = 0;
	if (!st->sink_retry.cb) {
		ev_timer_init(&st->sink_retry, retry_cb, 0, 0);
		st->sink_retry.data = st;
	}
	attempt(st);
}

void engine_sink_answer(struct stage *st, enum sink_result r, const char *reason)
{
	if (!st->sink_batch || !st->sink_waiting || r == SINK_PENDING)
		return;                /* stopped meanwhile, or no batch asked for */
	answer(st, r, reason);
}

/* ------------------------------------------------------------ sources */

static void source_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stage *st = w->data;

	(void)loop;
	(void)revents;
	if (!terminal(st) && !engine_stopping(st->eng))
		engine_want_run(st);
}

void engine_source_retry(struct stage *st, const char *reason)
{
	struct retry_policy p;
	double d;

	if (terminal(st) || engine_stopping(st->eng))
		return;
	assert(!ev_is_active(&st->src_retry));
	if (!reason || !*reason)
		reason = "temporary failure";
	st->src_asked = true;
	st->src_attempt++;
	engine_retry_policy(st, &p);
	if (st->src_attempt >= p.attempts) {
		engine_stage_fail(st, "%s (after %d attempt%s)", reason, st->src_attempt,
		                  st->src_attempt == 1 ? "" : "s");
		return;
	}
	/* Nothing else wakes the source while it waits. */
	st->want_run = false;
	d = retry_log(st, &p, st->src_attempt + 1, reason);
	if (!st->src_retry.cb) {
		ev_timer_init(&st->src_retry, source_retry_cb, 0, 0);
		st->src_retry.data = st;
	}
	ev_timer_set(&st->src_retry, d, 0);
	ev_timer_start(engine_loop(st->eng), &st->src_retry);
}

void source_abandon(struct stage *st)
{
	if (st->src_retry.cb && ev_is_active(&st->src_retry))
		ev_timer_stop(engine_loop(st->eng), &st->src_retry);
}
