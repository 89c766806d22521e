/*
 * util: allocation that aborts on out-of-memory, a growable byte buffer,
 * monotonic/wall clocks and small string helpers shared by every module.
 * Allocation failure is fatal (see xmalloc): error returns are for real errors.
 */
#ifndef PIPECTL_UTIL_H
#define PIPECTL_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow *p (an array of *cap elements of size sz) so it holds at least need. */
void xgrow(void *pp, size_t *cap, size_t need, size_t sz);
char *xstrdup(const char *s);          /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
char *xvasprintf(const char *fmt, va_list ap) PRINTF_LIKE(1, 0);

/* A growable byte buffer; data is always NUL-terminated. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);         /* len = 0, keeps the memory */
/* Makes room for total bytes (and a NUL) in one allocation of that size,
 * when the final size is known in advance (a Content-Length). */
void buf_presize(struct buf *b, size_t total);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_addc(struct buf *b, char c);
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
char *buf_steal(struct buf *b);        /* returns data (caller frees), resets b */
/* Flags of buf_add_json_escaped. */
enum {
	BUF_JSON_SLASH = 1 << 0,        /* '/' as "\/" */
	BUF_JSON_DEL = 1 << 1,          /* 0x7f as "\u007f" */
};
void buf_add_json_escaped(struct buf *b, const char *s, size_t n, unsigned flags);

double now_mono(void);                 /* seconds, CLOCK_MONOTONIC */
double now_wall(void);                 /* seconds since the epoch */
/* ISO-8601 UTC "2026-11-25T20:43:37Z" into out (>= 21 bytes). */
void fmt_time(double t, char *out, size_t n);

/* Reads a whole file. Returns malloc'd data (NUL-terminated, length in *len)
 * or NULL with errno set. */
char *read_file(const char *path, size_t *len);
/* Like read_file, but gives up with errno EFBIG as soon as the file turns out
 * to hold more than max bytes (it reads at most max + 64 KiB, so this also
 * bounds reading an endless file such as /dev/zero). */
char *read_file_max(const char *path, size_t max, size_t *len);
/* Directory part of path ("." when none). Caller frees. */
char *path_dir(const char *path);
/* base joined to rel unless rel is absolute. Caller frees. */
char *path_join(const char *base, const char *rel);
/* mkdir -p. Returns 0 or -1 with errno set. */
int mkdir_p(const char *path, int mode);

/* SHA-256 of data as 64 lowercase hex characters (out >= 65 bytes). */
void sha256_hex(const void *data, size_t len, char *out);
/* SHA-256 of data that arrives in pieces: sha256_begin returns a context
 * (never NULL), sha256_update adds bytes, sha256_end writes the hex digest
 * (out >= 65 bytes) and frees the context. sha256_end(NULL, out) gives "". */
struct sha256;
struct sha256 *sha256_begin(void);
void sha256_update(struct sha256 *h, const void *data, size_t len);
void sha256_end(struct sha256 *h, char *out);

/* Levenshtein distance, for "did you mean" suggestions. */
size_t edit_distance(const char *a, const char *b);

#endif
