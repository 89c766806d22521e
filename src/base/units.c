/*
 * units: the text forms of durations, sizes and rates a pipeline file and
 * the command line accept. Pure functions of their argument.
 */
#include "base/units.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static const char *digits(const char *p)
{
	while (*p >= '0' && *p <= '9')
		p++;
	return p;
}

/* Scans a number [0-9]+(\.[0-9]+)? at s; returns its end, or NULL. */
static const char *scan_number(const char *s, bool *frac)
{
	const char *e = digits(s);

	*frac = false;
	if (e == s)
		return NULL;
	if (*e == '.') {
		const char *f = digits(e + 1);
		if (f == e + 1)
			return NULL;
		*frac = true;
		e = f;
	}
	return e;
}

/* Syntax of a duration; returns 0 and the value (maybe 0), or -1. */
int units_duration(const char *s, double *out)
{
	static const struct {
		const char *unit;
		double mult;
	} units[] = { { "ms", 0.001 }, { "s", 1 }, { "m", 60 }, { "h", 3600 } };
	bool frac;
	const char *e;
	char *end;
	double v;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	v = strtod(s, &end);
	if (end != e)
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		if (strcmp(e, units[i].unit) == 0) {
			v *= units[i].mult;
			if (!isfinite(v))
				return -1;
			*out = v;
			return 0;
		}
	}
	return -1;
}

int parse_duration(const char *s, double *seconds)
{
	double v;

	if (units_duration(s, &v) != 0 || !(v > 0))
		return -1;
	*seconds = v;
	return 0;
}

/* Syntax of a size; returns 0 and the value (maybe 0), or -1. */
int units_size(const char *s, long long *out)
{
	static const struct {
		const char *unit;
		unsigned long long mult;
	} units[] = {
		{ "", 1 }, { "B", 1 }, { "kB", 1000ULL }, { "MB", 1000000ULL },
		{ "GB", 1000000000ULL }, { "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 },
		{ "GiB", 1ULL << 30 },
	};
	bool frac;
	const char *e;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		unsigned long long m = units[i].mult, x;
		char *end;
		if (strcmp(e, units[i].unit) != 0)
			continue;
		if (frac) {
			/* 1.5KiB is 1536 bytes; 1.1KiB is not a whole number: rejected */
			double v = strtod(s, &end) * (double)m;
			if (end != e || !(v < 9.2e18) || v != floor(v))
				return -1;
			*out = (long long)v;
			return 0;
		}
		errno = 0;
		x = strtoull(s, &end, 10);
		if (errno || end != e || x > (unsigned long long)LLONG_MAX / m)
			return -1;
		*out = (long long)(x * m);
		return 0;
	}
	return -1;
}

int parse_size(const char *s, long long *bytes)
{
	long long v;

	if (units_size(s, &v) != 0 || v <= 0)
		return -1;
	*bytes = v;
	return 0;
}

/* Syntax of a rate; returns 0 and the value per second (maybe 0), or -1. */
int units_rate(const char *s, double *out)
{
	static const struct {
		const char *unit;
		double per;
	} units[] = { { "/s", 1 }, { "/m", 60 }, { "/h", 3600 } };
	bool frac;
	const char *e;
	char *end;
	double v;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	v = strtod(s, &end);
	if (end != e || !isfinite(v))
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		if (strcmp(e, units[i].unit) == 0) {
			*out = v / units[i].per;
			return 0;
		}
	}
	return -1;
}

int parse_rate(const char *s, double *per_second)
{
	double v;

	if (units_rate(s, &v) != 0 || !(v > 0))
		return -1;
	*per_second = v;
	return 0;
}

