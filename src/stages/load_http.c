/*
 * load.http: sends records as JSON to an HTTP endpoint, one request per
 * record or per `batch` records (as an array), through the HTTP job of
 * http_job.c (fan-out with the record as the body); the response is only
 * an acknowledgement and the journal is the delivery log.
 */
#include "stages/http_job.h"
#include "stages/http_opts.h"

#include <stdlib.h>

#include "base/log.h"
#include "core/yaml.h"
#include "expr/expr.h"

#define LH(field) offsetof(struct load_http_opts, http.field)

static const char *const http_methods[] = { "POST", "PUT", "PATCH", NULL };

/* load.http url: one template (a list of one is read, a sequence refused). */
static void read_load_url(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                          const struct ynode *v, void *field, void *opts)
{
	struct load_http_opts *l = opts;
	struct fetch_spec *f = &l->http;

	(void)o;
	(void)k;
	(void)field;
	if (!v)
		return;
	opt_read_str_list(c, v, "url", &f->urls, &f->n_urls);
	if (v->kind == YN_SEQ)
		opt_error(c, opt_pos(c, v), "\"url\" of an http load is one URL template");
	else if (f->n_urls == 1)
		opt_check_template(c, v, f->urls[0].s, "\"url\"");
}

static void lh_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                          const struct ynode *m)
{
	struct load_http_opts *l = sp->opts;

	(void)k;
	(void)m;
	l->http.idempotent = 1;
	http_opts_check_allow_hosts(c, &l->http);
}

static void lh_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct load_http_opts *l = sp->opts;

	http_opts_target_refs(&l->http, fn, arg);
}

/* The URL of a summary line: tpl rendered with the run's scope when it
 * does not refer to a record, redacted (malloc'd). */
static char *summary_url(struct engine *e, const char *tpl)
{
	char *err = NULL, *url = NULL, *r;
	size_t off;
	struct expr *x;

	if (expr_input_ref(tpl, true) == (size_t)-1 &&
	    (x = expr_template(tpl, engine_scope(e), &err, &off))) {
		url = expr_render(x, NULL, &err);
		expr_free(x);
	}
	free(err);
	r = redact(url ? url : tpl);
	free(url);
	return r;
}

static void lh_describe(const struct stage_spec *sp, struct engine *e, struct state *st,
                             const struct spec *s, long long records, FILE *out)
{
	const struct load_http_opts *l = sp->opts;
	char *url = summary_url(e, l->http.urls ? l->http.urls[0].s : "");

	(void)st;
	(void)s;
	fprintf(out, "%s: %lld records delivered (%s %s)\n", sp->id, records,
	        l->http.method.s ? l->http.method.s : "POST", url);
	free(url);
}

static void lh_free(void *opts)
{
	struct load_http_opts *l = opts;
	size_t i;

	http_opts_free(&l->http);
	for (i = 0; i < l->http.n_urls; i++)
		free(l->http.urls[i].s);
	free(l->http.urls);
	l->http.urls = NULL;
	l->http.n_urls = 0;
}

static const struct opt lh_options[] = {
	{ .key = "url", .type = OPT_CUSTOM, .offset = LH(urls), .read = read_load_url,
	  .flags = OPT_REQUIRED, .shape = "template", .doc = "URL template (`.` is the record or the batch)" },
	{ .key = "method", .type = OPT_ENUM, .offset = LH(method), .def = "POST",
	  .words = http_methods, .flags = OPT_WORD, .doc = "HTTP method" },
	{ .key = "headers", .type = OPT_CUSTOM, .offset = LH(headers), .read = http_opts_read_headers,
	  .shape = "map of templates", .doc = "request headers: name -> template" },
	{ .key = "batch", .type = OPT_INT, .offset = offsetof(struct load_http_opts, batch),
	  .def = "1", .min = 1, .max = 10000, .doc = "records per request (sent as an array when > 1)" },
	{ .key = "timeout", .type = OPT_DURATION, .offset = LH(timeout), .flags = OPT_INHERIT,
	  .doc = "per attempt (default: defaults.timeout)" },
	{ .key = "connect_timeout", .type = OPT_DURATION, .offset = LH(connect_timeout),
	  .flags = OPT_INHERIT, .doc = "per connection (default: defaults.connect_timeout)" },
	{ .key = "concurrency", .type = OPT_INT, .offset = LH(concurrency), .min = 1,
	  .max = 10000, .flags = OPT_INHERIT,
	  .doc = "requests in flight (default: defaults.concurrency)" },
	{ .key = "retry", .type = OPT_CUSTOM, .offset = LH(retry), .read = opt_read_retry,
	  .free = opt_free_retry, .shape = "retry", .doc = "retry policy (replaces defaults.retry)" },
	{ .key = "tls_verify", .type = OPT_BOOL, .offset = LH(tls_verify), .flags = OPT_INHERIT,
	  .doc = "verify TLS certificates (default true)" },
	{ .key = "allow_hosts", .type = OPT_STRING_LIST, .offset = LH(allow_hosts),
	  .n_offset = LH(n_allow_hosts), .doc = "other hosts a redirect may go to" },
	{ .key = NULL },
};

/* load: http reuses this machinery (fan-out with the record as the body). */
const struct stage_kind stage_load_http = {
	.name = "load.http",
	.description = "send records as JSON to an HTTP endpoint (delivery log: the journal)",
	.role = "load",
	.selector = "http",
	.nested = true,
	.sink = true,
	.options = lh_options,
	.opts_size = sizeof(struct load_http_opts),
	.check = lh_check,
	.free_opts = lh_free,
	.refs = lh_refs,
	.describe = lh_describe,
	.create = fh_create,
	.push = fh_push,
	.ready = fh_ready,
	.finish = fh_finish,
	.stop = fh_stop,
	.destroy = fh_destroy,
};
