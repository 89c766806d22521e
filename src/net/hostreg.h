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

#endif
