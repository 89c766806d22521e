/*
 * log: one place that writes human messages to stderr. Every message is
 * redacted first, so a secret read from the environment by a template never
 * reaches a terminal or a CI log, whatever module formatted it.
 */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

static enum log_level cur_level = LOG_INFO;
static bool json_mode;
static char **secrets;
static size_t n_secrets, cap_secrets;

void log_set_level(enum log_level l) { cur_level = l; }
enum log_level log_get_level(void) { return cur_level; }
void log_set_json(bool on) { json_mode = on; }

void log_add_secret(const char *value)
{
	size_t i;

	if (!value || strlen(value) < 4)
		return;
	for (i = 0; i < n_secrets; i++)
		if (strcmp(secrets[i], value) == 0)
			return;
	xgrow(&secrets, &cap_secrets, n_secrets + 1, sizeof(*secrets));
	secrets[n_secrets++] = xstrdup(value);
}

void log_free_secrets(void)
{
	size_t i;

	for (i = 0; i < n_secrets; i++)
		free(secrets[i]);
	free(secrets);
	secrets = NULL;
	n_secrets = cap_secrets = 0;
}

char *redact(const char *s)
{
	struct buf b;
	const char *p = s;
	size_t i;

	if (!s)
		return NULL;
	if (n_secrets == 0)
		return xstrdup(s);
	buf_init(&b);
	while (*p) {
		size_t best_len = 0;
		for (i = 0; i < n_secrets; i++) {
			size_t l = strlen(secrets[i]);
			if (l > best_len && strncmp(p, secrets[i], l) == 0)
				best_len = l;
		}
		if (best_len) {
			buf_adds(&b, "***");
			p += best_len;
		} else {
			buf_addc(&b, *p++);
		}
	}
	return buf_steal(&b);
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
