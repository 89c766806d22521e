/*
 * The HTTP job shared by fetch.http and load.http: compiling the stage's
 * request settings and templates, rendering a job's url, headers and body
 * (a fan-out input record or a load batch as `.`), sending it through the
 * run's requester (pools, rate limits, breaker, retries), handling its
 * response and a failure for good (on_error), and the pump that keeps at
 * most `concurrency` jobs with a request in flight; jobs waiting out a
 * backoff do not count, so others proceed.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/flow.h"
#include "expr/expr.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "stages/http_job.h"
#include "stages/http_opts.h"
#include "stages/paginate.h"
#include "base/util.h"

/* Jobs started but not finished, beyond the concurrency, while some wait:
 * bounds memory when many requests are in backoff. Generous, because a job
 * waiting out a Retry-After holds its place that long: at 4 times the
 * concurrency, 5 % of answers saying "come back in 1 s" held a fetch of
 * 64 at about 4,000 requests a second (the jobs that may start, divided
 * by the time a job stays). */
#define MAX_OUTSTANDING_FACTOR 16

/* The request settings: a fetch stage's own, or an http load's. */
const struct fetch_spec *fspec(const struct stage *st)
{
	return http_opts_fetch(st->spec);
}

static struct expr *compile(struct stage *st, const char *src, const char *what,
                            bool tpl, char **err)
{
	char *msg = NULL;
	size_t off;
	struct expr *x = tpl ? expr_template(src, engine_scope(st->eng), &msg, &off) :
	                       expr_compile(src, engine_scope(st->eng), &msg);

	if (!x) {
		*err = xasprintf("invalid %s in \"%s\": %s", tpl ? "template" : "jq expression",
		                 what, msg);
		free(msg);
	}
	return x;
}

static bool scheme_ok(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
	       strncasecmp(url, "file://", 7) == 0;
}

static bool is_identity(const char *src)
{
	while (src && (*src == ' ' || *src == '\t' || *src == '\n'))
		src++;
	return !src || *src == '\0' || strcmp(src, ".") == 0;
}

/* Whether a url template renders as itself: no ${...}, and no $${ that
 * rendering would turn into ${. */
static bool url_is_plain(const char *src)
{
	return expr_template_is_const(src) && !strstr(src, "$${");
}

int fh_create(struct stage *st, char **err)
{
	const struct fetch_spec *f = fspec(st);
	const struct spec *s = engine_spec(st->eng);
	struct fetch_http *c = xcalloc(1, sizeof(*c));
	size_t i;

	st->ctx = c;
	c->fanout = st->spec->n_needs > 0 && !st->replay;
	c->sink = st->kind->sink;
	if (c->sink) {
		const struct load_http_opts *l = st->spec->opts;
		c->batch = l->batch > 1 ? l->batch : 1;
	} else {
		c->batch = 1;
	}
	/* Source mode runs `records` in the emitter; fan-out runs it itself
	 * (then merge) and uses the emitter only for batching. */
	if (emitter_init(&c->em, st, c->fanout ? NULL : &f->records, err) != 0)
		return -1;
	if (c->fanout && !is_identity(f->records.s) &&
	    !(c->records = compile(st, f->records.s, "records", false, err)))
		return -1;
	if (f->merge.s && !(c->merge = compile(st, f->merge.s, "merge", false, err)))
		return -1;
	c->method = xstrdup(f->method.s ? f->method.s : c->sink ? "POST" : "GET");
	c->url_t = xcalloc(f->n_urls ? f->n_urls : 1, sizeof(*c->url_t));
	for (i = 0; i < f->n_urls; i++) {
		/* A URL without ${...} is sent as written (job_render): a long
		 * list of plain URLs keeps no compiled template per entry. */
		if (!url_is_plain(f->urls[i].s) &&
		    !(c->url_t[i] = compile(st, f->urls[i].s, "url", true, err)))
			return -1;
		c->n_url_t++;
	}
	c->hdr_t = xcalloc(f->n_headers ? f->n_headers : 1, sizeof(*c->hdr_t));
	c->hdr_name = xcalloc(f->n_headers ? f->n_headers : 1, sizeof(*c->hdr_name));
	c->add_ctype = f->json.s != NULL || c->sink;
	for (i = 0; i < f->n_headers; i++) {
		c->hdr_name[i] = xstrdup(f->headers[i].name);
		if (!(c->hdr_t[i] = compile(st, f->headers[i].value.s, f->headers[i].name, true, err)))
			return -1;
		c->n_hdr++;
		if (strcasecmp(f->headers[i].name, "Content-Type") == 0)
			c->add_ctype = false;
	}
	if (f->body.s && !(c->body_t = compile(st, f->body.s, "body", true, err)))
		return -1;
	if (f->json.s && !(c->json_x = compile(st, f->json.s, "json", false, err)))
		return -1;
	if (f->paginate.next.s &&
	    !(c->page_next = compile(st, f->paginate.next.s, "paginate.next", false, err)))
		return -1;
	if (f->paginate.stop.s &&
	    !(c->page_stop = compile(st, f->paginate.stop.s, "paginate.stop", false, err)))
		return -1;
	{
		/* Without any retry: the spec's policy is retry_policy_default(). */
		const struct retry_spec *r = f->retry.set ? &f->retry : &s->retry;
		c->retry = r->p;
		if (r->when.s && !(c->when = compile(st, r->when.s, "retry.when", false, err)))
			return -1;
	}
	c->concurrency = f->concurrency > 0 ? f->concurrency : s->stage_concurrency;
	c->rs.stage = st->spec->id;
	c->rs.method = c->method;
	c->rs.timeout = f->timeout > 0 ? f->timeout : s->timeout;
	c->rs.connect_timeout = f->connect_timeout > 0 ? f->connect_timeout : s->connect_timeout;
	c->rs.max_body = f->max_body > 0 ? f->max_body : s->max_body;
	c->rs.tls_verify = f->tls_verify != 0;
	c->rs.retry = &c->retry;
	c->rs.when = c->when;
	/* A body that does not parse fails the attempt (invalid_body), so it
	 * can be retried before any of its records went on. */
	c->rs.body_format = c->sink ? REQUEST_BODY_ANY :
	                    f->format == FMT_JSONL ? REQUEST_BODY_JSONL : REQUEST_BODY_JSON;
	c->rs.idempotent = f->idempotent > 0;
	c->rs.send_key = c->sink;
	c->rs.pool = f->pool.s;
	c->rs.waiting = &c->waiting;
	c->allow_hosts = xcalloc(f->n_allow_hosts + 1, sizeof(*c->allow_hosts));
	for (i = 0; i < f->n_allow_hosts; i++)
		c->allow_hosts[i] = xstrdup(f->allow_hosts[i].s);
	c->rs.allow_hosts = (const char *const *)c->allow_hosts;
	return 0;
}

/* ------------------------------------------------------------ jobs */

static struct job *job_new(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	struct job *j = xcalloc(1, sizeof(*j));

	j->st = st;
	j->all_next = c->jobs;
	if (c->jobs)
		c->jobs->all_prev = j;
	c->jobs = j;
	return j;
}

static void job_free(struct job *j)
{
	struct fetch_http *c;
	size_t i;

	if (!j)
		return;
	c = j->st->ctx;
	if (j->all_prev)
		j->all_prev->all_next = j->all_next;
	else
		c->jobs = j->all_next;
	if (j->all_next)
		j->all_next->all_prev = j->all_prev;
	json_decref(j->input);
	if (j->st->status > ST_SUCCEEDED)
		flow_poison(j->lin);       /* the stage failed: never loaded */
	engine_release(j->lin);
	free(j->url);
	free(j->origin);
	for (i = 0; j->headers && j->headers[i]; i++)
		free(j->headers[i]);
	free(j->headers);
	free(j->body);
	free(j);
}

/* Renders what the job sends (url from url_t[which]) with input as `.`.
 * Returns 0, or -1 with *err. */
static int job_render(struct stage *st, struct job *j, size_t which, char **err)
{
	struct fetch_http *c = st->ctx;
	char *msg = NULL;
	size_t i;
	json_t *replay = st->replay ? json_array_get(st->replay, which) : NULL;

	if (replay) {
		/* dlq replay: the request exactly as it was dead-lettered. */
		const char *u = json_string_value(json_object_get(replay, "url"));
		if (!u) {
			*err = xstrdup("dead letter without a url");
			return -1;
		}
		j->url = xstrdup(u);
	} else if (!c->url_t[which]) {
		j->url = xstrdup(fspec(st)->urls[which].s);
	} else {
		j->url = expr_render(c->url_t[which], j->input, &msg);
	}
	if (!j->url)
		goto fail;
	if (c->sink && strncasecmp(j->url, "file://", 7) == 0) {
		*err = xasprintf("url \"%s\": an http load sends to http:// or https:// URLs",
		                 j->url);
		return -1;
	}
	if (!scheme_ok(j->url)) {
		*err = xasprintf("url \"%s\": only http://, https:// and file:// URLs are supported",
		                 j->url);
		return -1;
	}
	j->headers = xcalloc(c->n_hdr + 2, sizeof(*j->headers));
	for (i = 0; i < c->n_hdr; i++) {
		char *v = expr_render(c->hdr_t[i], j->input, &msg);
		if (!v)
			goto fail;
		if (strchr(v, '\n') || strchr(v, '\r')) {
			free(v);
			*err = xasprintf("header \"%s\": value contains a line break", c->hdr_name[i]);
			return -1;
		}
		j->headers[i] = xasprintf("%s: %s", c->hdr_name[i], v);
		free(v);
	}
	if (c->add_ctype)
		j->headers[c->n_hdr] = xstrdup("Content-Type: application/json");
	if (replay) {
		const char *b = json_string_value(json_object_get(replay, "body"));
		if (b) {
			j->body = xstrdup(b);
			j->body_len = strlen(b);
		}
		if (fspec(st)->paginate.kind == PAGE_COUNTER)
			paginate_replay_counter(&fspec(st)->paginate, j->url, &j->counter,
			                        &j->page);
		j->origin = xstrdup(j->url);
		return 0;              /* pages continue from the stored URL */
	} else if (c->body_t) {
		if (!(j->body = expr_render(c->body_t, j->input, &msg)))
			goto fail;
		j->body_len = strlen(j->body);
	} else if (c->sink) {
		j->body = jsonw_dumps(j->input);
		j->body_len = strlen(j->body);
	} else if (c->json_x) {
		json_t *v = expr_eval1(c->json_x, j->input, &msg);
		if (!v)
			goto fail;
		j->body = jsonw_dumps(v);
		j->body_len = strlen(j->body);
		json_decref(v);
	}
	if (fspec(st)->paginate.kind == PAGE_COUNTER) {
		char num[32], *u;
		j->counter = fspec(st)->paginate.start;
		snprintf(num, sizeof(num), "%lld", j->counter);
		u = http_url_set_param(j->url, fspec(st)->paginate.param.s, num);
		if (!u) {
			*err = xasprintf("url \"%s\" does not parse", j->url);
			return -1;
		}
		free(j->url);
		j->url = u;
	}
	j->origin = xstrdup(j->url);
	return 0;
fail:
	*err = xasprintf("cannot render the request: %s", msg);
	free(msg);
	return -1;
}

static void fh_done(void *arg, const struct request_result *r);

static void on_wait(void *arg)
{
	struct job *j = arg;
	fh_pump(j->st);
}

static void job_send(struct job *j)
{
	struct fetch_http *c = j->st->ctx;
	struct request_spec rs = c->rs;

	rs.url = j->url;
	rs.origin = j->origin;
	rs.headers = (const char *const *)j->headers;
	rs.body = j->body;
	rs.body_len = j->body_len;
	rs.on_wait = on_wait;
	rs.owner = j->st;
	request_start(engine_requester(j->st->eng), &rs, fh_done, j);
}

/* The job is over (success or handled failure). */
static void job_end(struct job *j)
{
	struct stage *st = j->st;
	struct fetch_http *c = st->ctx;

	c->outstanding--;
	job_free(j);
	fh_pump(st);
	if (c->outstanding == 0 && !c->pend_head)
		lh_jobs_ended(st);
	engine_kick(st);
}

void emit_out(struct fetch_http *c, json_t *rec)
{
	emitter_add(&c->em, rec);
}

/* A job failed for good: on_error decides. */
static void job_failed(struct job *j, const char *error, const json_t *history)
{
	struct stage *st = j->st;
	struct fetch_http *c = st->ctx;

	if (j->emitted > 0 && fspec(st)->paginate.kind != PAGE_NONE &&
	    engine_on_error(st) == ON_ERROR_SKIP) {
		/* The pages after this one cannot be fetched: skipping it would
		 * pass part of the pages off as all of them. */
		engine_stage_fail(st, "%s (page %d of a pagination: on_error: skip does not skip "
		                  "the rest of a pagination; on_error: dlq keeps the page for "
		                  "dlq replay)", error, j->emitted + 1);
		return;
	}
	if (c->fanout && engine_on_error(st) == ON_ERROR_PASS) {
		json_t *rec = json_is_object(j->input) ? json_deep_copy(j->input) : json_object();
		json_t *errs = json_object_get(rec, "_errors");
		char *msg = redact(error), *url = redact(j->url);
		if (!json_is_array(errs)) {
			errs = json_array();
			json_object_set_new(rec, "_errors", errs);
		}
		json_array_append_new(errs, json_pack("{s:s, s:s, s:s}", "stage", st->spec->id,
		                                      "url", url, "error", msg));
		st->stats.errors++;
		free(msg);
		free(url);
		emit_out(c, rec);
	} else {
		json_t *payload = c->fanout ? json_incref(j->input) :
		                  json_pack("{s:s, s:s}", "method", c->method, "url", j->url);
		if (!c->fanout && j->body)
			json_object_set_new(payload, "body", json_string(j->body));
		engine_record_failure(st, payload, error, history);
		json_decref(payload);
	}
}

static void job_answer(struct job *j, const struct request_result *r);

/* What an answer emits derives from the job's input: it carries the job's
 * lineage. The job may end (and release its hold) inside: a reference of
 * our own keeps the lineage until the answer is handled. */
static void fh_done(void *arg, const struct request_result *r)
{
	struct job *j = arg;
	struct stage *st = j->st;
	struct flow_set *lin = flow_ref(j->lin);
	struct flow_set *prev = engine_set_lineage(st, lin);

	job_answer(j, r);
	engine_set_lineage(st, prev);
	engine_release(lin);
}

static void job_answer(struct job *j, const struct request_result *r)
{
	struct stage *st = j->st;
	struct fetch_http *c = st->ctx;
	const struct http_result *res = r->http;
	enum data_format fmt = fspec(st)->format;
	json_t *doc = NULL;
	char *err = NULL, *next;
	long docs = 0;

	st->stats.requests += r->attempts;
	engine_touch(st);
	if (c->stopped) {
		job_free(j);
		return;
	}
	if (!r->ok) {
		job_failed(j, r->error, r->history);
		job_end(j);
		return;
	}
	j->page++;
	if (c->sink) {
		/* Delivered (the journal is the delivery log). */
		size_t n = json_is_array(j->input) && c->batch > 1 ? json_array_size(j->input) : 1;
		st->stats.records_out += (int64_t)n;
		job_end(j);
		return;
	}
	if (strcmp(c->method, "HEAD") == 0 && res->body_len == 0) {
		docs = 0;
	} else if (fmt == FMT_JSON) {
		json_error_t jerr;
		doc = r->doc ? json_incref((json_t *)r->doc) :
		      json_loadb(res->body, res->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		if (!doc) {
			err = xasprintf("%s: invalid JSON at line %d, column %d: %s", j->url,
			                jerr.line, jerr.column, jerr.text);
		} else {
			docs = 1;
			if (c->fanout ? fanout_doc(st, j, doc, &err) :
			                emitter_doc(&c->em, doc, j->url, &err))
				docs = -1;
		}
	} else if (c->fanout) {
		err = xasprintf("%s: format jsonl is not supported with needs", j->url);
	} else {
		docs = emitter_feed(&c->em, res->body, res->body_len, FMT_JSONL, j->url, 1, &err);
	}
	if (err) {
		json_decref(doc);
		job_failed(j, err, r->history);
		free(err);
		job_end(j);
		return;
	}
	if (!c->fanout)                /* fan-out: the engine counted the input records */
		st->stats.records_in += docs;
	j->emitted++;
	{
		struct pager pg = { &fspec(st)->paginate, c->page_next, c->page_stop,
		                     (const char *const *)c->allow_hosts };
		struct page_at at = { j->url, j->origin, j->page, &j->counter };
		next = paginate_next(&pg, &at, res, doc, &err);
	}
	json_decref(doc);
	if (err) {
		job_failed(j, err, r->history);
		free(err);
		free(next);
		job_end(j);
		return;
	}
	if (next && !c->stopped) {
		free(j->url);
		j->url = next;
		if (!engine_may_emit(st)) {
			/* Downstream is full: the next page waits (fh_pump sends
			 * it once there is room), the job stays outstanding. */
			j->next = NULL;
			if (c->park_tail)
				c->park_tail->next = j;
			else
				c->park_head = j;
			c->park_tail = j;
			return;
		}
		job_send(j);
		return;
	}
	free(next);
	job_end(j);
}

/* Starts jobs while fewer than `concurrency` are active (not in backoff),
 * and finishes the stage when nothing is left. */
void fh_pump(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	int cap = c->concurrency * MAX_OUTSTANDING_FACTOR;

	if (c->stopped || st->status >= ST_SUCCEEDED)
		return;
	while (c->park_head && engine_may_emit(st)) {
		struct job *j = c->park_head;
		c->park_head = j->next;
		if (!c->park_head)
			c->park_tail = NULL;
		job_send(j);
		if (c->stopped || st->status >= ST_SUCCEEDED)
			return;
	}
	while (c->outstanding - c->waiting < c->concurrency && c->outstanding < cap) {
		struct job *j;
		char *err = NULL;
		if (c->fanout) {
			if (!(j = c->pend_head))
				break;
			c->pend_head = j->next;
			if (!c->pend_head)
				c->pend_tail = NULL;
		} else {
			if (c->next_url >= n_sources(st) || !engine_may_emit(st))
				break;
			j = job_new(st);
			if (job_render(st, j, c->next_url++, &err) != 0) {
				job_free(j);
				engine_stage_fail(st, "%s", err);
				free(err);
				return;
			}
		}
		c->outstanding++;
		job_send(j);
		if (c->stopped || st->status >= ST_SUCCEEDED)
			return;
	}
	if (c->outstanding == 0 && !c->pend_head &&
	    (c->fanout ? c->finishing : c->next_url >= n_sources(st))) {
		emitter_flush(&c->em);
		engine_stage_done(st);
	}
}

/* Fan-out: accept input only when the previous batch has been started. */
bool fh_ready(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	return c->pend_head == NULL;
}

void fh_push(struct stage *st, json_t *batch)
{
	struct fetch_http *c = st->ctx;
	json_t *rec, *group = NULL;
	size_t i;

	for (i = 0; i < json_array_size(batch) || group; i++) {
		struct job *j;
		char *err = NULL;
		rec = json_array_get(batch, i);
		if (c->batch > 1 && !(st->replay_in && json_is_array(rec))) {
			/* http load with batch: N records per request, as an array. */
			if (rec) {
				if (!group)
					group = json_array();
				json_array_append(group, rec);
				if (json_array_size(group) < (size_t)c->batch &&
				    i + 1 < json_array_size(batch))
					continue;
			}
			if (!group)
				break;
			j = job_new(st);
			j->input = group;
			group = NULL;
		} else {
			/* One record; or, in a dlq replay of a batched load, one
			 * dead letter: the array a request carried, sent again as
			 * that request (same body, same Idempotency-Key), not
			 * grouped as a record of a new array. */
			j = job_new(st);
			j->input = json_incref(rec);
		}
		j->lin = engine_hold(st);
		if (job_render(st, j, 0, &err) != 0) {
			job_failed(j, err, NULL);
			free(err);
			job_free(j);
			if (st->status >= ST_SUCCEEDED)
				return;
			continue;
		}
		if (c->pend_tail)
			c->pend_tail->next = j;
		else
			c->pend_head = j;
		c->pend_tail = j;
	}
	fh_pump(st);
}

void fh_finish(struct stage *st)
{
	struct fetch_http *c = st->ctx;

	c->finishing = true;
	fh_pump(st);
}

void fh_stop(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	struct job *j, *n;

	if (!c)
		return;
	c->stopped = true;
	request_cancel_owner(engine_requester(st->eng), st);
	/* Jobs stay allocated until destroy: a callback in progress may still
	 * hold one. */
	(void)j;
	(void)n;
	c->pend_head = c->pend_tail = NULL;
	c->park_head = c->park_tail = NULL;
}

void fh_destroy(struct stage *st)
{
	struct fetch_http *c = st->ctx;
	size_t i;

	if (!c)
		return;
	fh_stop(st);
	while (c->jobs)
		job_free(c->jobs);
	emitter_free(&c->em);
	for (i = 0; i < c->n_url_t; i++)
		expr_free(c->url_t[i]);
	free(c->url_t);
	for (i = 0; i < c->n_hdr; i++) {
		expr_free(c->hdr_t[i]);
		free(c->hdr_name[i]);
	}
	free(c->hdr_t);
	free(c->hdr_name);
	expr_free(c->body_t);
	expr_free(c->json_x);
	expr_free(c->records);
	expr_free(c->merge);
	expr_free(c->page_next);
	expr_free(c->page_stop);
	expr_free(c->when);
	for (i = 0; c->allow_hosts && c->allow_hosts[i]; i++)
		free(c->allow_hosts[i]);
	free(c->allow_hosts);
	free(c->method);
	free(c);
	st->ctx = NULL;
}
