/*
 * log: one place that writes human messages to stderr. Every message is
 * redacted first, so a secret read from the environment by a template never
 * reaches a terminal or a CI log, whatever module formatted it.
 */
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "base/secret.h"

static enum log_level cur_level = LOG_INFO;
static bool json_mode;

void log_set_level(enum log_level l) { cur_level = l; }
enum log_level log_get_level(void) { return cur_level; }
void log_set_json(bool on) { json_mode = on; }

void log_add_secret(const char *value)
{
	secret_add(NULL, value);
}

void log_free_secrets(void)
{
	secret_clear();
}

char *redact(const char *s)
{
	return secret_redact(s);
}

static const char *level_name[] = { "error", "warning", "info", "debug" };

void log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;
	char *raw, *msg;

	if (l > cur_level)
		return;
	va_start(ap, fmt);
	raw = xvasprintf(fmt, ap);
	va_end(ap);
	msg = redact(raw);
	free(raw);
	if (json_mode) {
		json_t *o = json_pack("{s:f, s:s, s:s}", "ts", now_wall(),
		                      "level", level_name[l], "msg", msg);
		char *line = json_dumps(o, JSON_COMPACT);
		fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	} else if (l <= LOG_WARN) {
		fprintf(stderr, "pipectl: %s: %s\n", level_name[l], msg);
	} else {
		fprintf(stderr, "pipectl: %s\n", msg);
	}
	free(msg);
}
