/*
 * policy: the pure decision logic of resilience, kept apart from I/O so it
 * can be tested exactly: retry conditions and backoff delays (with jitter),
 * Retry-After / RateLimit-Reset parsing, a token-bucket rate limiter and a
 * per-host circuit breaker. Nothing here touches the loop or the network;
 * callers pass the current time in (seconds, monotonic) and random numbers
 * in [0,1) so tests are deterministic.
 */
#ifndef PIPECTL_POLICY_H
#define PIPECTL_POLICY_H

#include <stdbool.h>
#include <stddef.h>

enum backoff_kind { BACKOFF_CONSTANT = 0, BACKOFF_LINEAR, BACKOFF_EXPONENTIAL };
enum jitter_kind { JITTER_NONE = 0, JITTER_FULL, JITTER_EQUAL };

/* Retry-on conditions, as bits. Exact codes are listed separately. */
enum {
	RETRY_ON_CONNECT = 1 << 0,     /* resolve / connect failures, refused */
	RETRY_ON_TIMEOUT = 1 << 1,     /* per-attempt or connect timeout */
	RETRY_ON_5XX = 1 << 2,
	RETRY_ON_4XX = 1 << 3,
	RETRY_ON_NETWORK = 1 << 4,     /* other transport errors: reset, closed mid-body */
	RETRY_ON_INVALID_BODY = 1 << 5,/* a 2xx whose body does not parse (format json/jsonl) */
};

struct retry_policy {
	int attempts;                  /* total attempts, >= 1 (1 = no retry) */
	enum backoff_kind backoff;
	double initial;                /* seconds: first delay */
	double max;                    /* seconds: cap on any delay, also Retry-After */
	enum jitter_kind jitter;
	unsigned on;                   /* RETRY_ON_* bits */
	int codes[16];                 /* exact HTTP codes to retry (e.g. 429) */
	int n_codes;
};

/* The defaults, used when no retry: is given and for the keys a retry:
 * leaves out: 3 attempts, exponential, 250ms initial, 30s max (also the cap
 * on Retry-After), full jitter, on connect|timeout|network|invalid_body and
 * the codes 429, 502, 503, 504. */
void retry_policy_default(struct retry_policy *p);

/* Outcome of one attempt, as the retry logic sees it. */
enum attempt_class {
	ATTEMPT_OK = 0,                /* 2xx (or file://) */
	ATTEMPT_CONNECT,
	ATTEMPT_TIMEOUT,
	ATTEMPT_NETWORK,
	ATTEMPT_HTTP,                  /* a non-2xx status: see status */
	ATTEMPT_PREDICATE,             /* 2xx but the user's retry predicate matched */
	ATTEMPT_INVALID_BODY,          /* 2xx but the body is not the format expected */
	ATTEMPT_FATAL,                 /* never retried (e.g. body too big) */
};

/* True when an attempt of class c (with HTTP status, when c is
 * ATTEMPT_HTTP) is retryable under p. ATTEMPT_PREDICATE is always retryable. */
bool retry_should(const struct retry_policy *p, enum attempt_class c, long status);

/*
 * Delay before attempt number `next` (2 for the first retry). base =
 * constant: initial; linear: initial * (next-1); exponential: initial *
 * 2^(next-2); capped at max. Jitter: none = base; full = rnd * base;
 * equal = base/2 + rnd * base/2. rnd in [0,1).
 */
double retry_delay(const struct retry_policy *p, int next, double rnd);

/*
 * Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC 850 and asctime
 * forms). now_wall is the current time (seconds since the epoch). Returns
 * the delay in seconds (>= 0; a date in the past gives 0), or -1 when the
 * value cannot be parsed.
 */
double parse_retry_after(const char *value, double now_wall);

/*
 * Parses RateLimit-Reset / X-RateLimit-Reset: seconds until reset, or an
 * epoch timestamp when the number is larger than now_wall - 1 day (as some
 * APIs send). Returns the delay in seconds (>= 0), or -1 if unparseable.
 */
double parse_ratelimit_reset(const char *value, double now_wall);

/* ---- token bucket: `rate` tokens per second, holding at most `burst`. */
struct token_bucket {
	double rate;                   /* tokens per second; <= 0 = unlimited */
	double burst;                  /* capacity, >= 1 */
	double tokens;
	double last;                   /* time of the last refill */
};
void bucket_init(struct token_bucket *b, double rate, double burst, double now);
/* Takes one token if available: returns 0. Otherwise returns the seconds
 * until one will be (> 0) and takes nothing. */
double bucket_take(struct token_bucket *b, double now);
/* What bucket_take would return at now, without taking or refilling
 * anything: 0 when a token is available, else the seconds until one is. */
double bucket_wait(const struct token_bucket *b, double now);

/* ---- circuit breaker */
enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker {
	int failures_to_open;          /* consecutive failures that open it; 0 = disabled */
	double cooldown;               /* seconds open before half-open */
	int successes_to_close;        /* successes in half-open that close it */
	enum breaker_state state;
	int consecutive_failures;
	int half_open_successes;
	int half_open_inflight;        /* trial requests let through in half-open */
	double opened_at;
};
void breaker_init(struct breaker *br, int failures_to_open, double cooldown,
                  int successes_to_close);
/* May a request start now? Moves open -> half-open after the cool-down. In
 * half-open, lets through one trial request at a time. Returns true/false;
 * when false, *retry_in is the seconds until it may be asked again. */
bool breaker_allow(struct breaker *br, double now, double *retry_in);
/* Would breaker_allow refuse at now? Changes nothing. Returns true when it
 * would (open and cooling down, or half-open with its trial in flight), with
 * the seconds until it is worth asking again in *retry_in (> 0). */
bool breaker_blocked(const struct breaker *br, double now, double *retry_in);
/* Reports the outcome of a request that breaker_allow let through. Returns
 * true when the state changed (callers log and record the transition). */
bool breaker_record(struct breaker *br, bool success, double now);
const char *breaker_state_name(enum breaker_state s);

#endif
