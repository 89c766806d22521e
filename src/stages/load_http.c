/*
 * load.http: sends records as JSON to an HTTP endpoint, one request per
 * record or per `batch` records (as an array), through the HTTP job of
 * http_job.c (fan-out with the record as the body); the response is only
 * an acknowledgement and the journal is the delivery log.
 *
 * A batch is one write: its requests go out (with their own retries, in
 * the requester), and the batch is answered OK once every one of them was
 * delivered or, failed for good, went to on_error; the next batch waits
 * for that answer.
 */
#include "stages/http_job.h"

static enum sink_result lh_write(struct stage *st, json_t *batch, char **reason)
{
	struct fetch_http *c = st->ctx;

	(void)reason;
	c->answer_due = true;
	fh_push(st, batch);
	if (st->status >= ST_SUCCEEDED) {
		c->answer_due = false;     /* failed (on_error: fail) */
		return SINK_FAIL;
	}
	if (c->answer_due && c->outstanding == 0 && !c->pend_head) {
		c->answer_due = false;     /* every record failed to render */
		return SINK_OK;
	}
	/* Answered already (the requests ended inside fh_push), or later by
	 * lh_jobs_ended. */
	return SINK_PENDING;
}

void lh_jobs_ended(struct stage *st)
{
	struct fetch_http *c = st->ctx;

	if (!c->answer_due || c->stopped)
		return;
	c->answer_due = false;
	engine_sink_answer(st, SINK_OK, NULL);
}

/* load: http reuses this machinery (fan-out with the record as the body). */
const struct stage_kind stage_load_http = {
	.name = "load.http",
	.description = "send records as JSON to an HTTP endpoint (delivery log: the journal)",
	.create = fh_create,
	.write = lh_write,
	.ready = fh_ready,
	.finish = fh_finish,
	.stop = fh_stop,
	.destroy = fh_destroy,
};
