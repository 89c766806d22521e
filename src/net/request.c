/*
 * request: logical requests under the run's policies (see request.h).
 *
 * States: ADMIT (waiting in its pool's FIFO for a slot or a token), INFLIGHT
 * (an attempt is in the transport), BACKOFF (an ev_timer before the next
 * attempt), DONE. Only INFLIGHT holds a slot: the pool's and the
 * transport's. The circuit breaker is asked before every attempt, like the
 * concurrency and the rate: while it is open, requests wait in the FIFO for
 * its cool-down and use up no attempt. Pools live in the hostreg (hostreg.c),
 * shared with every other requester on the loop: a request waits in its
 * pool as a pool_waiter, admitted through request_admit; the journal and
 * the rows buffered for the state database are journal.c's.
 *
 * Backoff and Retry-After are the delays set on the request's own timer;
 * the time queued in the pool is accounted by hostreg.c.
 */
#include "net/request.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "base/secret.h"
#include "base/util.h"
#include "net/request_int.h"


/* A JSON body larger than this is parsed on a thread of its own, so the
 * loop goes on (timers, other transfers) while it is. */
#define REQUEST_PARSE_OFFLOAD (256 * 1024)

/* An answered attempt whose body a worker thread parses (R_PARSING). The
 * worker touches only body, len, doc, err and done. */
struct parse_job {
	struct request *r;
	pthread_t thread;
	char *body;                    /* taken from http.c */
	size_t len;
	long status;
	struct http_header *headers;   /* copies */
	size_t n_headers;
	char digest[65];
	double duration;
	json_t *doc;                   /* the result, or NULL with err */
	char *err;
	bool done;                     /* under rq->plock */
	struct parse_job *next;
};


static void parse_async_cb(struct ev_loop *loop, ev_async *w, int revents);
static void request_admit(void *arg);
static void request_breaker(void *arg, const char *pool, enum breaker_state from,
                            enum breaker_state to);
static void request_waited(void *arg, const char *pool, enum pool_block reason,
                           double seconds);

/* How a request's pool reaches it. */
static const struct pool_waiter_ops request_waiter_ops = {
	.admit = request_admit,
	.breaker = request_breaker,
	.waited = request_waited,
};

/* ------------------------------------------------------------ helpers */

void request_fingerprint(const char *method, const char *url, const char *body,
                         size_t body_len, char out[65])
{
	struct buf b;
	char *su, *sb = NULL;
	size_t sb_len = 0;

	/* Over the sealed text (secrets as ${env.NAME}): a request's identity
	 * does not depend on a secret's value, so a key rotated between a run
	 * and its resume still finds the journal, and no hash of a secret is
	 * stored. */
	su = secret_seal(url, strlen(url), NULL);
	if (body)
		sb = secret_seal(body, body_len, &sb_len);
	buf_init(&b);
	buf_printf(&b, "%s\n%s\n", method ? method : "GET", su);
	if (sb)
		buf_add(&b, sb, sb_len);
	sha256_hex(b.data, b.len, out);
	buf_free(&b);
	free(su);
	free(sb);
}

static const char *reason(long status)
{
	switch (status) {
	case 400: return " Bad Request";
	case 401: return " Unauthorized";
	case 403: return " Forbidden";
	case 404: return " Not Found";
	case 408: return " Request Timeout";
	case 409: return " Conflict";
	case 422: return " Unprocessable Content";
	case 429: return " Too Many Requests";
	case 500: return " Internal Server Error";
	case 502: return " Bad Gateway";
	case 503: return " Service Unavailable";
	case 504: return " Gateway Timeout";
	default: return "";
	}
}

struct requester *requester_create(struct ev_loop *loop, const struct transport *tr,
                                   struct hostreg *hosts, const struct host_limits *limits,
                                   size_t n_limits, int64_t run_id)
{
	struct requester *rq = xcalloc(1, sizeof(*rq));

	rq->loop = loop;
	rq->tr = *tr;
	pthread_mutex_init(&rq->plock, NULL);
	ev_async_init(&rq->pasync, parse_async_cb);
	rq->pasync.data = rq;
	rq->run_id = run_id;
	rq->key_run_id = run_id;
	srand48((long)getpid() ^ (long)(now_mono() * 1e6));
	rq->hosts = hostreg_join(hosts, limits, n_limits);
	return rq;
}

static void list_add(struct requester *rq, struct request *r)
{
	r->next = rq->all;
	r->prev = NULL;
	if (rq->all)
		rq->all->prev = r;
	rq->all = r;
}

static void list_del(struct requester *rq, struct request *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		rq->all = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

void request_free(struct request *r)
{
	size_t i;

	list_del(r->rq, r);
	if (ev_is_active(&r->timer))
		ev_timer_stop(r->rq->loop, &r->timer);
	for (i = 0; r->headers && r->headers[i]; i++)
		free(r->headers[i]);
	free(r->headers);
	for (i = 0; r->allow_hosts && r->allow_hosts[i]; i++)
		free(r->allow_hosts[i]);
	free(r->allow_hosts);
	free(r->origin);
	free(r->stage);
	free(r->method);
	free(r->url);
	free(r->body);
	json_decref(r->history);
	json_decref(r->doc);
	journal_entry_free(&r->jentry);
	free(r->refetch);
	free(r);
}

void requester_listen(struct requester *rq, request_fact_fn fn, void *arg)
{
	rq->fact_fn = fn;
	rq->fact_arg = arg;
}

static void tell(struct requester *rq, const struct request_fact *f)
{
	if (rq->fact_fn)
		rq->fact_fn(rq->fact_arg, f);
}

/* Buffers one attempt row (written by requester_flush). */
static void record_attempt(struct request *r, long status, const char *error, double dur)
{
	struct requester *rq = r->rq;
	struct attempt_row *a;
	json_t *h;

	xgrow(&rq->rows, &rq->cap_rows, rq->n_rows + 1, sizeof(*rq->rows));
	a = &rq->rows[rq->n_rows++];
	memset(a, 0, sizeof(*a));
	a->run_id = rq->run_id;
	a->stage = xstrdup(r->stage);
	a->fingerprint = xstrdup(r->fingerprint);
	a->method = xstrdup(r->method);
	a->url = redact(r->url);
	a->attempt = r->attempt;
	a->http_status = status;
	a->error = error ? redact(error) : NULL;
	a->started = r->started;
	a->duration = dur;
	a->wait_backoff = r->wait_backoff;
	a->wait_retry_after = r->wait_retry_after;
	a->wait_rate = r->waiter.blocked[POOL_BLOCK_RATE];
	a->wait_concurrency = r->waiter.blocked[POOL_BLOCK_CONCURRENCY];
	a->wait_breaker = r->waiter.blocked[POOL_BLOCK_BREAKER];
	a->wait = a->wait_backoff + a->wait_retry_after + a->wait_rate +
	          a->wait_concurrency + a->wait_breaker;
	h = json_pack("{s:i, s:I, s:o, s:f, s:f, s:{s:f, s:f, s:f, s:f, s:f}}",
	              "attempt", r->attempt, "status", (json_int_t)status,
	              "error", a->error ? json_string(a->error) : json_null(),
	              "duration", dur, "wait", a->wait,
	              "waits", "backoff", a->wait_backoff, "retry_after", a->wait_retry_after,
	              "rate", a->wait_rate, "concurrency", a->wait_concurrency,
	              "breaker", a->wait_breaker);
	json_array_append_new(r->history, h);
	tell(rq, &(struct request_fact){ .type = REQUEST_FACT_ATTEMPT, .stage = r->stage,
	                                 .attempt = r->attempt, .http_status = status,
	                                 .error = a->error });
	/* The waits belong to this attempt; the next one starts from zero. */
	r->wait_backoff = r->wait_retry_after = 0;
	memset(r->waiter.blocked, 0, sizeof(r->waiter.blocked));
}

void requester_event(struct requester *rq, const char *stage, const char *kind,
                     const char *msg)
{
	struct event_row *e;

	xgrow(&rq->events, &rq->cap_events, rq->n_events + 1, sizeof(*rq->events));
	e = &rq->events[rq->n_events++];
	e->run_id = rq->run_id;
	e->stage = xstrdup(stage);
	e->kind = xstrdup(kind);
	e->message = redact(msg);
	e->at = now_wall();
	if (strcmp(kind, "breaker") == 0)
		tell(rq, &(struct request_fact){ .type = REQUEST_FACT_BREAKER, .stage = stage,
		                                 .message = e->message });
}

/* The breaker of r's pool changed on r's admission or attempt: said as a
 * warning and as an event of r's run and stage. */
static void request_breaker(void *arg, const char *pool, enum breaker_state from,
                            enum breaker_state to)
{
	struct request *r = arg;
	char *msg = xasprintf("circuit breaker for %s: %s -> %s", pool,
	                      breaker_state_name(from), breaker_state_name(to));

	log_warn("%s", msg);
	requester_event(r->rq, r->stage, "breaker", msg);
	free(msg);
}

/* r's wait for its pool ended: told to the listener, per reason. */
static void request_waited(void *arg, const char *pool, enum pool_block reason,
                           double seconds)
{
	struct request *r = arg;
	char *msg = xasprintf("%s: %s", pool, pool_block_name(reason));

	tell(r->rq, &(struct request_fact){ .type = REQUEST_FACT_WAIT, .stage = r->stage,
	                                    .attempt = r->attempt + 1, .delay = seconds,
	                                    .message = msg });
	free(msg);
}

/* ------------------------------------------------------------ lifecycle */

/* Queues r in its pool for its next attempt. */
static void request_enqueue(struct request *r)
{
	r->state = R_ADMIT;
	pool_enqueue(r->pool, &r->waiter);
}

void request_finish(struct request *r, bool ok, const char *error,
                    const struct http_result *res)
{
	struct request_result out;

	r->state = R_DONE;
	if (ok && res)
		journal_add(r, res);
	if (ok && res && r->refetch && res->body_sha256 && strcmp(r->refetch, res->body_sha256))
		log_warn("stage %s: %s %s: the response differs from the one the run got before "
		         "it was interrupted (sha256 %.12s..., now %.12s...)", r->stage, r->method,
		         r->url, r->refetch, res->body_sha256);
	if (!r->cancelled) {
		out.ok = ok;
		out.error = error;
		out.http = res;
		out.attempts = r->attempt;
		out.history = r->history;
		out.fingerprint = r->fingerprint;
		out.url = r->url;
		out.doc = ok ? r->doc : NULL;
		r->done(r->arg, &out);
	}
	request_free(r);
}

static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct request *r = w->data;

	if (r->waiting)
		(*r->waiting)--;
	request_enqueue(r);
}

static void record_attempt(struct request *r, long status, const char *error, double dur);
static void attempt_failed(struct request *r, enum attempt_class c, long status,
                           const char *msg, const struct http_result *res);

static void *parse_main(void *arg)
{
	struct parse_job *pj = arg;
	struct requester *rq = pj->r->rq;
	json_error_t jerr;

	pj->doc = json_loadb(pj->body, pj->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!pj->doc)
		pj->err = xasprintf("invalid JSON at line %d, column %d: %s", jerr.line,
		                    jerr.column, jerr.text);
	pthread_mutex_lock(&rq->plock);
	pj->done = true;
	pthread_mutex_unlock(&rq->plock);
	ev_async_send(rq->loop, &rq->pasync);
	return NULL;
}

/* Hands the body of res (an answered 2xx attempt of r) to a worker thread.
 * r waits in R_PARSING until parse_async_cb continues it. */
static void parse_start(struct request *r, const struct http_result *res)
{
	struct requester *rq = r->rq;
	struct parse_job *pj = xcalloc(1, sizeof(*pj));
	size_t i;

	pj->r = r;
	pj->len = res->body_len;
	pj->status = res->status;
	pj->duration = res->duration;
	snprintf(pj->digest, sizeof(pj->digest), "%s", res->body_sha256 ? res->body_sha256 : "");
	pj->headers = xcalloc(res->n_headers + 1, sizeof(*pj->headers));
	for (i = 0; i < res->n_headers; i++) {
		pj->headers[i].name = xstrdup(res->headers[i].name);
		pj->headers[i].value = xstrdup(res->headers[i].value);
	}
	pj->n_headers = res->n_headers;
	pj->body = rq->tr.ops->take_body(rq->tr.impl, res);
	r->state = R_PARSING;
	pj->next = rq->pjobs;
	rq->pjobs = pj;
	if (!ev_is_active(&rq->pasync))
		ev_async_start(rq->loop, &rq->pasync);
	if (pthread_create(&pj->thread, NULL, parse_main, pj) != 0) {
		fprintf(stderr, "pipectl: cannot start a thread to parse a response\n");
		abort();
	}
}

static void parse_job_free(struct parse_job *pj)
{
	size_t i;

	json_decref(pj->doc);
	free(pj->err);
	free(pj->body);
	for (i = 0; i < pj->n_headers; i++) {
		free(pj->headers[i].name);
		free(pj->headers[i].value);
	}
	free(pj->headers);
	free(pj);
}

static enum attempt_class classify_when(struct request *r, const struct http_result *res,
                                        char **msg);

/* Continues a request whose body was parsed, as on_http_done would have. */
static void parse_finish(struct parse_job *pj)
{
	struct request *r = pj->r;
	struct http_result res;
	enum attempt_class c = ATTEMPT_OK;
	char *msg = NULL;

	memset(&res, 0, sizeof(res));
	res.error = HTTP_OK;
	res.status = pj->status;
	res.body = pj->body;
	res.body_len = pj->len;
	res.headers = pj->headers;
	res.n_headers = pj->n_headers;
	res.body_sha256 = pj->digest;
	res.duration = pj->duration;
	res.url = r->url;
	json_decref(r->doc);
	r->doc = pj->doc;
	pj->doc = NULL;
	if (!r->doc) {
		c = ATTEMPT_INVALID_BODY;
		msg = pj->err;
		pj->err = NULL;
	} else {
		c = classify_when(r, &res, &msg);
	}
	if (r->cancelled) {
		if (c == ATTEMPT_OK)
			journal_add(r, &res);
		request_free(r);
	} else {
		record_attempt(r, res.status, c == ATTEMPT_OK ? NULL : msg, res.duration);
		if (c == ATTEMPT_OK)
			request_finish(r, true, NULL, &res);
		else
			attempt_failed(r, c, res.status, msg, &res);
	}
	free(msg);
	parse_job_free(pj);
}

/* A worker finished: continue its request on the loop. */
static void parse_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct requester *rq = w->data;

	for (;;) {
		struct parse_job **pp = &rq->pjobs, *pj = NULL;
		pthread_mutex_lock(&rq->plock);
		while (*pp && !(*pp)->done)
			pp = &(*pp)->next;
		if (*pp) {
			pj = *pp;
			*pp = pj->next;
		}
		pthread_mutex_unlock(&rq->plock);
		if (!pj)
			break;
		pthread_join(pj->thread, NULL);
		parse_finish(pj);
	}
	if (!rq->pjobs && ev_is_active(&rq->pasync))
		ev_async_stop(rq->loop, &rq->pasync);
}

/* Checks a 2xx body against r->body_format: JSON is parsed into r->doc,
 * every line of JSON lines is parsed and dropped. Returns 0, or -1 with
 * *msg (malloc'd) saying where the body stops being valid. */
int request_check_body(struct request *r, const struct http_result *res, char **msg)
{
	json_error_t jerr;
	const char *p = res->body, *end = res->body + res->body_len;
	long line = 1;

	if (r->body_format == REQUEST_BODY_ANY ||
	    (strcmp(r->method, "HEAD") == 0 && res->body_len == 0))
		return 0;
	if (r->body_format == REQUEST_BODY_JSON) {
		r->doc = json_loadb(res->body, res->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
		                    &jerr);
		if (r->doc)
			return 0;
		*msg = xasprintf("invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
		                 jerr.text);
		return -1;
	}
	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *q;
		for (q = p; q < e && (*q == ' ' || *q == '\t' || *q == '\r'); q++)
			;
		if (q < e) {
			json_t *doc = json_loadb(p, (size_t)(e - p), JSON_DECODE_ANY | JSON_ALLOW_NUL,
			                         &jerr);
			if (!doc) {
				*msg = xasprintf("line %ld: invalid JSON: %s", line, jerr.text);
				return -1;
			}
			json_decref(doc);
		}
		p = nl ? nl + 1 : end;
	}
	return 0;
}

/* Classifies a finished attempt. *status is the HTTP status (0 if none).
 * With *defer set on return, the attempt answered with a large JSON body
 * whose parse goes to a worker (parse_start): its class is known later. */
static enum attempt_class classify(struct request *r, const struct http_result *res,
                                   char **msg, bool *defer)
{
	switch (res->error) {
	case HTTP_OK:
		break;
	case HTTP_ERR_CONNECT: *msg = xstrdup(res->error_msg); return ATTEMPT_CONNECT;
	case HTTP_ERR_TIMEOUT: *msg = xstrdup(res->error_msg); return ATTEMPT_TIMEOUT;
	case HTTP_ERR_TOO_BIG: *msg = xstrdup(res->error_msg); return ATTEMPT_FATAL;
	case HTTP_ERR_CANCELLED: *msg = xstrdup("cancelled"); return ATTEMPT_FATAL;
	case HTTP_ERR_REFUSED:
		*msg = xstrdup(res->error_msg);
		return ATTEMPT_FATAL;
	case HTTP_ERR_OTHER:
		*msg = xstrdup(res->error_msg);
		return res->permanent ? ATTEMPT_FATAL : ATTEMPT_NETWORK;
	}
	if (res->status != 0 && (res->status < 200 || res->status > 299)) {
		int n = (int)(res->body_len > 200 ? 200 : res->body_len);
		while (n > 0 && (res->body[n - 1] == '\n' || res->body[n - 1] == '\r' ||
		                 res->body[n - 1] == ' '))
			n--;
		*msg = xasprintf("HTTP %ld%s%s%.*s", res->status, reason(res->status),
		                 n ? ": " : "", n, res->body);
		return ATTEMPT_HTTP;
	}
	json_decref(r->doc);
	r->doc = NULL;
	/* A large body of a request nobody waits for is journaled as its
	 * digest, which a resume fetches again: no need to parse it. */
	if (r->cancelled && res->body_len > REQUEST_JOURNAL_MAX_BODY)
		return ATTEMPT_OK;
	if (!r->cancelled && r->body_format == REQUEST_BODY_JSON &&
	    res->body_len > REQUEST_PARSE_OFFLOAD) {
		*defer = true;
		return ATTEMPT_OK;
	}
	if (request_check_body(r, res, msg) != 0)
		return ATTEMPT_INVALID_BODY;
	return classify_when(r, res, msg);
}

/* A 2xx whose body passed check_body: does retry.when match it? */
static enum attempt_class classify_when(struct request *r, const struct http_result *res,
                                        char **msg)
{
	if (r->when) {
		json_t *doc = r->doc ? json_incref(r->doc) :
		              json_loadb(res->body, res->body_len, JSON_DECODE_ANY, NULL), *v;
		char *err = NULL;
		bool hit = false;
		if (doc) {
			v = expr_eval1(r->when, doc, &err);
			hit = v && !json_is_false(v) && !json_is_null(v);
			json_decref(v);
			free(err);
			json_decref(doc);
		}
		if (hit) {
			int n = (int)(res->body_len > 200 ? 200 : res->body_len);
			*msg = xasprintf("retry condition (when) matched the response: %.*s", n,
			                 res->body);
			return ATTEMPT_PREDICATE;
		}
	}
	return ATTEMPT_OK;
}

/* Seconds the server asked us to wait, or -1. */
static double server_delay(const struct http_result *res)
{
	const char *v;
	double now = now_wall(), d;

	if (res->status != 429 && res->status != 503)
		return -1;
	if ((v = http_result_header(res, "Retry-After")) && (d = parse_retry_after(v, now)) >= 0)
		return d;
	if (res->status == 429 &&
	    (((v = http_result_header(res, "RateLimit-Reset")) != NULL &&
	      (d = parse_ratelimit_reset(v, now)) >= 0) ||
	     ((v = http_result_header(res, "X-RateLimit-Reset")) != NULL &&
	      (d = parse_ratelimit_reset(v, now)) >= 0)))
		return d;
	return -1;
}

/* After a failed attempt: schedule the next one, or finish. */
static void attempt_failed(struct request *r, enum attempt_class c, long status,
                           const char *msg, const struct http_result *res)
{
	double delay, sd;
	char *final;

	if (!r->cancelled && r->attempt < r->retry.attempts && r->retry_unsafe_ok &&
	    retry_should(&r->retry, c, status)) {
		sd = res ? server_delay(res) : -1;
		if (sd >= 0) {
			delay = (r->retry.max > 0 && sd > r->retry.max) ? r->retry.max : sd;
			r->wait_retry_after = delay;
		} else {
			delay = retry_delay(&r->retry, r->attempt + 1, drand48());
			r->wait_backoff = delay;
		}
		log_debug("%s %s: %s; attempt %d of %d in %.3fs", r->method, r->url, msg,
		          r->attempt + 1, r->retry.attempts, delay);
		r->state = R_BACKOFF;
		if (r->waiting)
			(*r->waiting)++;
		ev_timer_init(&r->timer, backoff_cb, delay, 0);
		r->timer.data = r;
		ev_timer_start(r->rq->loop, &r->timer);
		tell(r->rq, &(struct request_fact){ .type = REQUEST_FACT_RETRY, .stage = r->stage,
		                                    .attempt = r->attempt + 1, .delay = delay });
		if (r->on_wait)
			r->on_wait(r->arg);
		return;
	}
	if (r->attempt > 1)
		final = xasprintf("%s %s: %s (after %d attempts)", r->method, r->url, msg,
		                  r->attempt);
	else
		final = xasprintf("%s %s: %s", r->method, r->url, msg);
	request_finish(r, false, final, res);
	free(final);
}

static void on_http_done(void *arg, const struct http_result *res)
{
	struct request *r = arg;
	struct pool *p = r->pool;
	enum attempt_class c;
	char *msg = NULL;
	long status = res->status;
	bool defer = false, failure;

	/* With -v, when each answer arrived (the crash tests compare it with
	 * the time of a kill). */
	if (res->error == HTTP_OK)
		log_debug("answer %ld: %s %s", status, r->method, r->url);
	c = classify(r, res, &msg, &defer);
	failure = c == ATTEMPT_CONNECT || c == ATTEMPT_TIMEOUT || c == ATTEMPT_NETWORK ||
	          (c == ATTEMPT_HTTP && status >= 500);
	pool_attempt_done(p, &r->waiter, failure, res->error == HTTP_ERR_CANCELLED);
	if (r->cancelled) {
		/* Nobody waits for it any more, but the server did the work: keep
		 * the answer so a resume does not ask (or deliver) again. */
		if (c == ATTEMPT_OK)
			journal_add(r, res);
		free(msg);
		request_free(r);
		pool_pump(p);
		return;
	}
	if (defer) {
		parse_start(r, res);
		free(msg);
		pool_pump(p);
		return;
	}
	record_attempt(r, status, c == ATTEMPT_OK ? NULL : msg, res->duration);
	pool_pump(p);
	if (c == ATTEMPT_OK)
		request_finish(r, true, NULL, res);
	else if (res->error == HTTP_ERR_CANCELLED)
		request_finish(r, false, "cancelled", res);
	else
		attempt_failed(r, c, status, msg, res);
	free(msg);
}

/* r's pool admitted it: makes an attempt now. */
static void request_admit(void *arg)
{
	struct request *r = arg;
	struct requester *rq = r->rq;

	r->attempt++;
	r->state = R_INFLIGHT;
	r->started = now_wall();
	rq->tr.ops->submit(rq->tr.impl, &r->hreq, on_http_done, r);
}

static bool method_is_idempotent(const char *m)
{
	return strcmp(m, "POST") != 0 && strcmp(m, "PATCH") != 0;
}

struct request *request_start(struct requester *rq, const struct request_spec *spec,
                              request_done_fn done, void *arg)
{
	struct request *r = xcalloc(1, sizeof(*r));
	size_t n = 0, i;

	r->rq = rq;
	r->stage = xstrdup(spec->stage ? spec->stage : "");
	r->method = xstrdup(spec->method ? spec->method : "GET");
	r->url = xstrdup(spec->url);
	if (spec->body) {
		r->body = xmalloc(spec->body_len + 1);
		memcpy(r->body, spec->body, spec->body_len);
		r->body[spec->body_len] = '\0';
		r->body_len = spec->body_len;
	}
	request_fingerprint(r->method, r->url, r->body, r->body_len, r->fingerprint);
	while (spec->headers && spec->headers[n])
		n++;
	r->headers = xcalloc(n + 2, sizeof(*r->headers));
	for (i = 0; i < n; i++)
		r->headers[i] = xstrdup(spec->headers[i]);
	if ((spec->idempotent && !method_is_idempotent(r->method)) || spec->send_key) {
		/* Stable across attempts (and resumes) of this request in this run. */
		char key[65];
		char *seed = xasprintf("%lld\n%s", (long long)rq->key_run_id, r->fingerprint);
		sha256_hex(seed, strlen(seed), key);
		free(seed);
		r->headers[n] = xasprintf("Idempotency-Key: %.32s", key);
	}
	if (spec->retry)
		r->retry = *spec->retry;
	else
		r->retry.attempts = 1;
	if (r->retry.attempts < 1)
		r->retry.attempts = 1;
	r->when = spec->when;
	r->body_format = spec->body_format;
	r->retry_unsafe_ok = spec->idempotent || method_is_idempotent(r->method);
	r->waiting = spec->waiting;
	r->on_wait = spec->on_wait;
	r->done = done;
	r->arg = arg;
	r->owner = spec->owner;
	r->history = json_array();
	r->hreq.method = r->method;
	r->hreq.url = r->url;
	r->hreq.headers = (const char *const *)r->headers;
	r->hreq.body = r->body;
	r->hreq.body_len = r->body_len;
	r->hreq.timeout = spec->timeout;
	r->hreq.connect_timeout = spec->connect_timeout;
	r->hreq.max_body = spec->max_body;
	r->hreq.tls_verify = spec->tls_verify;
	r->origin = xstrdup(spec->origin ? spec->origin : r->url);
	r->hreq.origin = r->origin;
	if (spec->allow_hosts) {
		n = 0;
		while (spec->allow_hosts[n])
			n++;
		r->allow_hosts = xcalloc(n + 1, sizeof(*r->allow_hosts));
		for (i = 0; i < n; i++)
			r->allow_hosts[i] = xstrdup(spec->allow_hosts[i]);
		r->hreq.allow_hosts = (const char *const *)r->allow_hosts;
	}
	r->pool = hostreg_pool_for(rq->hosts, spec->pool, r->url);
	r->waiter.ops = &request_waiter_ops;
	r->waiter.arg = r;
	list_add(rq, r);
	if (!journal_serve(r))
		request_enqueue(r);
	return r;
}

static void cancel_one(struct request *r)
{
	r->cancelled = true;
	switch (r->state) {
	case R_ADMIT:
		if (r->from_journal)
			journal_unqueue(r);
		else
			pool_dequeue(r->pool, &r->waiter);
		request_free(r);
		break;
	case R_BACKOFF:
		if (r->waiting)
			(*r->waiting)--;
		request_free(r);
		break;
	case R_INFLIGHT:
	case R_PARSING:                /* parse_finish frees it */
	case R_DONE:
		break;                 /* on_http_done frees it */
	}
}

void request_cancel_owner(struct requester *rq, void *owner)
{
	struct request *r = rq ? rq->all : NULL, *next;

	for (; r; r = next) {
		next = r->next;
		if (owner && r->owner == owner)
			cancel_one(r);
	}
}

void requester_cancel_all(struct requester *rq)
{
	struct request *r, *next;

	for (r = rq->all; r; r = next) {
		next = r->next;
		cancel_one(r);
	}
}

size_t requester_parsing(const struct requester *rq)
{
	const struct parse_job *pj;
	size_t n = 0;

	for (pj = rq->pjobs; pj; pj = pj->next)
		n++;
	return n;
}

void requester_set_key_run(struct requester *rq, int64_t run_id)
{
	rq->key_run_id = run_id;
}

void requester_destroy(struct requester *rq)
{
	if (!rq)
		return;
	requester_cancel_all(rq);
	/* Bodies still being parsed: wait for their workers. */
	while (rq->pjobs) {
		struct parse_job *pj = rq->pjobs;
		rq->pjobs = pj->next;
		pthread_join(pj->thread, NULL);
		request_free(pj->r);
		parse_job_free(pj);
	}
	if (ev_is_active(&rq->pasync))
		ev_async_stop(rq->loop, &rq->pasync);
	pthread_mutex_destroy(&rq->plock);
	/* Requests still in flight are freed by on_http_done; http_destroy()
	 * must have completed them before this point. */
	requester_flush(rq, NULL);
	if (ev_is_active(&rq->jtimer))
		ev_timer_stop(rq->loop, &rq->jtimer);
	free(rq->jrows);
	hostreg_leave(rq->hosts);
	free(rq->rows);
	free(rq->events);
	free(rq);
}
