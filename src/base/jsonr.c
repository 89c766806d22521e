/*
 * jsonr: JSON text to jansson values without jansson's lexer, which reads
 * through a stream one byte at a time and costs most of a JSON-lines
 * import. Values are built with the same jansson calls the parser uses, so
 * the result is the same; anything unusual returns NULL for jansson.
 */
#include "base/jsonr.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Nesting deeper than this goes to jansson (its limit is 2048). */
#define JSONR_MAX_DEPTH 64

/* Numbers longer than this go to jansson. */
#define JSONR_MAX_NUMBER 64

struct jsonr {
	const char *p, *end;
	struct buf s;                  /* a string being unescaped */
};

static void jsonr_ws(struct jsonr *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' ||
	                         *r->p == '\r'))
		r->p++;
}

static int jsonr_hex4(const char *p)
{
	int v = 0, i;

	for (i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Appends code point cp as UTF-8. */
static void jsonr_utf8(struct buf *b, uint32_t cp)
{
	char u[4];

	if (cp < 0x80) {
		u[0] = (char)cp;
		buf_add(b, u, 1);
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		buf_add(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		buf_add(b, u, 3);
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		buf_add(b, u, 4);
	}
}

/* Length of the valid UTF-8 sequence (not ASCII) at p, or 0. */
size_t jsonr_utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t len, k;
	uint32_t cp;

	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		len = 2;
		cp = p[0] & 0x1F;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		len = 3;
		cp = p[0] & 0x0F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < len)
		return 0;
	for (k = 1; k < len; k++) {
		if ((p[k] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[k] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/*
 * Reads a string (r->p at its opening quote). Returns 0 with *s, *n: the
 * text in the input itself when it has no escapes, else in r->s. -1 when
 * jansson must decide.
 */
static int jsonr_string(struct jsonr *r, const char **s, size_t *n)
{
	const unsigned char *p = (const unsigned char *)r->p + 1;
	const unsigned char *end = (const unsigned char *)r->end, *start = p;
	bool esc = false;
	size_t k;

	buf_reset(&r->s);
	while (p < end) {
		unsigned char c = *p;
		if (c == '"') {
			if (esc) {
				buf_add(&r->s, start, (size_t)(p - start));
				*s = r->s.data ? r->s.data : "";
				*n = r->s.len;
			} else {
				*s = (const char *)start;
				*n = (size_t)(p - start);
			}
			r->p = (const char *)p + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c >= 0x80) {
			if (!(k = jsonr_utf8_len(p, end)))
				return -1;
			p += k;
			continue;
		}
		if (c != '\\') {
			p++;
			continue;
		}
		/* An escape: the text so far goes to the buffer. */
		buf_add(&r->s, start, (size_t)(p - start));
		esc = true;
		if (end - p < 2)
			return -1;
		switch (p[1]) {
		case '"': buf_addc(&r->s, '"'); p += 2; break;
		case '\\': buf_addc(&r->s, '\\'); p += 2; break;
		case '/': buf_addc(&r->s, '/'); p += 2; break;
		case 'b': buf_addc(&r->s, '\b'); p += 2; break;
		case 'f': buf_addc(&r->s, '\f'); p += 2; break;
		case 'n': buf_addc(&r->s, '\n'); p += 2; break;
		case 'r': buf_addc(&r->s, '\r'); p += 2; break;
		case 't': buf_addc(&r->s, '\t'); p += 2; break;
		case 'u': {
			int hi, lo;
			if (end - p < 6 || (hi = jsonr_hex4((const char *)p + 2)) < 0)
				return -1;
			p += 6;
			if (hi >= 0xDC00 && hi <= 0xDFFF)
				return -1;
			if (hi >= 0xD800 && hi <= 0xDBFF) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    (lo = jsonr_hex4((const char *)p + 2)) < 0 ||
				    lo < 0xDC00 || lo > 0xDFFF)
					return -1;
				p += 6;
				jsonr_utf8(&r->s, 0x10000 + (((uint32_t)hi - 0xD800) << 10) +
				                  ((uint32_t)lo - 0xDC00));
			} else {
				jsonr_utf8(&r->s, (uint32_t)hi);
			}
			break;
		}
		default:
			return -1;
		}
		start = p;
	}
	return -1;
}

/* Reads a number as jansson's lexer does: an integer (strtoll) unless it
 * has a fraction or exponent (strtod). NULL when jansson must decide. */
static json_t *jsonr_number(struct jsonr *r)
{
	const char *p = r->p, *end = r->end, *q;
	char text[JSONR_MAX_NUMBER + 1], *e;
	bool real = false;
	size_t n;

	q = p;
	if (q < end && *q == '-')
		q++;
	if (q >= end)
		return NULL;
	if (*q == '0') {
		q++;
	} else if (*q >= '1' && *q <= '9') {
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	} else {
		return NULL;
	}
	if (q < end && *q == '.') {
		real = true;
		q++;
		if (q >= end || *q < '0' || *q > '9')
			return NULL;
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		real = true;
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q >= end || *q < '0' || *q > '9')
			return NULL;
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	/* A number runs into a letter or digit: jansson's token differs. */
	if (q < end && ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
	                (*q >= 'A' && *q <= 'Z') || *q == '.' || *q == '+' || *q == '-'))
		return NULL;
	n = (size_t)(q - p);
	if (n > JSONR_MAX_NUMBER)
		return NULL;
	memcpy(text, p, n);
	text[n] = '\0';
	errno = 0;
	r->p = q;
	if (!real) {
		long long v = strtoll(text, &e, 10);
		if (errno == ERANGE || *e)
			return NULL;
		return json_integer((json_int_t)v);
	} else {
		double d = strtod(text, &e);
		if (*e || ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE))
			return NULL;
		return json_real(d);
	}
}

static json_t *jsonr_value(struct jsonr *r, int depth)
{
	const char *s;
	json_t *v, *item;
	size_t n;

	if (r->p >= r->end)
		return NULL;
	switch (*r->p) {
	case '{':
		if (depth >= JSONR_MAX_DEPTH)
			return NULL;
		v = json_object();
		r->p++;
		jsonr_ws(r);
		if (r->p < r->end && *r->p == '}') {
			r->p++;
			return v;
		}
		for (;;) {
			/* The key's text may be in r->s, which the value reuses. */
			char kbuf[64], *key;
			if (r->p >= r->end || *r->p != '"' || jsonr_string(r, &s, &n) != 0 ||
			    memchr(s, '\0', n))
				goto fail;
			key = n < sizeof(kbuf) ? kbuf : xmalloc(n + 1);
			memcpy(key, s, n);
			jsonr_ws(r);
			if (r->p < r->end && *r->p == ':') {
				r->p++;
				jsonr_ws(r);
				item = jsonr_value(r, depth + 1);
			} else {
				item = NULL;
			}
			if (item)
				json_object_setn_new_nocheck(v, key, n, item);
			if (key != kbuf)
				free(key);
			if (!item)
				goto fail;
			jsonr_ws(r);
			if (r->p < r->end && *r->p == ',') {
				r->p++;
				jsonr_ws(r);
				continue;
			}
			if (r->p < r->end && *r->p == '}') {
				r->p++;
				return v;
			}
			goto fail;
		}
	case '[':
		if (depth >= JSONR_MAX_DEPTH)
			return NULL;
		v = json_array();
		r->p++;
		jsonr_ws(r);
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			return v;
		}
		for (;;) {
			item = jsonr_value(r, depth + 1);
			if (!item)
				goto fail;
			json_array_append_new(v, item);
			jsonr_ws(r);
			if (r->p < r->end && *r->p == ',') {
				r->p++;
				jsonr_ws(r);
				continue;
			}
			if (r->p < r->end && *r->p == ']') {
				r->p++;
				return v;
			}
			goto fail;
		}
	case '"':
		if (jsonr_string(r, &s, &n) != 0)
			return NULL;
		return json_stringn_nocheck(s, n);
	case 't':
		if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
			r->p += 4;
			return json_true();
		}
		return NULL;
	case 'f':
		if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
			r->p += 5;
			return json_false();
		}
		return NULL;
	case 'n':
		if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
			r->p += 4;
			return json_null();
		}
		return NULL;
	default:
		return jsonr_number(r);
	}
fail:
	json_decref(v);
	return NULL;
}

/* One JSON value in text[0, len), or NULL for jansson to decide. */
json_t *jsonr_parse(const char *text, size_t len)
{
	struct jsonr r;
	json_t *v;

	r.p = text;
	r.end = text + len;
	buf_init(&r.s);
	jsonr_ws(&r);
	v = jsonr_value(&r, 0);
	if (v) {
		jsonr_ws(&r);
		/* A literal or number runs into what follows ("truex", "1x"):
		 * jansson reads another token; so does anything after the value. */
		if (r.p != r.end) {
			json_decref(v);
			v = NULL;
		}
	}
	buf_free(&r.s);
	return v;
}
