/*
 * fuzz_common: linked into every fuzz target with -Wl,--wrap=jq_compile_args,
 * so that the calls expr.c makes to jq_compile_args land here and the target
 * decides whether libjq really compiles (enum fuzz_jq_mode in fuzz.h).
 * Test code: it includes jq.h, which in src/ only expr.c does.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jq.h>

#include "base/util.h"

/* The linker's names: __real_ is libjq's function, __wrap_ replaces it. */
int __real_jq_compile_args(jq_state *jq, const char *prog, jv args);
int __wrap_jq_compile_args(jq_state *jq, const char *prog, jv args);

/* Deepest nesting the stub accepts (jq itself has no small limit). */
#define STUB_MAX_DEPTH 256
/* Distinct programs FUZZ_JQ_CACHED remembers; later ones compile each time. */
#define CACHE_MAX 200000
#define CACHE_BUCKETS 4096

struct verdict {
	struct verdict *next;
	char *prog;
	bool ok;
	jv msgs;                       /* array: what libjq reported, in order */
};

static enum fuzz_jq_mode mode = FUZZ_JQ_REAL;
static struct verdict *cache[CACHE_BUCKETS];
static size_t cache_n;
static unsigned long real_compiles;

void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
	abort();
}

void fuzz_jq_set_mode(enum fuzz_jq_mode m)
{
	mode = m;
}

enum fuzz_jq_mode fuzz_jq_mode_from_env(void)
{
	const char *v = getenv("PIPECTL_FUZZ_JQ");

	if (v && strcmp(v, "real") == 0)
		return FUZZ_JQ_CACHED;
	if (v && *v && strcmp(v, "stub") != 0) {
		fprintf(stderr, "PIPECTL_FUZZ_JQ must be \"stub\" or \"real\", not \"%s\"\n", v);
		exit(2);
	}
	return FUZZ_JQ_STUB;
}

unsigned long fuzz_jq_real_compiles(void)
{
	return real_compiles;
}

/* Returns why prog would not parse (a static string), or NULL. Checks what
 * a lexer and a bracket matcher can: balanced (), [], {} outside strings,
 * string literals that end (with \(...) interpolations nested), no control
 * or non-ASCII bytes outside strings, '#' comments to the end of the line. */
static const char *stub_check(const char *p)
{
	char stack[STUB_MAX_DEPTH];
	int depth = 0;
	bool in_str = false;
	unsigned char c;
	size_t i;

	for (i = 0; p[i]; i++) {
		c = (unsigned char)p[i];
		if (in_str) {
			if (c == '"') {
				in_str = false;
			} else if (c == '\\') {
				if (p[i + 1] == '\0')
					return "unterminated string literal";
				if (p[i + 1] == '(') {
					if (depth == STUB_MAX_DEPTH)
						return "nested too deeply";
					stack[depth++] = 'I';
					in_str = false;
				}
				i++;
			}
			continue;
		}
		switch (c) {
		case '#':
			while (p[i + 1] && p[i + 1] != '\n')
				i++;
			break;
		case '"':
			in_str = true;
			break;
		case '(': case '[': case '{':
			if (depth == STUB_MAX_DEPTH)
				return "nested too deeply";
			stack[depth++] = (char)c;
			break;
		case ')':
			if (depth == 0 || (stack[depth - 1] != '(' && stack[depth - 1] != 'I'))
				return "unexpected ')'";
			in_str = stack[--depth] == 'I';
			break;
		case ']':
			if (depth == 0 || stack[--depth] != '[')
				return "unexpected ']'";
			break;
		case '}':
			if (depth == 0 || stack[--depth] != '{')
				return "unexpected '}'";
			break;
		default:
			if (c >= 0x80 || (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r'))
				return "unexpected INVALID_CHARACTER";
			break;
		}
	}
	if (in_str)
		return "unterminated string literal";
	if (depth)
		return "unexpected end of program";
	return NULL;
}

/* Sends msg (consumed) to the error callback installed on jq. */
static void report(jq_state *jq, jv msg)
{
	jq_msg_cb cb;
	void *data;

	jq_get_error_cb(jq, &cb, &data);
	if (cb)
		cb(data, msg);
	else
		jv_free(msg);
}

static int stub_compile(jq_state *jq, const char *prog, jv args)
{
	const char *why = stub_check(prog);

	jv_free(args);
	if (!why)
		return 1;
	/* The shape of libjq's own report, which expr.c takes apart. */
	report(jq, jv_string_fmt("jq: error: syntax error, %s (fuzzing stub) at <top-level>, "
	                         "line 1:\n%s", why, prog));
	report(jq, jv_string("jq: 1 compile error"));
	return 0;
}

/* ---- FUZZ_JQ_CACHED */

struct capture {
	jq_msg_cb cb;
	void *data;
	jv msgs;
};

static void capture_cb(void *data, jv msg)
{
	struct capture *c = data;

	c->msgs = jv_array_append(c->msgs, jv_copy(msg));
	if (c->cb)
		c->cb(c->data, msg);
	else
		jv_free(msg);
}

static size_t cache_hash(const char *s)
{
	size_t h = 1469598103934665603u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h % CACHE_BUCKETS;
}

static int cached_compile(jq_state *jq, const char *prog, jv args)
{
	size_t b = cache_hash(prog);
	struct capture cap;
	struct verdict *v;
	int i, n, ok;

	for (v = cache[b]; v; v = v->next) {
		if (strcmp(v->prog, prog) != 0)
			continue;
		jv_free(args);
		n = jv_array_length(jv_copy(v->msgs));
		for (i = 0; i < n; i++)
			report(jq, jv_array_get(jv_copy(v->msgs), i));
		return v->ok;
	}
	jq_get_error_cb(jq, &cap.cb, &cap.data);
	cap.msgs = jv_array();
	jq_set_error_cb(jq, capture_cb, &cap);
	real_compiles++;
	ok = __real_jq_compile_args(jq, prog, args);
	jq_set_error_cb(jq, cap.cb, cap.data);
	if (cache_n >= CACHE_MAX) {
		jv_free(cap.msgs);
		return ok;
	}
	v = xcalloc(1, sizeof(*v));
	v->prog = xstrdup(prog);
	v->ok = ok != 0;
	v->msgs = cap.msgs;
	v->next = cache[b];
	cache[b] = v;
	cache_n++;
	return ok;
}

int __wrap_jq_compile_args(jq_state *jq, const char *prog, jv args)
{
	switch (mode) {
	case FUZZ_JQ_STUB:
		return stub_compile(jq, prog, args);
	case FUZZ_JQ_CACHED:
		return cached_compile(jq, prog, args);
	case FUZZ_JQ_REAL:
	default:
		real_compiles++;
		return __real_jq_compile_args(jq, prog, args);
	}
}
