/*
 * log: messages to stderr, as plain text ("pipectl: ...") or JSON lines.
 * Every message passes through the redactor: values registered as secrets
 * (the ${env.X} values a pipeline reads) are replaced by "***" before they
 * reach the terminal or the state database.
 */
#ifndef PIPECTL_LOG_H
#define PIPECTL_LOG_H

#include "base/util.h"

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
void log_set_json(bool on);
void log_msg(enum log_level l, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Registers a secret value without a variable name (see secret_add, which
 * callers that know the name use instead). */
void log_add_secret(const char *value);
/* Returns a malloc'd copy of s with every secret, in every encoding
 * pipectl produces, replaced by "***" (secret_redact). */
char *redact(const char *s);
/* Forgets every secret (secret_clear). */
void log_free_secrets(void);

#endif
