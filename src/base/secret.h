/*
 * secret: the values of the environment variables a pipeline reads
 * (${env.X}) and every encoding of them pipectl produces or a server may echo
 * (raw, JSON-escaped with and without "\/", percent-encoded as jq's @uri and
 * as RFC 3986, in upper or lower case hex, base64).
 *
 * Two ways to keep them out of text that leaves the process:
 *   - secret_redact: for messages and records of what happened (logs,
 *     attempts, errors): each occurrence becomes "***".
 *   - secret_seal: for what is stored to redo a request later (dead letters,
 *     the response journal): each occurrence becomes a placeholder naming the
 *     variable and the encoding, "${env.API_KEY}" or "${env.API_KEY|@uri}";
 *     a literal '$' before '{', '$' or a placeholder is written "$$".
 *     secret_unseal renders it back with the environment of the process that
 *     reads it, so a replay sends the real secret, never "***".
 *
 * The registry is process-wide (a command registers what its pipeline
 * reads); secret_clear frees it.
 */
#ifndef PIPECTL_SECRET_H
#define PIPECTL_SECRET_H

#include <stddef.h>

/* Registers value (copied) as the secret of variable name (NULL: a secret
 * without a name, which secret_seal can only redact). Values shorter than 4
 * bytes are ignored, so common words are not redacted. */
void secret_add(const char *name, const char *value);
/* Forgets every secret. */
void secret_clear(void);

/* Returns a malloc'd copy of s (NUL-terminated) with every secret, in every
 * encoding, replaced by "***". NULL in, NULL out. */
char *secret_redact(const char *s);

/* Returns a malloc'd, NUL-terminated copy of s[0, len) with every secret
 * replaced by its placeholder (see above); *out_len (may be NULL) gets its
 * length. s may hold NUL bytes. */
char *secret_seal(const char *s, size_t len, size_t *out_len);

/* Renders sealed text s[0, len): returns a malloc'd, NUL-terminated text
 * (length in *out_len, may be NULL) with each placeholder replaced by the
 * current value of its variable, in its encoding; the values read are
 * registered as secrets. When a variable is not set: NULL, and *err (caller
 * frees) names it. */
char *secret_unseal(const char *s, size_t len, size_t *out_len, char **err);

#endif
