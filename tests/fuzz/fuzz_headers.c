/*
 * fuzz_headers: the response headers pipectl interprets: `Link` (pagination,
 * then resolved against the request URL and checked for its host),
 * `Retry-After` and `RateLimit-Reset` / `X-RateLimit-Reset` (policy.c).
 *
 * Input: byte 0 picks the header (mod 3) and the clock (bit 7: now is
 * 2026-11-29, else 1999-12-31, so two-digit RFC 850 years wrap both ways);
 * the rest is the header value (up to a NUL, as libcurl hands it over).
 *
 * Checks: a Link target is the text between a '<' and the next '>' of the
 * value, followed by a parameter named rel (";" rel "=", outside quoted
 * strings, before the next link); a delay is -1 (unparseable) or a finite
 * number >= 0.
 */
#include "fuzz.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http.h"
#include "base/policy.h"
#include "base/util.h"

#define BASE_URL "https://api.example.com/v1/items?page=1"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	http_global_init();
	return 0;
}

/* True when the parameters after '>' at gt (up to the next ',' outside
 * quotes) include one named rel: ";" [ws] "rel" [ws] "=", outside quotes. */
static bool has_rel_param(const char *gt)
{
	const char *q = gt + 1, *n;
	bool in_q = false;

	for (; *q && (in_q || *q != ','); q++) {
		if (*q == '"')
			in_q = !in_q;
		if (in_q || *q != ';')
			continue;
		for (n = q + 1; *n == ' ' || *n == '\t'; n++)
			;
		if (strncasecmp(n, "rel", 3) != 0)
			continue;
		for (n += 3; *n == ' ' || *n == '\t'; n++)
			;
		if (*n == '=')
			return true;
	}
	return false;
}

static void link_case(const char *value)
{
	char *next = http_link_next(value), *url, *host;
	const char *at;
	size_t n;
	bool slice = false, rel = false;

	if (!next)
		return;
	/* The target is a slice <...> of the value, without its brackets,
	 * and that link has a rel parameter. */
	n = strlen(next);
	for (at = strchr(value, '<'); at; at = strchr(at + 1, '<')) {
		if (strncmp(at + 1, next, n) == 0 && at[1 + n] == '>') {
			slice = true;
			rel = rel || has_rel_param(at + 1 + n);
		}
	}
	FUZZ_CHECK(slice, "Link target is not a <...> slice of the value");
	FUZZ_CHECK(rel, "Link target's link has no rel parameter");
	FUZZ_CHECK(strchr(next, '>') == NULL, "Link target holds a '>'");
	url = http_url_resolve(BASE_URL, next);
	if (url) {
		host = http_url_host(url);
		free(host);
	}
	free(url);
	free(next);
}

static void delay_case(double d)
{
	FUZZ_CHECK(d == -1 || (d >= 0 && isfinite(d)), "delay neither -1 nor finite >= 0");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double now;
	char *value;

	if (size < 1)
		return 0;
	now = (data[0] & 0x80) ? 1796000000.0 : 946684799.0;
	value = xstrndup((const char *)data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		link_case(value);
		break;
	case 1:
		delay_case(parse_retry_after(value, now));
		break;
	default:
		delay_case(parse_ratelimit_reset(value, now));
		break;
	}
	free(value);
	return 0;
}
