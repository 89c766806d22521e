/*
 * load.http: sends records as JSON to an HTTP endpoint, one request per
 * record or per `batch` records (as an array), through the HTTP job of
 * http_job.c (fan-out with the record as the body); the response is only
 * an acknowledgement and the journal is the delivery log.
 */
#include "stages/http_job.h"
#include "stages/http_opts.h"

/* load: http reuses this machinery (fan-out with the record as the body). */
const struct stage_kind stage_load_http = {
	.name = "load.http",
	.description = "send records as JSON to an HTTP endpoint (delivery log: the journal)",
	.role = "load",
	.selector = "http",
	.nested = true,
	.sink = true,
	.options = load_http_options,
	.opts_size = sizeof(struct load_http_opts),
	.check = load_http_opts_check,
	.free_opts = load_http_opts_free,
	.refs = load_http_opts_refs,
	.describe = load_http_opts_describe,
	.create = fh_create,
	.push = fh_push,
	.ready = fh_ready,
	.finish = fh_finish,
	.stop = fh_stop,
	.destroy = fh_destroy,
};
