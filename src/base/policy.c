/*
 * policy: retry decisions, backoff delays, Retry-After / RateLimit-Reset
 * parsing, token bucket and circuit breaker. Pure functions of their
 * arguments (time and randomness come in from the caller); no I/O, no locale.
 */
#include "base/policy.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exponential backoff doubles at most this many times: 2^62 * any sane
 * initial delay is already beyond every cap, and larger exponents would only
 * push the product towards infinity. */
#define POLICY_MAX_DOUBLINGS 62

/* How long a caller refused during a half-open trial is told to wait before
 * asking again (or the cool-down, when that is shorter and positive): the
 * trial's outcome is not known in advance, so this is a polling interval. */
#define BREAKER_TRIAL_POLL 0.25

/*
 * The defaults retry what is transient, as the AWS and Google API clients
 * do: failures to connect, timeouts, dropped connections, 429 and the
 * gateway/unavailable 5xx codes. Other 5xx (500 Internal Server Error, 501)
 * usually repeat the same answer, so they are not retried unless asked for.
 */
void retry_policy_default(struct retry_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->attempts = 3;
	p->backoff = BACKOFF_EXPONENTIAL;
	p->initial = 0.25;
	p->max = 30.0;
	p->jitter = JITTER_FULL;
	p->on = RETRY_ON_CONNECT | RETRY_ON_TIMEOUT | RETRY_ON_NETWORK | RETRY_ON_INVALID_BODY;
	p->codes[0] = 429;
	p->codes[1] = 502;
	p->codes[2] = 503;
	p->codes[3] = 504;
	p->n_codes = 4;
}

/*
 * True when status is one of the exact codes in p->codes (n_codes is clamped
 * to the array, so a bad count cannot read past it).
 */
static bool policy_code_listed(const struct retry_policy *p, long status)
{
	int i, n = p->n_codes;

	if (n > (int)(sizeof(p->codes) / sizeof(p->codes[0])))
		n = (int)(sizeof(p->codes) / sizeof(p->codes[0]));
	for (i = 0; i < n; i++)
		if (p->codes[i] == status)
			return true;
	return false;
}

bool retry_should(const struct retry_policy *p, enum attempt_class c, long status)
{
	switch (c) {
	case ATTEMPT_OK:
	case ATTEMPT_FATAL:
		return false;
	case ATTEMPT_CONNECT:
		return (p->on & RETRY_ON_CONNECT) != 0;
	case ATTEMPT_TIMEOUT:
		return (p->on & RETRY_ON_TIMEOUT) != 0;
	case ATTEMPT_NETWORK:
		return (p->on & RETRY_ON_NETWORK) != 0;
	case ATTEMPT_INVALID_BODY:
		return (p->on & RETRY_ON_INVALID_BODY) != 0;
	case ATTEMPT_HTTP:
		if (status >= 500 && status <= 599 && (p->on & RETRY_ON_5XX))
			return true;
		if (status >= 400 && status <= 499 && (p->on & RETRY_ON_4XX))
			return true;
		return policy_code_listed(p, status);
	case ATTEMPT_PREDICATE:
		return true;
	}
	return false;
}

double retry_delay(const struct retry_policy *p, int next, double rnd)
{
	double initial = p->initial, base;
	int n = next < 2 ? 2 : next;

	/* !(x > 0) also catches NaN. */
	if (!(initial > 0))
		return 0;
	switch (p->backoff) {
	case BACKOFF_LINEAR:
		base = initial * (double)(n - 1);
		break;
	case BACKOFF_EXPONENTIAL:
		base = ldexp(initial, n - 2 > POLICY_MAX_DOUBLINGS ?
		             POLICY_MAX_DOUBLINGS : n - 2);
		break;
	case BACKOFF_CONSTANT:
	default:
		base = initial;
		break;
	}
	if (p->max > 0 && base > p->max)
		base = p->max;
	/* Only reachable without a cap and with an absurd initial: wait "forever"
	 * rather than not at all. */
	if (!isfinite(base))
		base = DBL_MAX;

	if (!(rnd >= 0))
		rnd = 0;
	else if (rnd >= 1)
		rnd = nextafter(1.0, 0.0);
	switch (p->jitter) {
	case JITTER_FULL:
		return rnd * base;
	case JITTER_EQUAL:
		return base / 2 + rnd * base / 2;
	case JITTER_NONE:
	default:
		return base;
	}
}

/* ---- Retry-After / RateLimit-Reset */

static bool policy_is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool policy_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char policy_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Trims surrounding whitespace: *start and *len describe the rest of value.
 */
static void policy_trim(const char *value, const char **start, size_t *len)
{
	const char *s = value, *e;

	while (policy_is_ws(*s))
		s++;
	e = s + strlen(s);
	while (e > s && policy_is_ws(e[-1]))
		e--;
	*start = s;
	*len = (size_t)(e - s);
}

/*
 * Parses s[0..len) as digits with an optional fraction (allow_fraction) into
 * *out. Signs, exponents, hex, "inf"/"nan" and empty parts are rejected.
 */
static bool policy_parse_number(const char *s, size_t len, bool allow_fraction,
                                double *out)
{
	double v = 0, scale = 0.1;
	size_t i = 0;

	if (len == 0 || !policy_is_digit(s[0]))
		return false;
	for (; i < len && policy_is_digit(s[i]); i++)
		v = v * 10 + (s[i] - '0');
	if (i < len && s[i] == '.' && allow_fraction) {
		i++;
		if (i == len)
			return false;
		for (; i < len && policy_is_digit(s[i]); i++) {
			v += (s[i] - '0') * scale;
			scale /= 10;
		}
	}
	if (i != len || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static const char *const policy_months[12] = {
	"jan", "feb", "mar", "apr", "may", "jun",
	"jul", "aug", "sep", "oct", "nov", "dec",
};

static const char *const policy_days_short[7] = {
	"mon", "tue", "wed", "thu", "fri", "sat", "sun",
};

static const char *const policy_days_long[7] = {
	"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
};

/* A cursor over the trimmed date text: every reader advances it or fails. */
struct policy_cursor {
	const char *p;
	const char *end;
};

/* Matches the literal lit (ASCII case-insensitively). */
static bool policy_lit(struct policy_cursor *c, const char *lit)
{
	size_t n = strlen(lit), i;

	if ((size_t)(c->end - c->p) < n)
		return false;
	for (i = 0; i < n; i++)
		if (policy_lower(c->p[i]) != policy_lower(lit[i]))
			return false;
	c->p += n;
	return true;
}

/* Reads exactly n digits. */
static bool policy_digits(struct policy_cursor *c, int n, int *out)
{
	int v = 0, i;

	if (c->end - c->p < n)
		return false;
	for (i = 0; i < n; i++) {
		if (!policy_is_digit(c->p[i]))
			return false;
		v = v * 10 + (c->p[i] - '0');
	}
	c->p += n;
	*out = v;
	return true;
}

/* Reads a month name into 0..11. */
static bool policy_month(struct policy_cursor *c, int *mon)
{
	int i;

	for (i = 0; i < 12; i++)
		if (policy_lit(c, policy_months[i])) {
			*mon = i;
			return true;
		}
	return false;
}

/* Reads one of the day names in table (the names are not prefixes of each
 * other within a table, so the first match is the only one). */
static bool policy_dayname(struct policy_cursor *c, const char *const table[7])
{
	int i;

	for (i = 0; i < 7; i++)
		if (policy_lit(c, table[i]))
			return true;
	return false;
}

/* Reads "HH:MM:SS". */
static bool policy_time(struct policy_cursor *c, struct tm *tm)
{
	return policy_digits(c, 2, &tm->tm_hour) && policy_lit(c, ":") &&
	       policy_digits(c, 2, &tm->tm_min) && policy_lit(c, ":") &&
	       policy_digits(c, 2, &tm->tm_sec);
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
static bool policy_imf_fixdate(struct policy_cursor *c, struct tm *tm)
{
	return policy_dayname(c, policy_days_short) && policy_lit(c, ", ") &&
	       policy_digits(c, 2, &tm->tm_mday) && policy_lit(c, " ") &&
	       policy_month(c, &tm->tm_mon) && policy_lit(c, " ") &&
	       policy_digits(c, 4, &tm->tm_year) && policy_lit(c, " ") &&
	       policy_time(c, tm) && policy_lit(c, " GMT");
}

/* Obsolete RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit year). */
static bool policy_rfc850(struct policy_cursor *c, struct tm *tm)
{
	return policy_dayname(c, policy_days_long) && policy_lit(c, ", ") &&
	       policy_digits(c, 2, &tm->tm_mday) && policy_lit(c, "-") &&
	       policy_month(c, &tm->tm_mon) && policy_lit(c, "-") &&
	       policy_digits(c, 2, &tm->tm_year) && policy_lit(c, " ") &&
	       policy_time(c, tm) && policy_lit(c, " GMT");
}

/* The asctime day: two digits, or a space and one digit. */
static bool policy_asctime_day(struct policy_cursor *c, int *mday)
{
	if (policy_lit(c, " "))
		return policy_digits(c, 1, mday);
	return policy_digits(c, 2, mday);
}

/* asctime: "Sun Nov  6 08:49:37 1994". */
static bool policy_asctime(struct policy_cursor *c, struct tm *tm)
{
	return policy_dayname(c, policy_days_short) && policy_lit(c, " ") &&
	       policy_month(c, &tm->tm_mon) && policy_lit(c, " ") &&
	       policy_asctime_day(c, &tm->tm_mday) && policy_lit(c, " ") &&
	       policy_time(c, tm) && policy_lit(c, " ") &&
	       policy_digits(c, 4, &tm->tm_year);
}

static bool policy_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Range checks on a parsed date (tm_year is the full year here). */
static bool policy_date_valid(const struct tm *tm)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int dim = mdays[tm->tm_mon];

	if (tm->tm_mon == 1 && policy_leap(tm->tm_year))
		dim = 29;
	return tm->tm_mday >= 1 && tm->tm_mday <= dim && tm->tm_hour <= 23 &&
	       tm->tm_min <= 59 && tm->tm_sec <= 60 && tm->tm_year >= 1900;
}

/*
 * Parses an HTTP-date (RFC 9110 §5.6.7) from s[0..len) into seconds since
 * the epoch. A two-digit RFC 850 year is placed in now_wall's century, or
 * the one before when that would be more than 50 years in the future.
 */
static bool policy_http_date(const char *s, size_t len, double now_wall, double *out)
{
	struct policy_cursor c;
	struct tm tm;
	time_t t;
	bool two_digit_year = false, parsed;

	memset(&tm, 0, sizeof(tm));
	c.p = s;
	c.end = s + len;
	parsed = policy_imf_fixdate(&c, &tm) && c.p == c.end;
	if (!parsed) {
		memset(&tm, 0, sizeof(tm));
		c.p = s;
		parsed = policy_rfc850(&c, &tm) && c.p == c.end;
		two_digit_year = parsed;
	}
	if (!parsed) {
		memset(&tm, 0, sizeof(tm));
		c.p = s;
		parsed = policy_asctime(&c, &tm) && c.p == c.end;
	}
	if (!parsed)
		return false;

	if (two_digit_year) {
		time_t now_t = (time_t)now_wall;
		struct tm now_tm;
		int now_year, year;

		if (!gmtime_r(&now_t, &now_tm))
			return false;
		now_year = now_tm.tm_year + 1900;
		year = now_year - now_year % 100 + tm.tm_year;
		if (year > now_year + 50)
			year -= 100;
		tm.tm_year = year;
	}
	if (!policy_date_valid(&tm))
		return false;
	if (tm.tm_sec == 60)
		tm.tm_sec = 59;         /* a leap second: timegm has no slot for it */
	tm.tm_year -= 1900;
	tm.tm_isdst = 0;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*out = (double)t;
	return true;
}

double parse_retry_after(const char *value, double now_wall)
{
	const char *s;
	size_t len;
	double v;

	if (!value)
		return -1;
	policy_trim(value, &s, &len);
	if (len == 0)
		return -1;
	if (policy_is_digit(s[0]))
		return policy_parse_number(s, len, false, &v) ? v : -1;
	if (!policy_http_date(s, len, now_wall, &v))
		return -1;
	return v > now_wall ? v - now_wall : 0;
}

double parse_ratelimit_reset(const char *value, double now_wall)
{
	const char *s;
	size_t len;
	double v;

	if (!value)
		return -1;
	policy_trim(value, &s, &len);
	if (!policy_parse_number(s, len, true, &v))
		return -1;
	if (v > now_wall - 86400)
		return v > now_wall ? v - now_wall : 0;
	return v;
}

/* ---- token bucket */

/* The tokens b would hold at now (refilled, capped at the burst). */
static double bucket_level(const struct token_bucket *b, double now)
{
	double t = b->tokens;

	if (now > b->last) {
		t += (now - b->last) * b->rate;
		if (t > b->burst)
			t = b->burst;
	}
	return t;
}

void bucket_init(struct token_bucket *b, double rate, double burst, double now)
{
	b->rate = rate;
	b->burst = burst >= 1 ? burst : 1;
	b->tokens = b->burst;
	b->last = now;
}

double bucket_take(struct token_bucket *b, double now)
{
	if (!(b->rate > 0))
		return 0;
	/* Time never runs backwards for the bucket: an earlier `now` adds nothing. */
	if (now > b->last) {
		b->tokens = bucket_level(b, now);
		b->last = now;
	}
	/* The tolerance absorbs rounding when a caller waits exactly the time
	 * this function returned; without it the wait could come back as 1e-17. */
	if (b->tokens >= 1 - 1e-9) {
		b->tokens -= 1;
		if (b->tokens < 0)
			b->tokens = 0;
		return 0;
	}
	return (1 - b->tokens) / b->rate;
}

double bucket_wait(const struct token_bucket *b, double now)
{
	double t;

	if (!(b->rate > 0))
		return 0;
	t = bucket_level(b, now);
	/* the same tolerance as bucket_take */
	if (t >= 1 - 1e-9)
		return 0;
	return (1 - t) / b->rate;
}

/* ---- circuit breaker */

void breaker_init(struct breaker *br, int failures_to_open, double cooldown,
                  int successes_to_close)
{
	memset(br, 0, sizeof(*br));
	br->failures_to_open = failures_to_open > 0 ? failures_to_open : 0;
	br->cooldown = cooldown > 0 ? cooldown : 0;
	br->successes_to_close = successes_to_close > 0 ? successes_to_close : 1;
	br->state = BREAKER_CLOSED;
}

/* Opens (or reopens) the breaker at now, forgetting any half-open trial. */
static void breaker_open(struct breaker *br, double now)
{
	br->state = BREAKER_OPEN;
	br->opened_at = now;
	br->consecutive_failures = 0;
	br->half_open_successes = 0;
	br->half_open_inflight = 0;
}

/* How long a refused caller waits before asking again during a half-open
 * trial. */
static double breaker_trial_poll(const struct breaker *br)
{
	return br->cooldown > 0 && br->cooldown < BREAKER_TRIAL_POLL ?
	       br->cooldown : BREAKER_TRIAL_POLL;
}

/*
 * Half-open lets one trial through at a time. The open -> half-open move
 * happens here (it is not reported by breaker_record; callers that log it
 * compare br->state before and after).
 */
bool breaker_allow(struct breaker *br, double now, double *retry_in)
{
	double wait;

	if (br->failures_to_open <= 0)
		return true;
	switch (br->state) {
	case BREAKER_CLOSED:
		return true;
	case BREAKER_OPEN:
		wait = br->opened_at + br->cooldown - now;
		if (wait > 0) {
			if (retry_in)
				*retry_in = wait;
			return false;
		}
		br->state = BREAKER_HALF_OPEN;
		br->half_open_successes = 0;
		br->half_open_inflight = 0;
		break;
	case BREAKER_HALF_OPEN:
		break;
	}
	if (br->half_open_inflight > 0) {
		if (retry_in)
			*retry_in = breaker_trial_poll(br);
		return false;
	}
	br->half_open_inflight++;
	return true;
}

bool breaker_blocked(const struct breaker *br, double now, double *retry_in)
{
	double wait;

	if (br->failures_to_open <= 0)
		return false;
	switch (br->state) {
	case BREAKER_CLOSED:
		return false;
	case BREAKER_OPEN:
		wait = br->opened_at + br->cooldown - now;
		if (wait > 0) {
			if (retry_in)
				*retry_in = wait;
			return true;
		}
		return false;          /* breaker_allow would half-open it */
	case BREAKER_HALF_OPEN:
		if (br->half_open_inflight > 0) {
			if (retry_in)
				*retry_in = breaker_trial_poll(br);
			return true;
		}
		return false;
	}
	return false;
}

/*
 * Outcomes that arrive while the breaker is open, or half-open with no trial
 * in flight, belong to requests admitted before it opened: they change
 * nothing (a late failure must not extend the cool-down, a late success must
 * not count as a trial).
 */
bool breaker_record(struct breaker *br, bool success, double now)
{
	if (br->failures_to_open <= 0)
		return false;
	switch (br->state) {
	case BREAKER_CLOSED:
		if (success) {
			br->consecutive_failures = 0;
			return false;
		}
		if (++br->consecutive_failures < br->failures_to_open)
			return false;
		breaker_open(br, now);
		return true;
	case BREAKER_OPEN:
		return false;
	case BREAKER_HALF_OPEN:
		if (br->half_open_inflight <= 0)
			return false;
		br->half_open_inflight--;
		if (!success) {
			breaker_open(br, now);
			return true;
		}
		if (++br->half_open_successes < br->successes_to_close)
			return false;
		br->state = BREAKER_CLOSED;
		br->consecutive_failures = 0;
		br->half_open_successes = 0;
		br->half_open_inflight = 0;
		return true;
	}
	return false;
}

const char *breaker_state_name(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED:
		return "closed";
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half-open";
	}
	return "unknown";
}
