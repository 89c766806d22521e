/*
 * option: the typed readers of a pipeline file's values, and the walker
 * that reads a stage kind's mapping through its option table (option.h).
 * Every reader reports what is wrong as a diagnostic at the value's
 * position and carries on, so one run shows every error. jq expressions
 * and ${...} templates are compiled once each (cached by text) to check
 * them, then freed.
 */
#include "core/option.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "core/option_ctx.h"

/* ------------------------------------------------------------ names */

static const char *const retry_keys[] = {
	"attempts", "backoff", "initial", "max", "jitter", "on", "retry_on", "when", NULL
};
/* in the order of enum backoff_kind, enum jitter_kind */
static const char *const backoffs[] = { "constant", "linear", "exponential", NULL };
static const char *const jitters[] = { "none", "full", "equal", NULL };
static const char *const retry_words[] = {
	"connect", "timeout", "network", "5xx", "4xx", "invalid_body", NULL
};
static const unsigned retry_bits[] = {
	RETRY_ON_CONNECT, RETRY_ON_TIMEOUT, RETRY_ON_NETWORK, RETRY_ON_5XX, RETRY_ON_4XX,
	RETRY_ON_INVALID_BODY
};

/* ^[A-Za-z_][A-Za-z0-9_]*$ (extra: further characters allowed after the first) */
bool opt_name_ok(const char *s, bool digit_first, const char *extra)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!(isascii(*p) && (isalpha(*p) || (digit_first ? isdigit(*p) : *p == '_'))))
		return false;
	for (p++; *p; p++)
		if (!(isascii(*p) && (isalnum(*p) || *p == '_' || (*p && strchr(extra, *p)))))
			return false;
	return true;
}

/* An HTTP token: [!#$%&'*+.^_`|~0-9A-Za-z-]+ */
bool opt_token_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!*p)
		return false;
	for (; *p; p++)
		if (!(isascii(*p) && (isalnum(*p) || strchr("!#$%&'*+.^_`|~-", *p))))
			return false;
	return true;
}

/* The best candidate for a misspelt name, or NULL when none is close. */
const char *opt_suggest(const char *name, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, i;

	for (i = 0; i < n; i++) {
		size_t len = strlen(cands[i]);
		size_t lim = len / 3 > 2 ? len / 3 : 2;
		size_t d = edit_distance(name, cands[i]);
		if (d <= lim && d < len && d < strlen(name) && d < best_d) {
			best = cands[i];
			best_d = d;
		}
	}
	return best;
}

static size_t strv_len(const char *const *v)
{
	size_t n = 0;

	while (v[n])
		n++;
	return n;
}

/*
 * Checks that v (the value of key, what names it in messages) is a mapping
 * (null counts as an empty one) and reports keys not in allowed, suggesting
 * the closest (allowed NULL: any key). where is "in fetch" etc. Returns false
 * when v is no mapping.
 */
bool opt_map_check(struct opt_ctx *c, const struct ynode *v, const char *what,
                      const char *where, const char *const *allowed)
{
	size_t i, j, n_allowed = allowed ? strv_len(allowed) : 0;

	if (v->kind == YN_BAD || ynode_is_null(v))
		return v->kind != YN_BAD;
	if (v->kind != YN_MAP) {
		diags_add(c->d, cpos(c, v), "expected a mapping for %s, got %s", what,
		          ynode_describe(v));
		return false;
	}
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *k = v->kids[i];
		const char *s;
		if (k->kind != YN_SCALAR || !allowed)
			continue;
		for (j = 0; j < n_allowed; j++)
			if (strcmp(k->s, allowed[j]) == 0)
				break;
		if (j < n_allowed)
			continue;
		s = opt_suggest(k->s, allowed, n_allowed);
		if (s)
			diags_add(c->d, cpos(c, k), "unknown key \"%s\" %s (did you mean \"%s\"?)",
			          k->s, where, s);
		else
			diags_add(c->d, cpos(c, k), "unknown key \"%s\" %s", k->s, where);
	}
	return true;
}

/* Where to report something about mapping v given under key k. */
struct pos opt_map_pos(const struct opt_ctx *c, const struct ynode *k, const struct ynode *v)
{
	return cpos(c, v->kind == YN_MAP && v->n > 0 ? v : k);
}

void opt_missing(struct opt_ctx *c, struct pos p, const char *name, const char *where)
{
	diags_add(c->d, p, "missing required key \"%s\" %s", name, where);
}

/* A string: any scalar except null. Returns true and sets out (copy). */
bool opt_read_str(struct opt_ctx *c, const struct ynode *v, const char *name,
                          struct sval *out)
{
	if (v->kind == YN_BAD)
		return false;
	if (v->kind != YN_SCALAR || ynode_is_null(v)) {
		diags_add(c->d, cpos(c, v), "expected a string for \"%s\", got %s", name,
		          ynode_describe(v));
		return false;
	}
	if (strlen(v->s) != v->len) {
		diags_add(c->d, cpos(c, v), "\"%s\" must not contain a NUL character", name);
		return false;
	}
	free(out->s);
	out->s = xstrdup(v->s);
	out->pos = cpos(c, v);
	return true;
}

/* Key name of map m as a string, if present. Returns the value node or NULL. */
const struct ynode *opt_get_str(struct opt_ctx *c, const struct ynode *m, const char *name,
                                    struct sval *out)
{
	const struct ynode *v = ynode_get(m, name, NULL);

	if (v && !opt_read_str(c, v, name, out))
		return NULL;
	return v;
}

void opt_get_plain_str(struct opt_ctx *c, const struct ynode *m, const char *name, char **out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };

	opt_get_str(c, m, name, &sv);
	if (sv.s) {
		free(*out);
		*out = sv.s;
	}
}

/* An integer lo..hi under key name of m. Returns the value node when one
 * was read into *out, NULL when absent or invalid (reported). */
const struct ynode *opt_get_integer(struct opt_ctx *c, const struct ynode *m, const char *name,
                                        long long lo, long long hi, long long *out)
{
	const struct ynode *v = ynode_get(m, name, NULL);
	long long x;

	if (!v || v->kind == YN_BAD)
		return NULL;
	if (!ynode_plain(v) || !text_is_int(v->s)) {
		diags_add(c->d, cpos(c, v), "expected an integer for \"%s\", got %s", name,
		          ynode_describe(v));
		return NULL;
	}
	errno = 0;
	x = strtoll(v->s, NULL, 10);
	if (errno || x < lo || x > hi) {
		diags_add(c->d, cpos(c, v),
		          "invalid value %s for \"%s\": expected an integer from %lld to %lld",
		          v->s, name, lo, hi);
		return NULL;
	}
	*out = x;
	return v;
}

void opt_get_int(struct opt_ctx *c, const struct ynode *m, const char *name,
                     long long lo, long long hi, int *out)
{
	long long x;

	if (opt_get_integer(c, m, name, lo, hi, &x))
		*out = (int)x;
}

void opt_get_bool(struct opt_ctx *c, const struct ynode *m, const char *name, int *out)
{
	const struct ynode *v = ynode_get(m, name, NULL);
	int b;

	if (!v || v->kind == YN_BAD)
		return;
	b = ynode_bool(v);
	if (b < 0) {
		diags_add(c->d, cpos(c, v), "expected a boolean (true or false) for \"%s\", got %s",
		          name, ynode_describe(v));
		return;
	}
	*out = b;
}

void opt_get_duration(struct opt_ctx *c, const struct ynode *m, const char *name,
                          double *out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	double v = 0;

	if (!opt_get_str(c, m, name, &sv) || !sv.s)
		return;
	if (units_duration(sv.s, &v) != 0)
		diags_add(c->d, sv.pos,
		          "invalid duration \"%s\": expected a number followed by ms, s, m or h",
		          sv.s);
	else if (!(v > 0))
		diags_add(c->d, sv.pos, "invalid duration \"%s\": must be greater than 0", sv.s);
	else
		*out = v;
	free(sv.s);
}

void opt_get_size(struct opt_ctx *c, const struct ynode *m, const char *name, long long *out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	long long v = 0;

	if (!opt_get_str(c, m, name, &sv) || !sv.s)
		return;
	if (units_size(sv.s, &v) != 0)
		diags_add(c->d, sv.pos, "invalid size \"%s\": expected a number of bytes, "
		          "optionally followed by B, kB, MB, GB, KiB, MiB or GiB", sv.s);
	else if (v <= 0)
		diags_add(c->d, sv.pos, "invalid size \"%s\": must be at least 1 byte", sv.s);
	else
		*out = v;
	free(sv.s);
}

/* Reports word, not one of vals (listed as text), with a suggestion when
 * one of several values is close. */
static void diag_enum(struct opt_ctx *c, struct pos p, const char *name, const char *word,
                      const char *const *vals, const char *text)
{
	size_t n = strv_len(vals);
	const char *sug = n > 1 ? opt_suggest(word, vals, n) : NULL;

	if (sug)
		diags_add(c->d, p, "invalid %s \"%s\": expected %s%s (did you mean \"%s\"?)",
		          name, word, n > 1 ? "one of " : "", text, sug);
	else
		diags_add(c->d, p, "invalid %s \"%s\": expected %s%s", name, word,
		          n > 1 ? "one of " : "", text);
}

/* An enumeration; returns the index in vals, or -1 (absent or invalid). */
int opt_get_enum(struct opt_ctx *c, const struct ynode *m, const char *name,
                     const char *const *vals, struct sval *keep)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	struct buf list;
	size_t i, n = strv_len(vals);

	if (!opt_get_str(c, m, name, &sv) || !sv.s)
		return -1;
	for (i = 0; i < n; i++) {
		if (strcmp(sv.s, vals[i]) == 0) {
			if (keep)
				*keep = sv;
			else
				free(sv.s);
			return (int)i;
		}
	}
	buf_init(&list);
	for (i = 0; i < n; i++)
		buf_printf(&list, "%s%s", i ? ", " : "", vals[i]);
	diag_enum(c, sv.pos, name, sv.s, vals, list.data);
	buf_free(&list);
	free(sv.s);
	return -1;
}

/*
 * A string or a sequence of strings into *v / *n (appended, copies).
 * Returns the value node (NULL when absent). Empty sequences are allowed
 * here; callers decide.
 */
const struct ynode *opt_get_str_list(struct opt_ctx *c, const struct ynode *m,
                                     const char *name, struct sval **v, size_t *n)
{
	const struct ynode *node = ynode_get(m, name, NULL);

	if (node)
		opt_read_str_list(c, node, name, v, n);
	return node;
}

void opt_read_str_list(struct opt_ctx *c, const struct ynode *node, const char *name,
                       struct sval **v, size_t *n)
{
	size_t i, cap = *n;            /* what *v holds is kept: values are appended */

	if (node->kind == YN_BAD)
		return;
	if (node->kind == YN_SCALAR && !ynode_is_null(node)) {
		struct sval sv = { NULL, { NULL, 0, 0 } };
		if (opt_read_str(c, node, name, &sv)) {
			xgrow(v, &cap, *n + 1, sizeof(**v));
			(*v)[(*n)++] = sv;
		}
		return;
	}
	if (node->kind != YN_SEQ) {
		opt_error(c, cpos(c, node),
		          "expected a string or a sequence of strings for \"%s\", got %s", name,
		          ynode_describe(node));
		return;
	}
	for (i = 0; i < node->n; i++) {
		struct sval sv = { NULL, { NULL, 0, 0 } };
		if (!opt_read_str(c, node->kids[i], name, &sv))
			continue;
		xgrow(v, &cap, *n + 1, sizeof(**v));
		(*v)[(*n)++] = sv;
	}
}

/* The check of src (index in c->checks), registering the text for the
 * compile of the file's expressions when it is new. */
static size_t check_expr(struct opt_ctx *c, const char *src, bool tmpl)
{
	struct expr_check *k;
	size_t i;

	for (i = 0; i < c->n_checks; i++)
		if (c->checks[i].is_template == tmpl && strcmp(c->checks[i].src, src) == 0)
			return i;
	xgrow(&c->checks, &c->cap_checks, c->n_checks + 1, sizeof(*c->checks));
	k = &c->checks[c->n_checks];
	memset(k, 0, sizeof(*k));
	k->is_template = tmpl;
	k->src = xstrdup(src);
	expr_prepare(src, tmpl);
	return c->n_checks++;
}

/* Adds a diagnostic that waits for check (see struct expr_use); returns
 * it for the caller to fill in. */
static struct expr_use *add_use(struct opt_ctx *c, enum expr_use_kind kind, size_t check,
                                const char *text)
{
	struct expr_use *u;

	xgrow(&c->uses, &c->cap_uses, c->n_uses + 1, sizeof(*c->uses));
	u = &c->uses[c->n_uses++];
	memset(u, 0, sizeof(*u));
	u->kind = kind;
	u->check = check;
	u->at = c->d->n;
	u->text = xstrdup(text);
	return u;
}

void opt_check_jq(struct opt_ctx *c, const struct sval *sv, const char *name)
{
	if (!sv->s)
		return;
	add_use(c, USE_JQ, check_expr(c, sv->s, false), name)->pos = sv->pos;
}

void opt_check_template(struct opt_ctx *c, const struct ynode *node, const char *src,
                           const char *label)
{
	struct expr_use *u;

	/* A constant string has nothing to check; skipping it keeps the cache
	 * (searched linearly) small for files listing thousands of URLs. */
	if (expr_template_is_const(src))
		return;
	u = add_use(c, USE_TEMPLATE, check_expr(c, src, true), label);
	u->node = *node;
	u->node.kids = NULL;
	u->node.n = u->node.cap = 0;
	u->node.s = node->s ? xstrndup(node->s, node->len) : NULL;
}

/* A source stage (no needs) renders its request with no input record: a
 * record reference in node's template or jq program (src) would render as
 * "null". */
void opt_check_no_record(struct opt_ctx *c, const struct ynode *node, const char *src,
                            bool tmpl, const char *label, const char *stage)
{
	struct expr_use *u;
	size_t off, n, check;
	char *msg;

	if (!node || !src || (tmpl && expr_template_is_const(src)))
		return;                /* nothing to render */
	check = check_expr(c, src, tmpl);
	off = expr_input_ref(src, tmpl);
	if (off == (size_t)-1)
		return;
	for (n = 1; src[off + n] && n < 40 &&
	     (strchr("_.[]\"", src[off + n]) || isalnum((unsigned char)src[off + n])); n++)
		;
	msg = xasprintf("%s refers to the input record (%.*s), but stage \"%s\" has no needs: "
	                "a stage without needs has no input record", label, (int)n, src + off,
	                stage);
	/* reported only when it compiles (else its error is) */
	u = add_use(c, USE_NO_RECORD, check, msg);
	u->pos = ynode_offset_pos(&c->text, node, off);
	free(msg);
}

/* Moves the last diagnostic of d to index at. */
static void diag_move_last(struct diags *d, size_t at)
{
	struct diag last = d->v[d->n - 1];

	memmove(&d->v[at + 1], &d->v[at], (d->n - 1 - at) * sizeof(*d->v));
	d->v[at] = last;
}

/* Compiles the file's expressions (together: see expr_prepare) and reports
 * the diagnostics that waited for them, each where it would have been. */
static void flush_uses(struct opt_ctx *c)
{
	size_t i, added = 0, n0;
	struct expr_check *k;
	struct expr_use *u;

	for (i = 0; i < c->n_uses; i++) {
		u = &c->uses[i];
		k = &c->checks[u->check];
		if (!k->done) {
			if (expr_check(k->src, k->is_template, &k->err, &k->err_offset) < 0 &&
			    !k->err)
				k->err = xstrdup("cannot compile");
			k->done = true;
		}
		n0 = c->d->n;
		if (u->kind == USE_JQ && k->err)
			diags_add(c->d, u->pos, "invalid jq expression in \"%s\": %s", u->text,
			          k->err);
		else if (u->kind == USE_TEMPLATE && k->err)
			diags_add(c->d, ynode_offset_pos(&c->text, &u->node, k->err_offset),
			          "invalid template in %s: %s", u->text, k->err);
		else if (u->kind == USE_NO_RECORD && !k->err)
			diags_add(c->d, u->pos, "%s", u->text);
		if (c->d->n > n0)
			diag_move_last(c->d, u->at + added++);
	}
	for (i = 0; i < c->n_uses; i++) {
		free(c->uses[i].text);
		free(c->uses[i].node.s);
	}
	free(c->uses);
	c->uses = NULL;
	c->n_uses = c->cap_uses = 0;
}

/*
 * retry.retry_on (or its older name retry.on): words and HTTP status codes
 * into p (replacing the default set). YAML 1.1 loaders (PyYAML's safe_load,
 * many editors) read the key on as the boolean true, so retry_on is the name
 * to use; on keeps working for pipectl, which reads YAML 1.2 scalars.
 */
static void read_retry_on(struct opt_ctx *c, const struct ynode *m, struct retry_policy *p)
{
	struct sval *v = NULL;
	size_t n = 0, i, j;
	bool too_many = false;
	const struct ynode *k_on = NULL, *k_retry_on = NULL;
	const char *name = "retry_on";

	ynode_get(m, "on", &k_on);
	ynode_get(m, "retry_on", &k_retry_on);
	if (k_on && k_retry_on) {
		const struct ynode *later = k_on->line > k_retry_on->line ||
		        (k_on->line == k_retry_on->line && k_on->col > k_retry_on->col) ?
		        k_on : k_retry_on;
		diags_add(c->d, cpos(c, later), "retry cannot have both \"retry_on\" and "
		          "\"on\" (the same list under two names; use \"retry_on\")");
		return;
	}
	if (k_on)
		name = "on";
	if (!opt_get_str_list(c, m, name, &v, &n))
		return;
	p->on = 0;
	p->n_codes = 0;
	for (i = 0; i < n; i++) {
		const char *w = v[i].s;
		long long code;
		for (j = 0; j < i && strcmp(v[j].s, w) != 0; j++)
			;
		if (j < i) {
			diags_add(c->d, v[i].pos, "duplicate \"%s\" in \"%s\"", w, name);
			continue;
		}
		for (j = 0; retry_words[j] && strcmp(retry_words[j], w) != 0; j++)
			;
		if (retry_words[j]) {
			p->on |= retry_bits[j];
			continue;
		}
		if (!text_is_int(w)) {
			const char *sug = opt_suggest(w, retry_words, ARRAY_LEN(retry_bits));
			diags_add(c->d, v[i].pos, "invalid retry condition \"%s\" in \"%s\": expected "
			          "connect, timeout, network, invalid_body, 5xx, 4xx or an HTTP status "
			          "code%s%s%s",
			          w, name, sug ? " (did you mean \"" : "", sug ? sug : "",
			          sug ? "\"?)" : "");
			continue;
		}
		errno = 0;
		code = strtoll(w, NULL, 10);
		if (errno || code < 100 || code > 599) {
			diags_add(c->d, v[i].pos, "invalid HTTP status code %s in \"%s\": expected "
			          "an integer from 100 to 599", w, name);
			continue;
		}
		if (p->n_codes == (int)ARRAY_LEN(p->codes)) {
			if (!too_many)
				diags_add(c->d, v[i].pos, "too many HTTP status codes in \"%s\": "
				          "at most %zu", name, ARRAY_LEN(p->codes));
			too_many = true;
			continue;
		}
		p->codes[p->n_codes++] = (int)code;
	}
	for (i = 0; i < n; i++)
		free(v[i].s);
	free(v);
}

/* retry: under m (defaults or a fetch stage) into r: set, with the default
 * policy overridden by the keys given. */
void opt_get_retry(struct opt_ctx *c, const struct ynode *m, struct retry_spec *r)
{
	const struct ynode *k = NULL, *v = ynode_get(m, "retry", &k);

	if (v)
		opt_read_retry(c, NULL, k, v, r, NULL);
}

void opt_read_retry(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                    const struct ynode *v, void *field, void *opts)
{
	struct retry_spec *r = field;
	int i;

	(void)o;
	(void)opts;
	if (!v || !opt_map_check(c, v, "\"retry\"", "in retry", retry_keys))
		return;
	r->set = true;
	r->pos = cpos(c, k);
	retry_policy_default(&r->p);
	opt_get_int(c, v, "attempts", 1, 100, &r->p.attempts);
	if ((i = opt_get_enum(c, v, "backoff", backoffs, NULL)) >= 0)
		r->p.backoff = (enum backoff_kind)i;
	opt_get_duration(c, v, "initial", &r->p.initial);
	opt_get_duration(c, v, "max", &r->p.max);
	if ((i = opt_get_enum(c, v, "jitter", jitters, NULL)) >= 0)
		r->p.jitter = (enum jitter_kind)i;
	read_retry_on(c, v, &r->p);
	opt_get_str(c, v, "when", &r->when);
	opt_check_jq(c, &r->when, "when");
}

void opt_free_retry(void *field)
{
	struct retry_spec *r = field;

	free(r->when.s);
	r->when.s = NULL;
}


/* ------------------------------------------------------------ context */

struct pos opt_pos(const struct opt_ctx *c, const struct ynode *n)
{
	return cpos(c, n);
}

void opt_error(struct opt_ctx *c, struct pos p, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	diags_add(c->d, p, "%s", msg);
	free(msg);
}

size_t opt_errors(const struct opt_ctx *c)
{
	return c->d->n;
}

const struct spec *opt_spec(const struct opt_ctx *c)
{
	return c->s;
}

bool opt_needs_bad(const struct opt_ctx *c)
{
	return c->needs_bad && c->needs_bad[c->stage];
}

struct pos opt_needs_pos(const struct opt_ctx *c)
{
	struct pos none = { NULL, 0, 0 };

	return c->needs_key ? c->needs_key[c->stage] : none;
}

const struct ynode *opt_get(const struct ynode *m, const char *key, const struct ynode **k)
{
	return ynode_get(m, key, k);
}

const struct ynode *opt_later_key(const struct ynode *m, const char *a, const char *b)
{
	const struct ynode *ka = NULL, *kb = NULL;

	ynode_get(m, a, &ka);
	ynode_get(m, b, &kb);
	if (ka->line != kb->line)
		return ka->line > kb->line ? ka : kb;
	return ka->col > kb->col ? ka : kb;
}

void opt_ctx_release(struct opt_ctx *c)
{
	size_t i;

	flush_uses(c);
	for (i = 0; i < c->n_checks; i++) {
		free(c->checks[i].src);
		free(c->checks[i].err);
	}
	free(c->checks);
	c->checks = NULL;
	c->n_checks = c->cap_checks = 0;
	ytext_free(&c->text);
}

/* ------------------------------------------------------------ the walker */

static void *field_at(void *out, size_t off)
{
	return (char *)out + off;
}

/* Stores o's default (or, with OPT_INHERIT and no default, its unset
 * value) in out; at is where a default string is said to come from. */
static void set_default(const struct opt *o, void *out, struct pos at)
{
	void *f = field_at(out, o->offset);
	bool inherit = (o->flags & OPT_INHERIT) != 0;
	size_t i;

	switch (o->type) {
	case OPT_STRING:
	case OPT_TEMPLATE:
	case OPT_JQ:
		if (o->def) {
			struct sval *sv = f;
			sv->s = xstrdup(o->def);
			sv->pos = at;
		}
		break;
	case OPT_INT:
		if (o->def)
			*(int *)f = atoi(o->def);
		break;
	case OPT_LONG:
		if (o->def)
			*(long long *)f = strtoll(o->def, NULL, 10);
		break;
	case OPT_BOOL:
		*(int *)f = o->def ? strcmp(o->def, "true") == 0 : inherit ? -1 : 0;
		break;
	case OPT_DURATION:
		*(double *)f = -1;
		if (o->def && units_duration(o->def, f) != 0)
			*(double *)f = -1;
		break;
	case OPT_SIZE:
		if (o->def)
			units_size(o->def, f);
		break;
	case OPT_ENUM:
		if (o->flags & OPT_WORD)
			break;          /* absent: s NULL, the kind's default */
		for (i = 0; o->def && o->words[i]; i++)
			if (strcmp(o->words[i], o->def) == 0)
				*(int *)f = (int)i;
		break;
	case OPT_STRING_LIST:
	case OPT_TEMPLATE_LIST:
	case OPT_CUSTOM:
		break;
	}
}

/* The node that sv of a list was read from: list itself when it is a
 * scalar, else the item at sv's position, searched from *from on (the
 * values are looked up in the order they were read: linear overall). */
const struct ynode *opt_list_item(const struct ynode *list, const struct sval *sv,
                                  size_t *from)
{
	size_t i;

	if (list->kind != YN_SEQ)
		return list;
	for (i = *from; i < list->n; i++)
		if (list->kids[i]->line == sv->pos.line && list->kids[i]->col == sv->pos.col) {
			*from = i + 1;
			return list->kids[i];
		}
	return list;
}

static void read_one(struct opt_ctx *c, const struct opt *o, const struct ynode *m,
                     void *out)
{
	void *f = field_at(out, o->offset);
	const struct ynode *k = NULL, *v = ynode_get(m, o->key, &k);
	char *label;
	size_t i, j;
	int x;

	switch (o->type) {
	case OPT_STRING:
		opt_get_str(c, m, o->key, f);
		break;
	case OPT_TEMPLATE:
		if (opt_get_str(c, m, o->key, f) && ((struct sval *)f)->s) {
			label = xasprintf("\"%s\"", o->key);
			opt_check_template(c, v, ((struct sval *)f)->s, label);
			free(label);
		}
		break;
	case OPT_JQ:
		opt_get_str(c, m, o->key, f);
		opt_check_jq(c, f, o->key);
		break;
	case OPT_INT:
		opt_get_int(c, m, o->key, (long long)o->min, (long long)o->max, f);
		break;
	case OPT_LONG:
		if (o->min == 0 && o->max == 0)
			opt_get_integer(c, m, o->key, LLONG_MIN, LLONG_MAX, f);
		else
			opt_get_integer(c, m, o->key, (long long)o->min, (long long)o->max, f);
		break;
	case OPT_BOOL:
		opt_get_bool(c, m, o->key, f);
		break;
	case OPT_DURATION:
		opt_get_duration(c, m, o->key, f);
		break;
	case OPT_SIZE:
		opt_get_size(c, m, o->key, f);
		break;
	case OPT_ENUM:
		if (o->flags & OPT_WORD)
			opt_get_enum(c, m, o->key, o->words, f);
		else if ((x = opt_get_enum(c, m, o->key, o->words, NULL)) >= 0)
			*(int *)f = x;
		break;
	case OPT_STRING_LIST:
	case OPT_TEMPLATE_LIST: {
		struct sval **list = f;
		size_t *n = field_at(out, o->n_offset);
		v = opt_get_str_list(c, m, o->key, list, n);
		if (!v || o->type != OPT_TEMPLATE_LIST)
			break;
		label = xasprintf("\"%s\"", o->key);
		for (i = j = 0; i < *n; i++)
			opt_check_template(c, opt_list_item(v, &(*list)[i], &j), (*list)[i].s, label);
		free(label);
		break;
	}
	case OPT_CUSTOM:
		o->read(c, o, k, v, f, out);
		break;
	}
}

void option_read(struct opt_ctx *c, const struct opt *o, const struct ynode *m, void *out)
{
	read_one(c, o, m, out);
}

bool option_walk(struct opt_ctx *c, const struct opt *opts, const struct ynode *k,
                 const struct ynode *m, const char *what, const char *where,
                 bool keys_checked, void *out)
{
	size_t n = option_count(opts), i;
	const char **allowed = xcalloc(n + 1, sizeof(*allowed));
	struct pos at = cpos(c, k);
	bool ok;

	for (i = 0; i < n; i++) {
		allowed[i] = opts[i].key;
		set_default(&opts[i], out, at);
	}
	ok = opt_map_check(c, m, what, where, keys_checked ? NULL : allowed);
	free(allowed);
	if (!ok)
		return false;
	for (i = 0; i < n; i++)
		if ((opts[i].flags & OPT_REQUIRED) && !ynode_get(m, opts[i].key, NULL))
			opt_missing(c, opt_map_pos(c, k, m), opts[i].key, where);
	for (i = 0; i < n; i++)
		read_one(c, &opts[i], m, out);
	return true;
}

void option_free(const struct opt *opts, void *out)
{
	size_t i, j;

	if (!out)
		return;
	for (i = 0; opts && opts[i].key; i++) {
		const struct opt *o = &opts[i];
		void *f = field_at(out, o->offset);
		switch (o->type) {
		case OPT_ENUM:
			if (!(o->flags & OPT_WORD))
				break;
			/* fall through */
		case OPT_STRING:
		case OPT_TEMPLATE:
		case OPT_JQ:
			free(((struct sval *)f)->s);
			((struct sval *)f)->s = NULL;
			break;
		case OPT_STRING_LIST:
		case OPT_TEMPLATE_LIST: {
			struct sval **list = f;
			size_t *n = field_at(out, o->n_offset);
			for (j = 0; j < *n; j++)
				free((*list)[j].s);
			free(*list);
			*list = NULL;
			*n = 0;
			break;
		}
		case OPT_CUSTOM:
			if (o->free)
				o->free(f);
			break;
		case OPT_INT:
		case OPT_LONG:
		case OPT_BOOL:
		case OPT_DURATION:
		case OPT_SIZE:
			break;
		}
	}
}

size_t option_count(const struct opt *opts)
{
	size_t n = 0;

	while (opts && opts[n].key)
		n++;
	return n;
}

const struct opt *option_find(const struct opt *opts, const char *key)
{
	size_t i;

	for (i = 0; opts && opts[i].key; i++)
		if (strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

const char *option_type_name(const struct opt *o)
{
	switch (o->type) {
	case OPT_STRING: return "string";
	case OPT_TEMPLATE: return "template";
	case OPT_JQ: return "jq";
	case OPT_INT: case OPT_LONG: return "integer";
	case OPT_BOOL: return "boolean";
	case OPT_DURATION: return "duration";
	case OPT_SIZE: return "size";
	case OPT_ENUM: return "enum";
	case OPT_STRING_LIST: return "string list";
	case OPT_TEMPLATE_LIST: return "template list";
	case OPT_CUSTOM: break;
	}
	return o->shape ? o->shape : "mapping";
}
