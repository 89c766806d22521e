/*
 * engine_harness.h: runs a pipeline (YAML text) through the real engine with
 * fake stage kinds substituted per stage (engine_opts.kinds), on a state
 * database in a temporary directory. For the engine's unit tests.
 */
#ifndef PIPECTL_ENGINE_HARNESS_H
#define PIPECTL_ENGINE_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_load.h"
#include "core/dag.h"
#include "core/engine.h"
#include "core/state_writer.h"
#include "base/log.h"
#include "base/util.h"
#include "store/state.h"

static char *harness_dir;

struct harness_run {
	struct spec *spec;
	struct dag *dag;
	struct state *state;
	struct engine *eng;
	struct state_writer *writer;   /* records the stage rows */
	int64_t run_id;
	enum run_status status;
};

/* The run ended: its status, and the loop can return. */
static void harness_done(struct engine *e, enum run_status status, void *arg)
{
	((struct harness_run *)arg)->status = status;
	ev_break(engine_loop(e), EVBREAK_ALL);
}

/* The directory the pipelines are written to (made on first use). */
static const char *harness_path(void)
{
	if (!harness_dir) {
		char tmpl[] = "/tmp/pipectl-engine-XXXXXX";
		harness_dir = xstrdup(mkdtemp(tmpl));
	}
	return harness_dir;
}

/* Writes text to the file name in the pipelines' directory. */
static inline void harness_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", harness_path(), name);
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
	free(path);
}

/* Writes yaml to a new file, loads it and runs it with kinds (per stage in
 * spec order; NULL entries: the registry's kind). Keeps the state open in
 * r (harness_end frees it). Returns 0, or -1 when setup failed. */
static int harness_run(struct harness_run *r, const char *yaml,
                       const struct stage_kind *const *kinds)
{
	static int n;
	struct diags d = { 0 };
	char *path, *db, *err = NULL;
	FILE *f;
	struct engine_opts o = { 0 };
	struct engine_observer obs;
	struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);

	memset(r, 0, sizeof(*r));
	harness_path();
	n++;
	path = xasprintf("%s/p%d.yaml", harness_dir, n);
	db = xasprintf("%s/state%d.db", harness_dir, n);
	f = fopen(path, "w");
	fputs(yaml, f);
	fclose(f);
	r->spec = config_load(path, &d);
	if (!r->spec) {
		diags_print(&d, stderr);
		goto fail;
	}
	if (!(r->dag = dag_build(r->spec, &d)))
		goto fail;
	if (!(r->state = state_open(db, false, &err)))
		goto fail;
	if (state_run_create(r->state, r->spec->name, path, r->spec->hash, "{}", now_wall(),
	                     &r->run_id) != 0)
		goto fail;
	o.spec = r->spec;
	o.dag = r->dag;
	o.params = r->spec->params;
	o.state = r->state;
	o.run_id = r->run_id;
	o.quiet = true;
	o.replay_stage = -1;
	o.kinds = kinds;
	r->writer = state_writer_create(r->state, r->run_id);
	obs = state_writer_observer(r->writer);
	o.observers = &obs;
	o.n_observers = 1;
	if (!(r->eng = engine_create(loop, &o, &err)))
		goto fail;
	engine_start(r->eng, harness_done, r);
	ev_run(loop, 0);
	free(path);
	free(db);
	diags_free(&d);
	return 0;
fail:
	fprintf(stderr, "# setup: %s\n", err ? err : "(see above)");
	free(err);
	free(path);
	free(db);
	diags_free(&d);
	return -1;
}

/* The errors recorded for stage id of r's run, or -1. */
static long long harness_errors(struct harness_run *r, const char *id)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(r->state, r->run_id, &rows), i;
	long long e = -1;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].stage, id) == 0)
			e = rows[i].stats.errors;
	stage_rows_free(rows, n);
	return e;
}

/* Removes the temporary directory (its name is ours: no quoting needed). */
static void harness_cleanup(void)
{
	char *cmd;

	if (!harness_dir)
		return;
	cmd = xasprintf("rm -rf '%s'", harness_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# cannot remove %s\n", harness_dir);
	free(cmd);
	free(harness_dir);
	harness_dir = NULL;
}

static void harness_end(struct harness_run *r)
{
	engine_destroy(r->eng);
	state_writer_destroy(r->writer);
	state_close(r->state);
	dag_free(r->dag);
	spec_free(r->spec);
	memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------ fake kinds */

#define FAKE_MAX 64

/* fake.src: emits fake_src.batches batches of fake_src.per_batch records
 * {b, k} at start (b: the batch's number, 1..), records the ids
 * engine_emit gave and every ack, with what each sink had committed of that
 * batch at the time of its ack. */
static struct fake_src {
	int batches, per_batch;
	uint64_t emitted[FAKE_MAX];
	int n_emitted;
	uint64_t acked[FAKE_MAX];
	int n_acked;
	int committed_at_ack[2][FAKE_MAX];
} fake_src;

/* fake.sink (stages s1 and s2): commits a batch by counting its records per
 * b; answers RETRY for retry_b while retries_left > 0 (always when
 * retries_left < 0), FAIL for fail_b, and later (SINK_PENDING, then
 * engine_sink_answer from a timer) when pending is set. */
static struct fake_sink {
	int committed[FAKE_MAX];
	int write_b[4 * FAKE_MAX];     /* b of each write call, in order */
	int n_writes;
	int retry_b, retries_left;
	int fail_b;
	bool pending;
	ev_timer later;
	struct stage *st;
	json_t *held;
} fake_sinks[2];

static void fake_reset(void)
{
	memset(&fake_src, 0, sizeof(fake_src));
	memset(fake_sinks, 0, sizeof(fake_sinks));
	fake_src.batches = 5;
	fake_src.per_batch = 3;
}

static int fake_create(struct stage *st, char **err)
{
	(void)err;
	st->ctx = NULL;
	return 0;
}

static void fake_destroy(struct stage *st)
{
	(void)st;
}

static void src_start(struct stage *st)
{
	int b, k;

	for (b = 1; b <= fake_src.batches; b++) {
		json_t *batch = json_array();
		for (k = 0; k < fake_src.per_batch; k++)
			json_array_append_new(batch, json_pack("{s:i, s:i}", "b", b, "k",
			                                       b * 100 + k));
		fake_src.emitted[fake_src.n_emitted++] = engine_emit(st, batch);
	}
	engine_stage_done(st);
}

static void src_ack(struct stage *st, uint64_t id)
{
	(void)st;
	if (fake_src.n_acked < FAKE_MAX && id < FAKE_MAX) {
		fake_src.committed_at_ack[0][id] = fake_sinks[0].committed[id];
		fake_src.committed_at_ack[1][id] = fake_sinks[1].committed[id];
	}
	if (fake_src.n_acked < FAKE_MAX)
		fake_src.acked[fake_src.n_acked++] = id;
}

static const struct stage_kind fake_source = {
	.name = "fake.src", .create = fake_create, .start = src_start,
	.ack = src_ack, .destroy = fake_destroy,
};

static struct fake_sink *sink_of(struct stage *st)
{
	return &fake_sinks[strcmp(st->spec->id, "s2") == 0];
}

static void sink_commit(struct fake_sink *s, json_t *batch)
{
	json_t *rec;
	size_t i;

	json_array_foreach(batch, i, rec) {
		int b = (int)json_integer_value(json_object_get(rec, "b"));
		if (b >= 0 && b < FAKE_MAX)
			s->committed[b]++;
	}
}

static void sink_later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fake_sink *s = w->data;
	json_t *b = s->held;

	(void)loop;
	(void)revents;
	s->held = NULL;
	sink_commit(s, b);
	json_decref(b);
	engine_sink_answer(s->st, SINK_OK, NULL);
}

static enum sink_result sink_write_fake(struct stage *st, json_t *batch, char **reason)
{
	struct fake_sink *s = sink_of(st);
	int b = (int)json_integer_value(json_object_get(json_array_get(batch, 0), "b"));

	if (s->n_writes < 4 * FAKE_MAX)
		s->write_b[s->n_writes++] = b;
	if (b == s->retry_b && s->retries_left != 0) {
		if (s->retries_left > 0)
			s->retries_left--;
		*reason = xstrdup("database is locked");
		return SINK_RETRY;
	}
	if (b == s->fail_b) {
		*reason = xstrdup("disk on fire");
		return SINK_FAIL;
	}
	if (s->pending) {
		s->st = st;
		s->held = json_incref(batch);
		ev_timer_init(&s->later, sink_later_cb, 0.001, 0);
		s->later.data = s;
		ev_timer_start(engine_loop(st->eng), &s->later);
		return SINK_PENDING;
	}
	sink_commit(s, batch);
	return SINK_OK;
}

static void sink_finish_fake(struct stage *st)
{
	engine_stage_done(st);
}

static void sink_stop_fake(struct stage *st)
{
	struct fake_sink *s = sink_of(st);

	if (ev_is_active(&s->later))
		ev_timer_stop(engine_loop(st->eng), &s->later);
	json_decref(s->held);
	s->held = NULL;
}

static const struct stage_kind fake_sink = {
	.name = "fake.sink", .create = fake_create, .write = sink_write_fake,
	.finish = sink_finish_fake, .stop = sink_stop_fake, .destroy = fake_destroy,
};

/* Writes of batch b by sink s. */
static int fake_writes_of(const struct fake_sink *s, int b)
{
	int i, n = 0;

	for (i = 0; i < s->n_writes; i++)
		n += s->write_b[i] == b;
	return n;
}

/* True when the acks are exactly 1..n in order. */
static bool fake_acked_in_order(int n)
{
	int i;

	if (fake_src.n_acked != n)
		return false;
	for (i = 0; i < n; i++)
		if (fake_src.acked[i] != (uint64_t)(i + 1))
			return false;
	return true;
}

/* True when no sink committed a record of an acked batch after its ack. */
static bool fake_acks_after_commits(void)
{
	int i, j;

	for (i = 0; i < fake_src.n_acked; i++) {
		uint64_t id = fake_src.acked[i];
		for (j = 0; j < 2; j++)
			if (fake_src.committed_at_ack[j][id] != fake_sinks[j].committed[id])
				return false;
	}
	return true;
}

#endif
