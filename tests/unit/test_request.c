/*
 * Unit tests for request.c and hostreg.c through a fake transport: retries,
 * Retry-After, backoff kinds, the circuit breaker, pool concurrency and
 * rate, pools shared by two requesters on one hostreg, cancellation,
 * Idempotency-Key, and the registry on its own with waiters that are no
 * requests. The fake answers from a script on the next loop
 * iteration; the pools read a fake clock the tests move, so nothing here
 * depends on how long anything takes: the assertions are on counts and
 * orders (and on the delays requests asked for, as recorded).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/util.h"
#include "net/hostreg.h"
#include "net/request.h"
#include "net/transport.h"
#include "tap.h"

/* ------------------------------------------------------------ fake clock */

static double fake_time = 1024.0;

static double fake_now(void)
{
	return fake_time;
}

/* ------------------------------------------------------------ fake transport */

struct answer {
	enum http_error err;
	long status;
	const char *retry_after;       /* header value, or NULL */
	const char *body;              /* NULL = "{}" */
};

struct xfer {
	http_done_fn done;
	void *arg;
	char *url;
	struct xfer *next;
};

/* Counts shared by several fakes (one per requester). */
struct counts {
	int inflight, max_inflight;
};

struct fake {
	struct ev_loop *loop;
	const struct answer *script;   /* answered in order; the last repeats */
	size_t n_script, next;
	struct xfer *head, *tail;      /* in flight, in submit order */
	int inflight, max_inflight, submitted;
	struct counts *shared;         /* may be NULL */
	char *keys[32];                /* Idempotency-Key of each submit ("" = none) */
	char *urls[32];                /* URL of each submit */
	ev_timer tick;
};

static void fake_tick(struct ev_loop *loop, ev_timer *w, int revents);

static void fake_init(struct fake *f, struct ev_loop *loop, const struct answer *script,
                      size_t n, struct counts *shared)
{
	memset(f, 0, sizeof(*f));
	f->loop = loop;
	f->script = script;
	f->n_script = n;
	f->shared = shared;
	ev_timer_init(&f->tick, fake_tick, 0, 0);
	f->tick.data = f;
}

static void fake_complete(struct fake *f, struct xfer *x, const struct answer *a)
{
	struct http_result res;
	struct http_header h[1];
	char name[] = "Retry-After";

	memset(&res, 0, sizeof(res));
	res.error = a->err;
	res.error_msg = a->err == HTTP_OK ? NULL : "fake transport error";
	res.status = a->err == HTTP_OK ? a->status : 0;
	res.body = a->body ? a->body : "{}";
	res.body_len = strlen(res.body);
	res.body_sha256 = "";
	res.url = x->url;
	if (a->retry_after) {
		h[0].name = name;
		h[0].value = (char *)a->retry_after;
		res.headers = h;
		res.n_headers = 1;
	}
	f->inflight--;
	if (f->shared)
		f->shared->inflight--;
	x->done(x->arg, &res);
	free(x->url);
	free(x);
}

/* Answers, in order, the transfers that were in flight when the loop
 * turned (those submitted from these answers wait for the next turn). */
static void fake_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fake *f = w->data;
	int n = f->inflight;

	while (n-- > 0 && f->head) {
		struct xfer *x = f->head;
		const struct answer *a = &f->script[f->next < f->n_script ? f->next : f->n_script - 1];
		f->next++;
		f->head = x->next;
		if (!f->head)
			f->tail = NULL;
		fake_complete(f, x, a);
	}
	if (f->head && !ev_is_active(&f->tick)) {
		ev_timer_set(&f->tick, 0, 0);
		ev_timer_start(f->loop, &f->tick);
	}
}

static void fake_submit(void *impl, const struct http_request *req, http_done_fn done,
                        void *arg)
{
	struct fake *f = impl;
	struct xfer *x = xcalloc(1, sizeof(*x));
	const char *key = "";
	size_t i;

	for (i = 0; req->headers && req->headers[i]; i++)
		if (strncasecmp(req->headers[i], "Idempotency-Key: ", 17) == 0)
			key = req->headers[i] + 17;
	if (f->submitted < 32) {
		f->keys[f->submitted] = xstrdup(key);
		f->urls[f->submitted] = xstrdup(req->url);
	}
	f->submitted++;
	x->done = done;
	x->arg = arg;
	x->url = xstrdup(req->url);
	if (f->tail)
		f->tail->next = x;
	else
		f->head = x;
	f->tail = x;
	if (++f->inflight > f->max_inflight)
		f->max_inflight = f->inflight;
	if (f->shared && ++f->shared->inflight > f->shared->max_inflight)
		f->shared->max_inflight = f->shared->inflight;
	if (!ev_is_active(&f->tick)) {
		ev_timer_set(&f->tick, 0, 0);
		ev_timer_start(f->loop, &f->tick);
	}
}

static void fake_cancel_all(void *impl)
{
	static const struct answer cancelled = { HTTP_ERR_CANCELLED, 0, NULL, NULL };
	struct fake *f = impl;

	while (f->head) {
		struct xfer *x = f->head;
		f->head = x->next;
		if (!f->head)
			f->tail = NULL;
		fake_complete(f, x, &cancelled);
	}
}

static size_t fake_inflight(const void *impl)
{
	return (size_t)((const struct fake *)impl)->inflight;
}

static char *fake_take_body(void *impl, const struct http_result *res)
{
	return xstrndup(res->body, res->body_len);
}

static const struct transport_ops fake_ops = {
	fake_submit, fake_cancel_all, fake_inflight, fake_take_body
};

/* Completes what is in flight (as http_destroy does) and frees. */
static void fake_destroy(struct fake *f)
{
	int i;

	fake_cancel_all(f);
	if (ev_is_active(&f->tick))
		ev_timer_stop(f->loop, &f->tick);
	for (i = 0; i < f->submitted && i < 32; i++) {
		free(f->keys[i]);
		free(f->urls[i]);
	}
}

/* ------------------------------------------------------------ harness */

/* What a request's callback saw. */
struct outcome {
	int calls;
	bool ok;
	int attempts;
	char error[256];
	json_t *history;               /* kept */
	int *order, *n_order, id;      /* completion order, when set */
};

static void on_done(void *arg, const struct request_result *r)
{
	struct outcome *o = arg;

	o->calls++;
	o->ok = r->ok;
	o->attempts = r->attempts;
	snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
	json_decref(o->history);
	o->history = json_deep_copy(r->history);
	if (o->order)
		o->order[(*o->n_order)++] = o->id;
}

static void outcome_free(struct outcome *o, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		json_decref(o[i].history);
}

/* The recorded wait of kind before attempt n (1-based). */
static double waited(const struct outcome *o, int n, const char *kind)
{
	json_t *a = json_array_get(o->history, (size_t)n - 1);

	return json_real_value(json_object_get(json_object_get(a, "waits"), kind));
}

static int count_done(const struct outcome *o, size_t n)
{
	size_t i;
	int c = 0;

	for (i = 0; i < n; i++)
		c += o[i].calls;
	return c;
}

/* Turns the loop until want callbacks ran (or a generous bound of turns:
 * a test that hangs fails instead). Returns the callbacks seen. */
static int run_until(struct ev_loop *loop, const struct outcome *o, size_t n, int want)
{
	int turns;

	for (turns = 0; turns < 20000 && count_done(o, n) < want; turns++)
		ev_run(loop, EVRUN_ONCE);
	return count_done(o, n);
}

/* Turns the loop n times without waiting for anything in particular. */
static void turn(struct ev_loop *loop, int n)
{
	while (n-- > 0)
		ev_run(loop, EVRUN_NOWAIT);
}

static struct retry_policy policy(int attempts, enum backoff_kind kind, double initial,
                                  double max)
{
	struct retry_policy p;

	retry_policy_default(&p);
	p.attempts = attempts;
	p.backoff = kind;
	p.initial = initial;
	p.max = max;
	p.jitter = JITTER_NONE;
	return p;
}

static struct request_spec spec_get(const char *url, const struct retry_policy *p)
{
	struct request_spec s;

	memset(&s, 0, sizeof(s));
	s.stage = "t";
	s.url = url;
	s.retry = p;
	return s;
}

static struct host_limits limits(const char *name, int concurrency, double rate,
                                 double burst, int failures, double cooldown, int successes)
{
	struct host_limits h;

	memset(&h, 0, sizeof(h));
	h.name = (char *)name;
	h.pos.file = "test.yaml";
	h.pos.line = 1;
	h.pos.col = 1;
	h.concurrency = concurrency;
	h.rate = rate;
	h.burst = burst;
	h.breaker_failures = failures;
	h.breaker_cooldown = cooldown;
	h.breaker_successes = successes;
	return h;
}

/* One requester on its own fake and hostreg. */
struct rig {
	struct ev_loop *loop;
	struct hostreg *hr;
	struct fake f;
	struct requester *rq;
};

static void rig_init(struct rig *g, const struct answer *script, size_t n,
                     const struct host_limits *lim, size_t n_lim)
{
	struct transport tr = { &fake_ops, &g->f };

	g->loop = ev_loop_new(EVFLAG_AUTO);
	g->hr = hostreg_create(g->loop);
	hostreg_set_clock(g->hr, fake_now);
	fake_init(&g->f, g->loop, script, n, NULL);
	g->rq = requester_create(g->loop, &tr, g->hr, lim, n_lim, 1);
}

static void rig_free(struct rig *g)
{
	requester_cancel_all(g->rq);
	fake_destroy(&g->f);
	requester_destroy(g->rq);
	hostreg_destroy(g->hr);
	ev_loop_destroy(g->loop);
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ retries */

static void test_retries(void)
{
	static const struct answer flaky[] = {
		{ HTTP_OK, 503, NULL, NULL }, { HTTP_ERR_CONNECT, 0, NULL, NULL },
		{ HTTP_OK, 200, NULL, NULL }
	};
	static const struct answer down[] = { { HTTP_OK, 503, NULL, NULL } };
	static const struct answer missing[] = { { HTTP_OK, 404, NULL, NULL } };
	struct retry_policy p = policy(5, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://a.test/x", &p);
	struct outcome o[1];
	struct rig g;

	memset(o, 0, sizeof(o));
	rig_init(&g, flaky, N_OF(flaky), NULL, 0);
	request_start(g.rq, &s, on_done, &o[0]);
	is_int(run_until(g.loop, o, 1, 1), 1, "retries: the callback runs once");
	ok(o[0].ok, "retries: a 503 and a connect error, then 200: ok");
	is_int(o[0].attempts, 3, "retries: three attempts");
	is_int(g.f.submitted, 3, "retries: three transfers");
	is_int(json_array_size(o[0].history), 3, "retries: every attempt in the history");
	outcome_free(o, 1);
	rig_free(&g);

	memset(o, 0, sizeof(o));
	p = policy(3, BACKOFF_CONSTANT, 0.001, 1);
	rig_init(&g, down, N_OF(down), NULL, 0);
	request_start(g.rq, &s, on_done, &o[0]);
	run_until(g.loop, o, 1, 1);
	ok(!o[0].ok, "exhausted: a host that answers 503 fails the request");
	is_int(o[0].attempts, 3, "exhausted: after attempts (3)");
	is_int(g.f.submitted, 3, "exhausted: no transfer beyond attempts");
	ok(strstr(o[0].error, "HTTP 503") && strstr(o[0].error, "(after 3 attempts)"),
	   "exhausted: the error names the status and the attempts (%s)", o[0].error);
	outcome_free(o, 1);
	rig_free(&g);

	memset(o, 0, sizeof(o));
	rig_init(&g, missing, N_OF(missing), NULL, 0);
	request_start(g.rq, &s, on_done, &o[0]);
	run_until(g.loop, o, 1, 1);
	ok(!o[0].ok, "404: fails");
	is_int(o[0].attempts, 1, "404: not retryable, tried once");
	is_int(g.f.submitted, 1, "404: one transfer");
	outcome_free(o, 1);
	rig_free(&g);
}

static void test_retry_after(void)
{
	static const struct answer capped[] = {
		{ HTTP_OK, 503, "120", NULL }, { HTTP_OK, 200, NULL, NULL }
	};
	static const struct answer honoured[] = {
		{ HTTP_OK, 429, "1", NULL }, { HTTP_OK, 200, NULL, NULL }
	};
	struct retry_policy p = policy(3, BACKOFF_CONSTANT, 0.001, 0.002);
	struct request_spec s = spec_get("http://a.test/x", &p);
	struct outcome o[1];
	struct rig g;

	memset(o, 0, sizeof(o));
	rig_init(&g, capped, N_OF(capped), NULL, 0);
	request_start(g.rq, &s, on_done, &o[0]);
	run_until(g.loop, o, 1, 1);
	ok(o[0].ok && o[0].attempts == 2, "Retry-After: 503 then 200 in two attempts");
	ok(waited(&o[0], 2, "retry_after") == 0.002,
	   "Retry-After: 120 s is capped at retry.max (waited %g)", waited(&o[0], 2, "retry_after"));
	ok(waited(&o[0], 2, "backoff") == 0, "Retry-After: replaces the backoff");
	outcome_free(o, 1);
	rig_free(&g);

	memset(o, 0, sizeof(o));
	p = policy(3, BACKOFF_CONSTANT, 0.001, 30);
	rig_init(&g, honoured, N_OF(honoured), NULL, 0);
	request_start(g.rq, &s, on_done, &o[0]);
	run_until(g.loop, o, 1, 1);
	ok(o[0].ok && o[0].attempts == 2, "Retry-After: 429 then 200 in two attempts");
	ok(waited(&o[0], 2, "retry_after") == 1,
	   "Retry-After: 1 s under the cap is waited as asked (waited %g)",
	   waited(&o[0], 2, "retry_after"));
	outcome_free(o, 1);
	rig_free(&g);
}

static void test_backoff_kinds(void)
{
	static const struct answer down[] = { { HTTP_OK, 502, NULL, NULL } };
	static const struct {
		enum backoff_kind kind;
		const char *name;
		double want[3];        /* before attempts 2, 3, 4 */
	} cases[] = {
		{ BACKOFF_CONSTANT, "constant", { 0.001, 0.001, 0.001 } },
		{ BACKOFF_LINEAR, "linear", { 0.001, 0.002, 0.003 } },
		{ BACKOFF_EXPONENTIAL, "exponential", { 0.001, 0.002, 0.004 } },
	};
	size_t i;
	int n;

	for (i = 0; i < N_OF(cases); i++) {
		struct retry_policy p = policy(4, cases[i].kind, 0.001, 1);
		struct request_spec s = spec_get("http://a.test/x", &p);
		struct outcome o[1];
		struct rig g;

		memset(o, 0, sizeof(o));
		rig_init(&g, down, N_OF(down), NULL, 0);
		request_start(g.rq, &s, on_done, &o[0]);
		run_until(g.loop, o, 1, 1);
		is_int(o[0].attempts, 4, "backoff %s: four attempts", cases[i].name);
		ok(waited(&o[0], 1, "backoff") == 0, "backoff %s: none before the first",
		   cases[i].name);
		for (n = 0; n < 3; n++)
			ok(fabs(waited(&o[0], n + 2, "backoff") - cases[i].want[n]) < 1e-12,
			   "backoff %s: before attempt %d waited %g (want %g)", cases[i].name, n + 2,
			   waited(&o[0], n + 2, "backoff"), cases[i].want[n]);
		outcome_free(o, 1);
		rig_free(&g);
	}
}

/* ------------------------------------------------------------ breaker */

static void test_breaker(void)
{
	static const struct answer script[] = {
		{ HTTP_OK, 500, NULL, NULL }, { HTTP_OK, 500, NULL, NULL },
		{ HTTP_OK, 200, NULL, NULL }
	};
	struct host_limits h = limits("b.test", 0, 0, 0, 2, 0.001, 2);
	struct retry_policy p = policy(1, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://b.test/x", &p);
	struct outcome o[4];
	struct rig g;
	const struct breaker *br;
	int i;

	memset(o, 0, sizeof(o));
	rig_init(&g, script, N_OF(script), &h, 1);
	br = hostreg_breaker(g.hr, "b.test");
	ok(br && br->state == BREAKER_CLOSED, "breaker: closed at first");
	request_start(g.rq, &s, on_done, &o[0]);
	request_start(g.rq, &s, on_done, &o[1]);
	run_until(g.loop, o, 2, 2);
	ok(!o[0].ok && !o[1].ok, "breaker: two 500s fail their requests");
	br = hostreg_breaker(g.hr, "b.test");
	ok(br && br->state == BREAKER_OPEN, "breaker: open after 2 consecutive failures");

	/* The clock stands still: the cool-down never ends. */
	g.f.max_inflight = g.f.inflight;
	request_start(g.rq, &s, on_done, &o[2]);
	request_start(g.rq, &s, on_done, &o[3]);
	for (i = 0; i < 50; i++)
		ev_run(g.loop, EVRUN_ONCE);
	is_int(g.f.submitted, 2, "breaker: no transfer while open");
	is_int(o[2].calls + o[3].calls, 0, "breaker: requests wait while open, using no attempt");

	fake_time += 1;
	for (i = 0; i < 20000 && g.f.submitted < 3; i++)
		ev_run(g.loop, EVRUN_ONCE);
	is_int(g.f.submitted, 3, "breaker: after the cool-down, a trial goes");
	is_int(g.f.inflight, 1, "breaker: half-open lets one trial through at a time");
	ok(hostreg_breaker(g.hr, "b.test")->state == BREAKER_HALF_OPEN, "breaker: half-open");
	run_until(g.loop, o, 4, 4);
	ok(o[2].ok && o[3].ok, "breaker: both trials succeed");
	is_int(g.f.max_inflight, 1, "breaker: the trials went one after the other");
	ok(hostreg_breaker(g.hr, "b.test")->state == BREAKER_CLOSED,
	   "breaker: closed after 2 successes in half-open");
	outcome_free(o, 4);
	rig_free(&g);
}

/* ------------------------------------------------------------ pools */

static void test_concurrency_and_rate(void)
{
	static const struct answer okay[] = { { HTTP_OK, 200, NULL, NULL } };
	struct host_limits h = limits("c.test", 2, 0, 0, 0, 0, 0);
	struct host_limits r = limits("r.test", 0, 1024, 2, 0, 0, 0);
	struct retry_policy p = policy(1, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://c.test/x", &p);
	struct outcome o[10];
	struct rig g;
	int i;

	memset(o, 0, sizeof(o));
	rig_init(&g, okay, N_OF(okay), &h, 1);
	for (i = 0; i < 10; i++)
		request_start(g.rq, &s, on_done, &o[i]);
	is_int(g.f.submitted, 2, "concurrency 2: two of ten start at once");
	is_int(run_until(g.loop, o, 10, 10), 10, "concurrency 2: all ten answered");
	is_int(g.f.max_inflight, 2, "concurrency 2: never more than two in flight");
	outcome_free(o, 10);
	rig_free(&g);

	/* A pool named by a stage's pool:, in another case than its entry. */
	memset(o, 0, sizeof(o));
	h = limits("Slow", 1, 0, 0, 0, 0, 0);
	rig_init(&g, okay, N_OF(okay), &h, 1);
	s.pool = "Slow";
	for (i = 0; i < 4; i++)
		request_start(g.rq, &s, on_done, &o[i]);
	is_int(run_until(g.loop, o, 4, 4), 4, "pool: all four answered");
	is_int(g.f.max_inflight, 1, "pool: the named pool's concurrency (1) holds");
	is_int(hostreg_pools(g.hr), 1, "pool: one pool, whatever the case of its name");
	s.pool = NULL;
	outcome_free(o, 4);
	rig_free(&g);

	/* rate 1024/s, burst 2; the clock moves only when the test says. */
	memset(o, 0, sizeof(o));
	rig_init(&g, okay, N_OF(okay), &r, 1);
	s.url = "http://r.test/x";
	for (i = 0; i < 5; i++)
		request_start(g.rq, &s, on_done, &o[i]);
	for (i = 0; i < 50; i++)
		ev_run(g.loop, EVRUN_ONCE);
	is_int(g.f.submitted, 2, "rate: the burst (2) goes, the rest wait for tokens");
	is_int(count_done(o, 5), 2, "rate: two answered");
	fake_time += 1.5 / 1024;
	for (i = 0; i < 50; i++)
		ev_run(g.loop, EVRUN_ONCE);
	is_int(g.f.submitted, 3, "rate: 1.5 tokens' time admits exactly one more");
	fake_time += 1;
	is_int(run_until(g.loop, o, 5, 5), 5, "rate: the rest go when the time has come");
	ok(waited(&o[4], 1, "rate") > 0, "rate: the wait is accounted to the rate");
	outcome_free(o, 5);
	rig_free(&g);
}

/* Two requesters (two runs) on one hostreg, each with its own transport. */
struct pair {
	struct ev_loop *loop;
	struct hostreg *hr;
	struct counts shared;
	struct fake fa, fb;
	struct requester *a, *b;
};

static void pair_init(struct pair *q, const struct answer *script, size_t n,
                      const struct host_limits *la, const struct host_limits *lb)
{
	struct transport ta = { &fake_ops, &q->fa }, tb = { &fake_ops, &q->fb };

	memset(q, 0, sizeof(*q));
	q->loop = ev_loop_new(EVFLAG_AUTO);
	q->hr = hostreg_create(q->loop);
	hostreg_set_clock(q->hr, fake_now);
	fake_init(&q->fa, q->loop, script, n, &q->shared);
	fake_init(&q->fb, q->loop, script, n, &q->shared);
	q->a = requester_create(q->loop, &ta, q->hr, la, la ? 1 : 0, 1);
	q->b = requester_create(q->loop, &tb, q->hr, lb, lb ? 1 : 0, 2);
}

static void pair_end(struct requester **rq, struct fake *f)
{
	if (!*rq)
		return;
	requester_cancel_all(*rq);
	fake_destroy(f);
	requester_destroy(*rq);
	*rq = NULL;
}

static void pair_free(struct pair *q)
{
	pair_end(&q->a, &q->fa);
	pair_end(&q->b, &q->fb);
	hostreg_destroy(q->hr);
	ev_loop_destroy(q->loop);
}

static void test_shared_pools(void)
{
	static const struct answer okay[] = { { HTTP_OK, 200, NULL, NULL } };
	static const struct answer fail[] = { { HTTP_OK, 500, NULL, NULL } };
	struct host_limits h3 = limits("s.test", 3, 0, 0, 0, 0, 0);
	struct host_limits h1 = limits("s.test", 1, 0, 0, 0, 0, 0);
	struct host_limits h5 = limits("S.TEST", 5, 0, 0, 0, 0, 0);
	struct host_limits hb = limits("d.test", 0, 0, 0, 1, 30, 1);
	struct retry_policy p = policy(1, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://s.test/x", &p);
	struct outcome o[12];
	struct pair q;
	int i;

	memset(o, 0, sizeof(o));
	pair_init(&q, okay, N_OF(okay), &h3, &h3);
	for (i = 0; i < 12; i++)
		request_start(i % 2 ? q.b : q.a, &s, on_done, &o[i]);
	is_int(run_until(q.loop, o, 12, 12), 12, "shared: twelve requests of two runs answered");
	is_int(q.shared.max_inflight, 3, "shared: at most 3 in flight across both runs");
	ok(q.fa.submitted == 6 && q.fb.submitted == 6, "shared: each run sent its own six");
	is_int(hostreg_pools(q.hr), 1, "shared: one pool for the host");
	outcome_free(o, 12);
	pair_free(&q);

	/* Other limits while the first declaration is in use: the first wins. */
	memset(o, 0, sizeof(o));
	h5.pos.file = "other.yaml";
	h5.pos.line = 7;
	{
		/* The warning goes to stderr: catch it in a file. */
		FILE *tmp = tmpfile();
		char text[1024] = "";
		int saved = dup(2);
		size_t n;
		fflush(stderr);
		dup2(fileno(tmp), 2);
		pair_init(&q, okay, N_OF(okay), &h1, &h5);
		fflush(stderr);
		dup2(saved, 2);
		close(saved);
		rewind(tmp);
		n = fread(text, 1, sizeof(text) - 1, tmp);
		while (n > 0 && text[n - 1] == '\n')
			n--;
		text[n] = '\0';
		fclose(tmp);
		ok(strstr(text, "other.yaml:7:1: hosts: s.test declares other limits than "
		                "test.yaml:1:1") != NULL,
		   "first wins: a warning names both declarations (%s)", text);
	}
	for (i = 0; i < 8; i++)
		request_start(i % 2 ? q.b : q.a, &s, on_done, &o[i]);
	is_int(run_until(q.loop, o, 8, 8), 8, "first wins: all answered");
	is_int(q.shared.max_inflight, 1, "first wins: concurrency 1, not the later 5");
	pair_end(&q.a, &q.fa);
	is_int(hostreg_pools(q.hr), 1, "run ends: a pool another run uses stays");
	pair_end(&q.b, &q.fb);
	is_int(hostreg_pools(q.hr), 0, "run ends: an idle pool with a closed breaker is freed");
	outcome_free(o, 8);
	pair_free(&q);

	/* A breaker left open outlives the run that opened it. */
	memset(o, 0, sizeof(o));
	pair_init(&q, fail, N_OF(fail), &hb, NULL);
	s.url = "http://d.test/x";
	request_start(q.a, &s, on_done, &o[0]);
	run_until(q.loop, o, 1, 1);
	ok(hostreg_breaker(q.hr, "d.test")->state == BREAKER_OPEN, "kept: breaker open");
	pair_end(&q.a, &q.fa);
	is_int(hostreg_pools(q.hr), 1, "kept: the idle pool of an open breaker stays");
	request_start(q.b, &s, on_done, &o[1]);
	for (i = 0; i < 20; i++)
		ev_run(q.loop, EVRUN_NOWAIT);
	is_int(q.fb.submitted, 0, "kept: the next run waits for the breaker instead of failing again");
	is_int(o[1].calls, 0, "kept: its request is still waiting");
	outcome_free(o, 12);
	pair_free(&q);
}

static void test_cancel_one_run(void)
{
	static const struct answer okay[] = { { HTTP_OK, 200, NULL, NULL } };
	struct host_limits h = limits("s.test", 1, 0, 0, 0, 0, 0);
	struct retry_policy p = policy(1, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://s.test/x", &p);
	struct outcome o[6];
	struct pair q;
	int order[6], n_order = 0, i, owner_a, owner_b;

	memset(o, 0, sizeof(o));
	pair_init(&q, okay, N_OF(okay), &h, &h);
	for (i = 0; i < 6; i++) {
		o[i].order = order;
		o[i].n_order = &n_order;
		o[i].id = i;
		s.owner = i < 3 ? (void *)&owner_a : (void *)&owner_b;
		request_start(i < 3 ? q.a : q.b, &s, on_done, &o[i]);
	}
	is_int(q.fa.submitted, 1, "cancel: run a's first request is in flight");
	request_cancel_owner(q.a, &owner_a);
	turn(q.loop, 1);
	is_int(run_until(q.loop, o, 6, 3), 3, "cancel: run b's three requests answered");
	turn(q.loop, 5);
	ok(o[3].ok && o[4].ok && o[5].ok, "cancel: run b's requests succeed");
	is_int(o[0].calls + o[1].calls + o[2].calls, 0, "cancel: run a's callbacks never run");
	ok(n_order == 3 && order[0] == 3 && order[1] == 4 && order[2] == 5,
	   "cancel: run b's requests in their order");
	is_int(q.fa.submitted, 1, "cancel: run a's queued requests never went out");
	is_int(q.shared.max_inflight, 1, "cancel: the shared limit held throughout");
	outcome_free(o, 6);
	pair_free(&q);

	/* A run destroyed while the other's requests are queued behind its own. */
	memset(o, 0, sizeof(o));
	pair_init(&q, okay, N_OF(okay), &h, &h);
	for (i = 0; i < 6; i++)
		request_start(i < 3 ? q.a : q.b, &s, on_done, &o[i]);
	pair_end(&q.a, &q.fa);
	is_int(run_until(q.loop, o, 6, 3), 3, "destroy: run b's requests still answered");
	ok(o[3].ok && o[4].ok && o[5].ok, "destroy: and succeed");
	outcome_free(o, 6);
	pair_free(&q);
}

/* ------------------------------------------------------------ idempotency */

static void test_idempotency_key(void)
{
	static const struct answer flaky[] = {
		{ HTTP_OK, 503, NULL, NULL }, { HTTP_ERR_TIMEOUT, 0, NULL, NULL },
		{ HTTP_OK, 200, NULL, NULL }
	};
	struct retry_policy p = policy(4, BACKOFF_CONSTANT, 0.001, 1);
	struct request_spec s = spec_get("http://a.test/hook", &p);
	struct outcome o[2];
	struct rig g;

	memset(o, 0, sizeof(o));
	rig_init(&g, flaky, N_OF(flaky), NULL, 0);
	s.method = "POST";
	s.body = "{\"a\":1}";
	s.body_len = strlen(s.body);
	s.idempotent = true;
	request_start(g.rq, &s, on_done, &o[0]);
	run_until(g.loop, o, 1, 1);
	ok(o[0].ok && o[0].attempts == 3, "Idempotency-Key: a POST retried to success");
	ok(g.f.submitted == 3 && strlen(g.f.keys[0]) == 32, "Idempotency-Key: sent (%s)",
	   g.f.keys[0]);
	ok(strcmp(g.f.keys[0], g.f.keys[1]) == 0 && strcmp(g.f.keys[1], g.f.keys[2]) == 0,
	   "Idempotency-Key: the same on every attempt");
	s.body = "{\"a\":2}";
	s.body_len = strlen(s.body);
	request_start(g.rq, &s, on_done, &o[1]);
	run_until(g.loop, o, 2, 2);
	ok(g.f.submitted == 4 && strcmp(g.f.keys[3], g.f.keys[0]) != 0,
	   "Idempotency-Key: another body, another key");
	s.idempotent = false;
	o[1].calls = 0;
	g.f.next = 0;
	request_start(g.rq, &s, on_done, &o[1]);
	run_until(g.loop, o + 1, 1, 1);
	ok(!o[1].ok && o[1].attempts == 1, "POST without idempotent: not retried after a 503");
	ok(g.f.submitted == 5 && strcmp(g.f.keys[4], "") == 0,
	   "POST without idempotent: no Idempotency-Key");
	outcome_free(o, 2);
	rig_free(&g);
}

/* ------------------------------------------------------------ the registry alone */

/* A waiter that is no request: the registry admits what it is given and
 * tells it of breaker changes through its ops, nothing else. */
struct probe {
	struct pool_waiter w;
	int id;
	int *order, *n_order;          /* admissions, in order (shared) */
	char breaker[128];             /* the last change reported to this one */
	char waited[128];              /* "pool:reason=seconds ..." as told */
};

static void probe_admit(void *arg)
{
	struct probe *pr = arg;

	pr->order[(*pr->n_order)++] = pr->id;
}

static void probe_breaker(void *arg, const char *pool, enum breaker_state from,
                          enum breaker_state to)
{
	struct probe *pr = arg;

	snprintf(pr->breaker, sizeof(pr->breaker), "%s: %s -> %s", pool,
	         breaker_state_name(from), breaker_state_name(to));
}

static void probe_waited(void *arg, const char *pool, enum pool_block reason, double seconds)
{
	struct probe *pr = arg;
	size_t n = strlen(pr->waited);

	snprintf(pr->waited + n, sizeof(pr->waited) - n, "%s%s:%s=%g", n ? " " : "", pool,
	         pool_block_name(reason), seconds);
}

static const struct pool_waiter_ops probe_ops = { probe_admit, probe_breaker, probe_waited };

static void test_pool_waiters(void)
{
	struct host_limits lim = limits("W.test", 1, 0, 0, 1, 10, 1);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct hostreg *hr = hostreg_create(loop);
	struct hostreg_user *u;
	struct probe pr[3];
	struct pool *p;
	int order[3], n_order = 0, i;
	double t0 = fake_time;

	hostreg_set_clock(hr, fake_now);
	u = hostreg_join(hr, &lim, 1);
	p = hostreg_pool_for(u, NULL, "http://w.test/x");
	ok(p == hostreg_pool_for(u, "w.TEST", NULL),
	   "waiters: a URL's host finds its declared pool");
	memset(pr, 0, sizeof(pr));
	for (i = 0; i < 3; i++) {
		pr[i].w.ops = &probe_ops;
		pr[i].w.arg = &pr[i];
		pr[i].id = i;
		pr[i].order = order;
		pr[i].n_order = &n_order;
		pool_enqueue(p, &pr[i].w);
	}
	ok(n_order == 1 && order[0] == 0, "waiters: concurrency 1 admits the first at once");
	fake_time = t0 + 2;
	pool_attempt_done(p, &pr[0].w, true, false);
	pool_pump(p);
	is_str(pr[0].breaker, "w.test: closed -> open",
	       "waiters: the failure opening the breaker is told to its waiter");
	ok(n_order == 1, "waiters: nothing admitted while the breaker is open");
	fake_time = t0 + 12;
	pool_pump(p);
	ok(n_order == 2 && order[1] == 1, "waiters: the cool-down over, the next one is the trial");
	is_str(pr[1].breaker, "w.test: open -> half-open",
	       "waiters: half-open is told to the waiter admitted as the trial");
	ok(pr[1].w.blocked[POOL_BLOCK_CONCURRENCY] == 2 &&
	   pr[1].w.blocked[POOL_BLOCK_BREAKER] == 10 && pr[1].w.blocked[POOL_BLOCK_RATE] == 0,
	   "waiters: queued 2 s for concurrency, 10 s for the breaker (%g, %g)",
	   pr[1].w.blocked[POOL_BLOCK_CONCURRENCY], pr[1].w.blocked[POOL_BLOCK_BREAKER]);
	fake_time = t0 + 13;
	pool_attempt_done(p, &pr[1].w, false, false);
	pool_pump(p);
	is_str(pr[1].breaker, "w.test: half-open -> closed",
	       "waiters: the trial's success closing the breaker is told to it");
	ok(n_order == 3 && order[2] == 2, "waiters: the last one goes once the trial is over");
	/* Behind the trial it waits for the pool's one slot, not the breaker. */
	ok(pr[2].w.blocked[POOL_BLOCK_CONCURRENCY] == 3 &&
	   pr[2].w.blocked[POOL_BLOCK_BREAKER] == 10,
	   "waiters: the last one waited 3 s for concurrency, 10 s for the breaker (%g, %g)",
	   pr[2].w.blocked[POOL_BLOCK_CONCURRENCY], pr[2].w.blocked[POOL_BLOCK_BREAKER]);
	ok(pr[2].breaker[0] == '\0', "waiters: a waiter no change concerned is told nothing");
	is_str(pr[0].waited, "", "waiters: one admitted at once is told of no wait");
	is_str(pr[1].waited, "w.test:concurrency=2 w.test:breaker=10",
	       "waiters: the end of a wait is told per reason, with its seconds");
	is_str(pr[2].waited, "w.test:concurrency=3 w.test:breaker=10",
	       "waiters: so is the last one's");
	pool_attempt_done(p, &pr[2].w, false, false);
	hostreg_leave(u);
	is_int(hostreg_pools(hr), 0, "waiters: the user gone, the idle closed pool is freed");

	/* A rate of 1/s with a burst of 1: the second waits a second for it. */
	lim = limits("R.test", 0, 1, 1, 0, 0, 0);
	u = hostreg_join(hr, &lim, 1);
	p = hostreg_pool_for(u, NULL, "http://r.test/x");
	memset(pr, 0, sizeof(pr));
	n_order = 0;
	for (i = 0; i < 2; i++) {
		pr[i].w.ops = &probe_ops;
		pr[i].w.arg = &pr[i];
		pr[i].id = i;
		pr[i].order = order;
		pr[i].n_order = &n_order;
		pool_enqueue(p, &pr[i].w);
	}
	ok(n_order == 1, "waiters: rate 1/s, burst 1: one admitted at once");
	fake_time += 1;
	pool_pump(p);
	ok(n_order == 2, "waiters: the second a second later");
	is_str(pr[1].waited, "r.test:rate=1", "waiters: told it waited 1 s for the rate");
	pool_attempt_done(p, &pr[0].w, false, false);
	pool_attempt_done(p, &pr[1].w, false, false);
	hostreg_leave(u);
	hostreg_destroy(hr);
	ev_loop_destroy(loop);
	fake_time = t0 + 100;
}

int main(void)
{
	test_retries();
	test_retry_after();
	test_backoff_kinds();
	test_breaker();
	test_concurrency_and_rate();
	test_shared_pools();
	test_cancel_one_run();
	test_idempotency_key();
	test_pool_waiters();
	return done_testing();
}
