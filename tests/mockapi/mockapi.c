/*
 * mockapi: the HTTP/1.1 test server of pipectl's test suite and benchmarks.
 * One thread on libev, non-blocking sockets, keep-alive and pipelining (each
 * connection answers its requests strictly in order), one JSON log line per
 * request. Routes are listed in tests/mockapi/README.md and in route() below.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <ev.h>

#if defined(__GNUC__)
#define MOCK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MOCK_PRINTF(f, a)
#endif

/* Limits. A request head beyond MOCK_MAX_HEAD gets 431, a body beyond
 * MOCK_MAX_BODY gets 413; both close the connection. */
#define MOCK_MAX_HEAD     (64 * 1024)
#define MOCK_MAX_BODY     (64 * 1024 * 1024)
#define MOCK_OUT_HIGH     (4 * 1024 * 1024)  /* stop taking requests above this */
#define MOCK_READ_SIZE    (64 * 1024)        /* one read() */
#define MOCK_READ_BUDGET  (1024 * 1024)      /* bytes read per callback */
#define MOCK_SHRINK       (256 * 1024)       /* free idle buffers above this */
#define MOCK_LINGER       2.0                /* seconds to drain before close */
#define MOCK_MAX_DELAY_MS 600000.0
#define MOCK_MAX_RECORDS  1000000LL
#define MOCK_MAX_BIG_KB   (256LL * 1024)
#define MOCK_BIG_INT      "9007199254740993" /* 2^53 + 1: not a double */
#define MOCK_NEWS_SLOW    1.5                /* seconds: the "slow" news key */
#define MOCK_NEWS_APIS    3                  /* entries in news_apis[] */

/* ------------------------------------------------------------ allocation */

static void mock_oom(void)
{
	fputs("mockapi: out of memory\n", stderr);
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		mock_oom();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		mock_oom();
	return q;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		mock_oom();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer; data is NUL-terminated whenever it is non-NULL. */
struct buf {
	char *data;
	size_t len, cap;
};

static void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Makes room for extra more bytes plus the terminating NUL. */
static void buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;

	if (extra > SIZE_MAX - b->len - 1)
		mock_oom();
	need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_fill(struct buf *b, char c, size_t n)
{
	buf_reserve(b, n);
	memset(b->data + b->len, c, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void MOCK_PRINTF(2, 3) buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	unsigned long cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Appends p[0..n) escaped for the inside of a JSON string. Bytes that are
 * not valid UTF-8 become U+FFFD so the output is always valid JSON. */
static void buf_json_esc(struct buf *b, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0, run;

	while (i < n) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
			i++;
		} else if (c == '\n') {
			buf_adds(b, "\\n");
			i++;
		} else if (c == '\r') {
			buf_adds(b, "\\r");
			i++;
		} else if (c == '\t') {
			buf_adds(b, "\\t");
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			/* copy a run of plain ASCII at once */
			run = i;
			while (run < n && s[run] >= 0x20 && s[run] < 0x7f &&
			       s[run] != '"' && s[run] != '\\')
				run++;
			buf_add(b, p + i, run - i);
			i = run;
		} else {
			run = utf8_len(s + i, n - i);
			if (run == 0) {
				buf_adds(b, "\\ufffd");
				i++;
			} else {
				buf_add(b, p + i, run);
				i += run;
			}
		}
	}
}

/* Appends p[0..n) as a quoted JSON string. */
static void buf_json_strn(struct buf *b, const char *p, size_t n)
{
	buf_addc(b, '"');
	buf_json_esc(b, p, n);
	buf_addc(b, '"');
}

static void buf_json_str(struct buf *b, const char *s)
{
	buf_json_strn(b, s, strlen(s));
}

/* ------------------------------------------------------------ counters */

/* A string -> count hash table (per-path request counts, /seq counters). */
struct ctab_entry {
	struct ctab_entry *next;
	long long count;
	char key[];
};

struct ctab {
	struct ctab_entry **slots;
	size_t n_slots, n;
};

static size_t ctab_hash(const char *s)
{
	size_t h = 14695981039346656037ULL & SIZE_MAX;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * (1099511628211ULL & SIZE_MAX);
	return h;
}

static void ctab_grow(struct ctab *t)
{
	size_t n = t->n_slots ? t->n_slots * 2 : 64, i;
	struct ctab_entry **slots = xcalloc(n, sizeof(*slots));

	for (i = 0; i < t->n_slots; i++) {
		struct ctab_entry *e = t->slots[i], *next;

		for (; e != NULL; e = next) {
			size_t h = ctab_hash(e->key) % n;

			next = e->next;
			e->next = slots[h];
			slots[h] = e;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->n_slots = n;
}

/* Returns the count for key before this call and adds one to it. */
static long long ctab_bump(struct ctab *t, const char *key)
{
	struct ctab_entry *e;
	size_t h, len;

	if (t->n >= t->n_slots)
		ctab_grow(t);
	h = ctab_hash(key) % t->n_slots;
	for (e = t->slots[h]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0)
			return e->count++;
	}
	len = strlen(key);
	e = xmalloc(sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->count = 1;
	e->next = t->slots[h];
	t->slots[h] = e;
	t->n++;
	return 0;
}

static void ctab_free(struct ctab *t)
{
	size_t i;

	for (i = 0; i < t->n_slots; i++) {
		struct ctab_entry *e = t->slots[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->slots);
	t->slots = NULL;
	t->n_slots = t->n = 0;
}

/* ------------------------------------------------------------ requests */

struct header {
	char *name;                 /* lowercased */
	char *value;                /* trimmed; repeated headers joined by ", " */
};

struct param {
	char *name;                 /* percent-decoded, '+' as space */
	char *value;
};

enum chunk_state { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER, CK_DONE };

/* One parsed request. Owns every string in it. */
struct request {
	char *method;
	char *path;                 /* as sent, without the query */
	char *query;                /* as sent after '?', "" when none */
	char *dpath;                /* path percent-decoded, for routing */
	int minor;                  /* HTTP/1.minor */
	bool keep_alive;
	bool expect_continue;
	struct header *headers;
	size_t n_headers;
	struct param *params;
	size_t n_params;
	size_t head_len;            /* bytes of the head, blank line included */
	bool chunked;
	size_t content_length;
	struct buf body;
	size_t body_pos;            /* chunked: input bytes after the head consumed */
	enum chunk_state ck_state;
	size_t ck_left;
};

static void request_free(struct request *rq)
{
	size_t i;

	if (rq == NULL)
		return;
	free(rq->method);
	free(rq->path);
	free(rq->query);
	free(rq->dpath);
	for (i = 0; i < rq->n_headers; i++) {
		free(rq->headers[i].name);
		free(rq->headers[i].value);
	}
	free(rq->headers);
	for (i = 0; i < rq->n_params; i++) {
		free(rq->params[i].name);
		free(rq->params[i].value);
	}
	free(rq->params);
	buf_free(&rq->body);
	free(rq);
}

/* Case-insensitive header lookup; NULL when absent. */
static const char *request_header(const struct request *rq, const char *name)
{
	size_t i;

	for (i = 0; i < rq->n_headers; i++) {
		if (strcasecmp(rq->headers[i].name, name) == 0)
			return rq->headers[i].value;
	}
	return NULL;
}

/* First value of query parameter name; NULL when absent. */
static const char *request_param(const struct request *rq, const char *name)
{
	size_t i;

	for (i = 0; i < rq->n_params; i++) {
		if (strcmp(rq->params[i].name, name) == 0)
			return rq->params[i].value;
	}
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into a new string (caller frees); plus_space turns
 * '+' into ' ' (query strings). A malformed escape is kept as it is. *len
 * gets the decoded length, which may include NUL bytes. */
static char *pct_decode(const char *s, size_t n, bool plus_space, size_t *len)
{
	char *out = xmalloc(n + 1);
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n &&
		    hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			out[o++] = (char)(hexval((unsigned char)s[i + 1]) * 16 +
			                  hexval((unsigned char)s[i + 2]));
			i += 2;
		} else if (plus_space && s[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	if (len != NULL)
		*len = o;
	return out;
}

/* Splits rq->query into rq->params ("a=1&b&c=%20"). */
static void request_parse_query(struct request *rq)
{
	const char *p = rq->query;
	size_t cap = 0;

	while (*p) {
		const char *end = strchr(p, '&');
		const char *eq;
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n > 0) {
			struct param *pm;

			if (rq->n_params == cap) {
				cap = cap ? cap * 2 : 8;
				rq->params = xrealloc(rq->params, cap * sizeof(*rq->params));
			}
			pm = &rq->params[rq->n_params++];
			eq = memchr(p, '=', n);
			if (eq != NULL) {
				pm->name = pct_decode(p, (size_t)(eq - p), true, NULL);
				pm->value = pct_decode(eq + 1, n - (size_t)(eq - p) - 1,
				                       true, NULL);
			} else {
				pm->name = pct_decode(p, n, true, NULL);
				pm->value = xstrndup("", 0);
			}
		}
		p += n;
		if (*p == '&')
			p++;
	}
}

static bool is_tchar(int c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Adds a header, joining a repeated name's values with ", ". */
static void request_add_header(struct request *rq, size_t *cap,
                               const char *name, size_t nlen,
                               const char *value, size_t vlen)
{
	size_t i;
	struct header *h;

	for (i = 0; i < rq->n_headers; i++) {
		h = &rq->headers[i];
		if (strlen(h->name) == nlen && strncasecmp(h->name, name, nlen) == 0) {
			size_t old = strlen(h->value);

			h->value = xrealloc(h->value, old + 2 + vlen + 1);
			memcpy(h->value + old, ", ", 2);
			memcpy(h->value + old + 2, value, vlen);
			h->value[old + 2 + vlen] = '\0';
			return;
		}
	}
	if (rq->n_headers == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		rq->headers = xrealloc(rq->headers, *cap * sizeof(*rq->headers));
	}
	h = &rq->headers[rq->n_headers++];
	h->name = xstrndup(name, nlen);
	for (i = 0; i < nlen; i++)
		h->name[i] = (char)tolower((unsigned char)h->name[i]);
	h->value = xstrndup(value, vlen);
}

/* True if the comma-separated list value holds token (case-insensitive). */
static bool list_has(const char *value, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = value;

	while (*p) {
		const char *end;
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end && *end != ',')
			end++;
		n = (size_t)(end - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tlen && strncasecmp(p, token, n) == 0)
			return true;
		p = end;
	}
	return false;
}

/* Parses a request target into path, query, dpath. Returns false if bad. */
static bool request_parse_target(struct request *rq, const char *t, size_t n)
{
	const char *q, *end = t + n;
	size_t dlen;

	if (n >= 7 && (strncasecmp(t, "http://", 7) == 0 ||
	               (n >= 8 && strncasecmp(t, "https://", 8) == 0))) {
		/* absolute-form: drop scheme and authority */
		const char *p = memchr(t, ':', n) + 3;

		while (p < end && *p != '/' && *p != '?')
			p++;
		if (p == end || *p == '?') {
			/* no path: "/" (plus any query) */
			rq->path = xstrndup("/", 1);
			rq->query = p == end ? xstrndup("", 0)
			                     : xstrndup(p + 1, (size_t)(end - p - 1));
			goto decode;
		}
		n = (size_t)(end - p);
		t = p;
	} else if (!(n == 1 && t[0] == '*') && t[0] != '/') {
		return false;
	}
	q = memchr(t, '?', n);
	if (q != NULL) {
		rq->path = xstrndup(t, (size_t)(q - t));
		rq->query = xstrndup(q + 1, (size_t)(end - q - 1));
	} else {
		rq->path = xstrndup(t, n);
		rq->query = xstrndup("", 0);
	}
decode:
	rq->dpath = pct_decode(rq->path, strlen(rq->path), false, &dlen);
	if (strlen(rq->dpath) != dlen)
		return false;   /* %00 in the path */
	request_parse_query(rq);
	return true;
}

/* Parses a complete head p[0..len) (blank line included). Returns the request
 * (caller frees). On an error *status is set to the status to answer and the
 * result is NULL or, when the method was read, a partial request with
 * head_len == 0 that is only good for the log line. */
static struct request *request_parse_head(const char *p, size_t len, int *status)
{
	struct request *rq = xcalloc(1, sizeof(*rq));
	const char *end = p + len, *line = p, *nl, *sp1, *sp2, *v;
	size_t llen, cap = 0;
	const char *te, *cl, *conn, *expect;

	*status = 400;
	rq->head_len = len;

	/* request line: METHOD SP target SP HTTP/1.x */
	nl = memchr(line, '\n', (size_t)(end - line));
	llen = (size_t)(nl - line);
	if (llen > 0 && line[llen - 1] == '\r')
		llen--;
	sp1 = memchr(line, ' ', llen);
	if (sp1 == NULL || sp1 == line)
		goto fail;
	for (v = line; v < sp1; v++) {
		if (!is_tchar((unsigned char)*v))
			goto fail;
	}
	rq->method = xstrndup(line, (size_t)(sp1 - line));
	sp2 = memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - line));
	if (sp2 == NULL || sp2 == sp1 + 1)
		goto fail;
	for (v = sp1 + 1; v < sp2; v++) {
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			goto fail;
	}
	v = sp2 + 1;
	if ((size_t)(line + llen - v) != 8 || memcmp(v, "HTTP/", 5) != 0 ||
	    !isdigit((unsigned char)v[5]) || v[6] != '.' ||
	    !isdigit((unsigned char)v[7]))
		goto fail;
	if (v[5] != '1') {
		*status = 505;
		goto fail;
	}
	rq->minor = v[7] - '0';
	if (!request_parse_target(rq, sp1 + 1, (size_t)(sp2 - sp1 - 1)))
		goto fail;

	/* header lines up to the blank line */
	for (line = nl + 1; line < end; line = nl + 1) {
		const char *colon, *vs, *ve;

		nl = memchr(line, '\n', (size_t)(end - line));
		llen = (size_t)(nl - line);
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t')
			goto fail;   /* obsolete line folding */
		colon = memchr(line, ':', llen);
		if (colon == NULL || colon == line)
			goto fail;
		for (v = line; v < colon; v++) {
			if (!is_tchar((unsigned char)*v))
				goto fail;
		}
		vs = colon + 1;
		ve = line + llen;
		while (vs < ve && (*vs == ' ' || *vs == '\t'))
			vs++;
		while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (v = vs; v < ve; v++) {
			if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f)
				goto fail;
		}
		request_add_header(rq, &cap, line, (size_t)(colon - line),
		                   vs, (size_t)(ve - vs));
	}

	/* connection semantics */
	rq->keep_alive = rq->minor >= 1;
	conn = request_header(rq, "connection");
	if (conn != NULL && list_has(conn, "close"))
		rq->keep_alive = false;
	else if (conn != NULL && list_has(conn, "keep-alive"))
		rq->keep_alive = true;
	expect = request_header(rq, "expect");
	rq->expect_continue = rq->minor >= 1 && expect != NULL &&
	                      strcasecmp(expect, "100-continue") == 0;

	/* body framing */
	te = request_header(rq, "transfer-encoding");
	cl = request_header(rq, "content-length");
	if (te != NULL) {
		if (cl != NULL)
			goto fail;   /* ambiguous framing */
		if (strcasecmp(te, "chunked") != 0) {
			*status = 501;
			goto fail;
		}
		rq->chunked = true;
	} else if (cl != NULL) {
		unsigned long long n = 0;

		if (*cl == '\0')
			goto fail;
		for (v = cl; *v; v++) {
			if (!isdigit((unsigned char)*v))
				goto fail;
			n = n * 10 + (unsigned)(*v - '0');
			if (n > MOCK_MAX_BODY) {
				*status = 413;
				goto fail;
			}
		}
		rq->content_length = (size_t)n;
	}
	return rq;

fail:
	/* keep what was parsed so the log line can show it */
	if (rq->method == NULL) {
		request_free(rq);
		return NULL;
	}
	rq->head_len = 0;
	return rq;
}

/* Decodes more of a chunked body from p[0..len) (the input after the head),
 * resuming at rq->body_pos. Returns 1 when the body is complete, 0 when more
 * input is needed, -1 on a syntax error and -2 when the body is too large. */
static int request_chunked(struct request *rq, const char *p, size_t len)
{
	while (rq->ck_state != CK_DONE) {
		const char *cur = p + rq->body_pos, *nl;
		size_t avail = len - rq->body_pos, n, i;

		switch (rq->ck_state) {
		case CK_SIZE: {
			unsigned long long size = 0;

			nl = memchr(cur, '\n', avail);
			if (nl == NULL)
				return avail > 1024 ? -1 : 0;
			for (i = 0; cur + i < nl && hexval((unsigned char)cur[i]) >= 0; i++) {
				size = size * 16 + (unsigned)hexval((unsigned char)cur[i]);
				if (size > MOCK_MAX_BODY)
					return -2;
			}
			if (i == 0)
				return -1;
			/* the rest may be whitespace, an extension or a CR */
			if (cur + i < nl && cur[i] != ';' && cur[i] != ' ' &&
			    cur[i] != '\t' && cur[i] != '\r')
				return -1;
			rq->body_pos += (size_t)(nl - cur) + 1;
			if (size == 0) {
				rq->ck_state = CK_TRAILER;
			} else {
				if (rq->body.len + size > MOCK_MAX_BODY)
					return -2;
				rq->ck_left = (size_t)size;
				rq->ck_state = CK_DATA;
			}
			break;
		}
		case CK_DATA:
			n = avail < rq->ck_left ? avail : rq->ck_left;
			if (n == 0)
				return 0;
			buf_add(&rq->body, cur, n);
			rq->body_pos += n;
			rq->ck_left -= n;
			if (rq->ck_left == 0)
				rq->ck_state = CK_DATA_END;
			break;
		case CK_DATA_END:
			if (avail < 1)
				return 0;
			if (cur[0] == '\n') {
				rq->body_pos += 1;
			} else if (cur[0] == '\r') {
				if (avail < 2)
					return 0;
				if (cur[1] != '\n')
					return -1;
				rq->body_pos += 2;
			} else {
				return -1;
			}
			rq->ck_state = CK_SIZE;
			break;
		case CK_TRAILER:
			nl = memchr(cur, '\n', avail);
			if (nl == NULL)
				return avail > MOCK_MAX_HEAD ? -1 : 0;
			n = (size_t)(nl - cur);
			rq->body_pos += n + 1;
			if (n == 0 || (n == 1 && cur[0] == '\r'))
				rq->ck_state = CK_DONE;
			break;
		case CK_DONE:
			break;
		}
	}
	return 1;
}

/* ------------------------------------------------------------ responses */

struct response {
	int status;
	const char *ctype;
	struct buf headers;         /* extra "Name: value\r\n" lines */
	struct buf body;
	bool close;                 /* Connection: close, then close */
	bool truncate;              /* /close: announce 1000 bytes, send the body */
	double delay;               /* seconds before the response is sent */
	bool no_log;                /* /stats, /gate: neither logged nor counted */
	bool bad;                   /* a query parameter was invalid (400) */
};

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static void response_init(struct response *rs)
{
	memset(rs, 0, sizeof(*rs));
	rs->status = 200;
	rs->ctype = "application/json";
}

static void response_free(struct response *rs)
{
	buf_free(&rs->headers);
	buf_free(&rs->body);
}

/* Replaces the response with status and {"error": msg}. */
static void response_error(struct response *rs, int status, const char *msg)
{
	rs->status = status;
	rs->ctype = "application/json";
	rs->headers.len = 0;
	rs->body.len = 0;
	buf_adds(&rs->body, "{\"error\":");
	buf_json_str(&rs->body, msg);
	buf_addc(&rs->body, '}');
}

/* Answers 400 {"error": "bad query parameter NAME"}. */
static void response_bad_param(struct response *rs, const char *name)
{
	struct buf msg = { NULL, 0, 0 };

	buf_printf(&msg, "bad query parameter %s", name);
	response_error(rs, 400, msg.data);
	buf_free(&msg);
	rs->bad = true;
}

/* Serializes rs (answering rq, which may be NULL) onto dst. */
static void response_write(struct buf *dst, const struct request *rq,
                           const struct response *rs)
{
	bool bodyless = rs->status == 204 || rs->status == 304;
	bool head = rq != NULL && rq->method != NULL &&
	            strcmp(rq->method, "HEAD") == 0;

	buf_printf(dst, "HTTP/1.1 %d %s\r\nServer: mockapi\r\n",
	           rs->status, reason(rs->status));
	if (!bodyless) {
		buf_printf(dst, "Content-Type: %s\r\nContent-Length: %zu\r\n",
		           rs->ctype, rs->truncate ? (size_t)1000 : rs->body.len);
	}
	if (rs->headers.len)
		buf_add(dst, rs->headers.data, rs->headers.len);
	if (rs->close)
		buf_adds(dst, "Connection: close\r\n");
	else if (rq != NULL && rq->minor == 0)
		buf_adds(dst, "Connection: keep-alive\r\n");
	buf_adds(dst, "\r\n");
	if (!bodyless && !head && rs->body.len)
		buf_add(dst, rs->body.data, rs->body.len);
}

/* ------------------------------------------------------------ server state */

struct conn;

/* A gate (?gate=NAME): responses wait, unsent, while it is closed; opening
 * it sends them (each after its delay) and lets later ones through. Gates
 * are created on first use, closed, and live until the server stops. */
struct gate {
	char *name;
	bool open;
	long long waiting;          /* responses held now */
	long long passed;           /* gated responses released or let through */
	struct gate *next;
};

struct server {
	struct ev_loop *loop;
	int lfd;
	ev_io accept_io;
	ev_timer accept_retry;      /* re-enables accept after EMFILE */
	ev_signal sig_term, sig_int;
	ev_prepare reaper;          /* frees closed connections */
	FILE *log;
	int data_fd;                /* --data directory, -1 when none */
	int news_fd;                /* --news directory, -1 when none */
	long long news_flaky[MOCK_NEWS_APIS]; /* "flaky" requests so far, per news API */
	unsigned long next_conn;
	long long requests;         /* answered, /stats excluded */
	struct ctab by_path;
	struct ctab seq;
	struct ctab page_fail;      /* /pages?fail=P: requests for page P so far */
	struct gate *gates;
	struct conn *conns;         /* live connections */
	struct conn *dead;          /* closed, freed by the reaper */
	char *rbuf;                 /* MOCK_READ_SIZE scratch for read() */
	struct buf scratch;         /* log line */
};

/* One client connection. Requests are taken one at a time: while a response
 * is delayed (waiting) or the connection is closing, input stays buffered. */
struct conn {
	struct server *srv;
	unsigned long id;
	int fd;
	ev_io rio, wio;
	ev_timer timer;             /* response delay, then linger on close */
	struct buf in;
	size_t in_off;              /* start of the unparsed input */
	size_t scan;                /* head bytes already searched for "\n\n" */
	struct request *req;        /* head parsed, body still arriving */
	bool continue_sent;
	struct buf out;
	size_t out_off;
	struct buf pending;         /* the delayed response */
	struct gate *gate;          /* holding the pending response */
	double gate_delay;          /* its delay, which starts when the gate opens */
	bool waiting;
	bool closing;               /* no more requests; close once flushed */
	bool lingering;             /* write side shut, draining input */
	bool peer_eof;
	bool dead;
	struct conn *prev, *next;
};

/* ------------------------------------------------------------ query helpers */

/* Strict decimal integer in [min, max]. */
static bool parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Integer query parameter name (def when absent). On a bad value sets a 400
 * on rs and returns false. */
static bool param_ll(const struct request *rq, struct response *rs,
                     const char *name, long long def, long long min,
                     long long max, long long *out)
{
	const char *v = request_param(rq, name);

	if (v == NULL) {
		*out = def;
		return true;
	}
	if (parse_ll(v, min, max, out))
		return true;
	response_bad_param(rs, name);
	return false;
}

/* Milliseconds parameter name (absent = 0) into seconds. */
static bool param_ms(const struct request *rq, struct response *rs,
                     const char *name, double def_ms, double *secs)
{
	const char *v = request_param(rq, name);
	char *end;
	double ms;

	if (v == NULL) {
		*secs = def_ms / 1000.0;
		return true;
	}
	errno = 0;
	ms = strtod(v, &end);
	if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(ms) ||
	    ms < 0 || ms > MOCK_MAX_DELAY_MS) {
		response_bad_param(rs, name);
		return false;
	}
	*secs = ms / 1000.0;
	return true;
}

/* Adds "Name: value" from query parameter param, if given and safe. */
static bool param_header(const struct request *rq, struct response *rs,
                         const char *param, const char *name)
{
	const char *v = request_param(rq, param), *p;

	if (v == NULL)
		return true;
	for (p = v; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			response_bad_param(rs, param);
			return false;
		}
	}
	buf_printf(&rs->headers, "%s: %s\r\n", name, v);
	return true;
}

/* ------------------------------------------------------------ routes */

/* One record as /records and /pages send it. price = (id + 99) / 100. */
static void json_record(struct buf *b, long long id)
{
	long long cents = id + 99;
	long long a = cents < 0 ? -cents : cents;

	buf_printf(b, "{\"id\":%lld,\"name\":\"rec-%lld\",\"price\":%s%lld.%02lld,"
	           "\"big\":" MOCK_BIG_INT "}",
	           id, id, cents < 0 ? "-" : "", a / 100, a % 100);
}

/* True if s is a canonical decimal integer of at most 15 digits. */
static bool is_int_id(const char *s)
{
	size_t n;

	if (*s == '-')
		s++;
	n = strspn(s, "0123456789");
	return n > 0 && n <= 15 && s[n] == '\0' && !(s[0] == '0' && n > 1) &&
	       !(s[-1] == '-' && s[0] == '0');
}

/* {"id": ID, "name": "item-ID", ...}; ID is an integer when numeric. */
static void json_item(struct buf *b, const char *id)
{
	buf_adds(b, "{\"id\":");
	if (is_int_id(id))
		buf_adds(b, id);
	else
		buf_json_str(b, id);
	buf_adds(b, ",\"name\":\"item-");
	buf_json_esc(b, id, strlen(id));
	buf_adds(b, "\",\"price\":19.99,\"qty\":3,\"tags\":[\"a\",\"b\"]}");
}

static void json_headers(struct buf *b, const struct request *rq)
{
	size_t i;

	buf_addc(b, '{');
	for (i = 0; rq != NULL && i < rq->n_headers; i++) {
		if (i)
			buf_addc(b, ',');
		buf_json_str(b, rq->headers[i].name);
		buf_addc(b, ':');
		buf_json_str(b, rq->headers[i].value);
	}
	buf_addc(b, '}');
}

static void route_records(const struct request *rq, struct response *rs)
{
	long long n, start, i;

	if (!param_ll(rq, rs, "n", 10, 0, MOCK_MAX_RECORDS, &n) ||
	    !param_ll(rq, rs, "start", 1, -1000000000000LL, 1000000000000LL, &start))
		return;
	buf_addc(&rs->body, '[');
	for (i = 0; i < n; i++) {
		if (i)
			buf_addc(&rs->body, ',');
		json_record(&rs->body, start + i);
	}
	buf_addc(&rs->body, ']');
}

/* /pages?page=P&per=K&total=T[&fail=F][&invalid=I][&link=1][&jump=URL]:
 * with fail=F, the first request for page F (counted per per/total/fail
 * since start) answers 503; with invalid=I, the first request for page I
 * (counted likewise) answers 200 with a body that is not JSON; both are
 * carried by every next link. link=1 also sends the next page as a Link
 * header (rel="next"). jump=URL: the last page's next is URL (verbatim),
 * not null, as a hostile server would send it. */
static void route_pages(struct server *s, const struct request *rq, struct response *rs)
{
	long long page, per, total, fail, invalid, link, first, last, id;
	const char *jump = request_param(rq, "jump");
	char key[128], extra[64] = "", next[256] = "";

	if (!param_ll(rq, rs, "page", 1, 1, 1000000000LL, &page) ||
	    !param_ll(rq, rs, "per", 10, 1, MOCK_MAX_RECORDS, &per) ||
	    !param_ll(rq, rs, "total", 35, 0, 1000000000000LL, &total) ||
	    !param_ll(rq, rs, "fail", 0, 0, 1000000000LL, &fail) ||
	    !param_ll(rq, rs, "invalid", 0, 0, 1000000000LL, &invalid) ||
	    !param_ll(rq, rs, "link", 0, 0, 1, &link))
		return;
	if (jump && (strlen(jump) > 2000 || strpbrk(jump, "\r\n<>"))) {
		response_bad_param(rs, "jump");
		return;
	}
	if (fail > 0) {
		snprintf(extra, sizeof(extra), "&fail=%lld", fail);
		snprintf(key, sizeof(key), "%lld/%lld/%lld", per, total, fail);
		if (page == fail && ctab_bump(&s->page_fail, key) == 0) {
			response_error(rs, 503, "page failed once");
			return;
		}
	}
	if (invalid > 0) {
		size_t n = strlen(extra);
		snprintf(extra + n, sizeof(extra) - n, "&invalid=%lld", invalid);
		snprintf(key, sizeof(key), "invalid/%lld/%lld/%lld", per, total, invalid);
		if (page == invalid && ctab_bump(&s->page_fail, key) == 0) {
			buf_printf(&rs->body, "{\"page\":%lld,\"items\":[{\"id\":", page);
			return;
		}
	}
	if (link) {
		size_t n = strlen(extra);
		snprintf(extra + n, sizeof(extra) - n, "&link=1");
	}
	if (page * per < total)
		snprintf(next, sizeof(next), "/pages?page=%lld&per=%lld&total=%lld%s",
		         page + 1, per, total, extra);
	first = (page - 1) * per + 1;
	last = page * per < total ? page * per : total;
	buf_printf(&rs->body, "{\"page\":%lld,\"items\":[", page);
	for (id = first; id <= last; id++) {
		if (id != first)
			buf_addc(&rs->body, ',');
		json_record(&rs->body, id);
	}
	buf_adds(&rs->body, "],\"next\":");
	if (next[0])
		buf_json_str(&rs->body, next);
	else if (jump)
		buf_json_str(&rs->body, jump);
	else
		buf_adds(&rs->body, "null");
	buf_addc(&rs->body, '}');
	if (link && (next[0] || jump))
		buf_printf(&rs->headers, "Link: <%s>; rel=\"next\"\r\n", next[0] ? next : jump);
}

static void route_echo(const struct request *rq, struct response *rs)
{
	struct buf *b = &rs->body;

	buf_adds(b, "{\"method\":");
	buf_json_str(b, rq->method);
	buf_adds(b, ",\"path\":");
	buf_json_str(b, rq->path);
	buf_adds(b, ",\"query\":");
	buf_json_str(b, rq->query);
	buf_adds(b, ",\"headers\":");
	json_headers(b, rq);
	buf_adds(b, ",\"body\":");
	buf_json_strn(b, rq->body.data ? rq->body.data : "", rq->body.len);
	buf_addc(b, '}');
}

/* /status/CODE: any code 200..599; retry_after= and location= add headers. */
static void route_status(const struct request *rq, struct response *rs,
                         const char *code)
{
	long long st;
	char msg[64];

	if (!parse_ll(code, 200, 599, &st) || strlen(code) != 3) {
		response_error(rs, 400, "bad status code");
		rs->bad = true;
		return;
	}
	snprintf(msg, sizeof(msg), "status %lld", st);
	response_error(rs, (int)st, msg);
	if (param_header(rq, rs, "retry_after", "Retry-After"))
		param_header(rq, rs, "location", "Location");
}

/* /seq/NAME?codes=503,503,200: the k-th request to NAME gets
 * codes[min(k, len - 1)]. */
static void route_seq(struct server *s, const struct request *rq,
                      struct response *rs, const char *name)
{
	const char *codes = request_param(rq, "codes");
	const char *p;
	long long k, code = 200, idx = 0;
	char *end;

	if (codes == NULL)
		codes = "200";
	/* validate the whole list before counting the attempt */
	for (p = codes;;) {
		long v;

		errno = 0;
		v = strtol(p, &end, 10);
		if (end == p || errno != 0 || v < 200 || v > 599 ||
		    (*end != ',' && *end != '\0') || !isdigit((unsigned char)*p)) {
			response_bad_param(rs, "codes");
			return;
		}
		if (*end == '\0')
			break;
		p = end + 1;
	}
	k = ctab_bump(&s->seq, name);
	for (p = codes;; p = end + 1) {
		code = strtol(p, &end, 10);
		if (idx == k || *end == '\0')
			break;
		idx++;
	}
	rs->status = (int)code;
	if (code >= 200 && code < 300) {
		buf_adds(&rs->body, "{\"name\":");
		buf_json_str(&rs->body, name);
		buf_printf(&rs->body, ",\"attempt\":%lld}", k + 1);
	} else {
		buf_printf(&rs->body, "{\"error\":\"status %lld\",\"attempt\":%lld}",
		           code, k + 1);
	}
	if (code == 429 || code == 503)
		param_header(rq, rs, "retry_after", "Retry-After");
}

static const char *file_type(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot == NULL || strchr(dot, '/') != NULL)
		return "application/octet-stream";
	if (strcmp(dot, ".json") == 0)
		return "application/json";
	if (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".ndjson") == 0)
		return "application/x-ndjson";
	if (strcmp(dot, ".csv") == 0)
		return "text/csv";
	if (strcmp(dot, ".txt") == 0)
		return "text/plain";
	return "application/octet-stream";
}

/* Appends the regular file rel (under the directory dirfd) to out. Returns
 * 0, -1 when it is missing or not a regular file, -2 on a read error. */
static int read_file_at(int dirfd, const char *rel, struct buf *out)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO must not hang the loop */
	fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n;

		buf_reserve(out, 65536);
		n = read(fd, out->data + out->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -2;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
	close(fd);
	return 0;
}

/* /files/PATH from --data: 403 for a ".." segment, 404 when absent. */
static void route_files(struct server *s, struct response *rs, const char *rel)
{
	const char *seg;
	int r;

	while (*rel == '/')
		rel++;
	for (seg = rel; *seg; ) {
		size_t n = strcspn(seg, "/");

		if (n == 2 && seg[0] == '.' && seg[1] == '.') {
			response_error(rs, 403, "forbidden");
			return;
		}
		seg += n;
		if (*seg == '/')
			seg++;
	}
	if (s->data_fd < 0 || *rel == '\0') {
		response_error(rs, 404, "not found");
		return;
	}
	r = read_file_at(s->data_fd, rel, &rs->body);
	if (r == -1) {
		response_error(rs, 404, "not found");
		return;
	}
	if (r == -2) {
		response_error(rs, 500, "read error");
		return;
	}
	rs->ctype = file_type(rel);
}

/* The recorded news APIs (--news DIR): each answers from DIR/NAME/ with the
 * recorded body, or with that API's own error bodies, chosen by the key. */
struct news_api {
	const char *name;           /* directory under --news, log and counter name */
	const char *path;           /* route */
	const char *ok_file;        /* the recorded 200 body */
	const char *key_param;      /* query parameter carrying the key */
	const char *key_header;     /* header also accepted for the key, or NULL */
};

static const struct news_api news_apis[MOCK_NEWS_APIS] = {
	{ "newsapi", "/newsapi/v2/top-headlines", "top-headlines.json", "apiKey", "x-api-key" },
	{ "guardian", "/guardian/search", "search.json", "api-key", NULL },
	{ "nyt", "/nyt/svc/topstories/v2/home.json", "home.json", "api-key", NULL },
};

/* True if key is word, or starts with word followed by '-' ("bad-7f3a"). */
static bool news_key_is(const char *key, const char *word)
{
	size_t n = strlen(word);

	return strncmp(key, word, n) == 0 && (key[n] == '\0' || key[n] == '-');
}

/* Answers a request to news API number i. The key selects the answer: none
 * -> 401 (missing), bad -> 401 (invalid), ratelimited -> 429, flaky -> 429
 * the first time (per API), slow -> 200 after MOCK_NEWS_SLOW s (*extra), any
 * other -> 200. 429s carry Retry-After: 1. */
static void route_news(struct server *s, const struct request *rq,
                       struct response *rs, size_t i, double *extra)
{
	const struct news_api *api = &news_apis[i];
	const char *key = request_param(rq, api->key_param);
	const char *file;
	struct buf path = { NULL, 0, 0 };

	if (s->news_fd < 0) {
		response_error(rs, 404, "not found");
		return;
	}
	if ((key == NULL || *key == '\0') && api->key_header != NULL)
		key = request_header(rq, api->key_header);
	if (key == NULL || *key == '\0') {
		rs->status = 401;
		file = "401-missing.json";
	} else if (news_key_is(key, "bad")) {
		rs->status = 401;
		file = "401-invalid.json";
	} else if (news_key_is(key, "ratelimited") ||
	           (news_key_is(key, "flaky") && s->news_flaky[i]++ == 0)) {
		rs->status = 429;
		file = "429.json";
		buf_adds(&rs->headers, "Retry-After: 1\r\n");
	} else {
		if (news_key_is(key, "slow"))
			*extra = MOCK_NEWS_SLOW;
		file = api->ok_file;
	}
	buf_printf(&path, "%s/%s", api->name, file);
	if (read_file_at(s->news_fd, path.data, &rs->body) != 0) {
		buf_printf(&path, ": cannot read it under --news");
		response_error(rs, 500, path.data);
	}
	buf_free(&path);
}

/* The gate called name, created (closed) on first use. */
static struct gate *gate_get(struct server *s, const char *name)
{
	struct gate *g;

	for (g = s->gates; g != NULL; g = g->next) {
		if (strcmp(g->name, name) == 0)
			return g;
	}
	g = xcalloc(1, sizeof(*g));
	g->name = xstrndup(name, strlen(name));
	g->next = s->gates;
	s->gates = g;
	return g;
}

static void gate_open(struct server *s, struct gate *g);

/* /gate/NAME, /gate/NAME/open, /gate/NAME/close: the gate's state, after
 * opening or closing it. */
static void route_gate(struct server *s, struct response *rs, const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t n = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	char *name;
	struct gate *g;

	rs->no_log = true;
	if (n == 0 || (slash != NULL && strcmp(slash, "/open") != 0 &&
	               strcmp(slash, "/close") != 0)) {
		response_error(rs, 404, "not found");
		return;
	}
	name = xstrndup(rest, n);
	g = gate_get(s, name);
	free(name);
	if (slash != NULL && strcmp(slash, "/open") == 0)
		gate_open(s, g);
	else if (slash != NULL)
		g->open = false;
	buf_adds(&rs->body, "{\"gate\":");
	buf_json_str(&rs->body, g->name);
	buf_printf(&rs->body, ",\"open\":%s,\"waiting\":%lld,\"passed\":%lld}",
	           g->open ? "true" : "false", g->waiting, g->passed);
}

static void route_stats(struct server *s, struct response *rs)
{
	size_t i;
	bool first = true;

	buf_printf(&rs->body, "{\"requests\":%lld,\"by_path\":{", s->requests);
	for (i = 0; i < s->by_path.n_slots; i++) {
		struct ctab_entry *e;

		for (e = s->by_path.slots[i]; e != NULL; e = e->next) {
			if (!first)
				buf_addc(&rs->body, ',');
			first = false;
			buf_json_str(&rs->body, e->key);
			buf_printf(&rs->body, ":%lld", e->count);
		}
	}
	buf_adds(&rs->body, "}}");
	rs->no_log = true;
}

/* Fills rs for rq. Every route also honours ?delay=MS. */
static void route(struct server *s, const struct request *rq, struct response *rs)
{
	const char *p = rq->dpath;
	double extra = 0;

	if (strncmp(p, "/json/", 6) == 0 && p[6] != '\0' && strchr(p + 6, '/') == NULL) {
		json_item(&rs->body, p + 6);
	} else if (strcmp(p, "/records") == 0) {
		route_records(rq, rs);
	} else if (strcmp(p, "/pages") == 0) {
		route_pages(s, rq, rs);
	} else if (strcmp(p, "/echo") == 0) {
		route_echo(rq, rs);
	} else if (strncmp(p, "/status/", 8) == 0) {
		route_status(rq, rs, p + 8);
	} else if (strcmp(p, "/invalid") == 0) {
		buf_adds(&rs->body, "{\"truncated\": [1, 2");
	} else if (strcmp(p, "/close") == 0) {
		buf_adds(&rs->body, "{\"data\":\"x");   /* 10 of 1000 bytes */
		rs->truncate = true;
		rs->close = true;
	} else if (strcmp(p, "/slow") == 0) {
		if (param_ms(rq, rs, "ms", 1000, &extra))
			json_item(&rs->body, "slow");
	} else if (strcmp(p, "/big") == 0) {
		long long kb, cut;

		if (param_ll(rq, rs, "kb", 1, 0, MOCK_MAX_BIG_KB, &kb) &&
		    param_ll(rq, rs, "truncate", 0, 0, 1, &cut)) {
			/* {"data":"..."} of exactly kb KiB (11 bytes minimum); with
			 * truncate=1 without its last two bytes (not JSON) */
			size_t total = (size_t)kb * 1024;

			buf_reserve(&rs->body, total + 11);
			buf_adds(&rs->body, "{\"data\":\"");
			buf_fill(&rs->body, 'x', total > 11 ? total - 11 : 0);
			if (!cut)
				buf_adds(&rs->body, "\"}");
		}
	} else if (strncmp(p, "/seq/", 5) == 0 && p[5] != '\0') {
		route_seq(s, rq, rs, p + 5);
	} else if (strncmp(p, "/files/", 7) == 0) {
		route_files(s, rs, p + 7);
	} else if (strcmp(p, "/stats") == 0) {
		route_stats(s, rs);
	} else if (strncmp(p, "/gate/", 6) == 0) {
		route_gate(s, rs, p + 6);
	} else {
		size_t i;

		for (i = 0; i < MOCK_NEWS_APIS; i++) {
			if (strcmp(p, news_apis[i].path) == 0)
				break;
		}
		if (i < MOCK_NEWS_APIS)
			route_news(s, rq, rs, i, &extra);
		else
			response_error(rs, 404, "not found");
	}
	if (rs->bad)
		return;
	if (param_ms(rq, rs, "delay", 0, &rs->delay))
		rs->delay += extra;
}

/* ------------------------------------------------------------ request log */

/* Writes one JSON line for a request (rq may be NULL for an unparsable one). */
static void log_request(struct server *s, const struct conn *c,
                        const struct request *rq, int status)
{
	struct buf *b = &s->scratch;

	if (s->log == NULL)
		return;
	b->len = 0;
	buf_printf(b, "{\"ts\":%.6f,\"conn\":%lu,\"method\":", ev_time(), c->id);
	buf_json_str(b, rq && rq->method ? rq->method : "");
	buf_adds(b, ",\"path\":");
	buf_json_str(b, rq && rq->path ? rq->path : "");
	buf_adds(b, ",\"query\":");
	buf_json_str(b, rq && rq->query ? rq->query : "");
	buf_printf(b, ",\"status\":%d,\"headers\":", status);
	json_headers(b, rq);
	buf_printf(b, ",\"body_len\":%zu}\n", rq ? rq->body.len : 0);
	fwrite(b->data, 1, b->len, s->log);
	fflush(s->log);
}

/* ------------------------------------------------------------ connections */

static void conn_process(struct conn *c);

static size_t conn_out_pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

/* Closes the socket now; the struct is freed later by the reaper, so callers
 * up the stack may still look at c->dead. */
static void conn_kill(struct conn *c)
{
	struct server *s = c->srv;

	if (c->dead)
		return;
	c->dead = true;
	if (c->gate != NULL) {
		c->gate->waiting--;
		c->gate = NULL;
	}
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	ev_timer_stop(s->loop, &c->timer);
	close(c->fd);
	c->fd = -1;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = s->dead;
	s->dead = c;
	if (!ev_is_active(&s->reaper))
		ev_prepare_start(s->loop, &s->reaper);
}

static void conn_free(struct conn *c)
{
	request_free(c->req);
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->pending);
	free(c);
}

/* Starts and stops the watchers to match the connection's state. */
static void conn_update(struct conn *c)
{
	struct ev_loop *loop = c->srv->loop;
	bool want_read, want_write;

	if (c->dead)
		return;
	want_write = conn_out_pending(c) > 0;
	want_read = !c->peer_eof &&
	            (c->lingering || (!c->waiting && !c->closing &&
	                              conn_out_pending(c) < MOCK_OUT_HIGH));
	if (want_read && !ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
	else if (!want_read && ev_is_active(&c->rio))
		ev_io_stop(loop, &c->rio);
	if (want_write && !ev_is_active(&c->wio))
		ev_io_start(loop, &c->wio);
	else if (!want_write && ev_is_active(&c->wio))
		ev_io_stop(loop, &c->wio);
}

/* Writes what it can of c->out. Once everything is out on a closing
 * connection it shuts the write side and lingers to drain the input, so
 * the client gets the response and not a reset. */
static void conn_flush(struct conn *c)
{
	while (!c->dead && c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off,
		                 c->out.len - c->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		} else {
			conn_kill(c);
			return;
		}
	}
	if (c->dead)
		return;
	c->out.len = c->out_off = 0;
	if (c->out.cap > MOCK_SHRINK)
		buf_free(&c->out);
	if (c->closing && !c->waiting && !c->lingering) {
		if (c->peer_eof) {
			conn_kill(c);
			return;
		}
		shutdown(c->fd, SHUT_WR);
		c->lingering = true;
		ev_timer_stop(c->srv->loop, &c->timer);
		ev_timer_set(&c->timer, MOCK_LINGER, 0);
		ev_timer_start(c->srv->loop, &c->timer);
	}
}

/* Answers the current request (rq may be NULL when the head did not parse):
 * logs it, counts it, queues or delays the response. Frees nothing. */
static void conn_respond(struct conn *c, const struct request *rq,
                         struct response *rs)
{
	struct server *s = c->srv;
	const char *gate;

	if (rq == NULL || !rq->keep_alive)
		rs->close = true;
	if (!rs->no_log) {
		s->requests++;
		if (rq != NULL && rq->path != NULL)
			ctab_bump(&s->by_path, rq->path);
		log_request(s, c, rq, rs->status);
	}
	if (rs->close)
		c->closing = true;
	gate = rq != NULL && !rs->no_log ? request_param(rq, "gate") : NULL;
	if (gate != NULL && *gate != '\0') {
		struct gate *g = gate_get(s, gate);

		if (!g->open) {
			c->pending.len = 0;
			response_write(&c->pending, rq, rs);
			c->waiting = true;
			c->gate = g;
			c->gate_delay = rs->delay;
			g->waiting++;
			return;
		}
		g->passed++;
	}
	if (rs->delay > 0) {
		c->pending.len = 0;
		response_write(&c->pending, rq, rs);
		c->waiting = true;
		/* libev times from the loop's cached "now"; refresh it so a
		 * delay never ends early */
		ev_now_update(s->loop);
		ev_timer_set(&c->timer, rs->delay, 0);
		ev_timer_start(s->loop, &c->timer);
	} else {
		response_write(&c->out, rq, rs);
	}
}

/* Answers an error status and closes; rq (may be NULL) is only logged. */
static void conn_fail(struct conn *c, const struct request *rq, int status)
{
	struct response rs;
	char msg[64];

	response_init(&rs);
	snprintf(msg, sizeof(msg), "%s", reason(status));
	response_error(&rs, status, msg);
	rs.close = true;
	conn_respond(c, rq, &rs);
	response_free(&rs);
}

/* Consumes n bytes of input (the request just answered). */
static void conn_consume(struct conn *c, size_t n)
{
	c->in_off += n;
	c->scan = 0;
	c->continue_sent = false;
	if (c->in_off == c->in.len) {
		c->in.len = c->in_off = 0;
		if (c->in.cap > MOCK_SHRINK)
			buf_free(&c->in);
	}
}

/* Moves the unparsed input to the front of c->in. Offsets kept for the
 * request being parsed (scan, head_len, body_pos) are relative to its start,
 * so they stay valid. */
static void conn_compact(struct conn *c)
{
	if (c->in_off == 0)
		return;
	memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
	c->in.len -= c->in_off;
	c->in_off = 0;
	c->in.data[c->in.len] = '\0';
}

/* Tries to take one request from the input. Returns true when a response
 * was queued (the caller may loop), false when more input is needed. */
static bool conn_take_request(struct conn *c)
{
	size_t avail = c->in.len - c->in_off;
	const char *p;
	struct request *rq;
	struct response rs;
	int status;

	if (avail == 0)
		return false;   /* (a pending c->req always has its head in c->in) */
	p = c->in.data + c->in_off;
	if (c->req == NULL) {
		const char *nl, *end = NULL;

		/* empty lines before a request line are ignored */
		while (p[0] == '\n' || (p[0] == '\r' && avail > 1 && p[1] == '\n')) {
			conn_consume(c, p[0] == '\n' ? 1 : 2);
			avail = c->in.len - c->in_off;
			if (avail == 0)
				return false;
			p = c->in.data + c->in_off;
		}
		/* find the blank line ending the head, resuming where we left off */
		while (c->scan < avail) {
			nl = memchr(p + c->scan, '\n', avail - c->scan);
			if (nl == NULL) {
				c->scan = avail;
				break;
			}
			c->scan = (size_t)(nl - p) + 1;
			if (c->scan < avail && p[c->scan] == '\n') {
				end = p + c->scan + 1;
				break;
			}
			if (c->scan + 1 < avail && p[c->scan] == '\r' && p[c->scan + 1] == '\n') {
				end = p + c->scan + 2;
				break;
			}
			if (c->scan + 1 >= avail) {
				/* maybe the rest of "\r\n" is still to come */
				c->scan = (size_t)(nl - p);
				break;
			}
		}
		if (end == NULL) {
			if (avail > MOCK_MAX_HEAD) {
				conn_fail(c, NULL, 431);
				return true;
			}
			return false;
		}
		if ((size_t)(end - p) > MOCK_MAX_HEAD) {
			conn_fail(c, NULL, 431);
			return true;
		}
		rq = request_parse_head(p, (size_t)(end - p), &status);
		if (rq == NULL || rq->head_len == 0) {
			conn_fail(c, rq, status);
			request_free(rq);
			return true;
		}
		c->req = rq;
	}
	rq = c->req;

	/* the body */
	if (rq->chunked) {
		int r = request_chunked(rq, p + rq->head_len, avail - rq->head_len);

		if (r < 0) {
			c->req = NULL;
			conn_fail(c, rq, r == -2 ? 413 : 400);
			request_free(rq);
			return true;
		}
		if (r == 0)
			goto need_body;
		conn_consume(c, rq->head_len + rq->body_pos);
	} else {
		if (avail - rq->head_len < rq->content_length)
			goto need_body;
		buf_add(&rq->body, p + rq->head_len, rq->content_length);
		conn_consume(c, rq->head_len + rq->content_length);
	}

	c->req = NULL;
	response_init(&rs);
	route(c->srv, rq, &rs);
	conn_respond(c, rq, &rs);
	response_free(&rs);
	request_free(rq);
	return true;

need_body:
	if (rq->expect_continue && !c->continue_sent) {
		buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->continue_sent = true;
	}
	return false;
}

/* Takes as many requests as the state allows, then flushes. */
static void conn_process(struct conn *c)
{
	bool starved = false;

	while (!c->dead && !c->waiting && !c->closing && !c->lingering &&
	       conn_out_pending(c) < MOCK_OUT_HIGH) {
		if (!conn_take_request(c)) {
			starved = true;
			break;
		}
	}
	/* the client is gone and nothing complete is left: finish up */
	if (!c->dead && starved && c->peer_eof && !c->waiting)
		c->closing = true;
	if (!c->dead)
		conn_flush(c);
	conn_update(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	struct server *s = c->srv;
	size_t total = 0;

	(void)loop;
	(void)revents;
	while (!c->dead && total < MOCK_READ_BUDGET) {
		ssize_t n = read(c->fd, s->rbuf, MOCK_READ_SIZE);

		if (n > 0) {
			total += (size_t)n;
			if (!c->lingering) {
				conn_compact(c);
				buf_add(&c->in, s->rbuf, (size_t)n);
			}
			if ((size_t)n < MOCK_READ_SIZE)
				break;
		} else if (n == 0) {
			c->peer_eof = true;
			break;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			conn_kill(c);
			return;
		}
	}
	if (c->dead)
		return;
	if (c->lingering) {
		if (c->peer_eof)
			conn_kill(c);
		else
			conn_update(c);
		return;
	}
	conn_process(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_process(w->data);
}

/* The delay of a response ran out, or the linger after close did. */
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->lingering) {
		conn_kill(c);
		return;
	}
	if (c->waiting) {
		buf_add(&c->out, c->pending.data, c->pending.len);
		c->pending.len = 0;
		if (c->pending.cap > MOCK_SHRINK)
			buf_free(&c->pending);
		c->waiting = false;
	}
	conn_process(c);
}

/* Opens g: each response it holds goes out after its own delay (a zero
 * timer sends it on the next loop iteration, outside the caller's
 * connection). */
static void gate_open(struct server *s, struct gate *g)
{
	struct conn *c;

	g->open = true;
	for (c = s->conns; c != NULL; c = c->next) {
		if (c->gate != g)
			continue;
		c->gate = NULL;
		g->waiting--;
		g->passed++;
		ev_now_update(s->loop);
		ev_timer_set(&c->timer, c->gate_delay, 0);
		ev_timer_start(s->loop, &c->timer);
	}
}

static void conn_new(struct server *s, int fd)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = s;
	c->id = ++s->next_conn;
	c->fd = fd;
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_timer_init(&c->timer, conn_timer_cb, 0, 0);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	ev_io_start(s->loop, &c->rio);
}

/* ------------------------------------------------------------ server */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct server *s = w->data;

	(void)revents;
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_new(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/* out of descriptors: pause accepting for a moment */
			fprintf(stderr, "mockapi: accept: %s (pausing)\n", strerror(errno));
			ev_io_stop(loop, &s->accept_io);
			ev_timer_start(loop, &s->accept_retry);
		}
		return;
	}
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *s = w->data;

	(void)revents;
	ev_io_start(loop, &s->accept_io);
}

/* Frees connections closed since the last loop iteration. */
static void reaper_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct server *s = w->data;

	(void)revents;
	while (s->dead != NULL) {
		struct conn *c = s->dead;

		s->dead = c->next;
		conn_free(c);
	}
	ev_prepare_stop(loop, w);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Writes the port to path through a temporary file and rename(2). */
static int write_port_file(const char *path, int port)
{
	size_t n = strlen(path) + 32;
	char *tmp = xmalloc(n);
	FILE *f;
	int ok;

	snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
	f = fopen(tmp, "w");
	if (f == NULL) {
		fprintf(stderr, "mockapi: %s: %s\n", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	ok = fprintf(f, "%d\n", port) > 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		fprintf(stderr, "mockapi: %s: %s\n", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/* Listens on addr:port (loopback only). Returns the socket or -1. */
static int listen_on(const char *addr, int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)*port);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "mockapi: --bind must be a 127.x.x.x address\n");
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "mockapi: socket: %s\n", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		fprintf(stderr, "mockapi: %s:%d: %s\n", addr, *port, strerror(errno));
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Lets the process hold as many connections as the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(FILE *f)
{
	fputs("usage: mockapi [--port N] [--port-file FILE] [--log FILE]\n"
	      "               [--bind 127.0.0.1] [--data DIR] [--news DIR]\n"
	      "An HTTP/1.1 test server; routes are in tests/mockapi/README.md.\n", f);
}

static void server_free(struct server *s)
{
	while (s->conns != NULL)
		conn_kill(s->conns);
	while (s->dead != NULL) {
		struct conn *c = s->dead;

		s->dead = c->next;
		conn_free(c);
	}
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->data_fd >= 0)
		close(s->data_fd);
	if (s->news_fd >= 0)
		close(s->news_fd);
	if (s->log != NULL)
		fclose(s->log);
	ctab_free(&s->by_path);
	ctab_free(&s->seq);
	ctab_free(&s->page_fail);
	while (s->gates != NULL) {
		struct gate *g = s->gates;

		s->gates = g->next;
		free(g->name);
		free(g);
	}
	buf_free(&s->scratch);
	free(s->rbuf);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'f' },
		{ "log", required_argument, NULL, 'l' },
		{ "bind", required_argument, NULL, 'b' },
		{ "data", required_argument, NULL, 'd' },
		{ "news", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *port_file = NULL, *log_path = NULL, *bind_addr = "127.0.0.1";
	const char *data_dir = NULL, *news_dir = NULL;
	struct server srv;
	long long port = 0;
	int opt, iport, rc = 1;

	while ((opt = getopt_long(argc, argv, "p:f:l:b:d:n:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (!parse_ll(optarg, 0, 65535, &port)) {
				fprintf(stderr, "mockapi: bad --port '%s'\n", optarg);
				return 2;
			}
			break;
		case 'f': port_file = optarg; break;
		case 'l': log_path = optarg; break;
		case 'b': bind_addr = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'n': news_dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	memset(&srv, 0, sizeof(srv));
	srv.lfd = -1;
	srv.data_fd = -1;
	srv.news_fd = -1;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	if (data_dir != NULL) {
		srv.data_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (srv.data_fd < 0) {
			fprintf(stderr, "mockapi: %s: %s\n", data_dir, strerror(errno));
			goto out;
		}
	}
	if (news_dir != NULL) {
		srv.news_fd = open(news_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (srv.news_fd < 0) {
			fprintf(stderr, "mockapi: %s: %s\n", news_dir, strerror(errno));
			goto out;
		}
	}
	if (log_path != NULL) {
		srv.log = fopen(log_path, "a");
		if (srv.log == NULL) {
			fprintf(stderr, "mockapi: %s: %s\n", log_path, strerror(errno));
			goto out;
		}
	}
	iport = (int)port;
	srv.lfd = listen_on(bind_addr, &iport);
	if (srv.lfd < 0)
		goto out;

	srv.loop = ev_default_loop(0);
	if (srv.loop == NULL) {
		fputs("mockapi: cannot initialise libev\n", stderr);
		goto out;
	}
	srv.rbuf = xmalloc(MOCK_READ_SIZE);
	ev_io_init(&srv.accept_io, accept_cb, srv.lfd, EV_READ);
	ev_timer_init(&srv.accept_retry, accept_retry_cb, 0.1, 0);
	ev_signal_init(&srv.sig_term, signal_cb, SIGTERM);
	ev_signal_init(&srv.sig_int, signal_cb, SIGINT);
	ev_prepare_init(&srv.reaper, reaper_cb);
	srv.accept_io.data = srv.accept_retry.data = srv.reaper.data = &srv;
	ev_io_start(srv.loop, &srv.accept_io);
	ev_signal_start(srv.loop, &srv.sig_term);
	ev_signal_start(srv.loop, &srv.sig_int);

	/* announce the port only once connections can be accepted */
	if (port_file != NULL && write_port_file(port_file, iport) != 0)
		goto out;
	fprintf(stderr, "mockapi: listening on %s:%d\n", bind_addr, iport);

	ev_run(srv.loop, 0);
	rc = 0;

out:
	if (srv.loop != NULL) {
		ev_io_stop(srv.loop, &srv.accept_io);
		ev_timer_stop(srv.loop, &srv.accept_retry);
		ev_signal_stop(srv.loop, &srv.sig_term);
		ev_signal_stop(srv.loop, &srv.sig_int);
		server_free(&srv);
		ev_prepare_stop(srv.loop, &srv.reaper);
		ev_loop_destroy(srv.loop);
	} else {
		server_free(&srv);
	}
	return rc;
}
