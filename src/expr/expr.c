/*
 * expr: jq programs and ${...} templates over jansson values, compiled once
 * per process and shared (see struct expr_prog), run per record with
 * params/run in scope ($__pipectl_params/_run behind `params` and `run`).
 * The only file that includes jq.h.
 */
#include "expr/expr.h"

#include <math.h>
#include <stdint.h>
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

/*
 * Compiled programs are shared process-wide. libjq 1.6 compiles its builtins
 * again for every jq_compile (tens of milliseconds), so the distinct texts
 * known at a time are compiled together into one jq program (a unit): each
 * becomes a branch of a balanced if-tree on an index passed with the input,
 * and params/run are passed with the input too, so one compiled text serves
 * every scope (validation, each stage, resume, replay):
 *
 *   . as $__pipectl_w
 *   | def params: $__pipectl_w[2] as $__pipectl_p | $__pipectl_p;
 *     def run: $__pipectl_w[3] as $__pipectl_r | $__pipectl_r;
 *   $__pipectl_w[0] as $__pipectl_i | $__pipectl_w[1]
 *   | if $__pipectl_i < 1 then (P0
 *   ) else (P1
 *   ) end
 *
 * on [index, record, params, run]. The record is reached with one binding
 * and one index; params and run (bound to a variable, so that path(params)
 * fails with the same message as alone) only when a program asks.
 *
 * Runs happen one at a time on one thread and each runs to its end before
 * expr_run/expr_eval1 returns, so one jq_state can serve all its programs.
 */
enum prog_state {
	PROG_PENDING,                  /* registered, not compiled yet */
	PROG_OK,                       /* a branch of unit */
	PROG_SOLO,                     /* compiles alone but not as a branch (a
	                                  program of definitions only, a module
	                                  directive): one jq_state per handle */
	PROG_ERR,                      /* does not compile: err, err_offset */
};

struct expr_unit {
	jq_state *jq;
	size_t n_progs;                /* progs still pointing here */
};

/* One distinct text (a program, or a template), compiled at most once. */
struct expr_prog {
	char *src;                     /* as written */
	bool tmpl;
	char *body;                    /* the jq program (a template translated) */
	enum prog_state state;
	char *err;                     /* PROG_ERR: the message, as a lone compile gives */
	size_t err_offset;             /* PROG_ERR of a template: its "${" */
	struct expr_unit *unit;        /* PROG_OK */
	size_t index;                  /* PROG_OK: the branch in unit */
	size_t handles;                /* live struct expr onto it */
	struct expr_prog *hnext;       /* hash chain */
	struct expr_prog *pnext;       /* the pending list */
};

/* A compiled program or template as its user holds it: the shared program
 * and the scope it runs with. */
struct expr {
	struct expr_prog *prog;        /* NULL for a constant template, or
	                                  (with proj) until jq is first needed */
	jq_state *own;                 /* PROG_SOLO: compiled with the scope bound */
	struct project *proj;          /* the fast path (project.h), or NULL */
	char *src;                     /* with proj: the program jq runs when needed */
	char *literal;                 /* a constant template's text */
	jv params, run;                /* the scope */
	unsigned long runs;            /* PROG_OK: until EXPR_HOT_RUNS */
	struct big_int *big;           /* of the input being processed */
	size_t n_big, cap_big;
};

/* The process-wide table of programs, by (tmpl, src). */
static struct {
	struct expr_prog **buckets;
	size_t n_buckets, n;
	struct expr_prog *pending, **pending_tail;
	size_t n_pending;
	unsigned long compiles;        /* jq_compile_args calls */
} cache;

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

/* Returns {"name": name, "value": v} (v consumed) for jq_compile_args. */
static jv expr_arg(const char *name, jv v)
{
	jv a = jv_object();

	a = jv_object_set(a, jv_string("name"), jv_string(name));
	a = jv_object_set(a, jv_string("value"), v);
	return a;
}

/* Compiles EXPR_PREFIX + body with params and run (consumed) bound: a
 * program on its own, as a program was always compiled. Returns the jq
 * state, or NULL with *err set (malloc'd). */
static jq_state *expr_jq_compile(const char *body, jv params, jv run, char **err)
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
	args = jv_array_append(args, expr_arg("__pipectl_params", params));
	args = jv_array_append(args, expr_arg("__pipectl_run", run));
	jq_set_error_cb(jq, expr_compile_err_cb, &msgs);
	cache.compiles++;
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

/* True when src is a program the fast path runs (project.h): valid jq by
 * construction, so neither validation nor a run needs libjq for it. */
static bool expr_is_projection(const char *src)
{
	struct project *p;

	if (!expr_fast)
		return false;
	p = project_parse(src);
	project_free(p);
	return p != NULL;
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
static void expr_tpl_blame(const char *src, const struct tpl_part *parts, size_t nparts,
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
		jq = expr_jq_compile(prog.data, jv_object(), jv_object(), &perr);
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

/* ------------------------------------------------------------ the cache */

/* FNV-1a of src, told apart by tmpl. */
static size_t expr_hash(const char *src, bool tmpl)
{
	uint64_t h = tmpl ? 0x811c9dc5u : 14695981039346656037u;

	for (; *src; src++)
		h = (h ^ (unsigned char)*src) * 1099511628211u;
	return (size_t)h;
}

static void expr_cache_grow(void)
{
	size_t nb = cache.n_buckets ? cache.n_buckets * 2 : 64, i, k;
	struct expr_prog **b = xcalloc(nb, sizeof(*b)), *p, *next;

	for (i = 0; i < cache.n_buckets; i++) {
		for (p = cache.buckets[i]; p; p = next) {
			next = p->hnext;
			k = expr_hash(p->src, p->tmpl) % nb;
			p->hnext = b[k];
			b[k] = p;
		}
	}
	free(cache.buckets);
	cache.buckets = b;
	cache.n_buckets = nb;
}

/* Returns the program for (src, tmpl) (owned by the cache), registering it
 * as pending when it is new. A template that does not parse is PROG_ERR at
 * once. */
static struct expr_prog *expr_prog_get(const char *src, bool tmpl)
{
	struct tpl_part *parts = NULL;
	struct expr_prog *p;
	struct buf prog;
	size_t k, nparts;

	if (cache.n_buckets) {
		k = expr_hash(src, tmpl) % cache.n_buckets;
		for (p = cache.buckets[k]; p; p = p->hnext)
			if (p->tmpl == tmpl && strcmp(p->src, src) == 0)
				return p;
	}
	if (!cache.buckets) {
		/* A started jq_state points only past the end of its stack, so
		 * leak checkers count the units still cached at exit as leaks. */
		static bool at_exit;
		if (!at_exit)
			atexit(expr_cache_clear);
		at_exit = true;
	}
	if (cache.n >= cache.n_buckets)
		expr_cache_grow();
	p = xcalloc(1, sizeof(*p));
	p->src = xstrdup(src);
	p->tmpl = tmpl;
	if (tmpl) {
		buf_init(&prog);
		if (expr_tpl_parse(src, &prog, &parts, &nparts, &p->err, &p->err_offset) < 0)
			p->state = PROG_ERR;
		else
			p->body = buf_steal(&prog);
		free(parts);
		buf_free(&prog);
	} else {
		p->body = xstrdup(src);
	}
	k = expr_hash(src, tmpl) % cache.n_buckets;
	p->hnext = cache.buckets[k];
	cache.buckets[k] = p;
	cache.n++;
	if (p->state == PROG_PENDING) {
		if (!cache.pending_tail)
			cache.pending_tail = &cache.pending;
		*cache.pending_tail = p;
		cache.pending_tail = &p->pnext;
		cache.n_pending++;
	}
	return p;
}

/*
 * True when body means the same as a branch "(" body "\n)" of a unit as it
 * does alone: its parentheses balance and its strings end (so it cannot
 * close the branch or reach into the next one), it has no comment (which
 * could hide either from this scan) and does not ask for its own location
 * ($__loc__, whose line differs in a unit) or name ours (__pipectl_,
 * bound differently in a unit). Conservative: a false answer
 * only costs a compile of its own.
 */
static bool expr_body_combinable(const char *b)
{
	size_t i = 0;
	long depth = 0;

	if (strstr(b, "$__loc__") || strstr(b, "__pipectl_"))
		return false;
	while (b[i]) {
		if (b[i] == '"') {
			i = expr_scan_string(b, i);
			if (i == EXPR_NPOS)
				return false;
			continue;
		}
		if (b[i] == '#')
			return false;
		if (b[i] == '(')
			depth++;
		else if (b[i] == ')' && --depth < 0)
			return false;
		i++;
	}
	return depth == 0;
}

/* Appends the dispatch over v[lo, hi) to b: a balanced if-tree on
 * $__pipectl_i with each program as a branch. */
static void expr_add_tree(struct buf *b, struct expr_prog **v, size_t lo, size_t hi)
{
	size_t mid;

	if (hi - lo == 1) {
		buf_addc(b, '(');
		buf_adds(b, v[lo]->body);
		buf_adds(b, "\n)");
		return;
	}
	mid = lo + (hi - lo) / 2;
	buf_printf(b, "if $__pipectl_i < %zu then ", mid);
	expr_add_tree(b, v, lo, mid);
	buf_adds(b, " else ");
	expr_add_tree(b, v, mid, hi);
	buf_adds(b, " end");
}

/* The most programs in one unit. libjq 1.6 compiles a unit in about its
 * builtins' time (25-40 ms) plus 0.3-1 ms per branch up to a few hundred
 * branches, then its time grows faster than the branches (1,000: 1.6 s). */
#define EXPR_UNIT_MAX 256

/* The start of a unit: the scope and the branch index come with the input
 * ([index, record, params, run]); no newline before the branches. */
#define EXPR_UNIT_HEAD \
	". as $__pipectl_w | " \
	"def params: $__pipectl_w[2] as $__pipectl_p | $__pipectl_p; " \
	"def run: $__pipectl_w[3] as $__pipectl_r | $__pipectl_r; "

/* Compiles v[0, n) as one unit. Returns true and makes them PROG_OK, or
 * false (nothing changed) when the unit does not compile. */
static bool expr_unit_compile(struct expr_prog **v, size_t n)
{
	jq_state *jq = jq_init();
	struct expr_unit *u;
	struct buf prog, msgs;
	size_t i;
	int ok;

	if (!jq) {
		fprintf(stderr, "pipectl: out of memory (jq_init)\n");
		abort();
	}
	buf_init(&prog);
	buf_init(&msgs);
	buf_adds(&prog, EXPR_UNIT_HEAD);
	if (n > 1)
		buf_adds(&prog, "$__pipectl_w[0] as $__pipectl_i | ");
	buf_adds(&prog, "$__pipectl_w[1] | ");
	expr_add_tree(&prog, v, 0, n);
	jq_set_error_cb(jq, expr_compile_err_cb, &msgs);
	cache.compiles++;
	ok = jq_compile_args(jq, prog.data, jv_array());
	jq_set_error_cb(jq, expr_run_err_cb, NULL);
	buf_free(&prog);
	buf_free(&msgs);
	if (!ok) {
		jq_teardown(&jq);
		return false;
	}
	u = xcalloc(1, sizeof(*u));
	u->jq = jq;
	u->n_progs = n;
	for (i = 0; i < n; i++) {
		v[i]->unit = u;
		v[i]->index = i;
		v[i]->state = PROG_OK;
	}
	return true;
}

/* p did not compile in a unit: compiles it alone, as a program always was
 * (EXPR_PREFIX, params/run bound), for jq's own message and, for a
 * template, the part it blames (PROG_ERR), or to learn that it only fails
 * as a branch (PROG_SOLO). */
static void expr_prog_alone(struct expr_prog *p)
{
	struct tpl_part *parts = NULL;
	size_t nparts = 0;
	struct buf prog;
	jq_state *jq;

	jq = expr_jq_compile(p->body, jv_object(), jv_object(), &p->err);
	if (jq) {
		jq_teardown(&jq);
		p->state = PROG_SOLO;
		return;
	}
	p->state = PROG_ERR;
	if (!p->tmpl)
		return;
	buf_init(&prog);
	if (expr_tpl_parse(p->src, &prog, &parts, &nparts, &p->err, &p->err_offset) == 0)
		expr_tpl_blame(p->src, parts, nparts, &p->err, &p->err_offset);
	free(parts);
	buf_free(&prog);
}

/* Compiles v[0, n) in as few units as their errors allow: all in one, else
 * each half the same way, down to single programs that fail alone. */
static void expr_compile_group(struct expr_prog **v, size_t n)
{
	if (n == 0 || expr_unit_compile(v, n))
		return;
	if (n == 1) {
		expr_prog_alone(v[0]);
		return;
	}
	expr_compile_group(v, n / 2);
	expr_compile_group(v + n / 2, n - n / 2);
}

/* Compiles every pending program: those that can be branches in one unit
 * (one compile of libjq's builtins for all), the others alone. */
static void expr_flush(void)
{
	struct expr_prog **v, *p;
	size_t n = 0, i;

	if (!cache.n_pending)
		return;
	v = xcalloc(cache.n_pending, sizeof(*v));
	for (p = cache.pending; p; p = p->pnext) {
		if (expr_body_combinable(p->body))
			v[n++] = p;
		else
			expr_prog_alone(p);
	}
	cache.pending = NULL;
	cache.pending_tail = &cache.pending;
	cache.n_pending = 0;
	for (i = 0; i < n; i += EXPR_UNIT_MAX)
		expr_compile_group(v + i, n - i < EXPR_UNIT_MAX ? n - i : EXPR_UNIT_MAX);
	free(v);
}

/* Registers src for the next compile without compiling it. A program the
 * fast path runs is not registered: libjq compiles it only if an input
 * needs jq. */
void expr_prepare(const char *src, bool tmpl)
{
	if (tmpl ? !expr_template_is_const(src) : !expr_is_projection(src))
		expr_prog_get(src, tmpl);
}

/* Compiles p if it is pending. Returns 0 when it compiles, else -1 with
 * *err (malloc'd) and, for a template, *err_offset. */
static int expr_prog_check(struct expr_prog *p, char **err, size_t *err_offset)
{
	if (p->state == PROG_PENDING)
		expr_flush();
	if (p->state != PROG_ERR)
		return 0;
	*err = xstrdup(p->err ? p->err : "jq: compile error");
	if (err_offset)
		*err_offset = p->err_offset;
	return -1;
}

/* Returns 0 when src compiles, else -1 with *err (malloc'd) and, for a
 * template, *err_offset. */
int expr_check(const char *src, bool tmpl, char **err, size_t *err_offset)
{
	*err = NULL;
	if (err_offset)
		*err_offset = 0;
	if (tmpl ? expr_template_is_const(src) : expr_is_projection(src))
		return 0;
	return expr_prog_check(expr_prog_get(src, tmpl), err, err_offset);
}

/* Points e (its scope set) at the compiled program p. Returns 0, or -1
 * with *err (and *err_offset) set. */
static int expr_attach(struct expr *e, struct expr_prog *p, char **err, size_t *err_offset)
{
	if (expr_prog_check(p, err, err_offset) < 0)
		return -1;
	if (p->state == PROG_SOLO &&
	    !(e->own = expr_jq_compile(p->body, jv_copy(e->params), jv_copy(e->run), err)))
		return -1;      /* it compiled alone before, with other values: cannot happen */
	e->prog = p;
	p->handles++;
	return 0;
}

/* Returns a handle on the program (src, tmpl) run with scope, or NULL with
 * *err (and *err_offset) set. A program the fast path runs gets its jq
 * program only when an input needs it (expr_need_jq). */
static struct expr *expr_open(const char *src, bool tmpl, const struct expr_scope *scope,
                              char **err, size_t *err_offset)
{
	struct project *proj = !tmpl && expr_fast ? project_parse(src) : NULL;
	struct expr *e;

	*err = NULL;
	if (err_offset)
		*err_offset = 0;
	e = xcalloc(1, sizeof(*e));
	e->params = scope && scope->params ? expr_json_to_jv(scope->params, NULL) : jv_object();
	e->run = scope && scope->run ? expr_json_to_jv(scope->run, NULL) : jv_object();
	if (proj) {
		e->proj = proj;
		e->src = xstrdup(src);
		return e;
	}
	if (expr_attach(e, expr_prog_get(src, tmpl), err, err_offset) < 0) {
		expr_free(e);
		return NULL;
	}
	return e;
}

/* Compiles a jq program; NULL with *err (malloc'd, jq's words) on error. */
struct expr *expr_compile(const char *src, const struct expr_scope *scope, char **err)
{
	return expr_open(src, false, scope, err, NULL);
}

/* Compiles a template; NULL with *err (malloc'd) and *err_offset (offset
 * of the offending "${") on error. */
struct expr *expr_template(const char *src, const struct expr_scope *scope,
                           char **err, size_t *err_offset)
{
	struct expr *e;
	struct buf lit;
	size_t i;

	*err = NULL;
	*err_offset = 0;
	if (!expr_template_is_const(src))
		return expr_open(src, true, scope, err, err_offset);
	/* No jq to run: a pipeline may list thousands of plain URLs. */
	buf_init(&lit);
	buf_add(&lit, "", 0);
	for (i = 0; src[i]; i++) {
		if (src[i] == '$' && src[i + 1] == '$' && src[i + 2] == '{')
			i++;
		buf_addc(&lit, src[i]);
	}
	e = xcalloc(1, sizeof(*e));
	e->literal = buf_steal(&lit);
	e->params = jv_null();
	e->run = jv_null();
	return e;
}

/* The number of jq programs libjq compiled in this process. */
unsigned long expr_compiles(void)
{
	return cache.compiles;
}

/* Frees the programs no handle holds (pending ones included). */
void expr_cache_clear(void)
{
	struct expr_prog **pp, *p;
	size_t i;

	cache.pending = NULL;
	cache.pending_tail = &cache.pending;
	cache.n_pending = 0;
	for (i = 0; i < cache.n_buckets; i++) {
		pp = &cache.buckets[i];
		while ((p = *pp)) {
			if (p->handles) {      /* compiled: a handle is never pending */
				pp = &p->hnext;
				continue;
			}
			*pp = p->hnext;
			if (p->unit && --p->unit->n_progs == 0) {
				jq_teardown(&p->unit->jq);
				free(p->unit);
			}
			free(p->src);
			free(p->body);
			free(p->err);
			free(p);
			cache.n--;
		}
	}
	if (cache.n == 0) {
		free(cache.buckets);
		cache.buckets = NULL;
		cache.n_buckets = 0;
	}
}

/* ------------------------------------------------------------ running */

/* After a halt: libjq 1.6 frees the halt's exit code and message at every
 * jq_start (and at jq_teardown) but keeps them, so a second start after a
 * halt_error frees its message twice. One start frees them; jq_halt then
 * replaces them with values that need no freeing (halted again until the
 * next start). */
static void expr_halt_reset(jq_state *jq)
{
	jq_start(jq, jv_null(), 0);
	jq_halt(jq, jv_invalid(), jv_invalid());
}

/* Called with the invalid value that ended the output stream (consumed).
 * Returns 0 for a plain end (or `halt`, or halt_error with exit code 0),
 * -1 with *err for a runtime error or halt_error. */
static int expr_finish(jq_state *jq, jv last, char **err)
{
	jv code;
	int ok;

	if (jv_invalid_has_msg(jv_copy(last))) {
		*err = expr_msg_text(jv_invalid_get_msg(last));
		return -1;
	}
	jv_free(last);
	if (!jq_halted(jq))
		return 0;
	code = jq_get_exit_code(jq);
	ok = !jv_is_valid(code) || (jv_get_kind(code) == JV_KIND_NUMBER &&
	                            jv_number_value(code) == 0);
	if (!ok) {
		*err = expr_msg_text(jq_get_error_message(jq));
		if (!**err) {
			free(*err);
			*err = xasprintf("halt_error with exit code %g",
			                 jv_get_kind(code) == JV_KIND_NUMBER ?
			                 jv_number_value(code) : -1.0);
		}
	}
	jv_free(code);
	expr_halt_reset(jq);
	return ok ? 0 : -1;
}

/* Starts e on input (borrowed); returns the jq_state to read it from. */
static jq_state *expr_start(struct expr *e, const json_t *input)
{
	char *err = NULL;
	jv in, w;

	e->n_big = 0;
	in = expr_json_to_jv(input, e);
	if (!e->own && ++e->runs == EXPR_HOT_RUNS) {
		/* Running as a branch costs a few bytecode operations per run;
		 * for this many runs, one compile of its own with the scope
		 * bound pays back (on failure, which cannot happen as the text
		 * compiled alone or in a unit before, it stays a branch). */
		e->own = expr_jq_compile(e->prog->body, jv_copy(e->params), jv_copy(e->run), &err);
		free(err);
	}
	if (e->own) {
		jq_start(e->own, in, 0);
		return e->own;
	}
	w = jv_array_sized(4);
	w = jv_array_append(w, jv_number((double)e->prog->index));
	w = jv_array_append(w, in);
	w = jv_array_append(w, jv_copy(e->params));
	w = jv_array_append(w, jv_copy(e->run));
	jq_start(e->prog->unit->jq, w, 0);
	return e->prog->unit->jq;
}

/* With a projection: attaches the jq program for an input the fast path
 * declined. Returns 0, or -1 with *err. */
static int expr_need_jq(struct expr *e, char **err)
{
	if (e->prog)
		return 0;
	return expr_attach(e, expr_prog_get(e->src, false), err, NULL);
}

/* Runs e on input (borrowed), appending each output (new reference) to out.
 * Returns 0, or -1 with *err (malloc'd); earlier outputs stay in out. */
int expr_run(struct expr *e, const json_t *input, json_t *out, char **err)
{
	jq_state *jq;
	jv v;

	*err = NULL;
	if (e->literal) {
		json_array_append_new(out, json_stringn_nocheck(e->literal, strlen(e->literal)));
		return 0;
	}
	if (e->proj && (project_run(e->proj, input, out) == 0 || expr_need_jq(e, err) != 0))
		return *err ? -1 : 0;
	jq = expr_start(e, input);
	while (jv_is_valid(v = jq_next(jq)))
		json_array_append_new(out, expr_jv_to_json(v, e));
	return expr_finish(jq, v, err);
}

/* Runs e expecting one output. Returns it (new reference) or NULL with
 * *err (malloc'd). Stops at a second output without running further. */
json_t *expr_eval1(struct expr *e, const json_t *input, char **err)
{
	jq_state *jq;
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
	jq = expr_start(e, input);
	first = jq_next(jq);
	if (!jv_is_valid(first)) {
		if (expr_finish(jq, first, err) == 0)
			*err = xstrdup("expression produced no output");
		return NULL;
	}
	v = jq_next(jq);
	if (jv_is_valid(v)) {
		jv_free(v);
		jv_free(first);
		*err = xstrdup("expression produced more than one output");
		return NULL;
	}
	if (expr_finish(jq, v, err) < 0) {
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
	if (e->own)
		jq_teardown(&e->own);
	if (e->prog)
		e->prog->handles--;
	project_free(e->proj);
	free(e->src);
	jv_free(e->params);
	jv_free(e->run);
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
