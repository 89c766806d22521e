/*
 * test_sink: the engine's retry path for sink batches, with a fake sink
 * kind: a batch answered RETRY is written again after the retry policy's
 * backoff, alone (no later batch overtakes it); used-up attempts and FAIL go
 * to on_error (fail / skip / dlq with the attempts); a late answer
 * (SINK_PENDING) works like an immediate one.
 */
#include "tap.h"
#include "engine_harness.h"

#define HEAD(oe) "pipeline: t\n" \
	"defaults:\n  on_error: " oe "\n" \
	"  retry: {attempts: 3, backoff: constant, initial: 1ms, jitter: none}\n" \
	"stages:\n  src:\n    fetch: {file: in.jsonl}\n" \
	"  s1:\n    needs: [src]\n    load: {file: {path: o.jsonl}}\n"

static const struct stage_kind *const kinds[] = { &fake_source, &fake_sink };

static void test_order(void)
{
	struct harness_run r;
	static const int want[] = { 1, 2, 2, 2, 3, 4, 5 };
	int i;
	bool same;

	fake_reset();
	fake_sinks[0].retry_b = 2;
	fake_sinks[0].retries_left = 2;
	fake_sinks[0].pending = true;
	if (harness_run(&r, HEAD("fail"), kinds) != 0) {
		ok(0, "order: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "RETRY twice, then OK: the run succeeds");
	same = fake_sinks[0].n_writes == 7;
	for (i = 0; same && i < 7; i++)
		same = fake_sinks[0].write_b[i] == want[i];
	ok(same, "the retried batch is written again before any later one (%d writes)",
	   fake_sinks[0].n_writes);
	ok(fake_sinks[0].committed[2] == 3 && fake_sinks[0].committed[5] == 3,
	   "every batch committed once");
	ok(fake_acked_in_order(5) && fake_acks_after_commits(),
	   "late answers: each batch acked after its OK");
	harness_end(&r);
}

static void test_exhausted_fail(void)
{
	struct harness_run r;
	const char *stage = NULL, *err;

	fake_reset();
	fake_sinks[0].retry_b = 2;
	fake_sinks[0].retries_left = -1;    /* always */
	if (harness_run(&r, HEAD("fail"), kinds) != 0) {
		ok(0, "exhausted fail: setup");
		return;
	}
	is_int(r.status, ST_FAILED, "attempts used up, on_error fail: the run fails");
	is_int(fake_writes_of(&fake_sinks[0], 2), 3, "the batch was tried retry.attempts times");
	is_int(fake_writes_of(&fake_sinks[0], 3), 0, "no later batch was written");
	err = engine_first_error(r.eng, &stage);
	ok(err && strstr(err, "database is locked (after 3 attempts)") && stage &&
	   strcmp(stage, "s1") == 0, "the stage's error says why and how often: %s",
	   err ? err : "(none)");
	harness_end(&r);
}

static void test_exhausted_skip(void)
{
	struct harness_run r;

	fake_reset();
	fake_sinks[0].retry_b = 2;
	fake_sinks[0].retries_left = -1;
	if (harness_run(&r, HEAD("skip"), kinds) != 0) {
		ok(0, "exhausted skip: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "attempts used up, on_error skip: the run succeeds");
	ok(fake_sinks[0].committed[2] == 0 && fake_sinks[0].committed[3] == 3,
	   "the batch is skipped, the next ones loaded");
	is_int(fake_writes_of(&fake_sinks[0], 2), 3, "skip: tried 3 times first");
	is_int(harness_errors(&r, "s1"), 3, "skip: its 3 records count as errors");
	ok(fake_acked_in_order(5), "skip: skipped records count as done for acks");
	harness_end(&r);
}

static void test_exhausted_dlq(void)
{
	struct harness_run r;
	struct dlq_row *rows = NULL;
	int n;
	json_t *att = NULL;

	fake_reset();
	fake_sinks[0].retry_b = 4;
	fake_sinks[0].retries_left = -1;
	if (harness_run(&r, HEAD("dlq"), kinds) != 0) {
		ok(0, "exhausted dlq: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "attempts used up, on_error dlq: the run succeeds");
	n = state_dlq_list(r.state, r.run_id, "s1", &rows);
	is_int(n, 3, "dlq: each record of the batch is dead-lettered");
	if (n > 0)
		att = json_loads(rows[0].attempts, 0, NULL);
	ok(n > 0 && strstr(rows[0].payload, "\"b\":4") &&
	   strstr(rows[0].error, "database is locked (after 3 attempts)"),
	   "dlq: the record and the error (%s)", n > 0 ? rows[0].error : "");
	is_int(json_array_size(att), 3, "dlq: with the 3 attempts made");
	ok(json_is_string(json_object_get(json_array_get(att, 2), "error")) &&
	   json_integer_value(json_object_get(json_array_get(att, 2), "attempt")) == 3,
	   "dlq: each attempt with its number and error");
	json_decref(att);
	dlq_rows_free(rows, n);
	ok(fake_acked_in_order(5), "dlq: dead-lettered records count as done for acks");
	harness_end(&r);
}

static void test_fail_no_retry(void)
{
	struct harness_run r;

	fake_reset();
	fake_sinks[0].fail_b = 1;
	if (harness_run(&r, HEAD("skip"), kinds) != 0) {
		ok(0, "FAIL: setup");
		return;
	}
	is_int(r.status, ST_SUCCEEDED, "FAIL, on_error skip: the run succeeds");
	is_int(fake_writes_of(&fake_sinks[0], 1), 1, "FAIL is not retried");
	is_int(fake_sinks[0].committed[2], 3, "the next batches are loaded");
	harness_end(&r);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	test_order();
	test_exhausted_fail();
	test_exhausted_skip();
	test_exhausted_dlq();
	test_fail_no_retry();
	harness_cleanup();
	return done_testing();
}
