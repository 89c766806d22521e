/*
 * fetch.http: requests URLs (http, https, file) through the run's requester
 * (pools, rate limits, breaker, retries) and turns each response into
 * records. Two modes:
 *   - source (no needs): the configured URL list, rendered once;
 *   - fan-out (needs): one request per input record, its url, headers and
 *     body templated from the record; `merge` combines record and response.
 * Either way a job may follow pages (paginate), each page a request of its
 * own with its own retries. At most `concurrency` jobs have a request in
 * flight; jobs waiting out a backoff do not count, so others proceed.
 * A job that fails for good goes through on_error (fail, skip, dlq, or for
 * fan-out, pass: the record goes on with an "_errors" field).
 * This file holds what only fetch.http does (the sources, a response's
 * records merged with the input record, the kind); the job and the hooks
 * it shares with load.http are in http_job.c, pagination in paginate.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr/expr.h"
#include "stages/http_job.h"
#include "stages/http_opts.h"
#include "base/util.h"

/* Fan-out: records of one document, merged with the input record. */
int fanout_doc(struct stage *st, struct job *j, json_t *doc, char **err)
{
	struct fetch_http *c = st->ctx;
	json_t *recs = json_array(), *r, *outs = json_array();
	char *msg = NULL;
	size_t i, k;
	int rc = 0;

	if (c->records) {
		if (expr_run(c->records, doc, recs, &msg) != 0) {
			*err = xasprintf("%s: \"records\" expression failed: %s", j->url, msg);
			rc = -1;
			goto out;
		}
	} else {
		json_array_append(recs, doc);
	}
	json_array_foreach(recs, i, r) {
		if (!c->merge) {
			emit_out(c, json_incref(r));
			continue;
		}
		{
			json_t *in = json_pack("{s:O, s:O}", "record", j->input, "response", r);
			json_array_clear(outs);
			if (expr_run(c->merge, in, outs, &msg) != 0) {
				json_decref(in);
				*err = xasprintf("%s: \"merge\" expression failed: %s", j->url, msg);
				rc = -1;
				goto out;
			}
			json_decref(in);
			for (k = 0; k < json_array_size(outs); k++)
				emit_out(c, json_incref(json_array_get(outs, k)));
		}
	}
out:
	free(msg);
	json_decref(recs);
	json_decref(outs);
	return rc;
}

/* Source mode: how many requests to start (the URL list, or the dead
 * letters of a replay). */
size_t n_sources(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	return st->replay ? json_array_size(st->replay) : c->n_url_t;
}

static void fh_start(struct stage *st) { fh_pump(st); }
static void fh_resume(struct stage *st) { fh_pump(st); }

const struct stage_kind stage_fetch_http = {
	.name = "fetch.http",
	.description = "request URLs (http, https, file), per input record with needs",
	.role = "fetch",
	.selector = "url",
	.source = true,
	.journaled = true,
	.options = fetch_http_options,
	.opts_size = sizeof(struct fetch_spec),
	.check = fetch_opts_check,
	.free_opts = http_opts_free,
	.refs = fetch_opts_refs,
	.create = fh_create,
	.start = fh_start,
	.resume = fh_resume,
	.push = fh_push,
	.ready = fh_ready,
	.finish = fh_finish,
	.stop = fh_stop,
	.destroy = fh_destroy,
};
