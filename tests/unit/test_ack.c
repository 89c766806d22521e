/*
 * test_ack: acknowledgements end to end through the engine, with a fake
 * source kind that records the ids engine_emit gives and the acks, and a
 * fake sink: every id acked once, in order, only after every sink it
 * reached committed its records; fan-out, dedupe drops, on_error skip, a
 * sink that answers RETRY then OK, and a failed run.
 */
#include "tap.h"
#include "engine_harness.h"

#define HEAD "pipeline: t\n" \
	"defaults:\n  retry: {attempts: 3, backoff: constant, initial: 1ms, jitter: none}\n" \
	"stages:\n  src:\n    fetch: {file: in.jsonl}\n"

/* fake.hold (a transform): keeps batch 1 (its records and a hold on its
 * lineage) until finish, passes the others on at once: batch 1's records
 * reach the sink last, so the acks of 2.. must wait for it. */
static struct {
	json_t *kept;
	struct flow_set *hold;
	int acked_before_release;
} holder;

static int hold_create(struct stage *st, char **err)
{
	(void)err;
	st->ctx = NULL;
	return 0;
}

static void hold_push(struct stage *st, json_t *batch)
{
	if (json_integer_value(json_object_get(json_array_get(batch, 0), "b")) == 1) {
		holder.kept = json_incref(batch);
		holder.hold = engine_hold(st);
		return;
	}
	engine_emit(st, json_incref(batch));
}

static void hold_finish(struct stage *st)
{
	holder.acked_before_release = fake_src.n_acked;
	engine_emit_lineage(st, holder.kept, holder.hold);
	holder.kept = NULL;
	engine_release(holder.hold);
	holder.hold = NULL;
	engine_stage_done(st);
}

static void hold_destroy(struct stage *st)
{
	(void)st;
	json_decref(holder.kept);
	engine_release(holder.hold);
	holder.kept = NULL;
	holder.hold = NULL;
}

static const struct stage_kind fake_hold = {
	.name = "fake.hold", .create = hold_create, .push = hold_push,
	.finish = hold_finish, .destroy = hold_destroy,
};

static const struct stage_kind *const src_sink[] = { &fake_source, &fake_sink, NULL };
static const struct stage_kind *const src_2sinks[] = { &fake_source, &fake_sink, &fake_sink };
static const struct stage_kind *const src_tr_sink[] = { &fake_source, NULL, &fake_sink };
static const struct stage_kind *const src_hold_sink[] = { &fake_source, &fake_hold, &fake_sink };

static void test_linear(void)
{
	struct harness_run r;
	int i;
	bool ids = true;

	fake_reset();
	if (harness_run(&r, HEAD "  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n",
	                src_sink) != 0) {
		ok(0, "linear: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "linear: the run succeeds");
	for (i = 0; i < fake_src.n_emitted; i++)
		ids &= fake_src.emitted[i] == (uint64_t)(i + 1);
	ok(fake_src.n_emitted == 5 && ids, "linear: engine_emit numbers the batches 1..5");
	ok(fake_acked_in_order(5), "linear: every batch acked once, in order (%d acks)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "linear: each ack after the sink committed its records");
	is_int(fake_sinks[0].committed[5], 3, "linear: the sink committed batch 5");
	harness_end(&r);
}

static void test_fanout(void)
{
	struct harness_run r;

	fake_reset();
	/* s2 answers later (SINK_PENDING), s1 at once: an ack needs both. */
	fake_sinks[1].pending = true;
	if (harness_run(&r, HEAD "  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n"
	                "  s2:\n    needs: [src]\n    load: {file: {path: o2.jsonl}}\n",
	                src_2sinks) != 0) {
		ok(0, "fan-out: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "fan-out: the run succeeds");
	ok(fake_acked_in_order(5), "fan-out: every batch acked once, in order (%d acks)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "fan-out: each ack after both sinks committed");
	ok(fake_sinks[0].committed[3] == 3 && fake_sinks[1].committed[3] == 3,
	   "fan-out: both sinks committed every record");
	harness_end(&r);
}

static void test_dedupe(void)
{
	struct harness_run r;

	/* Keys 100..102, 200..202, 300..302 modulo 100: batches 2 and 3
	 * repeat batch 1's keys, and dedupe drops them whole. */
	fake_reset();
	fake_src.batches = 3;
	if (harness_run(&r, HEAD "  t:\n    needs: [src]\n    transform: {dedupe: '.k % 100'}\n"
	                "  s1:\n    needs: [t]\n    load: {file: {path: o.jsonl}}\n",
	                src_tr_sink) != 0) {
		ok(0, "dedupe: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "dedupe: the run succeeds");
	ok(fake_sinks[0].committed[1] == 3 && fake_sinks[0].committed[2] == 0 &&
	   fake_sinks[0].committed[3] == 0, "dedupe: batches 2 and 3 were dropped whole");
	ok(fake_acked_in_order(3), "dedupe: the dropped batches are acked too, in order (%d)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "dedupe: each ack after the sink committed");
	harness_end(&r);
}

static void test_skip(void)
{
	struct harness_run r;

	fake_reset();
	if (harness_run(&r, HEAD "  t:\n    needs: [src]\n    on_error: skip\n"
	                "    transform: {jq: 'if .k % 100 == 1 then error(\"bad\") else . end'}\n"
	                "  s1:\n    needs: [t]\n    load: {file: {path: o.jsonl}}\n",
	                src_tr_sink) != 0) {
		ok(0, "skip: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "on_error skip: the run succeeds");
	is_int(fake_sinks[0].committed[4], 2, "on_error skip: one record of each batch skipped");
	is_int(harness_errors(&r, "t"), 5, "on_error skip: 5 records skipped");
	ok(fake_acked_in_order(5), "on_error skip: every batch acked in order (%d)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "on_error skip: each ack after the sink committed");
	harness_end(&r);
}

static void test_fanout_fetch(void)
{
	struct harness_run r;

	fake_reset();
	/* A fetch per record (file:// URLs): the responses come back later,
	 * and their records are batched across inputs by the fetch's emitter;
	 * each source batch is acked only once all its records are loaded. */
	harness_file("x.json", "{\"v\": 1}");
	if (harness_run(&r, HEAD "  f:\n    needs: [src]\n"
	                "    fetch:\n      url: 'file://${run.dir}/x.json?k=${.k}'\n"
	                "      merge: '.record + .response'\n"
	                "  s1:\n    needs: [f]\n    load: {file: {path: o.jsonl}}\n",
	                src_tr_sink) != 0) {
		ok(0, "fan-out fetch: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "fan-out fetch: the run succeeds");
	ok(fake_sinks[0].committed[1] == 3 && fake_sinks[0].committed[5] == 3,
	   "fan-out fetch: every record reached the sink");
	ok(fake_acked_in_order(5), "fan-out fetch: every batch acked in order (%d)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "fan-out fetch: each ack after the sink committed");
	harness_end(&r);
}

static void test_held_back(void)
{
	struct harness_run r;

	fake_reset();
	memset(&holder, 0, sizeof(holder));
	if (harness_run(&r, HEAD "  t:\n    needs: [src]\n    transform: {jq: .}\n"
	                "  s1:\n    needs: [t]\n    load: {file: {path: o.jsonl}}\n",
	                src_hold_sink) != 0) {
		ok(0, "held back: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "held back: the run succeeds");
	is_int(holder.acked_before_release, 0,
	       "held back: batches 2..5, loaded first, are not acked while batch 1 is held");
	ok(fake_acked_in_order(5), "held back: then all are acked, in emission order (%d)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "held back: each after the sink committed it");
	harness_end(&r);
}

static void test_retry_then_ok(void)
{
	struct harness_run r;

	fake_reset();
	fake_sinks[0].retry_b = 2;
	fake_sinks[0].retries_left = 2;
	if (harness_run(&r, HEAD "  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n",
	                src_sink) != 0) {
		ok(0, "retry: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "RETRY then OK: the run succeeds");
	is_int(fake_writes_of(&fake_sinks[0], 2), 3, "RETRY then OK: batch 2 written 3 times");
	ok(fake_acked_in_order(5), "RETRY then OK: every batch acked in order (%d)",
	   fake_src.n_acked);
	ok(fake_acks_after_commits(), "RETRY then OK: batch 2 acked only after the OK");
	harness_end(&r);
}

static void test_failed_run(void)
{
	struct harness_run r;

	fake_reset();
	fake_sinks[0].fail_b = 3;
	if (harness_run(&r, HEAD "  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n",
	                src_sink) != 0) {
		ok(0, "failed run: setup");
		return;
	}
	is_int(r.status, ST_FAILED, "failed run: the run fails (on_error: fail)");
	ok(fake_acked_in_order(2), "failed run: only the batches committed before are acked "
	   "(%d acks)", fake_src.n_acked);
	ok(fake_acks_after_commits(), "failed run: those after their commit");
	harness_end(&r);
}

static void test_failed_branch(void)
{
	struct harness_run r;

	fake_reset();
	/* s1 fails on batch 2; s2 commits everything: nothing from batch 2 on
	 * may be acked, as s1 never loaded it. */
	fake_sinks[0].fail_b = 2;
	if (harness_run(&r, HEAD "  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n"
	                "  s2:\n    needs: [src]\n    load: {file: {path: o2.jsonl}}\n",
	                src_2sinks) != 0) {
		ok(0, "failed branch: setup");
		return;
	}
	is_int(r.status, ST_FAILED, "failed branch: the run fails");
	is_int(fake_sinks[1].committed[5], 3, "failed branch: the other sink loaded everything");
	ok(fake_acked_in_order(1), "failed branch: only batch 1 is acked (%d acks)",
	   fake_src.n_acked);
	harness_end(&r);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	test_linear();
	test_fanout();
	test_dedupe();
	test_skip();
	test_fanout_fetch();
	test_held_back();
	test_retry_then_ok();
	test_failed_run();
	test_failed_branch();
	harness_cleanup();
	return done_testing();
}
