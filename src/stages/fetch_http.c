/*
 * fetch.http: a source stage that requests each configured URL (http, https
 * or file) through http.c, at most `concurrency` at a time, and turns every
 * response into records. It submits new requests only while the stages it
 * feeds have room (engine_may_emit), so a slow consumer pauses the fetching.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "expr.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "stages/records.h"
#include "util.h"

struct fetch_http {
	struct emitter em;
	char **urls;                   /* rendered */
	size_t n_urls, next;
	char *method;
	char **headers;                /* "Name: value", NULL-terminated */
	char *body;
	size_t body_len;
	struct http_request req;       /* shared settings; url set per request */
	int concurrency;
	int inflight;
	bool stopped;
};

static char *render(struct stage *st, const struct sval *v, const char *what, char **err)
{
	char *msg = NULL, *out;
	size_t off = 0;
	struct expr *t = expr_template(v->s, engine_scope(st->eng), &msg, &off);

	if (!t) {
		*err = xasprintf("invalid template in \"%s\": %s", what, msg);
		free(msg);
		return NULL;
	}
	out = expr_render(t, NULL, &msg);
	expr_free(t);
	if (!out) {
		*err = xasprintf("cannot render \"%s\": %s", what, msg);
		free(msg);
	}
	return out;
}

static bool scheme_ok(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
	       strncasecmp(url, "file://", 7) == 0;
}

static int fh_create(struct stage *st, char **err)
{
	const struct fetch_spec *f = &st->spec->u.fetch;
	const struct spec *s = engine_spec(st->eng);
	struct fetch_http *c = xcalloc(1, sizeof(*c));
	size_t i;
	bool has_ctype = false;

	st->ctx = c;
	if (emitter_init(&c->em, st, &f->records, err) != 0)
		return -1;
	c->urls = xcalloc(f->n_urls ? f->n_urls : 1, sizeof(*c->urls));
	for (i = 0; i < f->n_urls; i++) {
		c->urls[i] = render(st, &f->urls[i], "url", err);
		if (!c->urls[i])
			return -1;
		c->n_urls++;
		if (!scheme_ok(c->urls[i])) {
			*err = xasprintf("url \"%s\": only http://, https:// and file:// URLs are supported",
			                 c->urls[i]);
			return -1;
		}
	}
	c->method = xstrdup(f->method.s ? f->method.s : "GET");
	c->headers = xcalloc(f->n_headers + 2, sizeof(*c->headers));
	for (i = 0; i < f->n_headers; i++) {
		char *v = render(st, &f->headers[i].value, f->headers[i].name, err);
		if (!v)
			return -1;
		if (strchr(v, '\n') || strchr(v, '\r')) {
			free(v);
			*err = xasprintf("header \"%s\": value contains a line break", f->headers[i].name);
			return -1;
		}
		c->headers[i] = xasprintf("%s: %s", f->headers[i].name, v);
		free(v);
		if (strcasecmp(f->headers[i].name, "Content-Type") == 0)
			has_ctype = true;
	}
	if (f->body.s) {
		c->body = render(st, &f->body, "body", err);
		if (!c->body)
			return -1;
		c->body_len = strlen(c->body);
	} else if (f->json.s) {
		char *msg = NULL;
		struct expr *x = expr_compile(f->json.s, engine_scope(st->eng), &msg);
		json_t *v;
		if (!x) {
			*err = xasprintf("invalid jq expression in \"json\": %s", msg);
			free(msg);
			return -1;
		}
		v = expr_eval1(x, NULL, &msg);
		expr_free(x);
		if (!v) {
			*err = xasprintf("\"json\" expression failed: %s", msg);
			free(msg);
			return -1;
		}
		c->body = jsonw_dumps(v);
		c->body_len = strlen(c->body);
		json_decref(v);
		if (!has_ctype)
			c->headers[f->n_headers] = xstrdup("Content-Type: application/json");
	}
	c->concurrency = f->concurrency > 0 ? f->concurrency : s->stage_concurrency;
	c->req.method = c->method;
	c->req.headers = (const char *const *)c->headers;
	c->req.body = c->body;
	c->req.body_len = c->body_len;
	c->req.timeout = f->timeout > 0 ? f->timeout : s->timeout;
	c->req.connect_timeout = f->connect_timeout > 0 ? f->connect_timeout : s->connect_timeout;
	c->req.max_body = f->max_body > 0 ? f->max_body : s->max_body;
	c->req.tls_verify = f->tls_verify != 0;
	return 0;
}

static void fh_pump(struct stage *st);

static const char *reason(long status)
{
	switch (status) {
	case 400: return " Bad Request";
	case 401: return " Unauthorized";
	case 403: return " Forbidden";
	case 404: return " Not Found";
	case 408: return " Request Timeout";
	case 429: return " Too Many Requests";
	case 500: return " Internal Server Error";
	case 502: return " Bad Gateway";
	case 503: return " Service Unavailable";
	case 504: return " Gateway Timeout";
	default: return "";
	}
}

static void fh_done(void *arg, const struct http_result *r)
{
	struct stage *st = arg;
	struct fetch_http *c = st->ctx;
	char *err = NULL;

	c->inflight--;
	if (c->stopped || r->error == HTTP_ERR_CANCELLED)
		return;
	st->stats.requests++;
	engine_touch(st);
	if (r->error != HTTP_OK) {
		engine_stage_fail(st, "%s %s: %s", c->method, r->url, r->error_msg);
		return;
	}
	if (r->status != 0 && (r->status < 200 || r->status > 299)) {
		int n = (int)(r->body_len > 200 ? 200 : r->body_len);
		engine_stage_fail(st, "%s %s: HTTP %ld%s%s%.*s", c->method, r->url, r->status,
		                  reason(r->status), n ? ": " : "", n, r->body);
		return;
	}
	if (strcmp(c->method, "HEAD") != 0 || r->body_len > 0) {
		long docs = emitter_feed(&c->em, r->body, r->body_len,
		                         st->spec->u.fetch.format, r->url, 1, &err);
		if (docs < 0) {
			engine_stage_fail(st, "%s", err);
			free(err);
			return;
		}
		st->stats.records_in += docs;
	}
	fh_pump(st);
}

/* Submits requests while there are URLs left, slots free and room downstream;
 * finishes the stage when everything has been answered. */
static void fh_pump(struct stage *st)
{
	struct fetch_http *c = st->ctx;

	while (!c->stopped && c->next < c->n_urls && c->inflight < c->concurrency &&
	       engine_may_emit(st)) {
		c->req.url = c->urls[c->next++];
		c->inflight++;
		log_debug("stage %s: %s %s", st->spec->id, c->method, c->req.url);
		http_submit(engine_http(st->eng), &c->req, fh_done, st);
	}
	if (!c->stopped && c->next == c->n_urls && c->inflight == 0) {
		emitter_flush(&c->em);
		engine_stage_done(st);
	}
}

static void fh_start(struct stage *st) { fh_pump(st); }
static void fh_resume(struct stage *st) { fh_pump(st); }

static void fh_stop(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	if (c)
		c->stopped = true;
}

static void fh_destroy(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	size_t i;

	if (!c)
		return;
	emitter_free(&c->em);
	for (i = 0; i < c->n_urls; i++)
		free(c->urls[i]);
	free(c->urls);
	for (i = 0; c->headers && c->headers[i]; i++)
		free(c->headers[i]);
	free(c->headers);
	free(c->method);
	free(c->body);
	free(c);
	st->ctx = NULL;
}

const struct stage_kind stage_fetch_http = {
	.name = "fetch.http",
	.description = "request URLs (http, https, file) and turn each response into records",
	.create = fh_create,
	.start = fh_start,
	.resume = fh_resume,
	.stop = fh_stop,
	.destroy = fh_destroy,
};
