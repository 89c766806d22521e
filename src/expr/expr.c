/*
 * expr: jq programs and ${...} templates over jansson values. Each owns one
 * jq_state, compiled once with params/run bound ($__pipectl_params/_run behind
 * `params` and `run`) and run per record. The only file that includes jq.h.
 */
#include "expr/expr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jq.h>

#include "base/util.h"
#include "expr/project.h"

/* Defines `params` and `run`; no newline, so jq's line numbers stay right. */
#define EXPR_PREFIX \
	"def params: $__pipectl_params; def run: $__pipectl_run; "

#define EXPR_NPOS ((size_t)-1)

/* Largest magnitude up to which every integer is exact in a double. */
#define EXPR_MAX_EXACT 9007199254740992.0

/* An integer of the current input that a double cannot hold exactly. jq 1.6
 * computes with doubles, so such integers come back rounded; if an output
 * number equals the rounded value of exactly one of them, it was passed
 * through and the original integer is restored (ambiguous: left rounded). */
struct big_int {
	double rounded;
	json_int_t value;
	bool ambiguous;
};

struct expr {
	jq_state *jq;                  /* NULL for a constant template, or until
	                                  a projection first needs jq */
	struct project *proj;          /* the fast path (project.h), or NULL */
	char *src;                     /* with proj: the program and scope */
	json_t *params, *run;          /* jq compiles from when it is needed */
	char *literal;                 /* a constant template's text */
	struct big_int *big;           /* of the input being processed */
	size_t n_big, cap_big;
};

static void expr_note_big(struct expr *e, json_int_t i)
{
	double d = (double)i;
	size_t k;

	for (k = 0; k < e->n_big; k++) {
		if (e->big[k].rounded == d) {
			if (e->big[k].value != i)
				e->big[k].ambiguous = true;
			return;
		}
	}
	xgrow(&e->big, &e->cap_big, e->n_big + 1, sizeof(*e->big));
	e->big[e->n_big].rounded = d;
	e->big[e->n_big].value = i;
	e->big[e->n_big].ambiguous = false;
	e->n_big++;
}

static json_t *expr_restore_big(const struct expr *e, double d)
{
	size_t k;

	for (k = 0; e && fabs(d) >= EXPR_MAX_EXACT && k < e->n_big; k++)
		if (e->big[k].rounded == d && !e->big[k].ambiguous)
			return json_integer(e->big[k].value);
	/* Integral and within int64: print as an integer, as jq does. */
	if (d >= -9223372036854775808.0 && d < 9223372036854775808.0)
		return json_integer((json_int_t)d);
	return json_real(d);
}

/* One ${...} part of a template: where its "${" is and its expression. */
struct tpl_part {
	size_t off;                    /* offset of "${" in the template */
	size_t start, end;             /* the expression is src[start, end) */
	bool comment;                  /* has a '#' outside string literals */
};

/* ------------------------------------------------------------ conversion */

/* Returns a jv for v (borrowed); NULL converts to jq null. Integers a double
 * cannot hold are noted in e (when not NULL) for expr_restore_big. */
static jv expr_json_to_jv(const json_t *v, struct expr *e)
{
	/* jansson's iteration API takes non-const pointers; nothing changes. */
	json_t *mv = (json_t *)v;
	const char *key;
	size_t klen, i;
	json_t *item;
	jv r;

	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_NULL:
		return jv_null();
	case JSON_TRUE:
		return jv_true();
	case JSON_FALSE:
		return jv_false();
	case JSON_INTEGER:
		if (e && (json_integer_value(v) >= (1LL << 53) || json_integer_value(v) <= -(1LL << 53)))
			expr_note_big(e, json_integer_value(v));
		return jv_number((double)json_integer_value(v));
	case JSON_REAL:
		return jv_number(json_real_value(v));
	case JSON_STRING:
		return jv_string_sized(json_string_value(v),
		                       (int)json_string_length(v));
	case JSON_ARRAY:
		r = jv_array_sized((int)json_array_size(v));
		json_array_foreach(mv, i, item)
			r = jv_array_append(r, expr_json_to_jv(item, e));
		return r;
	case JSON_OBJECT:
		r = jv_object();
		json_object_keylen_foreach(mv, key, klen, item)
			r = jv_object_set(r, jv_string_sized(key, (int)klen),
			                  expr_json_to_jv(item, e));
		return r;
	}
	return jv_null();
}

/* Returns a new jansson reference for v, which is consumed. Integral
 * numbers within 2^53 become integers; NaN and infinities become null. */
static json_t *expr_jv_to_json(jv v, const struct expr *e)
{
	json_t *r;
	double d;
	int i, n;

	switch (jv_get_kind(v)) {
	case JV_KIND_INVALID:
	case JV_KIND_NULL:
		r = json_null();
		break;
	case JV_KIND_TRUE:
		r = json_true();
		break;
	case JV_KIND_FALSE:
		r = json_false();
		break;
	case JV_KIND_NUMBER:
		d = jv_number_value(v);
		if (isnan(d) || isinf(d))
			r = json_null();
		else if (d == floor(d))
			r = expr_restore_big(e, d);
		else
			r = json_real(d);
		break;
	case JV_KIND_STRING:
		n = jv_string_length_bytes(jv_copy(v));
		r = json_stringn_nocheck(jv_string_value(v), (size_t)n);
		break;
	case JV_KIND_ARRAY:
		r = json_array();
		n = jv_array_length(jv_copy(v));
		for (i = 0; i < n; i++)
			json_array_append_new(r,
				expr_jv_to_json(jv_array_get(jv_copy(v), i), e));
		break;
	case JV_KIND_OBJECT:
		r = json_object();
		jv_object_foreach(v, k, val) {
			n = jv_string_length_bytes(jv_copy(k));
			json_object_setn_new_nocheck(r, jv_string_value(k),
			                             (size_t)n, expr_jv_to_json(val, e));
			jv_free(k);
		}
		break;
	default:
		r = json_null();
		break;
	}
	jv_free(v);
	if (!r) {
		fprintf(stderr, "pipectl: out of memory (jansson)\n");
		abort();
	}
	return r;
}

/* Returns a malloc'd text for an error value (consumed): strings as they
 * are (one trailing newline dropped), anything else JSON-encoded. */
static char *expr_msg_text(jv msg)
{
	char *s;
	size_t n;
	jv d;

	if (jv_get_kind(msg) == JV_KIND_STRING) {
		n = (size_t)jv_string_length_bytes(jv_copy(msg));
		s = xstrndup(jv_string_value(msg), n);
		n = strlen(s);
		if (n > 0 && s[n - 1] == '\n')
			s[n - 1] = '\0';
	} else {
		d = jv_dump_string(jv_copy(msg), 0);
		s = xasprintf("%s (not a string)", jv_string_value(d));
		jv_free(d);
	}
	jv_free(msg);
	return s;
}

/* ------------------------------------------------------------ compiling */

/*
 * jq error callback during compile: keeps the first line of each message
 * without the "jq: error: " prefix and the trailing ':' (the next lines
 * quote our prefixed source), and drops the "jq: N compile errors" summary.
 * Owns msg.
 */
static void expr_compile_err_cb(void *data, jv msg)
{
	struct buf *b = data;
	const char *s;
	size_t n;
	char *t;

	if (jv_get_kind(msg) != JV_KIND_STRING) {
		t = expr_msg_text(msg);
		if (b->len)
			buf_adds(b, "; ");
		buf_adds(b, t);
		free(t);
		return;
	}
	s = jv_string_value(msg);
	if (strncmp(s, "jq: error: ", 11) == 0) {
		s += 11;
	} else if (strncmp(s, "jq: ", 4) == 0) {
		if (strstr(s, " compile error")) {
			jv_free(msg);
			return;
		}
		s += 4;
	}
	n = strcspn(s, "\n");
	if (n > 0 && s[n - 1] == ':')
		n--;
	if (b->len)
		buf_adds(b, "; ");
	buf_add(b, s, n);
	jv_free(msg);
}

/* Error callback while running: errors come back through jq_next, so
 * anything reported here is dropped. Owns msg. */
static void expr_run_err_cb(void *data, jv msg)
{
	(void)data;
	jv_free(msg);
}

/* Returns {"name": name, "value": v or {}} for jq_compile_args. */
static jv expr_arg(const char *name, const json_t *v)
{
	jv a = jv_object();

	a = jv_object_set(a, jv_string("name"), jv_string(name));
	a = jv_object_set(a, jv_string("value"),
	                  v ? expr_json_to_jv(v, NULL) : jv_object());
	return a;
}

/* Compiles EXPR_PREFIX + body with the scope bound. Returns the jq state,
 * or NULL with *err set (malloc'd). */
static jq_state *expr_jq_compile(const char *body, const struct expr_scope *scope,
                                 char **err)
{
	jq_state *jq = jq_init();
	struct buf msgs, prog;
	jv args;
	int ok;

	if (!jq) {
		fprintf(stderr, "pipectl: out of memory (jq_init)\n");
		abort();
	}
	buf_init(&msgs);
	buf_init(&prog);
	buf_adds(&prog, EXPR_PREFIX);
	buf_adds(&prog, body);
	args = jv_array();
	args = jv_array_append(args, expr_arg("__pipectl_params",
	                                      scope ? scope->params : NULL));
	args = jv_array_append(args, expr_arg("__pipectl_run",
	                                      scope ? scope->run : NULL));
	jq_set_error_cb(jq, expr_compile_err_cb, &msgs);
	ok = jq_compile_args(jq, prog.data, args);
	jq_set_error_cb(jq, expr_run_err_cb, NULL);
	buf_free(&prog);
	if (!ok) {
		jq_teardown(&jq);
		*err = msgs.len ? buf_steal(&msgs) : xstrdup("jq: compile error");
		buf_free(&msgs);
		return NULL;
	}
	buf_free(&msgs);
	return jq;
}

/* Off only in tests, which compare the fast path with jq. */
static bool expr_fast = true;

void expr_set_fast_path(bool on)
{
	expr_fast = on;
}

/* Compiles a jq program; NULL with *err (malloc'd, jq's words) on error. */
struct expr *expr_compile(const char *src, const struct expr_scope *scope, char **err)
{
	struct project *proj = expr_fast ? project_parse(src) : NULL;
	struct expr *e;
	jq_state *jq;

	*err = NULL;
	if (proj) {
		/* jq is compiled only for an input the fast path leaves to it. */
		e = xcalloc(1, sizeof(*e));
		e->proj = proj;
		e->src = xstrdup(src);
		e->params = scope && scope->params ? json_deep_copy(scope->params) : NULL;
		e->run = scope && scope->run ? json_deep_copy(scope->run) : NULL;
		return e;
	}
	jq = expr_jq_compile(src, scope, err);
	if (!jq)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	e->jq = jq;
	return e;
}

/* ------------------------------------------------------------ templates */

static size_t expr_scan_group(const char *s, size_t i, char open, char close,
                              bool *comment);

/* s[i] is the opening '"' of a jq string literal. Returns the index just
 * past its closing quote (skipping escapes and \(...) interpolations), or
 * EXPR_NPOS when it does not end. */
static size_t expr_scan_string(const char *s, size_t i)
{
	for (i++; s[i]; ) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] != '\\') {
			i++;
			continue;
		}
		if (s[i + 1] == '(') {
			i = expr_scan_group(s, i + 2, '(', ')', NULL);
			if (i == EXPR_NPOS)
				return EXPR_NPOS;
			i++;
		} else if (s[i + 1] == '\0') {
			return EXPR_NPOS;
		} else {
			i += 2;
		}
	}
	return EXPR_NPOS;
}

/* Scans a jq expression from s[i] to the `close` that ends it (counting
 * nested open/close pairs, skipping string literals). Returns the index of
 * that `close`, or EXPR_NPOS. Sets *comment when a '#' is seen outside
 * strings. */
static size_t expr_scan_group(const char *s, size_t i, char open, char close,
                              bool *comment)
{
	int depth = 1;

	while (s[i]) {
		if (s[i] == '"') {
			i = expr_scan_string(s, i);
			if (i == EXPR_NPOS)
				return EXPR_NPOS;
			continue;
		}
		if (s[i] == '#' && comment)
			*comment = true;
		if (s[i] == open) {
			depth++;
		} else if (s[i] == close) {
			if (--depth == 0)
				return i;
		}
		i++;
	}
	return EXPR_NPOS;
}

/* Appends s[0, n) to b as a jq string literal: quotes, backslashes and
 * control characters escaped, other bytes (UTF-8) as they are. */
static void expr_add_literal(struct buf *b, const char *s, size_t n)
{
	buf_addc(b, '"');
	buf_add_json_escaped(b, s, n, BUF_JSON_DEL);
	buf_addc(b, '"');
}

/* Appends one part as ((expr) | tostring), the meaning of jq's "\(expr)".
 * A '#' comment in the expression would swallow the closing parenthesis:
 * end it with a newline. */
static void expr_add_part(struct buf *b, const char *src, const struct tpl_part *p)
{
	buf_adds(b, "((");
	buf_add(b, src + p->start, p->end - p->start);
	if (p->comment)
		buf_addc(b, '\n');
	buf_adds(b, ") | tostring)");
}

/* Moves the pending literal text (if any) into the program as one more
 * operand of the concatenation. */
static void expr_flush_literal(struct buf *prog, struct buf *lit, bool *first)
{
	if (lit->len == 0)
		return;
	if (!*first)
		buf_adds(prog, " + ");
	*first = false;
	expr_add_literal(prog, lit->data, lit->len);
	buf_reset(lit);
}

/*
 * Parses a template into one jq program and its parts. "a${X}b" becomes
 * "a" + ((X) | tostring) + "b": the same strings as jq's "a\(X)b", but jq
 * 1.6 leaks memory on a syntax error inside a string literal, and a broken
 * ${} part is the common case. Returns 0, or -1 with *err and *err_offset.
 */
static int expr_tpl_parse(const char *src, struct buf *prog, struct tpl_part **parts,
                          size_t *nparts, char **err, size_t *err_offset)
{
	size_t i = 0, cap = 0, end, k;
	bool first = true;
	struct tpl_part p;
	struct buf lit;
	int rc = -1;

	*parts = NULL;
	*nparts = 0;
	buf_init(&lit);
	while (src[i]) {
		if (src[i] != '$' || (src[i + 1] != '{' &&
		                      (src[i + 1] != '$' || src[i + 2] != '{'))) {
			buf_addc(&lit, src[i++]);
			continue;
		}
		if (src[i + 1] == '$') {
			/* "$${" is a literal "${" */
			buf_adds(&lit, "${");
			i += 3;
			continue;
		}
		p.off = i;
		p.start = i + 2;
		p.comment = false;
		end = expr_scan_group(src, p.start, '{', '}', &p.comment);
		if (end == EXPR_NPOS) {
			*err = xstrdup("unterminated \"${\" in template");
			*err_offset = i;
			goto out;
		}
		p.end = end;
		for (k = p.start; k < end && strchr(" \t\r\n", src[k]); k++)
			;
		if (k == end) {
			*err = xstrdup("empty \"${}\" in template");
			*err_offset = i;
			goto out;
		}
		expr_flush_literal(prog, &lit, &first);
		if (!first)
			buf_adds(prog, " + ");
		first = false;
		expr_add_part(prog, src, &p);
		xgrow(parts, &cap, *nparts + 1, sizeof(**parts));
		(*parts)[(*nparts)++] = p;
		i = end + 1;
	}
	expr_flush_literal(prog, &lit, &first);
	if (first)
		buf_adds(prog, "\"\"");
	rc = 0;
out:
	buf_free(&lit);
	return rc;
}

/* After the whole template failed to compile: finds the first part that
 * fails alone and reports its message and offset. Only on the error path,
 * as each compile costs the builtins again. */
static void expr_tpl_blame(const char *src, const struct expr_scope *scope,
                           const struct tpl_part *parts, size_t nparts,
                           char **err, size_t *err_offset)
{
	struct buf prog;
	char *perr = NULL;
	jq_state *jq;
	size_t i;

	*err_offset = nparts ? parts[0].off : 0;
	if (nparts < 2)
		return;
	buf_init(&prog);
	for (i = 0; i < nparts; i++) {
		buf_reset(&prog);
		expr_add_part(&prog, src, &parts[i]);
		jq = expr_jq_compile(prog.data, scope, &perr);
		if (!jq) {
			free(*err);
			*err = perr;
			*err_offset = parts[i].off;
			break;
		}
		jq_teardown(&jq);
	}
	buf_free(&prog);
}

/* Compiles a template; NULL with *err (malloc'd) and *err_offset (offset
 * of the offending "${") on error. */
struct expr *expr_template(const char *src, const struct expr_scope *scope,
                           char **err, size_t *err_offset)
{
	struct tpl_part *parts;
	struct expr *e = NULL;
	struct buf prog;
	size_t nparts;
	jq_state *jq;

	*err = NULL;
	*err_offset = 0;
	if (expr_template_is_const(src)) {
		/* No jq to run: a compile costs milliseconds, and a pipeline may
		 * list thousands of plain URLs. */
		struct buf lit;
		size_t i;
		buf_init(&lit);
		buf_add(&lit, "", 0);
		for (i = 0; src[i]; i++) {
			if (src[i] == '$' && src[i + 1] == '$' && src[i + 2] == '{')
				i++;
			buf_addc(&lit, src[i]);
		}
		e = xcalloc(1, sizeof(*e));
		e->literal = buf_steal(&lit);
		return e;
	}
	buf_init(&prog);
	if (expr_tpl_parse(src, &prog, &parts, &nparts, err, err_offset) < 0)
		goto out;
	jq = expr_jq_compile(prog.data, scope, err);
	if (!jq) {
		expr_tpl_blame(src, scope, parts, nparts, err, err_offset);
		goto out;
	}
	e = xcalloc(1, sizeof(*e));
	e->jq = jq;
out:
	free(parts);
	buf_free(&prog);
	return e;
}

/* True when src has no "${" other than the escaped "$${". */
bool expr_template_is_const(const char *src)
{
	size_t i;

	for (i = 0; src[i]; i++) {
		if (src[i] != '$')
			continue;
		if (src[i + 1] == '$' && src[i + 2] == '{')
			i += 2;
		else if (src[i + 1] == '{')
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ running */

/* Called with the invalid value that ended the output stream (consumed).
 * Returns 0 for a plain end (or `halt`, or halt_error with exit code 0),
 * -1 with *err for a runtime error or halt_error. */
static int expr_finish(struct expr *e, jv last, char **err)
{
	jv code;
	int ok;

	if (jv_invalid_has_msg(jv_copy(last))) {
		*err = expr_msg_text(jv_invalid_get_msg(last));
		return -1;
	}
	jv_free(last);
	if (!jq_halted(e->jq))
		return 0;
	code = jq_get_exit_code(e->jq);
	ok = !jv_is_valid(code) || (jv_get_kind(code) == JV_KIND_NUMBER &&
	                            jv_number_value(code) == 0);
	if (!ok) {
		*err = expr_msg_text(jq_get_error_message(e->jq));
		if (!**err) {
			free(*err);
			*err = xasprintf("halt_error with exit code %g",
			                 jv_get_kind(code) == JV_KIND_NUMBER ?
			                 jv_number_value(code) : -1.0);
		}
	}
	jv_free(code);
	return ok ? 0 : -1;
}

/* With a projection: compiles jq for an input the fast path declined.
 * Returns 0, or -1 with *err. */
static int expr_need_jq(struct expr *e, char **err)
{
	struct expr_scope scope = { e->params, e->run };

	if (e->jq)
		return 0;
	e->jq = expr_jq_compile(e->src, &scope, err);
	return e->jq ? 0 : -1;
}

/* Runs e on input (borrowed), appending each output (new reference) to out.
 * Returns 0, or -1 with *err (malloc'd); earlier outputs stay in out. */
int expr_run(struct expr *e, const json_t *input, json_t *out, char **err)
{
	jv v;

	*err = NULL;
	if (e->literal) {
		json_array_append_new(out, json_stringn_nocheck(e->literal, strlen(e->literal)));
		return 0;
	}
	if (e->proj && (project_run(e->proj, input, out) == 0 || expr_need_jq(e, err) != 0))
		return *err ? -1 : 0;
	e->n_big = 0;
	jq_start(e->jq, expr_json_to_jv(input, e), 0);
	while (jv_is_valid(v = jq_next(e->jq)))
		json_array_append_new(out, expr_jv_to_json(v, e));
	return expr_finish(e, v, err);
}

/* Runs e expecting one output. Returns it (new reference) or NULL with
 * *err (malloc'd). Stops at a second output without running further. */
json_t *expr_eval1(struct expr *e, const json_t *input, char **err)
{
	jv first, v;

	*err = NULL;
	if (e->literal)
		return json_stringn_nocheck(e->literal, strlen(e->literal));
	if (e->proj) {
		json_t *outs = json_array(), *r = NULL;
		int rc = project_run(e->proj, input, outs);
		if (rc == 0 && json_array_size(outs) == 1)
			r = json_incref(json_array_get(outs, 0));
		else if (rc == 0)
			*err = xstrdup(json_array_size(outs) ? "expression produced more than one output"
			                                       : "expression produced no output");
		json_decref(outs);
		if (rc == 0 || expr_need_jq(e, err) != 0)
			return r;
	}
	e->n_big = 0;
	jq_start(e->jq, expr_json_to_jv(input, e), 0);
	first = jq_next(e->jq);
	if (!jv_is_valid(first)) {
		if (expr_finish(e, first, err) == 0)
			*err = xstrdup("expression produced no output");
		return NULL;
	}
	v = jq_next(e->jq);
	if (jv_is_valid(v)) {
		jv_free(v);
		jv_free(first);
		*err = xstrdup("expression produced more than one output");
		return NULL;
	}
	if (expr_finish(e, v, err) < 0) {
		jv_free(first);
		return NULL;
	}
	return expr_jv_to_json(first, e);
}

/* Runs a template. Returns its text (malloc'd, caller frees) or NULL with
 * *err (malloc'd); a non-string result is an error. */
char *expr_render(struct expr *e, const json_t *input, char **err)
{
	json_t *r;
	char *s;

	if (e->literal)
		return xstrdup(e->literal);
	r = expr_eval1(e, input, err);

	if (!r)
		return NULL;
	if (!json_is_string(r)) {
		*err = xasprintf("template produced %s, not a string",
		                 json_is_object(r) ? "an object" :
		                 json_is_array(r) ? "an array" :
		                 json_is_number(r) ? "a number" :
		                 json_is_boolean(r) ? "a boolean" : "null");
		json_decref(r);
		return NULL;
	}
	s = xstrndup(json_string_value(r), json_string_length(r));
	json_decref(r);
	return s;
}

/* Frees e; NULL is fine. */
void expr_free(struct expr *e)
{
	if (!e)
		return;
	if (e->jq)
		jq_teardown(&e->jq);
	project_free(e->proj);
	free(e->src);
	json_decref(e->params);
	json_decref(e->run);
	free(e->literal);
	free(e->big);
	free(e);
}

/* ------------------------------------------------------------ env refs */

static void expr_env_scan(const char *src, json_t *names, bool undefaulted);

static bool expr_is_ident(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

/* Appends name (n bytes) to names unless it is already there. */
static void expr_add_name(json_t *names, const char *name, size_t n)
{
	size_t i;
	json_t *v;

	json_array_foreach(names, i, v) {
		if (json_is_string(v) && json_string_length(v) == n &&
		    memcmp(json_string_value(v), name, n) == 0)
			return;
	}
	json_array_append_new(names, json_stringn(name, n));
}

/* At s (just after "env" or "$ENV"): matches ".NAME" or `["NAME"]`.
 * Returns the name's length and start in *name, or 0. */
static size_t expr_env_name(const char *s, const char **name)
{
	size_t n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '.') {
		s++;
		if (!expr_is_ident(*s, true))
			return 0;
		while (expr_is_ident(s[n], false))
			n++;
		*name = s;
		return n;
	}
	if (*s != '[')
		return 0;
	for (s++; *s == ' ' || *s == '\t'; s++)
		;
	if (*s != '"')
		return 0;
	s++;
	while (s[n] && s[n] != '"' && s[n] != '\\')
		n++;
	if (s[n] != '"' || n == 0)
		return 0;
	*name = s;
	return n;
}

/* Appends to names (array) each distinct env variable src reads through
 * env.NAME, $ENV.NAME, env["NAME"] or $ENV["NAME"]. Best effort. */
void expr_env_refs(const char *src, json_t *names)
{
	expr_env_scan(src, names, false);
}

/* Names that the jq expression src reads without a default: a reference
 * is defaulted when "//" follows it in the expression. */
static void expr_env_scan_undefaulted(const char *src, json_t *names)
{
	expr_env_scan(src, names, true);
}

/* Appends to names the env variables src (a template when tmpl, else a jq
 * program) reads without a default ("${env.X // \"\"}"). */
void expr_env_undefaulted(const char *src, bool tmpl, json_t *names)
{
	struct tpl_part *parts = NULL;
	size_t nparts = 0, i, off;
	struct buf prog;
	char *err = NULL;

	if (!tmpl) {
		expr_env_scan_undefaulted(src, names);
		return;
	}
	buf_init(&prog);
	if (expr_tpl_parse(src, &prog, &parts, &nparts, &err, &off) == 0) {
		for (i = 0; i < nparts; i++) {
			char *part = xstrndup(src + parts[i].start, parts[i].end - parts[i].start);
			expr_env_scan_undefaulted(part, names);
			free(part);
		}
	}
	free(err);
	free(parts);
	buf_free(&prog);
}

/* True when the expression going on at s (just after a reference) gives
 * it a default: a "//" before the term ends (a ',' or '|' at its level, or
 * the bracket that encloses it). */
static bool expr_ref_defaulted(const char *s)
{
	int depth = 0;
	size_t i = 0, k;

	while (s[i]) {
		char c = s[i];
		if (c == '"') {
			k = expr_scan_string(s, i);
			if (k == EXPR_NPOS)
				return false;
			i = k;
			continue;
		}
		if (c == '/' && s[i + 1] == '/' && depth == 0)
			return true;
		if (c == '(' || c == '[' || c == '{') {
			depth++;
		} else if (c == ')' || c == ']' || c == '}') {
			if (--depth < 0)
				return false;
		} else if ((c == ',' || c == '|') && depth == 0) {
			return false;
		}
		i++;
	}
	return false;
}

/* The scan behind expr_env_refs: with undefaulted, only references that no
 * "//" follows. */
static void expr_env_scan(const char *src, json_t *names, bool undefaulted)
{
	const char *name;
	size_t i, n, len;
	char prev;

	for (i = 0; src[i]; i++) {
		prev = i ? src[i - 1] : ' ';
		if (strncmp(src + i, "$ENV", 4) == 0)
			len = 4;
		else if (strncmp(src + i, "env", 3) == 0 && prev != '$' && prev != '.')
			len = 3;
		else
			continue;
		if (expr_is_ident(prev, false) || expr_is_ident(src[i + len], false))
			continue;
		n = expr_env_name(src + i + len, &name);
		if (n > 0 && !(undefaulted && expr_ref_defaulted(name + n)))
			expr_add_name(names, name, n);
		i += len - 1;
	}
}

/* ------------------------------------------------------------ input refs */

#define EXPR_MAX_NEST 64

/*
 * The offset in e (a jq expression, n bytes) of the first reference to the
 * input ("." starting a path: .id, .[0], ..), or EXPR_NPOS. Only where "."
 * surely is the input: at the top of the expression or in groupings,
 * arrays, objects and indexes, before any "|" at that level; not in
 * function arguments (map(.x)), not after a pipe (params | .x), not in
 * string literals.
 */
static size_t expr_input_ref_in(const char *e, size_t n)
{
	bool ctx[EXPR_MAX_NEST];
	size_t i = 0, d = 0, k;
	char pc = '\0';

	ctx[0] = true;
	while (i < n) {
		char c = e[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			i++;
			continue;
		}
		if (c == '"') {
			k = expr_scan_string(e, i);
			if (k == EXPR_NPOS || k > n)
				return EXPR_NPOS;
			i = k;
			pc = '"';
			continue;
		}
		if (c == '#') {
			while (i < n && e[i] != '\n')
				i++;
			continue;
		}
		if (c == '(' || c == '[' || c == '{') {
			bool inherit = c != '(' || !expr_is_ident(pc, false);
			if (d + 1 >= EXPR_MAX_NEST)
				return EXPR_NPOS;
			ctx[d + 1] = inherit && ctx[d];
			d++;
		} else if (c == ')' || c == ']' || c == '}') {
			if (d > 0)
				d--;
		} else if (c == '|') {
			ctx[d] = false;
		} else if (c == '.' && ctx[d] && !expr_is_ident(pc, false) &&
		           !strchr(")]}\"?.$", pc ? pc : 'x')) {
			return i;
		}
		pc = c;
		i++;
	}
	return EXPR_NPOS;
}

/* Offset in src of the first reference to the input record, or -1. */
size_t expr_input_ref(const char *src, bool tmpl)
{
	struct tpl_part *parts = NULL;
	size_t nparts = 0, i, off, r = EXPR_NPOS;
	struct buf prog;
	char *err = NULL;

	if (!tmpl)
		return expr_input_ref_in(src, strlen(src));
	buf_init(&prog);
	if (expr_tpl_parse(src, &prog, &parts, &nparts, &err, &off) == 0) {
		for (i = 0; i < nparts && r == EXPR_NPOS; i++) {
			off = expr_input_ref_in(src + parts[i].start, parts[i].end - parts[i].start);
			if (off != EXPR_NPOS)
				r = parts[i].start + off;
		}
	}
	free(err);
	free(parts);
	buf_free(&prog);
	return r;
}
