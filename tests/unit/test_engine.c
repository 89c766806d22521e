/*
 * test_engine: the engine as a library, with fake stage kinds (a source that
 * emits N batches, a transform that passes batches on, a sink that records
 * what it got and can hold batches to create backpressure) substituted
 * through engine_opts.kinds: the firing rule, backpressure, cancellation,
 * engine_stop graceful vs abort (a real fetch against tests/mockapi, its
 * answer held at a gate), two runs on one loop, observers and the state
 * writer. The pipelines are YAML read by config_load.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "core/config_load.h"
#include "core/dag.h"
#include "core/engine.h"
#include "core/spec.h"
#include "core/state_writer.h"
#include "base/log.h"
#include "base/util.h"
#include "net/hostreg.h"
#include "net/http.h"
#include "store/state.h"
#include "tap.h"

static struct ev_loop *loop;
static char tmpdir[] = "/tmp/test_engine.XXXXXX";
static struct state *db;
static struct buf trace;         /* "T1 S1 ..." : pushes, in order */

/* ------------------------------------------------------------ fake kinds */

struct fake {
	const char *id;
	/* source */
	int n_batches, batch_records;
	int fail_after;                /* fail before emitting batch k; -1 never */
	int emitted;                   /* batches */
	int resumes;
	bool resumed_above_low;        /* resumed while a queue it feeds was above low */
	const char *script;            /* busy source: per start/resume call, B asks
	                                  for a retry, x emits a batch; then as src.
	                                  write sink: per write, R answers RETRY,
	                                  anything else OK; then OK */
	size_t pos;
	/* transform and sink */
	bool fail_on_push;
	bool hold;                     /* sink: not ready, batches wait in its queue */
	int got_batches;
	long long got_records, next_expected;
	bool out_of_order;
	int stops, finishes;
	struct stage *st;
};

static struct fake *fakes[32];
static size_t n_fakes;

static struct fake *fake_new(const char *id)
{
	struct fake *f = xcalloc(1, sizeof(*f));

	f->id = id;
	f->fail_after = -1;
	f->n_batches = 3;
	f->batch_records = 1;
	fakes[n_fakes++] = f;
	return f;
}

static void fakes_free(void)
{
	while (n_fakes > 0)
		free(fakes[--n_fakes]);
}

static int fake_create(struct stage *st, char **err)
{
	size_t i;

	for (i = 0; i < n_fakes; i++)
		if (strcmp(fakes[i]->id, st->spec->id) == 0) {
			st->ctx = fakes[i];
			fakes[i]->st = st;
			return 0;
		}
	*err = xasprintf("no fake for stage %s", st->spec->id);
	return -1;
}

static void fake_destroy(struct stage *st)
{
	(void)st;                      /* the fakes belong to the test */
}

static void fake_stop(struct stage *st)
{
	((struct fake *)st->ctx)->stops++;
}

static void fake_finish(struct stage *st)
{
	((struct fake *)st->ctx)->finishes++;
	engine_stage_done(st);
}

static void src_produce(struct stage *st)
{
	struct fake *f = st->ctx;

	while (f->emitted < f->n_batches) {
		json_t *b;
		int k;
		if (f->fail_after >= 0 && f->emitted == f->fail_after) {
			engine_stage_fail(st, "fake source failed");
			return;
		}
		if (!engine_may_emit(st))
			return;
		b = json_array();
		for (k = 0; k < f->batch_records; k++)
			json_array_append_new(b, json_integer(f->emitted * f->batch_records + k));
		f->emitted++;
		engine_emit(st, b);
	}
	engine_stage_done(st);
}

static void src_start(struct stage *st)
{
	src_produce(st);
}

static void src_resume(struct stage *st)
{
	struct fake *f = st->ctx;
	size_t i;

	f->resumes++;
	for (i = 0; i < st->n_down; i++)
		if (st->down[i]->in.records > st->down[i]->in.low)
			f->resumed_above_low = true;
	src_produce(st);
}

/* A source that cannot make progress now and then (a locked file). */
static void busy_step(struct stage *st)
{
	struct fake *f = st->ctx;
	char ch = f->script[f->pos];
	json_t *b;

	f->resumes++;
	if (!ch) {
		src_produce(st);
		return;
	}
	f->pos++;
	if (ch == 'B') {
		engine_source_retry(st, "fake busy");
		return;
	}
	b = json_array();
	json_array_append_new(b, json_integer(f->emitted++));
	engine_emit(st, b);
	engine_want_run(st);
}

static void xf_push(struct stage *st, json_t *batch)
{
	struct fake *f = st->ctx;

	buf_printf(&trace, "%s%s%lld", trace.len ? " " : "", f->id,
	           json_integer_value(json_array_get(batch, 0)));
	if (f->fail_on_push) {
		engine_stage_fail(st, "fake transform failed");
		return;
	}
	f->got_batches++;
	engine_emit(st, json_incref(batch));
}

static void sink_push(struct stage *st, json_t *batch)
{
	struct fake *f = st->ctx;
	size_t i;
	json_t *r;

	buf_printf(&trace, "%s%s%lld", trace.len ? " " : "", f->id,
	           json_integer_value(json_array_get(batch, 0)));
	f->got_batches++;
	json_array_foreach(batch, i, r) {
		if (json_integer_value(r) != f->next_expected)
			f->out_of_order = true;
		f->next_expected = json_integer_value(r) + 1;
		f->got_records++;
	}
}

/* A sink with write: answers by its script, then commits. */
static enum sink_result sink_write_fake(struct stage *st, json_t *batch, char **reason)
{
	struct fake *f = st->ctx;

	if (f->script && f->script[f->pos] && f->script[f->pos++] == 'R') {
		*reason = xstrdup("fake lock");
		return SINK_RETRY;
	}
	sink_push(st, batch);
	return SINK_OK;
}

static bool sink_ready(struct stage *st)
{
	return !((struct fake *)st->ctx)->hold;
}

static const struct stage_kind fake_source = {
	.name = "fake.source", .create = fake_create, .start = src_start,
	.resume = src_resume, .stop = fake_stop, .destroy = fake_destroy,
};
static const struct stage_kind fake_busy_source = {
	.name = "fake.busy", .create = fake_create, .start = busy_step,
	.resume = busy_step, .stop = fake_stop, .destroy = fake_destroy,
};
static const struct stage_kind fake_write_sink = {
	.name = "fake.write", .create = fake_create, .write = sink_write_fake,
	.finish = fake_finish, .stop = fake_stop, .destroy = fake_destroy,
};
static const struct stage_kind fake_transform = {
	.name = "fake.transform", .create = fake_create, .push = xf_push,
	.finish = fake_finish, .stop = fake_stop, .destroy = fake_destroy,
};
static const struct stage_kind fake_sink = {
	.name = "fake.sink", .create = fake_create, .push = sink_push, .ready = sink_ready,
	.finish = fake_finish, .stop = fake_stop, .destroy = fake_destroy,
};

/* ------------------------------------------------------------ runs */

struct run {
	struct spec *s;
	struct dag *g;
	json_t *params;
	const struct stage_kind **kinds;
	struct state_writer *writer;
	struct engine *e;
	int64_t run_id;
	int done_calls;
	enum run_status status;
	/* what the test observer heard */
	int ev_run_started, ev_run_finished, ev_stage_started, ev_stage_finished;
	int ev_batches, ev_waits, ev_stopping;
	int ev_loaded;                 /* BATCH_LOADED events */
	size_t loaded_records;         /* their records */
	struct buf loaded;             /* "out:2 ..." stage and records, per event */
	struct buf pool_waits;         /* "stage[reason]" of WAIT events with a delay */
	bool wait_without_delay;       /* a pool wait told with no duration */
	size_t max_depth;
	bool finished_before_done;
	struct buf facts;              /* "A1:503 R2 B:... A2:200" */
};

static int n_running;            /* runs started and not done */
static const struct stage_kind *source_kind = &fake_source;   /* of runs made */
static const struct stage_kind *sink_kind = &fake_sink;
static struct hostreg *shared_hosts;   /* given to the runs made meanwhile */

static void observe(void *arg, const struct engine_event *ev)
{
	struct run *r = arg;

	switch (ev->type) {
	case ENGINE_EV_RUN_STARTED: r->ev_run_started++; break;
	case ENGINE_EV_RUN_FINISHED:
		r->ev_run_finished++;
		r->finished_before_done = r->done_calls == 0;
		break;
	case ENGINE_EV_STAGE_STARTED: r->ev_stage_started++; break;
	case ENGINE_EV_STAGE_FINISHED: r->ev_stage_finished++; break;
	case ENGINE_EV_BATCH_EMITTED: r->ev_batches++; break;
	case ENGINE_EV_WAIT:
		r->ev_waits++;
		if (strcmp(ev->reason, "downstream queue full") == 0)
			break;
		if (!(ev->delay > 0))
			r->wait_without_delay = true;
		buf_printf(&r->pool_waits, "%s%s[%s]", r->pool_waits.len ? " " : "",
		           ev->stage ? ev->stage->spec->id : "?", ev->reason);
		break;
	case ENGINE_EV_BATCH_LOADED:
		r->ev_loaded++;
		r->loaded_records += ev->records;
		buf_printf(&r->loaded, "%s%s:%zu", r->loaded.len ? " " : "",
		           ev->stage ? ev->stage->spec->id : "?", ev->records);
		break;
	case ENGINE_EV_STOPPING: r->ev_stopping++; break;
	case ENGINE_EV_QUEUE_DEPTH:
		if (ev->records > r->max_depth)
			r->max_depth = ev->records;
		break;
	case ENGINE_EV_ATTEMPT:
		buf_printf(&r->facts, "%sA%d:%ld%s%s", r->facts.len ? " " : "", ev->attempt,
		           ev->http_status, ev->reason ? ":" : "",
		           ev->stage ? ev->stage->spec->id : "?");
		break;
	case ENGINE_EV_RETRY:
		buf_printf(&r->facts, "%sR%d%s", r->facts.len ? " " : "", ev->attempt,
		           ev->delay > 0 ? "" : ":nodelay");
		break;
	case ENGINE_EV_BREAKER:
		buf_printf(&r->facts, "%sB[%s]", r->facts.len ? " " : "",
		           strstr(ev->reason, ": ") ? strstr(ev->reason, ": ") + 2 : ev->reason);
		break;
	default: break;
	}
}

static void on_done(struct engine *e, enum run_status status, void *arg)
{
	struct run *r = arg;

	r->done_calls++;
	r->status = status;
	if (--n_running == 0)
		ev_break(loop, EVBREAK_ALL);
}

/* Reads yaml as a pipeline file and builds its engine on the shared loop:
 * fetch stages are fake sources, transforms fake transforms, loads fake
 * sinks, except where real_fetch asks for the registry's kind. */
static struct run *run_new(const char *name, const char *yaml, bool real_fetch)
{
	struct run *r = xcalloc(1, sizeof(*r));
	struct diags d = { 0 };
	char *path = xasprintf("%s/%s.yaml", tmpdir, name), *err = NULL;
	FILE *fp = fopen(path, "w");
	size_t i;

	fputs(yaml, fp);
	fclose(fp);
	r->s = config_load(path, &d);
	if (!r->s || !(r->g = dag_build(r->s, &d))) {
		diags_print(&d, stdout);
		printf("Bail out! pipeline %s does not load\n", name);
		exit(1);
	}
	diags_free(&d);
	free(path);
	r->params = json_object();
	r->kinds = xcalloc(r->s->n_stages, sizeof(*r->kinds));
	/* Sources are the stages that need none, sinks those nothing needs. */
	for (i = 0; i < r->s->n_stages; i++)
		r->kinds[i] = r->s->stages[i].n_needs == 0 ? (real_fetch ? NULL : source_kind) :
		              r->g->n_down[i] > 0 ? &fake_transform : sink_kind;
	if (state_run_create(db, r->s->name, r->s->path, r->s->hash, "{}", now_wall(),
	                     &r->run_id) != 0) {
		printf("Bail out! state_run_create: %s\n", state_errmsg(db));
		exit(1);
	}
	r->writer = state_writer_create(db, r->run_id);
	{
		struct engine_observer obs[2] = { state_writer_observer(r->writer),
		                                  { observe, r } };
		struct engine_opts o = { .spec = r->s, .dag = r->g, .params = r->params,
		                         .state = db, .run_id = r->run_id, .quiet = true,
		                         .replay_stage = -1, .kinds = r->kinds,
		                         .hosts = shared_hosts,
		                         .observers = obs, .n_observers = 2 };
		r->e = engine_create(loop, &o, &err);
	}
	if (!r->e) {
		printf("Bail out! engine_create: %s\n", err);
		exit(1);
	}
	return r;
}

static void run_start(struct run *r)
{
	n_running++;
	engine_start(r->e, on_done, r);
}

static void run_free(struct run *r)
{
	engine_destroy(r->e);
	state_writer_destroy(r->writer);
	dag_free(r->g);
	spec_free(r->s);
	json_decref(r->params);
	free(r->kinds);
	buf_free(&r->facts);
	buf_free(&r->loaded);
	buf_free(&r->pool_waits);
	free(r);
}

/* Loop iterations that do not block (the run cannot end while a test holds
 * something back, so a number of them shows that it waits). */
static void spin(int n)
{
	while (n-- > 0)
		ev_run(loop, EVRUN_NOWAIT);
}

/* The status of stage id of run r, as the state writer recorded it. */
static enum run_status row_status(struct run *r, const char *id)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(db, r->run_id, &rows), i;
	enum run_status s = (enum run_status)-1;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].stage, id) == 0)
			s = rows[i].status;
	stage_rows_free(rows, n);
	return s;
}

static int64_t row_records_out(struct run *r, const char *id)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(db, r->run_id, &rows), i;
	int64_t v = -1;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].stage, id) == 0)
			v = rows[i].stats.records_out;
	stage_rows_free(rows, n);
	return v;
}

/* ------------------------------------------------------------ tests */

static void test_firing_rule(void)
{
	struct run *r;
	char *t;

	/* Three batches wait for a chain of two transforms. A sweep visits
	 * sinks first and moves each batch one stage further: out takes batch
	 * 0 before b takes 1 and a takes 2 (a sweep from the sources would
	 * carry batch 0 through the whole chain first: a0 b0 out0 a1 ...). */
	fake_new("src");
	fake_new("a");
	fake_new("b");
	fake_new("out");
	r = run_new("chain", "pipeline: chain\n"
	            "stages:\n"
	            "  src: { fetch: { file: none.jsonl } }\n"
	            "  a: { needs: [src], transform: { jq: . } }\n"
	            "  b: { needs: [a], transform: { jq: . } }\n"
	            "  out: { needs: [b], load: { stdout: { format: jsonl } } }\n", false);
	buf_init(&trace);
	run_start(r);
	is_int(r->done_calls, 0, "firing: engine_start returns before the run ends");
	ev_run(loop, 0);
	t = buf_steal(&trace);
	is_str(t, "a0 b0 a1 out0 b1 a2 out1 b2 out2", "firing: sinks first, one step per sweep");
	free(t);
	is_int(r->status, ST_SUCCEEDED, "firing: the run succeeded");
	is_int(r->done_calls, 1, "firing: on_done called once");
	is_int(r->ev_run_started, 1, "firing: observers heard the run start");
	is_int(r->ev_run_finished, 1, "firing: observers heard the run finish");
	ok(r->finished_before_done, "firing: RUN_FINISHED comes before on_done");
	is_int(r->ev_stage_started, 4, "firing: four stages started");
	is_int(r->ev_stage_finished, 4, "firing: four stages finished");
	is_int(r->ev_batches, 9, "firing: nine batches emitted (src, a, b: three each)");
	is_int(row_status(r, "out"), ST_SUCCEEDED, "firing: the state writer recorded the sink");
	is_int(row_records_out(r, "b"), 3, "firing: the state writer recorded b's counter");
	spin(5);
	is_int(r->done_calls, 1, "firing: on_done not called again");
	run_free(r);
	fakes_free();
}

/* engine_source_retry: resume() again after the policy's backoff; the
 * attempts are counted in a row (a call that made progress resets them),
 * and the stage fails once they are used up. */
static void test_source_retry(void)
{
	static const char *yaml =
		"pipeline: busy\n"
		"defaults: { retry: { attempts: 3, initial: 1ms, jitter: none } }\n"
		"stages:\n"
		"  src: { fetch: { file: none.jsonl } }\n"
		"  out: { needs: [src], load: { stdout: { format: jsonl } } }\n";
	struct fake *src, *out;
	struct run *r;
	const char *msg, *id = NULL;

	/* Two busy calls, progress, two more: never three in a row. */
	src = fake_new("src");
	out = fake_new("out");
	src->script = "BBxBB";
	source_kind = &fake_busy_source;
	r = run_new("busy_ok", yaml, false);
	run_start(r);
	is_int(src->resumes, 1, "source retry: start asked for a retry; no resume yet");
	ev_run(loop, 0);
	is_int(r->status, ST_SUCCEEDED, "source retry: progress resets the count, the run succeeds");
	is_int(src->resumes, 6, "source retry: start, four retries, one more turn");
	is_int((int)out->got_records, 3, "source retry: every record arrived");
	ok(!out->out_of_order, "source retry: in order");
	run_free(r);
	fakes_free();

	/* Three busy calls in a row: the attempts are used up. */
	src = fake_new("src");
	fake_new("out");
	src->script = "xBBB";
	r = run_new("busy_fail", yaml, false);
	source_kind = &fake_source;
	run_start(r);
	ev_run(loop, 0);
	is_int(r->status, ST_FAILED, "source retry: three busy calls in a row fail the run");
	msg = engine_first_error(r->e, &id);
	is_str(msg ? msg : "(none)", "fake busy (after 3 attempts)",
	       "source retry: with the reason and the attempts");
	is_str(id ? id : "(none)", "src", "source retry: the source failed");
	is_int(src->resumes, 4, "source retry: no resume after the last attempt");
	run_free(r);
	fakes_free();
}

/* BATCH_LOADED: once per batch a sink with write committed (not per
 * attempt), with its records; a sink with push tells none. */
static void test_batch_loaded(void)
{
	static const char *yaml =
		"pipeline: loaded\n"
		"defaults: { retry: { attempts: 3, initial: 1ms, jitter: none } }\n"
		"stages:\n"
		"  src: { fetch: { file: none.jsonl } }\n"
		"  out: { needs: [src], load: { stdout: { format: jsonl } } }\n";
	struct fake *src, *out;
	struct run *r;
	char *t;

	src = fake_new("src");
	out = fake_new("out");
	src->batch_records = 2;
	out->script = "xR";            /* the second batch is retried once */
	sink_kind = &fake_write_sink;
	r = run_new("loaded", yaml, false);
	sink_kind = &fake_sink;
	run_start(r);
	ev_run(loop, 0);
	is_int(r->status, ST_SUCCEEDED, "batch loaded: the run succeeded");
	is_int((int)out->got_records, 6, "batch loaded: the sink committed six records");
	t = buf_steal(&r->loaded);
	is_str(t, "out:2 out:2 out:2", "batch loaded: one event per batch committed, with "
	       "stage and records (none for the retried attempt)");
	free(t);
	t = buf_steal(&r->facts);
	is_str(t, "R2", "batch loaded: the sink's retry reached the observers as attempt 2");
	free(t);
	run_free(r);
	fakes_free();

	/* The push sinks of the other tests commit nothing the engine sees. */
	fake_new("src");
	fake_new("out");
	r = run_new("loaded_push", yaml, false);
	run_start(r);
	ev_run(loop, 0);
	is_int(r->ev_loaded, 0, "batch loaded: not told for a sink without write");
	run_free(r);
	fakes_free();
}

static void test_backpressure(void)
{
	struct fake *src = fake_new("src"), *out = fake_new("out");
	struct run *r;

	/* queue 50 records (low 25), batches of 10: the source pauses after
	 * five batches while the sink holds, and resumes only at the low
	 * watermark once the sink takes batches again. */
	src->n_batches = 40;
	src->batch_records = 10;
	out->hold = true;
	r = run_new("bp", "pipeline: bp\n"
	            "settings: { queue: 50 }\n"
	            "stages:\n"
	            "  src: { fetch: { file: none.jsonl } }\n"
	            "  out: { needs: [src], load: { stdout: { format: jsonl } } }\n", false);
	run_start(r);
	spin(20);
	is_int(src->emitted, 5, "backpressure: the source paused at the high watermark");
	is_int(out->got_batches, 0, "backpressure: the sink held everything");
	is_int(src->resumes, 0, "backpressure: no resume while the queue is full");
	ok(r->ev_waits >= 1, "backpressure: observers heard the wait");
	is_int(r->done_calls, 0, "backpressure: the run waits");
	out->hold = false;
	engine_kick(out->st);
	ev_run(loop, 0);
	is_int(r->status, ST_SUCCEEDED, "backpressure: the run succeeded");
	is_int(out->got_records, 400, "backpressure: the sink got every record");
	ok(!out->out_of_order, "backpressure: in order");
	ok(src->resumes >= 5, "backpressure: the source resumed several times (%d)",
	   src->resumes);
	ok(!src->resumed_above_low, "backpressure: never resumed above the low watermark");
	ok(r->max_depth <= 50, "backpressure: the queue never went over 50 records (%zu)",
	   r->max_depth);
	run_free(r);
	fakes_free();
}

static void test_cancellation(void)
{
	struct fake *bad, *down, *src2, *out2, *src1;
	struct run *r;

	src1 = fake_new("src1");
	bad = fake_new("bad");
	down = fake_new("down");
	src2 = fake_new("src2");
	out2 = fake_new("out2");
	bad->fail_on_push = true;
	src2->n_batches = 5;
	r = run_new("cancel", "pipeline: cancel\n"
	            "stages:\n"
	            "  src1: { fetch: { file: none.jsonl } }\n"
	            "  bad: { needs: [src1], transform: { jq: . } }\n"
	            "  down: { needs: [bad], load: { stdout: { format: jsonl } } }\n"
	            "  src2: { fetch: { file: none.jsonl } }\n"
	            "  out2: { needs: [src2], load: { stdout: { format: jsonl } } }\n", false);
	run_start(r);
	ev_run(loop, 0);
	is_int(r->status, ST_FAILED, "cancel: the run failed");
	is_int(bad->st->status, ST_FAILED, "cancel: the failing stage failed");
	is_int(bad->stops, 1, "cancel: the failing stage was stopped");
	is_int(down->st->status, ST_CANCELLED, "cancel: what is downstream was cancelled");
	is_str(down->st->error, "cancelled: stage bad failed", "cancel: and says why");
	is_int(down->got_batches, 0, "cancel: the cancelled sink got nothing");
	is_int(down->stops, 1, "cancel: the cancelled sink was stopped");
	is_int(out2->st->status, ST_SUCCEEDED, "cancel: the other branch finished");
	is_int(out2->got_records, 5, "cancel: with all its records");
	is_int(src1->st->status, ST_SUCCEEDED, "cancel: the failed stage's source finished");
	is_int(src2->st->status, ST_SUCCEEDED, "cancel: the other source finished");
	is_int(row_status(r, "down"), ST_CANCELLED, "cancel: recorded as cancelled");
	is_int(row_status(r, "bad"), ST_FAILED, "cancel: recorded as failed");
	{
		const char *stage = NULL;
		const char *msg = engine_first_error(r->e, &stage);
		is_str(stage, "bad", "cancel: first error's stage");
		is_str(msg, "fake transform failed", "cancel: first error's message");
	}
	run_free(r);
	fakes_free();
}

static void test_two_runs(void)
{
	struct fake *a = fake_new("a_src"), *ao = fake_new("a_out");
	struct fake *b = fake_new("b_src"), *bo = fake_new("b_out");
	struct run *ra, *rb;

	a->n_batches = b->n_batches = 30;
	a->batch_records = b->batch_records = 10;
	ao->hold = bo->hold = true;
	ra = run_new("two_a", "pipeline: two_a\n"
	             "settings: { queue: 50 }\n"
	             "stages:\n"
	             "  a_src: { fetch: { file: none.jsonl } }\n"
	             "  a_out: { needs: [a_src], load: { stdout: { format: jsonl } } }\n",
	             false);
	rb = run_new("two_b", "pipeline: two_b\n"
	             "settings: { queue: 30 }\n"
	             "stages:\n"
	             "  b_src: { fetch: { file: none.jsonl } }\n"
	             "  b_out: { needs: [b_src], load: { stdout: { format: jsonl } } }\n",
	             false);
	run_start(ra);
	run_start(rb);
	spin(10);
	is_int(a->emitted, 5, "two runs: the first paused at its own watermark");
	is_int(b->emitted, 3, "two runs: the second paused at its own watermark");
	ao->hold = false;
	engine_kick(ao->st);
	/* The first finishes while the second still holds: each engine's
	 * watchers are its own. */
	while (ra->done_calls == 0)
		ev_run(loop, EVRUN_ONCE);
	is_int(ra->status, ST_SUCCEEDED, "two runs: the first succeeded");
	is_int(ao->got_records, 300, "two runs: the first's sink got everything");
	is_int(rb->done_calls, 0, "two runs: the second still runs");
	is_int(b->emitted, 3, "two runs: the second is still paused");
	bo->hold = false;
	engine_kick(bo->st);
	ev_run(loop, 0);
	is_int(rb->status, ST_SUCCEEDED, "two runs: the second succeeded");
	is_int(bo->got_records, 300, "two runs: the second's sink got everything");
	ok(!ao->out_of_order && !bo->out_of_order, "two runs: both in order");
	is_int(row_status(ra, "a_out"), ST_SUCCEEDED, "two runs: first recorded");
	is_int(row_status(rb, "b_out"), ST_SUCCEEDED, "two runs: second recorded");
	run_free(ra);
	run_free(rb);
	fakes_free();
}

static void test_stop_before_start(void)
{
	struct fake *src = fake_new("src"), *out = fake_new("out");
	struct run *r;

	r = run_new("early", "pipeline: early\n"
	            "stages:\n"
	            "  src: { fetch: { file: none.jsonl } }\n"
	            "  out: { needs: [src], load: { stdout: { format: jsonl } } }\n", false);
	engine_stop(r->e, ENGINE_STOP_GRACEFUL);
	run_start(r);
	is_int(r->done_calls, 0, "early stop: on_done not called from engine_start");
	ev_run(loop, 0);
	is_int(r->status, ST_INTERRUPTED, "early stop: interrupted");
	is_int(src->emitted, 0, "early stop: the source never started");
	is_int(out->st->status, ST_INTERRUPTED, "early stop: the sink is interrupted");
	is_int(row_status(r, "out"), ST_INTERRUPTED, "early stop: recorded as interrupted");
	run_free(r);
	fakes_free();
}

static void done_destroy(struct engine *e, enum run_status status, void *arg)
{
	struct run *r = arg;

	r->done_calls++;
	r->status = status;
	engine_destroy(e);
	r->e = NULL;
	if (--n_running == 0)
		ev_break(loop, EVBREAK_ALL);
}

static void test_destroy_in_done(void)
{
	struct fake *out;
	struct run *r;

	fake_new("src");
	out = fake_new("out");
	r = run_new("destroy", "pipeline: destroy\n"
	            "stages:\n"
	            "  src: { fetch: { file: none.jsonl } }\n"
	            "  out: { needs: [src], load: { stdout: { format: jsonl } } }\n", false);
	n_running++;
	engine_start(r->e, done_destroy, r);
	ev_run(loop, 0);
	is_int(r->done_calls, 1, "destroy in on_done: called once");
	is_int(r->status, ST_SUCCEEDED, "destroy in on_done: succeeded");
	is_int(out->got_records, 3, "destroy in on_done: the sink got every record");
	ok(r->e == NULL, "destroy in on_done: the engine is gone");
	spin(3);
	run_free(r);
	fakes_free();
}

/* ------------------------------------------------------------ mockapi */

static pid_t mock_pid = -1;
static int mock_port;

static void start_mock(const char *bin)
{
	char *port_file = xasprintf("%s/port", tmpdir);
	double end = now_mono() + 60;

	mock_pid = fork();
	if (mock_pid == 0) {
		execl(bin, "mockapi", "--port", "0", "--port-file", port_file, (char *)NULL);
		_exit(127);
	}
	while (now_mono() < end) {
		size_t len;
		char *s = read_file(port_file, &len);
		int st;
		if (s) {
			mock_port = atoi(s);
			free(s);
			if (mock_port > 0)
				break;
		}
		if (waitpid(mock_pid, &st, WNOHANG) == mock_pid) {
			printf("Bail out! mockapi exited before listening\n");
			exit(1);
		}
		usleep(20000);
	}
	unlink(port_file);
	free(port_file);
	if (mock_port <= 0) {
		printf("Bail out! mockapi did not start\n");
		exit(1);
	}
}

static void stop_mock(void)
{
	int st;

	if (mock_pid > 0) {
		kill(mock_pid, SIGTERM);
		waitpid(mock_pid, &st, 0);
	}
}

/* GET path from the mock, blocking; returns the whole answer (caller frees). */
static char *mock_get(const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)mock_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char *req = xasprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
	                      path);
	struct buf b;
	char chunk[4096];
	ssize_t n;

	buf_init(&b);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		printf("Bail out! cannot talk to the mock: %s\n", strerror(errno));
		exit(1);
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_add(&b, chunk, (size_t)n);
	close(fd);
	free(req);
	return buf_steal(&b);
}

/* Runs the loop without blocking until the mock holds n answers at gate. */
static void wait_gate(const char *gate, int n)
{
	char *path = xasprintf("/gate/%s", gate), *want = xasprintf("\"waiting\":%d", n);
	double end = now_mono() + 60;

	for (;;) {
		char *s;
		bool held;
		ev_run(loop, EVRUN_NOWAIT);
		s = mock_get(path);
		held = strstr(s, want) != NULL;
		free(s);
		if (held)
			break;
		if (now_mono() > end) {
			printf("Bail out! gate %s never held %d answers\n", gate, n);
			exit(1);
		}
		usleep(10000);
	}
	free(path);
	free(want);
}

static struct run *gated_run(const char *name, const char *gate)
{
	char *yaml = xasprintf("pipeline: %s\n"
	                       "stages:\n"
	                       "  web: { fetch: { url: 'http://127.0.0.1:%d/json/1?gate=%s' } }\n"
	                       "  out: { needs: [web], load: { stdout: { format: jsonl } } }\n",
	                       name, mock_port, gate);
	struct run *r;

	fake_new("out");
	r = run_new(name, yaml, true);
	free(yaml);
	return r;
}

static void test_request_facts(void)
{
	char *yaml = xasprintf("pipeline: facts\n"
	                       "hosts:\n"
	                       "  '127.0.0.1:%d': { breaker: { failures: 1, cooldown: 20ms } }\n"
	                       "stages:\n"
	                       "  web:\n"
	                       "    fetch:\n"
	                       "      url: 'http://127.0.0.1:%d/seq/facts?codes=503,200'\n"
	                       "      retry: { attempts: 3, backoff: constant, initial: 10ms,"
	                       " jitter: none, on: [5xx] }\n"
	                       "  out: { needs: [web], load: { stdout: { format: jsonl } } }\n",
	                       mock_port, mock_port);
	struct run *r;
	char *t;

	fake_new("out");
	r = run_new("facts", yaml, true);
	free(yaml);
	run_start(r);
	ev_run(loop, 0);
	is_int(r->status, ST_SUCCEEDED, "facts: the run succeeded");
	t = buf_steal(&r->facts);
	/* The 503 opens the breaker (the breaker hears an answer before its
	 * attempt is recorded); the retry waits out the cool-down and is the
	 * half-open trial, whose success closes it. */
	is_str(t, "B[closed -> open] A1:503:web R2 B[open -> half-open] B[half-open -> closed] "
	       "A2:200web", "facts: attempts, retry and breaker changes, in order");
	free(t);
	run_free(r);
	fakes_free();
}

/* The answers the mock holds at gate now. */
static int gate_waiting(const char *gate)
{
	char *path = xasprintf("/gate/%s", gate), *s = mock_get(path);
	const char *w = strstr(s, "\"waiting\":");
	int n = w ? atoi(w + 10) : -1;

	free(s);
	free(path);
	return n;
}

static size_t inflight(struct run *a, struct run *b)
{
	return http_inflight(engine_http(a->e)) + http_inflight(engine_http(b->e));
}

/* Pipeline share_X: stage web_X fetches /json/N held at gate sX, from a
 * host of concurrency 1; out_X loads it. */
static char *share_yaml(char x, int n)
{
	return xasprintf("pipeline: share_%c\n"
	                 "hosts:\n"
	                 "  '127.0.0.1:%d': { concurrency: 1 }\n"
	                 "stages:\n"
	                 "  web_%c: { fetch: { url: 'http://127.0.0.1:%d/json/%d?gate=s%c' } }\n"
	                 "  out_%c: { needs: [web_%c], load: { stdout: { format: jsonl } } }\n",
	                 x, mock_port, x, mock_port, n, x, x, x);
}

static void test_shared_host(void)
{
	char *ya = share_yaml('a', 1), *yb = share_yaml('b', 2);
	struct fake *oa, *ob;
	struct run *ra, *rb;
	const char *first, *second;
	double end;
	char *s;

	/* Two runs on one loop and one registry, one request each to a host
	 * of concurrency 1: the second request is sent only once the first
	 * answer is in. */
	shared_hosts = hostreg_create(loop);
	oa = fake_new("out_a");
	ob = fake_new("out_b");
	ra = run_new("share_a", ya, true);
	rb = run_new("share_b", yb, true);
	run_start(ra);
	run_start(rb);
	end = now_mono() + 60;
	while (gate_waiting("sa") + gate_waiting("sb") < 1) {
		ev_run(loop, EVRUN_NOWAIT);
		if (now_mono() > end) {
			printf("Bail out! no request reached the mock\n");
			exit(1);
		}
		usleep(10000);
	}
	spin(20);
	first = gate_waiting("sa") == 1 ? "sa" : "sb";
	second = first[1] == 'a' ? "sb" : "sa";
	is_int(inflight(ra, rb), 1, "shared host: one transfer in flight across both runs");
	is_int(gate_waiting(second), 0, "shared host: the other run's request waits for the pool");
	s = mock_get(first[1] == 'a' ? "/gate/sa/open" : "/gate/sb/open");
	free(s);
	wait_gate(second, 1);
	is_int(inflight(ra, rb), 1, "shared host: then the other one, alone");
	s = mock_get(second[1] == 'a' ? "/gate/sa/open" : "/gate/sb/open");
	free(s);
	if (n_running > 0)
		ev_run(loop, 0);
	{
		struct run *rf = first[1] == 'a' ? ra : rb, *rs = first[1] == 'a' ? rb : ra;
		char *want = xasprintf("web_%c[127.0.0.1:%d: concurrency]", second[1], mock_port);
		is_str(rf->pool_waits.len ? rf->pool_waits.data : "",
		       "", "shared host: the request admitted at once told no wait");
		is_str(rs->pool_waits.len ? rs->pool_waits.data : "", want,
		       "shared host: the other's wait for the pool reached its observers, "
		       "with the reason");
		ok(!rs->wait_without_delay, "shared host: and how long it waited");
		free(want);
	}
	is_int(ra->status, ST_SUCCEEDED, "shared host: the first run succeeded");
	is_int(rb->status, ST_SUCCEEDED, "shared host: the second run succeeded");
	is_int(oa->got_records + ob->got_records, 2, "shared host: both answers loaded");
	run_free(ra);
	run_free(rb);
	hostreg_destroy(shared_hosts);
	shared_hosts = NULL;
	fakes_free();
	free(ya);
	free(yb);
}

static void test_stop_graceful(void)
{
	struct run *r = gated_run("graceful", "g1");
	char *s;

	run_start(r);
	wait_gate("g1", 1);
	engine_stop(r->e, ENGINE_STOP_GRACEFUL);
	spin(50);
	is_int(r->done_calls, 0, "graceful: the run waits for the transfer in flight");
	is_int(engine_stage_at(r->e, 0)->status, ST_INTERRUPTED, "graceful: stages interrupted");
	is_int(r->ev_stopping, 1, "graceful: observers heard the stop");
	s = mock_get("/gate/g1/open");
	free(s);
	ev_run(loop, 0);
	is_int(r->done_calls, 1, "graceful: the run ended once the answer came");
	is_int(r->status, ST_INTERRUPTED, "graceful: interrupted");
	is_int(state_journal_count(db, r->run_id, "web"), 1, "graceful: the answer was journaled");
	is_int(row_status(r, "web"), ST_INTERRUPTED, "graceful: recorded as interrupted");
	run_free(r);
	fakes_free();
}

static void test_stop_abort(void)
{
	struct run *r = gated_run("abort", "g2");
	char *s;

	run_start(r);
	wait_gate("g2", 1);
	engine_stop(r->e, ENGINE_STOP_ABORT);
	is_int(r->done_calls, 0, "abort: on_done not called from engine_stop");
	spin(3);
	is_int(r->done_calls, 1, "abort: the run ended without waiting for the transfer");
	is_int(r->status, ST_INTERRUPTED, "abort: interrupted");
	is_int(state_journal_count(db, r->run_id, "web"), 0, "abort: nothing journaled");
	run_free(r);
	fakes_free();

	/* An abort during a graceful stop's drain ends the drain. */
	r = gated_run("abort2", "g3");
	run_start(r);
	wait_gate("g3", 1);
	engine_stop(r->e, ENGINE_STOP_GRACEFUL);
	spin(20);
	is_int(r->done_calls, 0, "abort in drain: the drain waits");
	engine_stop(r->e, ENGINE_STOP_ABORT);
	spin(3);
	is_int(r->done_calls, 1, "abort in drain: the run ended");
	is_int(r->status, ST_INTERRUPTED, "abort in drain: interrupted");
	run_free(r);
	fakes_free();
	s = mock_get("/gate/g2/open");
	free(s);
	s = mock_get("/gate/g3/open");
	free(s);
}

int main(void)
{
	const char *mock = getenv("MOCKAPI");
	char *path, *err = NULL;

	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	path = xasprintf("%s/state.db", tmpdir);
	db = state_open(path, false, &err);
	if (!db) {
		printf("Bail out! %s\n", err);
		return 1;
	}
	loop = ev_loop_new(EVFLAG_AUTO);

	test_firing_rule();
	test_backpressure();
	test_source_retry();
	test_batch_loaded();
	test_cancellation();
	test_two_runs();
	test_stop_before_start();
	test_destroy_in_done();
	if (mock && *mock) {
		start_mock(mock);
		test_request_facts();
		test_shared_host();
		test_stop_graceful();
		test_stop_abort();
		stop_mock();
	} else {
		printf("Bail out! MOCKAPI is not set (run through make check)\n");
		return 1;
	}

	ev_loop_destroy(loop);
	state_close(db);
	{
		char *cmd = xasprintf("rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
		free(cmd);
	}
	free(path);
	return done_testing();
}
