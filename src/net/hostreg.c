/*
 * hostreg: host pools shared by every requester on a loop (see hostreg.h).
 *
 * Waiting is accounted by reason. A pool's FIFO is blocked for one reason
 * at a time (its concurrency, its breaker, its rate), and the pool keeps the
 * total time it spent blocked for each; a waiter's share is the growth of
 * those totals while it was queued, since a FIFO keeps everyone behind the
 * head waiting for the same thing, whichever run it belongs to.
 *
 * The registry knows its users and waiters only as such: what waits (a
 * request) is the user's, reached through the waiter's ops.
 */
#include "net/hostreg.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "net/http.h"

struct pool {
	struct hostreg *hr;
	char *name;
	int users;                     /* users holding a reference */
	bool declared;                 /* limits come from a hosts: entry */
	struct host_limits lim;        /* as declared (name and pos.file owned) */
	int concurrency;               /* 0 = unlimited */
	int inflight;                  /* across every user */
	bool has_bucket;
	struct token_bucket bucket;
	struct breaker br;
	struct pool_waiter *q_head, *q_tail;   /* waiting for admission, FIFO */
	ev_timer rate_timer;
	ev_timer breaker_timer;        /* end of the breaker's cool-down */
	enum pool_block blocked;       /* why the FIFO waits now */
	double blocked_since;          /* hostreg clock */
	double blocked_total[POOL_BLOCK_N];    /* seconds blocked per reason,
	                                          before blocked_since */
	struct pool *next;
};

struct hostreg {
	struct ev_loop *loop;
	struct pool *pools;
	double (*now)(void);
};

/* A user's reference to a pool it declared or sent through. */
struct pool_ref {
	struct pool *p;
	bool declared;
};

struct hostreg_user {
	struct hostreg *hr;
	struct pool_ref *refs;         /* pools this user holds */
	size_t n_refs, cap_refs;
};

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

/* The hostreg clock. */
static double hostreg_now(const struct hostreg *hr)
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
		/* Every user leaves before its registry is destroyed. */
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
	p->blocked = POOL_BLOCK_NONE;
	breaker_init(&p->br, 0, 30, 1);
	p->next = hr->pools;
	hr->pools = p;
	return p;
}

/* u holds a reference to p (once). */
static void pool_ref(struct hostreg_user *u, struct pool *p, bool declared)
{
	size_t i;

	for (i = 0; i < u->n_refs; i++)
		if (u->refs[i].p == p) {
			u->refs[i].declared |= declared;
			return;
		}
	xgrow(&u->refs, &u->cap_refs, u->n_refs + 1, sizeof(*u->refs));
	u->refs[u->n_refs].p = p;
	u->refs[u->n_refs].declared = declared;
	u->n_refs++;
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

/* u declares the pool of limits h (see hostreg.h for the rules) and holds
 * a reference to it. */
static void hostreg_declare(struct hostreg_user *u, const struct host_limits *h)
{
	struct hostreg *hr = u->hr;
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
	pool_ref(u, p, true);
}

struct hostreg_user *hostreg_join(struct hostreg *hr, const struct host_limits *limits,
                                  size_t n_limits)
{
	struct hostreg_user *u = xcalloc(1, sizeof(*u));
	size_t i;

	u->hr = hr;
	for (i = 0; i < n_limits; i++)
		hostreg_declare(u, &limits[i]);
	return u;
}

struct pool *hostreg_pool_for(struct hostreg_user *u, const char *name, const char *url)
{
	struct hostreg *hr = u->hr;
	struct pool *p;
	char *host;

	if (name) {
		char *k = pool_key(name);
		if (!(p = pool_find(hr, k)))
			p = pool_new(hr, k);
		free(k);
		pool_ref(u, p, false);
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
	pool_ref(u, p, false);
	return p;
}

void hostreg_leave(struct hostreg_user *u)
{
	size_t i;

	if (!u)
		return;
	for (i = 0; i < u->n_refs; i++) {
		struct pool *p = u->refs[i].p;
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
	free(u->refs);
	free(u);
}

/* Fires a pool's pump when its rate allows the next attempt or its
 * breaker's cool-down is over. */
static void pool_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	pool_pump(w->data);
}

const char *pool_block_name(enum pool_block b)
{
	switch (b) {
	case POOL_BLOCK_CONCURRENCY: return "concurrency";
	case POOL_BLOCK_BREAKER: return "breaker";
	case POOL_BLOCK_RATE: return "rate";
	default: return "none";
	}
}

/* Seconds p has spent blocked for reason b up to now. */
static double pool_blocked_total(const struct pool *p, enum pool_block b, double now)
{
	double t = p->blocked_total[b];

	if (p->blocked == b && now > p->blocked_since)
		t += now - p->blocked_since;
	return t;
}

/* From now on p is blocked for reason b (POOL_BLOCK_NONE: not blocked). */
static void pool_set_blocked(struct pool *p, enum pool_block b, double now)
{
	if (p->blocked != POOL_BLOCK_NONE && now > p->blocked_since)
		p->blocked_total[p->blocked] += now - p->blocked_since;
	p->blocked = b;
	p->blocked_since = now;
}

void pool_enqueue(struct pool *p, struct pool_waiter *w)
{
	double now = hostreg_now(p->hr);
	int b;

	for (b = 0; b < POOL_BLOCK_N; b++)
		w->queued_at[b] = pool_blocked_total(p, (enum pool_block)b, now);
	w->next = NULL;
	if (p->q_tail)
		p->q_tail->next = w;
	else
		p->q_head = w;
	p->q_tail = w;
	pool_pump(p);
}

void pool_dequeue(struct pool *p, struct pool_waiter *w)
{
	struct pool_waiter **pp = &p->q_head, *prev = NULL;

	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = w->next;
	if (p->q_tail == w)
		p->q_tail = prev;
}

/* Tells w when p's breaker is no longer in state before. */
static void report_breaker(struct pool *p, struct pool_waiter *w, enum breaker_state before)
{
	if (p->br.state != before)
		w->ops->breaker(w->arg, p->name, before, p->br.state);
}

void pool_attempt_done(struct pool *p, struct pool_waiter *w, bool failure, bool cancelled)
{
	enum breaker_state before = p->br.state;

	assert(p->inflight > 0);
	p->inflight--;
	/* Also for an attempt nobody waits for any more: the answer still tells
	 * about the host, and a half-open breaker waits for its trial's. */
	if (!cancelled) {
		breaker_record(&p->br, !failure, hostreg_now(p->hr));
		report_breaker(p, w, before);
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
 * Admits queued waiters while the pool has room, its breaker lets attempts
 * through and its bucket has tokens. Limits are checked in that order and
 * the first that holds the head back is the reason everyone queued waits.
 * Nothing is taken (a token, a half-open trial) until all of them agree.
 */
void pool_pump(struct pool *p)
{
	struct pool_waiter *w;
	double now = hostreg_now(p->hr), in = 0, share[POOL_BLOCK_N];
	enum breaker_state before;
	int b;

	pool_set_blocked(p, POOL_BLOCK_NONE, now);
	while ((w = p->q_head) != NULL) {
		if (p->concurrency > 0 && p->inflight >= p->concurrency) {
			pool_set_blocked(p, POOL_BLOCK_CONCURRENCY, now);
			return;
		}
		if (breaker_blocked(&p->br, now, &in)) {
			pool_set_blocked(p, POOL_BLOCK_BREAKER, now);
			pool_arm(p, &p->breaker_timer, in);
			return;
		}
		if (p->has_bucket && (in = bucket_wait(&p->bucket, now)) > 0) {
			pool_set_blocked(p, POOL_BLOCK_RATE, now);
			pool_arm(p, &p->rate_timer, in);
			return;
		}
		before = p->br.state;
		if (!breaker_allow(&p->br, now, &in)) {
			/* Not reached: breaker_blocked said no at the same now. */
			pool_set_blocked(p, POOL_BLOCK_BREAKER, now);
			pool_arm(p, &p->breaker_timer, in);
			return;
		}
		report_breaker(p, w, before);
		if (p->has_bucket)
			bucket_take(&p->bucket, now);
		p->q_head = w->next;
		if (!p->q_head)
			p->q_tail = NULL;
		for (b = 0; b < POOL_BLOCK_N; b++) {
			share[b] = pool_blocked_total(p, (enum pool_block)b, now) - w->queued_at[b];
			w->blocked[b] += share[b];
		}
		p->inflight++;
		for (b = 0; b < POOL_BLOCK_N && w->ops->waited; b++)
			if (share[b] > 0)
				w->ops->waited(w->arg, p->name, (enum pool_block)b, share[b]);
		w->ops->admit(w->arg);
	}
}
