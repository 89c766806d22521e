/*
 * hostreg: the process-wide registry of host pools. A pool is a host (or a
 * named group of hosts, a hosts: entry) with its concurrency limit, its
 * token-bucket rate, its circuit breaker and the FIFO of requests waiting
 * for them. One hostreg serves every requester (every run) on a loop, so
 * two runs talking to one host share its limits and its breaker.
 *
 * Pools are keyed by name (lowercased). Rules for declarations (a run's
 * hosts: entries, given to requester_create):
 *  - the first declaration of a pool wins while any run uses the pool: a
 *    run declaring other limits for it meanwhile gets them ignored, with a
 *    warning naming both declarations (file:line:col); an identical
 *    declaration is silent;
 *  - a pool that only undeclared traffic created (a URL's host) takes the
 *    limits of the first run that declares it;
 *  - when the last run using a pool ends, the pool is freed if its breaker
 *    is closed (nothing worth remembering); a pool whose breaker is open or
 *    half-open is kept, limits and breaker state, so that the next run (a
 *    daemon's next schedule of a pipeline) does not pay N failures again
 *    against a host known to be down. The next run to declare it may then
 *    set other limits; the breaker's state carries over.
 * Memory is thus bounded by the hosts in use plus the hosts known down.
 */
#ifndef PIPECTL_HOSTREG_H
#define PIPECTL_HOSTREG_H

#include <stdbool.h>
#include <stddef.h>
#include <ev.h>
#include "base/diag.h"
#include "base/policy.h"

struct hostreg;

/* The limits of one pool, as a hosts: entry declares them. */
struct host_limits {
	char *name;                    /* host, host:port or pool name */
	struct pos pos;                /* where declared (for warnings) */
	int concurrency;               /* 0 = unlimited */
	double rate;                   /* requests per second; 0 = unlimited */
	double burst;                  /* bucket size; 0 = max(1, rate) */
	int breaker_failures;          /* consecutive failures to open; 0 = no breaker */
	double breaker_cooldown;       /* seconds (default 30) */
	int breaker_successes;         /* successes in half-open to close (default 1) */
};

/* A registry whose pools' timers run on loop. Caller owns it; destroy it
 * after every requester created with it. */
struct hostreg *hostreg_create(struct ev_loop *loop);
/* Frees every pool. NULL-safe. */
void hostreg_destroy(struct hostreg *hr);

/* Pools the registry holds now (in use or kept for their breaker). */
size_t hostreg_pools(const struct hostreg *hr);
/* The breaker of pool name (borrowed, valid until the pool changes), or
 * NULL when there is no such pool. */
const struct breaker *hostreg_breaker(const struct hostreg *hr, const char *name);
/* The clock pools read (monotonic seconds; default now_mono): a test sets
 * its own to drive rates and cool-downs without waiting. */
void hostreg_set_clock(struct hostreg *hr, double (*now)(void));

/* ---- users and waiters (a requester is one user; its requests wait)
 *
 * The registry knows nothing of what waits in its pools: a user queues a
 * struct pool_waiter (embedded in what it carries) and the pool calls its
 * ops back to admit it and to report a change of its breaker. */

struct hostreg_user;
struct pool;

/* Why a pool's FIFO cannot start its head. Waits are accounted by reason:
 * the pool keeps the total time it spent blocked for each, and a waiter's
 * share is the growth of those totals while it was queued (a FIFO keeps
 * everyone behind the head waiting for the same thing, whoever they are). */
enum pool_block { POOL_BLOCK_NONE = -1, POOL_BLOCK_CONCURRENCY = 0, POOL_BLOCK_BREAKER,
                  POOL_BLOCK_RATE, POOL_BLOCK_N };

struct pool_waiter_ops {
	/* The pool admits the waiter: its attempt may start now, and holds a
	 * slot of the pool until pool_attempt_done. Called from pool_enqueue,
	 * pool_pump or a pool's timer; it may enqueue or pump again. */
	void (*admit)(void *arg);
	/* The breaker of pool (its name) went from one state to another on the
	 * waiter's admission or the end of its attempt. */
	void (*breaker)(void *arg, const char *pool, enum breaker_state from,
	                enum breaker_state to);
	/* Optional: the waiter's wait ended, as pool admits it: it spent
	 * seconds (> 0) queued while pool was blocked for reason. Called once
	 * per reason it waited for, just before admit. */
	void (*waited)(void *arg, const char *pool, enum pool_block reason, double seconds);
};

/* The reason in a word: "concurrency", "breaker" or "rate" (static). */
const char *pool_block_name(enum pool_block b);

/* Something waiting for admission to a pool. The user sets ops and arg and
 * reads blocked; the pool owns the rest while the waiter is queued. */
struct pool_waiter {
	const struct pool_waiter_ops *ops;
	void *arg;                     /* handed to ops */
	double blocked[POOL_BLOCK_N];  /* seconds queued per reason, added at each
	                                  admission; the user resets it */
	double queued_at[POOL_BLOCK_N];/* the pool's totals when it was queued */
	struct pool_waiter *next;      /* in the pool's FIFO */
};

/* A new user of hr declaring the pools of limits (n_limits, copied) under
 * the rules above; it holds a reference to them and to every pool it gets
 * from hostreg_pool_for. Caller owns it: hostreg_leave, before
 * hostreg_destroy. */
struct hostreg_user *hostreg_join(struct hostreg *hr, const struct host_limits *limits,
                                  size_t n_limits);
/* Drops every pool reference of u and frees u; nothing of u may be queued
 * or in flight. NULL-safe. */
void hostreg_leave(struct hostreg_user *u);
/* The pool a request of u goes through: pool name (a hosts: entry), else
 * the host of url; referenced by u (borrowed: valid until hostreg_leave).
 * Never NULL. */
struct pool *hostreg_pool_for(struct hostreg_user *u, const char *name, const char *url);
/* Queues w (ops and arg set) in p and admits what p's limits allow, w
 * perhaps at once. */
void pool_enqueue(struct pool *p, struct pool_waiter *w);
/* Takes w (given up while queued) out of p's FIFO. */
void pool_dequeue(struct pool *p, struct pool_waiter *w);
/* The attempt of w that p admitted ended; failure: it counts against the
 * breaker; cancelled: it tells nothing about the host. Call pool_pump
 * afterwards to start what may start now. */
void pool_attempt_done(struct pool *p, struct pool_waiter *w, bool failure, bool cancelled);
/* Admits queued waiters while p's limits allow. */
void pool_pump(struct pool *p);

#endif
