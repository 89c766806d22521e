/*
 * Unit tests for policy.c: retry conditions, backoff delays with each
 * jitter, Retry-After and RateLimit-Reset parsing, token bucket, breaker.
 * Expected epoch values were computed independently (calendar.timegm).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/policy.h"
#include "tap.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Doubles compare within 1e-9 (relative to the larger magnitude when > 1). */
#define is_num(got, want, ...) do { \
	double g_ = (got), w_ = (want), s_ = fabs(w_) > 1 ? fabs(w_) : 1; \
	if (!tap_ok(fabs(g_ - w_) <= 1e-9 * s_, __FILE__, __LINE__, __VA_ARGS__)) \
		printf("#   got %.12g, want %.12g\n", g_, w_); \
} while (0)

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T_1994 784111777.0
/* 2024-01-01T00:00:00Z, 2025-01-01, 2074-01-01 */
#define T_2024 1704067200.0
#define T_2025 1735689600.0
#define T_2074 3281990400.0

static const char *class_name(enum attempt_class c)
{
	static const char *const names[] = {
		"ok", "connect", "timeout", "network", "http", "predicate", "invalid_body", "fatal",
	};
	return (unsigned)c < ARRAY_LEN(names) ? names[c] : "?";
}

static void test_default(void)
{
	struct retry_policy p;

	retry_policy_default(&p);
	is_int(p.attempts, 3, "default: 3 attempts");
	is_int(p.backoff, BACKOFF_EXPONENTIAL, "default: exponential");
	is_num(p.initial, 0.25, "default: initial 250ms");
	is_num(p.max, 30, "default: max 30s");
	is_int(p.jitter, JITTER_FULL, "default: full jitter");
	is_int(p.on, RETRY_ON_CONNECT | RETRY_ON_TIMEOUT | RETRY_ON_NETWORK | RETRY_ON_INVALID_BODY,
	       "default: connect|timeout|network|invalid_body");
	ok(p.n_codes == 4 && p.codes[0] == 429 && p.codes[1] == 502 && p.codes[2] == 503 &&
	   p.codes[3] == 504, "default: codes 429, 502, 503, 504");
	ok(retry_should(&p, ATTEMPT_HTTP, 429), "default retries 429");
	ok(retry_should(&p, ATTEMPT_HTTP, 502), "default retries 502");
	ok(retry_should(&p, ATTEMPT_HTTP, 503), "default retries 503");
	ok(retry_should(&p, ATTEMPT_HTTP, 504), "default retries 504");
	ok(!retry_should(&p, ATTEMPT_HTTP, 500), "default does not retry 500");
	ok(!retry_should(&p, ATTEMPT_HTTP, 501), "default does not retry 501");
	ok(retry_should(&p, ATTEMPT_CONNECT, 0) && retry_should(&p, ATTEMPT_TIMEOUT, 0) &&
	   retry_should(&p, ATTEMPT_NETWORK, 0), "default retries connect, timeout, network");
	ok(!retry_should(&p, ATTEMPT_FATAL, 0), "default never retries a fatal error");
	ok(!retry_should(&p, ATTEMPT_HTTP, 404), "default does not retry 404");
}

static void test_should_transport(void)
{
	static const struct {
		enum attempt_class c;
		unsigned bit;          /* 0: never retried; ~0u: always */
	} rows[] = {
		{ ATTEMPT_OK, 0 },
		{ ATTEMPT_FATAL, 0 },
		{ ATTEMPT_CONNECT, RETRY_ON_CONNECT },
		{ ATTEMPT_TIMEOUT, RETRY_ON_TIMEOUT },
		{ ATTEMPT_NETWORK, RETRY_ON_NETWORK },
		{ ATTEMPT_INVALID_BODY, RETRY_ON_INVALID_BODY },
		{ ATTEMPT_PREDICATE, ~0u },
	};
	struct retry_policy p;
	unsigned mask;
	size_t i;

	retry_policy_default(&p);
	p.n_codes = 0;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		int bad = 0;
		for (mask = 0; mask < 64; mask++) {
			bool want = rows[i].bit == ~0u ? true : (mask & rows[i].bit) != 0;
			p.on = mask;
			if (retry_should(&p, rows[i].c, 0) != want ||
			    retry_should(&p, rows[i].c, 503) != want)
				bad++;
		}
		is_int(bad, 0, "retry_should(%s) over all 64 condition sets", class_name(rows[i].c));
	}
	/* OK and FATAL stay unretried even when their status is a listed code. */
	p.on = ~0u;
	p.codes[0] = 200;
	p.codes[1] = 413;
	p.n_codes = 2;
	ok(!retry_should(&p, ATTEMPT_OK, 200), "OK with a listed status: no retry");
	ok(!retry_should(&p, ATTEMPT_FATAL, 413), "FATAL with a listed status: no retry");
}

static void test_should_http(void)
{
	static const struct {
		unsigned on;
		int code;              /* one exact code, or 0 */
		long status;
		bool want;
	} rows[] = {
		{ RETRY_ON_5XX, 0, 500, true },
		{ RETRY_ON_5XX, 0, 503, true },
		{ RETRY_ON_5XX, 0, 599, true },
		{ RETRY_ON_5XX, 0, 600, false },
		{ RETRY_ON_5XX, 0, 499, false },
		{ RETRY_ON_5XX, 0, 429, false },
		{ RETRY_ON_5XX, 0, 301, false },
		{ RETRY_ON_4XX, 0, 400, true },
		{ RETRY_ON_4XX, 0, 404, true },
		{ RETRY_ON_4XX, 0, 499, true },
		{ RETRY_ON_4XX, 0, 399, false },
		{ RETRY_ON_4XX, 0, 500, false },
		{ RETRY_ON_4XX | RETRY_ON_5XX, 0, 418, true },
		{ RETRY_ON_4XX | RETRY_ON_5XX, 0, 502, true },
		{ RETRY_ON_4XX | RETRY_ON_5XX, 0, 302, false },
		{ 0, 429, 429, true },
		{ 0, 429, 428, false },
		{ 0, 429, 503, false },
		{ 0, 0, 503, false },
		{ 0, 0, 404, false },
		{ RETRY_ON_CONNECT | RETRY_ON_TIMEOUT | RETRY_ON_NETWORK, 0, 503, false },
		{ RETRY_ON_CONNECT | RETRY_ON_TIMEOUT | RETRY_ON_NETWORK, 0, 404, false },
		{ RETRY_ON_5XX, 409, 409, true },
		{ RETRY_ON_5XX, 409, 410, false },
		{ 0, 308, 308, true },
	};
	struct retry_policy p;
	size_t i;

	retry_policy_default(&p);
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		p.on = rows[i].on;
		p.codes[0] = rows[i].code;
		p.n_codes = rows[i].code ? 1 : 0;
		is_int(retry_should(&p, ATTEMPT_HTTP, rows[i].status), rows[i].want,
		       "http %ld, on=0x%x, code %d -> %s", rows[i].status, rows[i].on,
		       rows[i].code, rows[i].want ? "retry" : "no retry");
	}

	/* Several codes: each matched, neighbours not. */
	p.on = 0;
	p.codes[0] = 408;
	p.codes[1] = 425;
	p.codes[2] = 429;
	p.n_codes = 3;
	ok(retry_should(&p, ATTEMPT_HTTP, 408) && retry_should(&p, ATTEMPT_HTTP, 425) &&
	   retry_should(&p, ATTEMPT_HTTP, 429), "every listed code is retried");
	ok(!retry_should(&p, ATTEMPT_HTTP, 409) && !retry_should(&p, ATTEMPT_HTTP, 430),
	   "unlisted codes are not");
	/* Codes past n_codes are not looked at. */
	p.n_codes = 2;
	ok(!retry_should(&p, ATTEMPT_HTTP, 429), "codes beyond n_codes are ignored");
	/* A full table: the last slot counts. */
	for (i = 0; i < ARRAY_LEN(p.codes); i++)
		p.codes[i] = 450 + (int)i;
	p.n_codes = (int)ARRAY_LEN(p.codes);
	ok(retry_should(&p, ATTEMPT_HTTP, 450 + (long)ARRAY_LEN(p.codes) - 1),
	   "last of 16 codes is retried");
	/* An out-of-range count is clamped, not read past the array. */
	p.n_codes = 1000;
	ok(!retry_should(&p, ATTEMPT_HTTP, 499) && retry_should(&p, ATTEMPT_HTTP, 451),
	   "n_codes beyond the array is clamped");
}

static void test_delay_kinds(void)
{
	static const struct {
		enum backoff_kind kind;
		const char *name;
		double base[4];        /* next = 2, 3, 4, 5 with initial 1.5 */
	} kinds[] = {
		{ BACKOFF_CONSTANT, "constant", { 1.5, 1.5, 1.5, 1.5 } },
		{ BACKOFF_LINEAR, "linear", { 1.5, 3.0, 4.5, 6.0 } },
		{ BACKOFF_EXPONENTIAL, "exponential", { 1.5, 3.0, 6.0, 12.0 } },
	};
	static const double rnds[] = { 0, 0.5, 0.999 };
	struct retry_policy p;
	size_t k, r;
	int n;

	retry_policy_default(&p);
	p.initial = 1.5;
	p.max = 0;                      /* no cap */
	for (k = 0; k < ARRAY_LEN(kinds); k++) {
		p.backoff = kinds[k].kind;
		for (n = 2; n <= 5; n++) {
			double b = kinds[k].base[n - 2];
			for (r = 0; r < ARRAY_LEN(rnds); r++) {
				double rnd = rnds[r];
				p.jitter = JITTER_NONE;
				is_num(retry_delay(&p, n, rnd), b,
				       "%s next=%d jitter none rnd=%g", kinds[k].name, n, rnd);
				p.jitter = JITTER_FULL;
				is_num(retry_delay(&p, n, rnd), rnd * b,
				       "%s next=%d jitter full rnd=%g", kinds[k].name, n, rnd);
				p.jitter = JITTER_EQUAL;
				is_num(retry_delay(&p, n, rnd), b / 2 + rnd * b / 2,
				       "%s next=%d jitter equal rnd=%g", kinds[k].name, n, rnd);
			}
		}
	}
}

static void test_delay_limits(void)
{
	struct retry_policy p;
	double d;

	retry_policy_default(&p);
	p.initial = 0.25;
	p.max = 30;

	/* Exponential: 0.25 * 2^7 = 32 > 30 at next = 9; 16 at next = 8. */
	p.jitter = JITTER_NONE;
	is_num(retry_delay(&p, 8, 0.5), 16, "exponential next=8 under the cap");
	is_num(retry_delay(&p, 9, 0.5), 30, "exponential next=9 capped at max");
	p.jitter = JITTER_FULL;
	is_num(retry_delay(&p, 9, 0.5), 15, "full jitter applies to the capped base");
	p.jitter = JITTER_EQUAL;
	is_num(retry_delay(&p, 9, 0.5), 22.5, "equal jitter applies to the capped base");

	p.backoff = BACKOFF_LINEAR;
	p.jitter = JITTER_NONE;
	is_num(retry_delay(&p, 120, 0), 29.75, "linear next=120 under the cap");
	is_num(retry_delay(&p, 122, 0), 30, "linear next=122 capped");
	p.backoff = BACKOFF_CONSTANT;
	p.initial = 45;
	is_num(retry_delay(&p, 2, 0), 30, "constant above max is capped");

	/* Overflow guards. */
	p.backoff = BACKOFF_EXPONENTIAL;
	p.initial = 0.25;
	is_num(retry_delay(&p, 1000, 0.999), 30, "exponential next=1000 capped at max");
	p.jitter = JITTER_FULL;
	is_num(retry_delay(&p, 1000, 0.5), 15, "exponential next=1000, full jitter");
	p.jitter = JITTER_NONE;
	is_num(retry_delay(&p, 2147483647, 0), 30, "exponential next=INT_MAX capped");
	p.initial = 1e300;
	p.max = 60;
	is_num(retry_delay(&p, 1000, 0), 60, "huge initial, next=1000: still max");
	p.max = 0;
	p.initial = 0.25;
	d = retry_delay(&p, 1000, 0.999);
	ok(isfinite(d) && d > 0, "no max, next=1000: finite and positive (%g)", d);
	d = retry_delay(&p, 2147483647, 0.999);
	ok(isfinite(d) && d >= retry_delay(&p, 60, 0.999),
	   "no max, next=INT_MAX: finite, not below next=60 (%g)", d);
	p.initial = 1e300;
	d = retry_delay(&p, 1000, 0.999);
	ok(isfinite(d) && d > 1e300, "no max, huge initial: finite and huge, not 0 (%g)", d);
	p.jitter = JITTER_EQUAL;
	d = retry_delay(&p, 1000, 0.999);
	ok(isfinite(d) && d > 1e300, "same with equal jitter (%g)", d);
	p.jitter = JITTER_NONE;
	p.backoff = BACKOFF_LINEAR;
	p.initial = 0.25;
	p.max = 30;
	is_num(retry_delay(&p, 2147483647, 0), 30, "linear next=INT_MAX capped");

	/* Never negative; next below 2 is the first retry. */
	p.backoff = BACKOFF_EXPONENTIAL;
	p.initial = -1;
	is_num(retry_delay(&p, 3, 0.5), 0, "negative initial gives 0");
	p.initial = 2;
	p.jitter = JITTER_NONE;
	is_num(retry_delay(&p, 1, 0), 2, "next=1 treated as the first retry");
	is_num(retry_delay(&p, -5, 0), 2, "negative next treated as the first retry");
	p.jitter = JITTER_FULL;
	is_num(retry_delay(&p, 2, -0.5), 0, "rnd below 0 is clamped to 0");
	d = retry_delay(&p, 2, 1.5);
	ok(d < 2 && d > 1.999, "rnd at or above 1 stays below the base (%g)", d);
}

static void test_retry_after(void)
{
	static const char *const bad[] = {
		"", "   ", "-1", "1.5", "+5", "5s", "abc", "0x10", "1e3", "5 5",
		"Sun, 06 Nov 1994 08:49:37",            /* no zone */
		"Sun, 06 Nov 1994 08:49:37 UTC",        /* only GMT */
		"Sun, 6 Nov 1994 08:49:37 GMT",         /* one-digit day */
		"Sun, 06 Nov 94 08:49:37 GMT",          /* two-digit year in IMF */
		"Sun, 06 Foo 1994 08:49:37 GMT",        /* month */
		"Xyz, 06 Nov 1994 08:49:37 GMT",        /* day name */
		"Sunday, 06 Nov 1994 08:49:37 GMT",     /* long name in IMF */
		"Sun, 31 Nov 1994 08:49:37 GMT",        /* 31 November */
		"Sun, 29 Feb 1994 08:49:37 GMT",        /* not a leap year */
		"Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:60:00 GMT",
		"Sun, 06 Nov 1994 08:49:61 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT x",
		"Sun, 06 Nov 1994 8:49:37 GMT",
		"Sun, 00 Nov 1994 08:49:37 GMT",
		"Sun, 06-Nov-94 08:49:37 GMT",          /* short name in RFC 850 */
		"Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994",              /* asctime needs two columns */
		"Sun Nov  6 08:49:37 1994 GMT",
		"Sun Nov  6 08:49:37 94",
	};
	double now = T_1994 - 100;
	size_t i;

	is_num(parse_retry_after("120", now), 120, "delta-seconds");
	is_num(parse_retry_after("0", now), 0, "zero seconds");
	is_num(parse_retry_after("  5 ", now), 5, "surrounding whitespace");
	is_num(parse_retry_after("\t7\r\n", now), 7, "tabs and CRLF");
	is_num(parse_retry_after("007", now), 7, "leading zeros");
	is_num(parse_retry_after("86400", 0), 86400, "a day");
	ok(parse_retry_after("99999999999999999999", now) > 9e19,
	   "very long number is a (large) number");

	is_num(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 100, "IMF-fixdate");
	is_num(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 100, "RFC 850 date");
	is_num(parse_retry_after("Sun Nov  6 08:49:37 1994", now), 100, "asctime date");
	is_num(parse_retry_after("Sun Nov 06 08:49:37 1994", now), 100, "asctime, zero-padded day");
	is_num(parse_retry_after("  Sun, 06 Nov 1994 08:49:37 GMT  ", now), 100,
	       "date with surrounding whitespace");
	is_num(parse_retry_after("sun, 06 nov 1994 08:49:37 gmt", now), 100,
	       "names are matched without regard to case");
	is_num(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 0.25), 99.75,
	       "fractional now_wall");
	is_num(parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now), 86500, "next day");
	is_num(parse_retry_after("Tue, 29 Feb 2000 12:00:00 GMT", 951825600.0 - 3600), 3600,
	       "29 February of a leap year");
	is_num(parse_retry_after("Sat, 31 Dec 2016 23:59:60 GMT", 1483228799.0 - 1), 1,
	       "leap second counts as :59");
	is_num(parse_retry_after("Wed, 01 Jan 2025 00:00:00 GMT", T_2024), T_2025 - T_2024,
	       "a year ahead");
	/* Dates on other days of the week are not checked against the date. */
	is_num(parse_retry_after("Mon, 06 Nov 1994 08:49:40 GMT", now), 103,
	       "day name is not cross-checked");

	is_num(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 + 5000), 0,
	       "past IMF date gives 0");
	is_num(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", T_1994 + 1), 0,
	       "past RFC 850 date gives 0");
	is_num(parse_retry_after("Sun Nov  6 08:49:37 1994", T_2024), 0,
	       "past asctime date gives 0");
	is_num(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", T_1994), 0,
	       "date equal to now gives 0");

	/* RFC 850 two-digit years: at most 50 years ahead, else the century before. */
	is_num(parse_retry_after("Wednesday, 01-Jan-25 00:00:00 GMT", T_2024), T_2025 - T_2024,
	       "RFC 850 year 25 seen in 2024 is 2025");
	is_num(parse_retry_after("Monday, 01-Jan-74 00:00:00 GMT", T_2024), T_2074 - T_2024,
	       "RFC 850 year 74 seen in 2024 is 2074 (50 years ahead)");
	is_num(parse_retry_after("Wednesday, 01-Jan-75 00:00:00 GMT", T_2024), 0,
	       "RFC 850 year 75 seen in 2024 is 1975 (past)");

	for (i = 0; i < ARRAY_LEN(bad); i++)
		is_num(parse_retry_after(bad[i], now), -1, "rejects \"%s\"", bad[i]);
	is_num(parse_retry_after(NULL, now), -1, "rejects NULL");
}

static void test_ratelimit_reset(void)
{
	static const char *const bad[] = {
		"", " ", "-1", "-0.5", "abc", "1e3", "1.", ".5", "1.2.3", "5s", "+3", "inf", "nan",
		"0x1A",
	};
	double now = T_2024;
	size_t i;
	char buf[64];

	is_num(parse_ratelimit_reset("30", now), 30, "seconds");
	is_num(parse_ratelimit_reset("0", now), 0, "zero seconds");
	is_num(parse_ratelimit_reset("1.5", now), 1.5, "decimal seconds");
	is_num(parse_ratelimit_reset(" 7 ", now), 7, "whitespace");
	is_num(parse_ratelimit_reset("86400", now), 86400, "a day in seconds");

	snprintf(buf, sizeof(buf), "%.0f", now + 42);
	is_num(parse_ratelimit_reset(buf, now), 42, "epoch timestamp 42s ahead");
	snprintf(buf, sizeof(buf), "%.1f", now + 42.5);
	is_num(parse_ratelimit_reset(buf, now), 42.5, "decimal epoch timestamp");
	is_num(parse_ratelimit_reset(buf, now + 0.5), 42, "epoch minus a fractional now");
	snprintf(buf, sizeof(buf), "%.0f", now - 10);
	is_num(parse_ratelimit_reset(buf, now), 0, "past epoch timestamp gives 0");
	snprintf(buf, sizeof(buf), "%.0f", now - 86400 + 1);
	is_num(parse_ratelimit_reset(buf, now), 0, "just within a day back: a (past) timestamp");
	snprintf(buf, sizeof(buf), "%.0f", now - 86400);
	is_num(parse_ratelimit_reset(buf, now), now - 86400,
	       "exactly a day back: taken as seconds");

	for (i = 0; i < ARRAY_LEN(bad); i++)
		is_num(parse_ratelimit_reset(bad[i], now), -1, "rejects \"%s\"", bad[i]);
	is_num(parse_ratelimit_reset(NULL, now), -1, "rejects NULL");
}

static void test_bucket(void)
{
	struct token_bucket b;
	double w, t;
	int i, taken;

	bucket_init(&b, 2, 3, 100);
	for (i = 0; i < 3; i++)
		is_num(bucket_take(&b, 100), 0, "burst token %d is free", i + 1);
	is_num(bucket_take(&b, 100), 0.5, "empty: wait exactly 1/rate");
	is_num(bucket_take(&b, 100), 0.5, "asking again takes nothing");
	is_num(bucket_take(&b, 100.2), 0.3, "0.2s later: 0.3s to go");
	is_num(bucket_take(&b, 100.5), 0, "after the wait a token is there");
	is_num(bucket_take(&b, 100.5), 0.5, "and it was taken");
	is_num(bucket_take(&b, 101.25), 0, "refill is continuous: 0.75s gives 1.5 tokens");
	is_num(bucket_take(&b, 101.25), 0.25, "half a token left: 0.25s to go");

	/* Cap: a long pause refills to burst, no more. */
	taken = 0;
	while (bucket_take(&b, 1000) == 0 && taken < 100)
		taken++;
	is_int(taken, 3, "after a long pause only burst tokens are available");
	is_num(bucket_take(&b, 1000), 0.5, "then the rate applies again");

	/* Waiting exactly the returned time always suffices (no rounding crumbs). */
	bucket_init(&b, 3, 1, 0);
	t = 0;
	taken = 0;
	for (i = 0; i < 1000; i++) {
		w = bucket_take(&b, t);
		if (w == 0) {
			taken++;
			continue;
		}
		t += w;
		if (bucket_take(&b, t) != 0)
			break;
		taken++;
	}
	is_int(taken, 1000, "1000 takes, each after the returned wait");
	is_num(t, 999.0 / 3, "and they took (n-1)/rate seconds");

	/* Slow rates and fractional bursts. */
	bucket_init(&b, 0.1, 1, 50);
	is_num(bucket_take(&b, 50), 0, "slow bucket: first token");
	is_num(bucket_take(&b, 50), 10, "slow bucket: 10s per token");
	is_num(bucket_take(&b, 54), 6, "slow bucket: 6s after 4s");
	bucket_init(&b, 1, 0.2, 0);
	is_num(b.burst, 1, "burst below 1 is raised to 1");
	is_num(bucket_take(&b, 0), 0, "so one request can pass");

	/* Time going backwards adds nothing. */
	bucket_init(&b, 1, 1, 10);
	is_num(bucket_take(&b, 10), 0, "token at t=10");
	is_num(bucket_take(&b, 5), 1, "earlier time refills nothing");
	is_num(bucket_take(&b, 10.5), 0.5, "and does not move the refill point back");

	/* Unlimited. */
	bucket_init(&b, 0, 1, 0);
	taken = 0;
	for (i = 0; i < 1000; i++)
		if (bucket_take(&b, 0) == 0)
			taken++;
	is_int(taken, 1000, "rate 0: unlimited");
	bucket_init(&b, -5, 1, 0);
	ok(bucket_take(&b, 0) == 0 && bucket_take(&b, 0) == 0, "negative rate: unlimited");
}

/* bucket_wait answers what bucket_take would, and changes nothing. */
static void test_bucket_wait(void)
{
	struct token_bucket b, before;
	double t;
	int i, bad = 0;

	bucket_init(&b, 2, 2, 100);
	is_num(bucket_wait(&b, 100), 0, "full bucket: no wait");
	before = b;
	bucket_wait(&b, 100);
	ok(memcmp(&b, &before, sizeof(b)) == 0, "bucket_wait takes nothing");
	bucket_take(&b, 100);
	bucket_take(&b, 100);
	is_num(bucket_wait(&b, 100), 0.5, "empty: 1/rate to go");
	is_num(bucket_wait(&b, 100.3), 0.2, "0.3s later: 0.2s to go");
	before = b;
	bucket_wait(&b, 150);
	ok(memcmp(&b, &before, sizeof(b)) == 0, "nor refills");
	is_num(bucket_wait(&b, 100.5), 0, "after the wait a token is there");

	/* Over a sequence of takes at uneven times, wait and take agree. */
	bucket_init(&b, 3, 1, 0);
	for (i = 0, t = 0; i < 200; i++, t += (i % 7) * 0.05) {
		double w = bucket_wait(&b, t);
		if (bucket_take(&b, t) != w)
			bad++;
	}
	is_int(bad, 0, "bucket_wait equals bucket_take's answer at every step");

	bucket_init(&b, 0, 1, 0);
	bucket_take(&b, 0);
	is_num(bucket_wait(&b, 0), 0, "unlimited: never waits");
}

/* breaker_blocked says whether breaker_allow would refuse, without changing
 * anything, so a queue can wait without taking a half-open trial. */
static void test_breaker_blocked(void)
{
	struct breaker br, before;
	double in = -1;

	breaker_init(&br, 0, 10, 1);
	ok(!breaker_blocked(&br, 0, &in), "disabled: never blocked");
	breaker_init(&br, 1, 10, 1);
	ok(!breaker_blocked(&br, 0, &in), "closed: not blocked");
	breaker_record(&br, false, 5);
	ok(breaker_blocked(&br, 6, &in), "open: blocked");
	is_num(in, 9, "until the end of the cool-down");
	before = br;
	ok(!breaker_blocked(&br, 15, &in), "cool-down over: not blocked");
	ok(memcmp(&br, &before, sizeof(br)) == 0, "and still open: blocked() moves nothing");
	ok(breaker_allow(&br, 15, &in), "allow agrees: the trial goes");
	ok(breaker_blocked(&br, 15, &in), "half-open with its trial in flight: blocked");
	ok(in > 0 && in <= 0.25, "polled again soon (%g)", in);
	ok(!breaker_allow(&br, 15, NULL), "allow agrees");
	breaker_record(&br, true, 16);
	ok(!breaker_blocked(&br, 16, &in), "closed by the trial: not blocked");
}

static void test_breaker_cycle(void)
{
	struct breaker br;
	double retry_in = -1;
	int changes = 0;

	breaker_init(&br, 3, 10, 2);
	is_int(br.state, BREAKER_CLOSED, "starts closed");
	ok(breaker_allow(&br, 0, &retry_in), "closed allows");

	ok(!breaker_record(&br, false, 1), "failure 1: no change");
	ok(!breaker_record(&br, false, 2), "failure 2: no change");
	ok(!breaker_record(&br, true, 3), "a success: no change");
	is_int(br.consecutive_failures, 0, "success resets the count");
	ok(!breaker_record(&br, false, 4), "failure 1 again");
	ok(!breaker_record(&br, false, 5), "failure 2 again");
	ok(breaker_record(&br, false, 6), "failure 3 opens: reported");
	is_int(br.state, BREAKER_OPEN, "open");
	is_num(br.opened_at, 6, "opened_at is the time of the failure");

	ok(!breaker_allow(&br, 7, &retry_in), "open refuses");
	is_num(retry_in, 9, "retry_in = opened_at + cooldown - now");
	ok(!breaker_allow(&br, 15.5, &retry_in), "open refuses just before the cool-down");
	is_num(retry_in, 0.5, "retry_in 0.5");
	ok(!breaker_record(&br, false, 8), "late failure while open: no change");
	is_num(br.opened_at, 6, "a late failure does not extend the cool-down");
	ok(!breaker_record(&br, true, 8), "late success while open: no change");
	is_int(br.state, BREAKER_OPEN, "still open");

	ok(breaker_allow(&br, 16, &retry_in), "after the cool-down a trial is allowed");
	is_int(br.state, BREAKER_HALF_OPEN, "half-open");
	is_int(br.half_open_inflight, 1, "one trial in flight");
	retry_in = -1;
	ok(!breaker_allow(&br, 16, &retry_in), "a second concurrent trial is refused");
	ok(retry_in > 0, "with a positive retry_in (%g)", retry_in);
	ok(!breaker_record(&br, true, 17), "first success of two: no change");
	is_int(br.state, BREAKER_HALF_OPEN, "still half-open");
	is_int(br.half_open_successes, 1, "one success counted");
	ok(breaker_allow(&br, 17, &retry_in), "next trial allowed once the first ended");
	ok(breaker_record(&br, true, 18), "second success closes: reported");
	is_int(br.state, BREAKER_CLOSED, "closed");
	ok(br.consecutive_failures == 0 && br.half_open_successes == 0 &&
	   br.half_open_inflight == 0, "counts reset on close");

	/* After closing, it takes a full threshold again. */
	changes += breaker_record(&br, false, 20);
	changes += breaker_record(&br, false, 21);
	is_int(changes, 0, "two failures after closing do not open");
	ok(breaker_record(&br, false, 22), "the third does");
}

static void test_breaker_reopen(void)
{
	struct breaker br;
	double retry_in = -1;

	breaker_init(&br, 1, 5, 1);
	ok(breaker_record(&br, false, 100), "threshold 1: one failure opens");
	ok(breaker_allow(&br, 105, &retry_in), "half-open at exactly opened_at + cooldown");
	ok(breaker_record(&br, false, 106), "half-open failure reopens: reported");
	is_int(br.state, BREAKER_OPEN, "open again");
	is_num(br.opened_at, 106, "with a new opened_at");
	ok(!breaker_allow(&br, 108, &retry_in), "refused during the new cool-down");
	is_num(retry_in, 3, "retry_in counts from the new opened_at");
	ok(breaker_allow(&br, 111, &retry_in), "trial after the new cool-down");
	ok(breaker_record(&br, true, 112), "one success closes (successes_to_close 1)");
	is_int(br.state, BREAKER_CLOSED, "closed");

	/* Half-open: failure after one of two successes reopens. */
	breaker_init(&br, 2, 1, 2);
	breaker_record(&br, false, 0);
	breaker_record(&br, false, 0);
	ok(breaker_allow(&br, 1, &retry_in), "half-open trial 1");
	ok(!breaker_record(&br, true, 1), "trial 1 succeeds");
	ok(breaker_allow(&br, 1, &retry_in), "half-open trial 2");
	ok(breaker_record(&br, false, 2), "trial 2 fails: reopens");
	ok(br.state == BREAKER_OPEN && br.half_open_successes == 0,
	   "open, half-open successes forgotten");
	ok(breaker_allow(&br, 3, &retry_in), "half-open again");
	ok(!breaker_record(&br, true, 3), "one success is not enough after reopening");
	ok(breaker_allow(&br, 3, &retry_in), "trial");
	ok(breaker_record(&br, true, 3), "second success closes");

	/* An outcome from before the breaker opened is not a trial result. */
	breaker_init(&br, 1, 1, 2);
	breaker_record(&br, false, 0);
	ok(breaker_allow(&br, 1, &retry_in) && br.state == BREAKER_HALF_OPEN, "half-open");
	ok(!breaker_record(&br, true, 1), "trial succeeds (1 of 2)");
	ok(!breaker_record(&br, true, 1), "a stray success with no trial in flight: no change");
	is_int(br.half_open_successes, 1, "and it is not counted");
	ok(!breaker_record(&br, false, 1), "a stray failure with no trial in flight: no change");
	is_int(br.state, BREAKER_HALF_OPEN, "still half-open");
	ok(breaker_allow(&br, 1, &retry_in), "next trial");
	ok(breaker_record(&br, true, 2), "its success closes");

	/* retry_in may be NULL. */
	breaker_init(&br, 1, 10, 1);
	breaker_record(&br, false, 0);
	ok(!breaker_allow(&br, 1, NULL), "refusal with NULL retry_in");
}

static void test_breaker_once(void)
{
	static const struct {
		bool allow;            /* call allow (true) or record */
		bool success;
		double t;
	} script[] = {
		{ false, false, 0 }, { false, false, 0 },        /* opens */
		{ true, false, 1 }, { true, false, 2 },          /* refused */
		{ false, false, 3 }, { false, true, 3 },         /* stray */
		{ true, false, 10 }, { true, false, 10 },        /* trial + refused */
		{ false, false, 11 },                            /* reopens */
		{ true, false, 21 }, { false, true, 22 },        /* closes */
		{ false, true, 23 }, { false, false, 24 },
		{ false, true, 25 }, { false, false, 26 },
		{ false, false, 27 },                            /* opens */
		{ false, false, 28 }, { false, true, 28 },
	};
	struct breaker br;
	enum breaker_state prev;
	double retry_in;
	int reported = 0, actual = 0, mismatch = 0;
	size_t i;

	breaker_init(&br, 2, 10, 1);
	for (i = 0; i < ARRAY_LEN(script); i++) {
		prev = br.state;
		if (script[i].allow) {
			breaker_allow(&br, script[i].t, &retry_in);
			continue;
		}
		if (breaker_record(&br, script[i].success, script[i].t)) {
			reported++;
			if (br.state == prev)
				mismatch++;
		} else if (br.state != prev) {
			mismatch++;
		}
		if (br.state != prev)
			actual++;
	}
	is_int(mismatch, 0, "breaker_record reports true exactly when the state changed");
	/* closed->open, open->(half-open by allow), half-open->open, ->half-open, ->closed, ->open */
	is_int(reported, 4, "four transitions reported by record (open, reopen, close, open)");
	is_int(actual, reported, "each reported once");
	is_int(br.state, BREAKER_OPEN, "script ends open");
}

static void test_breaker_disabled(void)
{
	struct breaker br;
	double retry_in = -1;
	int i, refused = 0, reported = 0;

	breaker_init(&br, 0, 10, 1);
	for (i = 0; i < 100; i++) {
		if (!breaker_allow(&br, i, &retry_in))
			refused++;
		reported += breaker_record(&br, false, i);
	}
	is_int(refused, 0, "disabled breaker always allows");
	is_int(reported, 0, "and never changes state");
	is_int(br.state, BREAKER_CLOSED, "stays closed");
	breaker_init(&br, -3, 10, 1);
	breaker_record(&br, false, 0);
	ok(breaker_allow(&br, 0, &retry_in), "negative threshold: disabled too");
}

int main(void)
{
	test_default();
	test_should_transport();
	test_should_http();
	test_delay_kinds();
	test_delay_limits();
	test_retry_after();
	test_ratelimit_reset();
	test_bucket();
	test_bucket_wait();
	test_breaker_blocked();
	test_breaker_cycle();
	test_breaker_reopen();
	test_breaker_once();
	test_breaker_disabled();
	is_str(breaker_state_name(BREAKER_CLOSED), "closed", "state name closed");
	is_str(breaker_state_name(BREAKER_OPEN), "open", "state name open");
	is_str(breaker_state_name(BREAKER_HALF_OPEN), "half-open", "state name half-open");
	return done_testing();
}
