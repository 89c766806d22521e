/*
 * util: allocation wrappers (out of memory is fatal: there is no sane way to
 * continue a run without memory, and it keeps error paths for real errors),
 * the growable buffer, clocks, paths and hashing.
 */
#include "base/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/evp.h>

static void oom(size_t n)
{
	fprintf(stderr, "pipectl: out of memory (allocating %zu bytes)\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

void xgrow(void *pp, size_t *cap, size_t need, size_t sz)
{
	void **p = pp;
	size_t c = *cap;

	if (need <= c)
		return;
	if (c < 8)
		c = 8;
	while (c < need)
		c *= 2;
	*p = xrealloc(*p, c * sz);
	*cap = c;
}

char *xstrdup(const char *s)
{
	return s ? xstrndup(s, strlen(s)) : NULL;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *p = NULL;

	if (vasprintf(&p, fmt, ap) < 0)
		oom(strlen(fmt));
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static void buf_reserve(struct buf *b, size_t extra)
{
	xgrow(&b->data, &b->cap, b->len + extra + 1, 1);
}

void buf_presize(struct buf *b, size_t total)
{
	if (total + 1 > b->cap) {
		b->data = xrealloc(b->data, total + 1);
		b->cap = total + 1;
	}
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_addc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Appends s[0, n) to b escaped as the inside of a JSON string (no quotes
 * added): quote, backslash and the control characters that have a short
 * escape get it, the other control characters \u00XX; '/' and 0x7f too
 * when flags ask (BUF_JSON_SLASH, BUF_JSON_DEL). Other bytes (UTF-8) are
 * copied as they are. Secrets are matched in the forms a JSON encoder
 * writes them, and jq literals are built with the same escapes. */
void buf_add_json_escaped(struct buf *b, const char *s, size_t n, unsigned flags)
{
	unsigned char c;
	size_t i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		switch (c) {
		case '"':  buf_adds(b, "\\\""); break;
		case '\\': buf_adds(b, "\\\\"); break;
		case '\b': buf_adds(b, "\\b"); break;
		case '\f': buf_adds(b, "\\f"); break;
		case '\n': buf_adds(b, "\\n"); break;
		case '\r': buf_adds(b, "\\r"); break;
		case '\t': buf_adds(b, "\\t"); break;
		case '/':  buf_adds(b, (flags & BUF_JSON_SLASH) ? "\\/" : "/"); break;
		default:
			if (c < 0x20 || (c == 0x7f && (flags & BUF_JSON_DEL)))
				buf_printf(b, "\\u%04x", c);
			else
				buf_addc(b, (char)c);
			break;
		}
	}
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Format into the spare room; grow and retry once if it did not fit. */
	buf_reserve(b, 64);
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

char *buf_steal(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");
	buf_init(b);
	return p;
}

double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fmt_time(double t, char *out, size_t n)
{
	time_t s = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&s, &tm)) {
		snprintf(out, n, "-");
		return;
	}
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *read_file(const char *path, size_t *len)
{
	return read_file_max(path, SIZE_MAX, len);
}

char *read_file_max(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[65536];
	size_t n;
	int saved;

	if (!f)
		return NULL;
	buf_init(&b);
	buf_reserve(&b, 0);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (n > max - b.len) {
			fclose(f);
			buf_free(&b);
			errno = EFBIG;
			return NULL;
		}
		buf_add(&b, chunk, n);
	}
	if (ferror(f)) {
		saved = errno;
		fclose(f);
		buf_free(&b);
		errno = saved;
		return NULL;
	}
	fclose(f);
	if (len)
		*len = b.len;
	return buf_steal(&b);
}

char *path_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

char *path_join(const char *base, const char *rel)
{
	if (rel[0] == '/' || !base || !*base || strcmp(base, ".") == 0)
		return xstrdup(rel);
	return xasprintf("%s/%s", base, rel);
}

int mkdir_p(const char *path, int mode)
{
	char *p = xstrdup(path);
	char *s;
	int rc = 0;

	for (s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
				rc = -1;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	if (rc == 0) {
		struct stat sb;
		if (stat(path, &sb) != 0)
			rc = -1;
		else if (!S_ISDIR(sb.st_mode)) {
			errno = ENOTDIR;
			rc = -1;
		}
	}
	{
		int saved = errno;
		free(p);
		errno = saved;
	}
	return rc;
}

void sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";
	unsigned int i;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
		abort();
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * mdlen] = '\0';
}

struct sha256 *sha256_begin(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
		abort();
	return (struct sha256 *)(void *)c;
}

void sha256_update(struct sha256 *h, const void *data, size_t len)
{
	if (len && !EVP_DigestUpdate((EVP_MD_CTX *)(void *)h, data, len))
		abort();
}

void sha256_end(struct sha256 *h, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	static const char hex[] = "0123456789abcdef";

	out[0] = '\0';
	if (!h)
		return;
	if (!EVP_DigestFinal_ex((EVP_MD_CTX *)(void *)h, md, &mdlen))
		abort();
	EVP_MD_CTX_free((EVP_MD_CTX *)(void *)h);
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * mdlen] = '\0';
}

size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t *row = xmalloc((lb + 1) * sizeof(*row));
	size_t d;

	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	d = row[lb];
	free(row);
	return d;
}
