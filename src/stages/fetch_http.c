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

#define FS(field) offsetof(struct fetch_spec, field)

static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
/* in the order of enum data_format */
static const char *const fetch_formats[] = { "json", "jsonl", NULL };

/* In the order of the keys in messages and suggestions: url and file
 * first (fetch.file's table adds file), then as they were always listed. */
static const struct opt fh_options[] = {
	{ .key = "url", .type = OPT_TEMPLATE_LIST, .offset = FS(urls), .n_offset = FS(n_urls),
	  .flags = OPT_SELECTOR, .doc = "URL template, or a list of them (one with needs)" },
	{ .key = "format", .type = OPT_ENUM, .offset = FS(format), .def = "json",
	  .words = fetch_formats, .doc = "what a response body holds: one JSON document or JSON lines" },
	{ .key = "method", .type = OPT_ENUM, .offset = FS(method), .def = "GET",
	  .words = methods, .flags = OPT_WORD, .doc = "HTTP method" },
	{ .key = "headers", .type = OPT_CUSTOM, .offset = FS(headers), .read = http_opts_read_headers,
	  .shape = "map of templates", .doc = "request headers: name -> template" },
	{ .key = "body", .type = OPT_TEMPLATE, .offset = FS(body),
	  .doc = "raw request body template" },
	{ .key = "json", .type = OPT_JQ, .offset = FS(json),
	  .doc = "jq expression whose value is sent as a JSON body" },
	{ .key = "records", .type = OPT_JQ, .offset = FS(records), .def = ".",
	  .doc = "jq: a response document -> 0..n records" },
	{ .key = "timeout", .type = OPT_DURATION, .offset = FS(timeout), .flags = OPT_INHERIT,
	  .doc = "per attempt (default: defaults.timeout)" },
	{ .key = "connect_timeout", .type = OPT_DURATION, .offset = FS(connect_timeout),
	  .flags = OPT_INHERIT, .doc = "per connection (default: defaults.connect_timeout)" },
	{ .key = "concurrency", .type = OPT_INT, .offset = FS(concurrency), .min = 1,
	  .max = 10000, .flags = OPT_INHERIT,
	  .doc = "transfers in flight (default: defaults.concurrency)" },
	{ .key = "max_body", .type = OPT_SIZE, .offset = FS(max_body), .flags = OPT_INHERIT,
	  .doc = "largest response body (default: defaults.max_body)" },
	{ .key = "tls_verify", .type = OPT_BOOL, .offset = FS(tls_verify), .flags = OPT_INHERIT,
	  .doc = "verify TLS certificates (default true)" },
	{ .key = "retry", .type = OPT_CUSTOM, .offset = FS(retry), .read = opt_read_retry,
	  .free = opt_free_retry, .shape = "retry", .doc = "retry policy (replaces defaults.retry)" },
	{ .key = "idempotent", .type = OPT_BOOL, .offset = FS(idempotent), .flags = OPT_INHERIT,
	  .doc = "may be retried (default: by method)" },
	{ .key = "pool", .type = OPT_STRING, .offset = FS(pool),
	  .doc = "a hosts: entry to use instead of the URL's host" },
	{ .key = "paginate", .type = OPT_CUSTOM, .offset = FS(paginate), .read = http_opts_read_paginate,
	  .free = http_opts_free_paginate, .shape = "paginate", .doc = "follow next pages" },
	{ .key = "merge", .type = OPT_JQ, .offset = FS(merge),
	  .doc = "fan-out: jq on {record, response} -> outputs" },
	{ .key = "allow_hosts", .type = OPT_STRING_LIST, .offset = FS(allow_hosts),
	  .n_offset = FS(n_allow_hosts),
	  .doc = "other hosts a server-supplied URL may go to" },
	{ .key = NULL },
};

const struct stage_kind stage_fetch_http = {
	.name = "fetch.http",
	.description = "request URLs (http, https, file), per input record with needs",
	.role = "fetch",
	.selector = "url",
	.source = true,
	.journaled = true,
	.options = fh_options,
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
