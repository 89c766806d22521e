/*
 * hostreg: host pools shared by every requester on a loop (see hostreg.h).
 *
 * Waiting is accounted by reason. A pool's FIFO is blocked for one reason
 * at a time (its concurrency, its breaker, its rate), and the pool keeps the
 * total time it spent blocked for each; a request's share is the growth of
 * those totals while it was queued, since a FIFO keeps everyone behind the
 * head waiting for the same thing, whichever run it belongs to.
 */
#include "net/hostreg.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "net/request_int.h"

struct hostreg *hostreg_create(struct ev_loop *loop)
{
	struct hostreg *hr = xcalloc(1, sizeof(*hr));

	hr->loop = loop;
	hr->now = now_mono;
	return hr;
}

void hostreg_set_clock(struct hostreg *hr, double (*now)(void))
{
	hr->now = now ? now : now_mono;
}

double hostreg_now(const struct hostreg *hr)
{
	return hr->now();
}

static void pool_free(struct pool *p)
{
	struct hostreg *hr = p->hr;
	struct pool **pp = &hr->pools;

	while (*pp && *pp != p)
		pp = &(*pp)->next;
	if (*pp)
		*pp = p->next;
	if (ev_is_active(&p->rate_timer))
		ev_timer_stop(hr->loop, &p->rate_timer);
	if (ev_is_active(&p->breaker_timer))
		ev_timer_stop(hr->loop, &p->breaker_timer);
	free(p->lim.name);
	free((char *)p->lim.pos.file);
	free(p->name);
	free(p);
}

void hostreg_destroy(struct hostreg *hr)
{
	if (!hr)
		return;
	while (hr->pools) {
		/* Every requester is destroyed before its registry. */
		assert(hr->pools->users == 0);
		pool_free(hr->pools);
	}
	free(hr);
}

size_t hostreg_pools(const struct hostreg *hr)
{
	const struct pool *p;
	size_t n = 0;

	for (p = hr->pools; p; p = p->next)
		n++;
	return n;
}

static struct pool *pool_find(const struct hostreg *hr, const char *name)
{
	struct pool *p;

	for (p = hr->pools; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

const struct breaker *hostreg_breaker(const struct hostreg *hr, const char *name)
{
	const struct pool *p = pool_find(hr, name);

	return p ? &p->br : NULL;
}

static struct pool *pool_new(struct hostreg *hr, const char *name)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	p->hr = hr;
	p->name = xstrdup(name);
	p->blocked = BLOCK_NONE;
	breaker_init(&p->br, 0, 30, 1);
	p->next = hr->pools;
	hr->pools = p;
	return p;
}

/* rq holds a reference to p (once). */
static void pool_ref(struct requester *rq, struct pool *p, bool declared)
{
	size_t i;

	for (i = 0; i < rq->n_refs; i++)
		if (rq->refs[i].p == p) {
			rq->refs[i].declared |= declared;
			return;
		}
	xgrow(&rq->refs, &rq->cap_refs, rq->n_refs + 1, sizeof(*rq->refs));
	rq->refs[rq->n_refs].p = p;
	rq->refs[rq->n_refs].declared = declared;
	rq->n_refs++;
	p->users++;
}

static bool limits_equal(const struct host_limits *a, const struct host_limits *b)
{
	return a->concurrency == b->concurrency && a->rate == b->rate && a->burst == b->burst &&
	       a->breaker_failures == b->breaker_failures &&
	       a->breaker_cooldown == b->breaker_cooldown &&
	       a->breaker_successes == b->breaker_successes;
}

/* Sets p's limits to h. The breaker keeps its state (an open breaker a run
 * left behind stays open under the new declaration). */
static void pool_apply(struct pool *p, const struct host_limits *h)
{
	struct breaker old = p->br;

	free(p->lim.name);
	free((char *)p->lim.pos.file);
	p->lim = *h;
	p->lim.name = xstrdup(h->name);
	p->lim.pos.file = xstrdup(h->pos.file);
	p->declared = true;
	p->concurrency = h->concurrency;
	p->has_bucket = h->rate > 0;
	if (h->rate > 0) {
		double burst = h->burst > 0 ? h->burst : ceil(h->rate);
		bucket_init(&p->bucket, h->rate, burst < 1 ? 1 : burst, hostreg_now(p->hr));
	}
	breaker_init(&p->br, h->breaker_failures,
	             h->breaker_cooldown > 0 ? h->breaker_cooldown : 30,
	             h->breaker_successes > 0 ? h->breaker_successes : 1);
	if (h->breaker_failures > 0 && old.state != BREAKER_CLOSED) {
		p->br.state = old.state;
		p->br.consecutive_failures = old.consecutive_failures;
		p->br.half_open_successes = old.half_open_successes;
		p->br.half_open_inflight = old.half_open_inflight;
		p->br.opened_at = old.opened_at;
	}
}

static const char *pos_text(const struct pos *ps, char *out, size_t n)
{
	if (ps->file && ps->line > 0)
		snprintf(out, n, "%s:%d:%d", ps->file, ps->line, ps->col);
	else
		snprintf(out, n, "%s", ps->file ? ps->file : "(unknown)");
	return out;
}

/* name lowercased, malloc'd: pools are keyed without case, as hosts are. */
static char *pool_key(const char *name)
{
	char *k = xstrdup(name), *c;

	for (c = k; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	return k;
}

void hostreg_declare(struct requester *rq, const struct host_limits *h)
{
	struct hostreg *hr = rq->hr;
	struct pool *p;
	char *name = pool_key(h->name);

	p = pool_find(hr, name);
	if (!p) {
		p = pool_new(hr, name);
		pool_apply(p, h);
	} else if (p->users == 0 || !p->declared) {
		/* Idle (kept for its breaker) or only used undeclared so far:
		 * this declaration sets its limits. */
		pool_apply(p, h);
	} else if (!limits_equal(&p->lim, h)) {
		char a[512], b[512];
		log_warn("%s: hosts: %s declares other limits than %s, where a run in progress "
		         "declared it: the pool keeps those until no run uses it",
		         pos_text(&h->pos, a, sizeof(a)), name, pos_text(&p->lim.pos, b, sizeof(b)));
	}
	free(name);
	pool_ref(rq, p, true);
}

struct pool *hostreg_pool_for(struct requester *rq, const char *name, const char *url)
{
	struct hostreg *hr = rq->hr;
	struct pool *p;
	char *host;

	if (name) {
		char *k = pool_key(name);
		if (!(p = pool_find(hr, k)))
			p = pool_new(hr, k);
		free(k);
		pool_ref(rq, p, false);
		return p;
	}
	host = http_url_host(url);
	p = pool_find(hr, host ? host : "(local)");
	/* A hosts: entry may name the host without its port. */
	if (host && (!p || !p->declared)) {
		char *colon = strrchr(host, ':');
		if (colon && !strchr(host, ']')) {
			struct pool *q;
			*colon = '\0';
			q = pool_find(hr, host);
			if (q && q->declared)
				p = q;
			*colon = ':';
		}
	}
	if (!p)
		p = pool_new(hr, host ? host : "(local)");
	free(host);
	pool_ref(rq, p, false);
	return p;
}

void hostreg_release(struct requester *rq)
{
	size_t i;

	for (i = 0; i < rq->n_refs; i++) {
		struct pool *p = rq->refs[i].p;
		if (--p->users > 0)
			continue;
		/* Nobody uses it: nothing is queued or in flight. Keep it only
		 * if its breaker has something to say to the next run. */
		if (p->br.state == BREAKER_CLOSED) {
			pool_free(p);
		} else {
			if (ev_is_active(&p->rate_timer))
				ev_timer_stop(p->hr->loop, &p->rate_timer);
			if (ev_is_active(&p->breaker_timer))
				ev_timer_stop(p->hr->loop, &p->breaker_timer);
		}
	}
	free(rq->refs);
	rq->refs = NULL;
	rq->n_refs = rq->cap_refs = 0;
}

/* Fires a pool's pump when its rate allows the next request or its
 * breaker's cool-down is over. */
static void pool_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	pool_pump(w->data);
}

/* Seconds p has spent blocked for reason b up to now. */
static double pool_blocked_total(const struct pool *p, enum pool_block b, double now)
{
	double t = p->blocked_total[b];

	if (p->blocked == b && now > p->blocked_since)
		t += now - p->blocked_since;
	return t;
}

/* From now on p is blocked for reason b (BLOCK_NONE: not blocked). */
static void pool_set_blocked(struct pool *p, enum pool_block b, double now)
{
	if (p->blocked != BLOCK_NONE && now > p->blocked_since)
		p->blocked_total[p->blocked] += now - p->blocked_since;
	p->blocked = b;
	p->blocked_since = now;
}

void pool_enqueue(struct request *r)
{
	struct pool *p = r->pool;
	double now = hostreg_now(p->hr);
	int b;

	for (b = 0; b < BLOCK_N; b++)
		r->queued_at[b] = pool_blocked_total(p, (enum pool_block)b, now);
	r->q_next = NULL;
	if (p->q_tail)
		p->q_tail->q_next = r;
	else
		p->q_head = r;
	p->q_tail = r;
	r->state = R_ADMIT;
	pool_pump(p);
}

void pool_dequeue(struct request *r)
{
	struct pool *p = r->pool;
	struct request **pp = &p->q_head, *prev = NULL;

	while (*pp && *pp != r) {
		prev = *pp;
		pp = &(*pp)->q_next;
	}
	if (!*pp)
		return;
	*pp = r->q_next;
	if (p->q_tail == r)
		p->q_tail = prev;
}

static void log_breaker(struct pool *p, struct request *r, enum breaker_state before)
{
	char *msg;

	if (p->br.state == before)
		return;
	msg = xasprintf("circuit breaker for %s: %s -> %s", p->name,
	                breaker_state_name(before), breaker_state_name(p->br.state));
	log_warn("%s", msg);
	requester_event(r->rq, r->stage, "breaker", msg);
	free(msg);
}

void pool_attempt_done(struct pool *p, struct request *r, bool failure, bool cancelled)
{
	enum breaker_state before = p->br.state;

	assert(p->inflight > 0);
	p->inflight--;
	/* Also for a request nobody waits for any more: the answer still tells
	 * about the host, and a half-open breaker waits for its trial's. */
	if (!cancelled) {
		breaker_record(&p->br, !failure, hostreg_now(p->hr));
		log_breaker(p, r, before);
	}
}

/* Arms p's timer w to pump p in `in` seconds, unless it is armed already. */
static void pool_arm(struct pool *p, ev_timer *w, double in)
{
	if (ev_is_active(w))
		return;
	ev_timer_init(w, pool_timer_cb, in, 0);
	w->data = p;
	ev_timer_start(p->hr->loop, w);
}

/*
 * Starts queued requests while the pool has room, its breaker lets requests
 * through and its bucket has tokens. Limits are checked in that order and
 * the first that holds the head back is the reason everyone queued waits.
 * Nothing is taken (a token, a half-open trial) until all of them agree.
 */
void pool_pump(struct pool *p)
{
	struct request *r;
	double now = hostreg_now(p->hr), in = 0;
	enum breaker_state before;
	int b;

	pool_set_blocked(p, BLOCK_NONE, now);
	while ((r = p->q_head) != NULL) {
		if (p->concurrency > 0 && p->inflight >= p->concurrency) {
			pool_set_blocked(p, BLOCK_CONCURRENCY, now);
			return;
		}
		if (breaker_blocked(&p->br, now, &in)) {
			pool_set_blocked(p, BLOCK_BREAKER, now);
			pool_arm(p, &p->breaker_timer, in);
			return;
		}
		if (p->has_bucket && (in = bucket_wait(&p->bucket, now)) > 0) {
			pool_set_blocked(p, BLOCK_RATE, now);
			pool_arm(p, &p->rate_timer, in);
			return;
		}
		before = p->br.state;
		if (!breaker_allow(&p->br, now, &in)) {
			/* Not reached: breaker_blocked said no at the same now. */
			pool_set_blocked(p, BLOCK_BREAKER, now);
			pool_arm(p, &p->breaker_timer, in);
			return;
		}
		log_breaker(p, r, before);
		if (p->has_bucket)
			bucket_take(&p->bucket, now);
		p->q_head = r->q_next;
		if (!p->q_head)
			p->q_tail = NULL;
		for (b = 0; b < BLOCK_N; b++)
			r->wait_block[b] += pool_blocked_total(p, (enum pool_block)b, now) -
			                    r->queued_at[b];
		p->inflight++;
		request_send(r);
	}
}
