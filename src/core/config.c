/*
 * config: reads a pipeline file with libyaml's event parser into a small node
 * tree that keeps 1-based positions, then walks it with typed readers that
 * report every error as a diagnostic and carry on, so one run shows them all.
 * YAML aliases and tags are rejected. jq expressions and ${...} templates are
 * compiled once each (cached by text) to check them, then freed.
 */
#include "core/spec.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/dag.h"
#include "expr/expr.h"

#define CONFIG_MAX_DEPTH 256
/* A pipeline file is read whole into memory: bigger files are refused with a
 * clear error before any parsing (documented in pipectl.yaml(5)). */
#define CONFIG_MAX_FILE_MIB 16

/* ------------------------------------------------------------ node tree */

enum ynode_kind { YN_SCALAR, YN_MAP, YN_SEQ, YN_BAD };

struct ynode {
	enum ynode_kind kind;
	int line, col;                 /* 1-based start (YN_BAD: where reported) */
	yaml_scalar_style_t style;     /* scalars */
	bool anchored;                 /* had an &anchor: start mark is the anchor's */
	bool dup;                      /* a mapping key repeating an earlier one (reported) */
	char *s;                       /* scalar value (NUL-terminated), len bytes */
	size_t len;
	struct ynode **kids;           /* map: key, value, key, value...; seq: items */
	size_t n, cap;
};

/* One checked expression: text -> outcome (err NULL when it compiled). */
struct expr_check {
	bool is_template;
	char *src;
	char *err;
	size_t err_offset;
};

struct cfg {
	struct spec *s;
	struct diags *d;
	size_t *line_start;            /* byte offset of each line (lazy) */
	size_t n_lines;
	struct expr_check *checks;
	size_t n_checks, cap_checks;
	json_t *run;                   /* {"id":0,"pipeline":name} */
	struct expr_scope scope;
	bool *kind_known;              /* per stage: fetch/transform/load was read */
	struct pos *needs_key;         /* per stage: the needs: key (line 0 if absent) */
	bool *needs_bad;               /* per stage: needs: had errors of its own */
	const struct ynode *hosts;     /* the hosts: mapping (pool names), or NULL */
};

static void ynode_free(struct ynode *n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n->n; i++)
		ynode_free(n->kids[i]);
	free(n->kids);
	free(n->s);
	free(n);
}

static struct ynode *ynode_new(enum ynode_kind kind, yaml_mark_t m)
{
	struct ynode *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	n->line = (int)m.line + 1;
	n->col = (int)m.column + 1;
	return n;
}

static struct pos cpos(const struct cfg *c, const struct ynode *n)
{
	struct pos p = { c->s->path, n->line, n->col };
	return p;
}

static struct pos mark_pos(const struct cfg *c, yaml_mark_t m)
{
	struct pos p = { c->s->path, (int)m.line + 1, (int)m.column + 1 };
	return p;
}

/* ------------------------------------------------------------ source text */

static void index_lines(struct cfg *c)
{
	size_t cap = 0, i;
	const char *t = c->s->text;

	if (c->line_start)
		return;
	xgrow(&c->line_start, &cap, 1, sizeof(*c->line_start));
	c->line_start[c->n_lines++] = 0;
	for (i = 0; i < c->s->text_len; i++) {
		if (t[i] == '\r' && i + 1 < c->s->text_len && t[i + 1] == '\n')
			i++;
		else if (t[i] != '\n' && t[i] != '\r')
			continue;
		xgrow(&c->line_start, &cap, c->n_lines + 1, sizeof(*c->line_start));
		c->line_start[c->n_lines++] = i + 1;
	}
}

/* Byte offset of 1-based (line, col) where col counts characters as libyaml
 * does, or (size_t)-1 when it is outside the text. */
static size_t text_offset(struct cfg *c, int line, int col)
{
	const unsigned char *t = (const unsigned char *)c->s->text;
	size_t o;
	int k;

	index_lines(c);
	if (line < 1 || (size_t)line > c->n_lines || col < 1)
		return (size_t)-1;
	o = c->line_start[line - 1];
	for (k = 1; k < col; k++) {
		if (o >= c->s->text_len || t[o] == '\n' || t[o] == '\r')
			return (size_t)-1;
		o++;
		while (o < c->s->text_len && (t[o] & 0xC0) == 0x80)
			o++;
	}
	return o;
}

/* Inverse of text_offset: the position of byte offset off. */
static struct pos offset_pos(struct cfg *c, size_t off)
{
	const unsigned char *t = (const unsigned char *)c->s->text;
	struct pos p = { c->s->path, 1, 1 };
	size_t lo = 0, hi, o;

	index_lines(c);
	hi = c->n_lines;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (c->line_start[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	p.line = (int)lo + 1;
	for (o = c->line_start[lo]; o < off && o < c->s->text_len; o++)
		if ((t[o] & 0xC0) != 0x80)
			p.col++;
	return p;
}

/* ------------------------------------------------------------ YAML -> tree */

struct builder {
	struct cfg *c;
	struct diags *d;               /* tree diagnostics, kept only without a syntax error */
	struct ynode *root;
	struct ynode **stack;
	size_t depth, cap;
	int docs;
};

/* One scalar key of a mapping and its place among the keys, for sorting. */
struct key_ref {
	const struct ynode *k;
	size_t i;
};

static int key_ref_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	size_t n = x->k->len < y->k->len ? x->k->len : y->k->len;
	int c = memcmp(x->k->s, y->k->s, n);

	if (c)
		return c;
	if (x->k->len != y->k->len)
		return x->k->len < y->k->len ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Reports each key of m that repeats an earlier one. libyaml accepts
 * duplicates silently. The keys are sorted (by text, then by place), so equal
 * keys sit together with the first definition first: O(n log n) whatever the
 * keys are, where comparing each key with all earlier ones made a mapping of
 * many keys quadratic.
 */
static void builder_check_map(struct builder *b, struct ynode *m)
{
	struct key_ref *v;
	const struct ynode **first;    /* per key index: the key it repeats, or NULL */
	size_t i, n = 0, n_keys = m->n / 2;

	if (n_keys < 2)
		return;
	v = xcalloc(n_keys, sizeof(*v));
	first = xcalloc(n_keys, sizeof(*first));
	for (i = 0; i < n_keys; i++) {
		if (m->kids[2 * i]->kind != YN_SCALAR)
			continue;
		v[n].k = m->kids[2 * i];
		v[n].i = i;
		n++;
	}
	qsort(v, n, sizeof(*v), key_ref_cmp);
	for (i = 1; i < n; i++) {
		const struct key_ref *p = &v[i - 1];
		if (p->k->len == v[i].k->len && memcmp(p->k->s, v[i].k->s, p->k->len) == 0)
			first[v[i].i] = first[p->i] ? first[p->i] : p->k;
	}
	/* in file order, as before */
	for (i = 0; i < n_keys; i++) {
		if (!first[i])
			continue;
		m->kids[2 * i]->dup = true;
		diags_add(b->d, cpos(b->c, m->kids[2 * i]),
		          "duplicate key \"%s\" (first defined at line %d)",
		          m->kids[2 * i]->s, first[i]->line);
	}
	free(first);
	free(v);
}

/* Attaches n to the open collection (or makes it the root). Takes n. */
static void builder_attach(struct builder *b, struct ynode *n)
{
	struct ynode *top;

	if (b->depth == 0) {
		b->root = n;
		return;
	}
	top = b->stack[b->depth - 1];
	if (top->kind == YN_MAP && top->n % 2 == 0) {
		if (n->kind == YN_MAP || n->kind == YN_SEQ)
			diags_add(b->d, cpos(b->c, n), "mapping keys must be scalars, got a %s",
			          n->kind == YN_MAP ? "mapping" : "sequence");
	} else if (top->kind == YN_MAP && n->kind == YN_SCALAR && n->len == 0 &&
	           n->style == YAML_PLAIN_SCALAR_STYLE) {
		/* an absent value: libyaml marks it at the next token; use the key */
		n->line = top->kids[top->n - 1]->line;
		n->col = top->kids[top->n - 1]->col;
	}
	xgrow(&top->kids, &top->cap, top->n + 1, sizeof(*top->kids));
	top->kids[top->n++] = n;
}

static void builder_tag(struct builder *b, const yaml_char_t *tag, yaml_mark_t m)
{
	if (tag)
		diags_add(b->d, mark_pos(b->c, m), "YAML tags are not supported (\"%s\")",
		          (const char *)tag);
}

/* Feeds one event. Returns 0, or -1 when the nesting is too deep. */
static int builder_event(struct builder *b, yaml_event_t *ev)
{
	struct ynode *n;

	if (b->docs > 1 && ev->type != YAML_DOCUMENT_START_EVENT)
		return 0;                      /* later documents are only parsed */
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->docs == 2)
			diags_add(b->d, mark_pos(b->c, ev->start_mark),
			          "multiple YAML documents in one file are not supported");
		break;
	case YAML_SCALAR_EVENT:
		n = ynode_new(YN_SCALAR, ev->start_mark);
		n->style = ev->data.scalar.style;
		n->anchored = ev->data.scalar.anchor != NULL;
		n->s = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->len = ev->data.scalar.length;
		builder_tag(b, ev->data.scalar.tag, ev->start_mark);
		builder_attach(b, n);
		break;
	case YAML_ALIAS_EVENT:
		diags_add(b->d, mark_pos(b->c, ev->start_mark), "YAML aliases are not supported");
		builder_attach(b, ynode_new(YN_BAD, ev->start_mark));
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (b->depth >= CONFIG_MAX_DEPTH) {
			diags_add(b->d, mark_pos(b->c, ev->start_mark),
			          "YAML nesting deeper than %d levels", CONFIG_MAX_DEPTH);
			return -1;
		}
		if (ev->type == YAML_SEQUENCE_START_EVENT) {
			n = ynode_new(YN_SEQ, ev->start_mark);
			n->anchored = ev->data.sequence_start.anchor != NULL;
			builder_tag(b, ev->data.sequence_start.tag, ev->start_mark);
		} else {
			n = ynode_new(YN_MAP, ev->start_mark);
			n->anchored = ev->data.mapping_start.anchor != NULL;
			builder_tag(b, ev->data.mapping_start.tag, ev->start_mark);
		}
		builder_attach(b, n);
		xgrow(&b->stack, &b->cap, b->depth + 1, sizeof(*b->stack));
		b->stack[b->depth++] = n;
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		n = b->stack[--b->depth];
		if (n->kind == YN_MAP)
			builder_check_map(b, n);
		break;
	default:
		break;
	}
	return 0;
}

/* Moves the diagnostics of src to the end of dst. */
static void diags_move(struct diags *dst, struct diags *src)
{
	if (src->n == 0)
		return;
	xgrow(&dst->v, &dst->cap, dst->n + src->n, sizeof(*dst->v));
	memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	free(src->v);
	src->v = NULL;
	src->n = src->cap = 0;
}

/* What a libyaml error context opens, when the error means it was not closed
 * where it should have been: "while parsing a flow mapping" -> "{". */
static const char *syntax_opener(const char *context)
{
	static const char *const opened[][2] = {
		{ "while parsing a flow mapping", "{" },
		{ "while parsing a flow sequence", "[" },
		{ "while scanning a quoted scalar", "quote" },
	};
	size_t i;

	for (i = 0; context && i < ARRAY_LEN(opened); i++)
		if (strcmp(context, opened[i][0]) == 0)
			return opened[i][1];
	return NULL;
}

/*
 * Reports the error that stopped the parser. Positions: a reader error (bytes
 * that are not UTF-8) is at the first byte of the bad sequence (libyaml gives
 * the offset of the bad trailing byte, one column late for a Latin-1 byte
 * followed by ASCII); an unclosed { [ or quote is reported both where it was
 * opened and where the parser noticed, which can be many lines later.
 */
static void report_syntax_error(struct cfg *c, yaml_parser_t *p)
{
	struct pos at, from;
	const char *problem = p->problem ? p->problem : "cannot parse";
	const char *hint = "", *opener;
	size_t off;

	if (p->error == YAML_READER_ERROR) {
		const unsigned char *t = (const unsigned char *)c->s->text;
		off = p->problem_offset;
		if (p->problem && strcmp(p->problem, "invalid trailing UTF-8 octet") == 0) {
			/* back to the leading byte of the sequence */
			while (off > 0 && off <= c->s->text_len && (t[off - 1] & 0xC0) == 0x80)
				off--;
			if (off > 0)
				off--;
		}
		at = offset_pos(c, off);
		if (strstr(problem, "UTF-8") && off < c->s->text_len)
			diags_add(c->d, at, "YAML syntax error: invalid UTF-8 (byte 0x%02X); "
			          "the file must be UTF-8 (is it Latin-1?)", t[off]);
		else
			diags_add(c->d, at, "YAML syntax error: %s", problem);
		return;
	}
	at = mark_pos(c, p->problem_mark);
	off = text_offset(c, at.line, at.col);
	if (off != (size_t)-1 && off < c->s->text_len && c->s->text[off] == '\t')
		hint = "; tabs cannot be used for indentation";
	opener = syntax_opener(p->context);
	from = mark_pos(c, p->context_mark);
	if (opener && (from.line != at.line || from.col != at.col)) {
		diags_add(c->d, from, "YAML syntax error: this %s is not closed (%s at line %d, "
		          "column %d)", opener, problem, at.line, at.col);
		diags_add(c->d, at, "YAML syntax error: %s (%s opened at line %d, column %d)%s",
		          problem, p->context, from.line, from.col, hint);
	} else if (p->context) {
		diags_add(c->d, at, "YAML syntax error: %s (%s)%s", problem, p->context, hint);
	} else {
		diags_add(c->d, at, "YAML syntax error: %s%s", problem, hint);
	}
}

/* Parses the text into a tree. Returns the root of the first document, or
 * NULL (with a diagnostic) on a syntax error or an empty file. */
static struct ynode *parse_tree(struct cfg *c)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct builder b;
	int done = 0, failed = 0;

	memset(&b, 0, sizeof(b));
	b.c = c;
	b.d = xcalloc(1, sizeof(*b.d));
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)c->s->text,
	                             c->s->text_len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			report_syntax_error(c, &parser);
			failed = 1;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		if (builder_event(&b, &ev) != 0) {
			yaml_event_delete(&ev);
			failed = 2;
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	free(b.stack);                 /* open collections all hang off b.root */
	if (failed) {
		/* a syntax error hides everything else; too deep nesting is reported */
		if (failed == 2)
			diags_move(c->d, b.d);
		diags_free(b.d);
		free(b.d);
		ynode_free(b.root);
		return NULL;
	}
	diags_move(c->d, b.d);
	free(b.d);
	if (!b.root || (b.root->kind == YN_SCALAR && b.root->len == 0 &&
	                b.root->style == YAML_PLAIN_SCALAR_STYLE)) {
		/* at 1:1, so editors and the compiler-like format still get a position */
		struct pos p = { c->s->path, 1, 1 };
		diags_add(c->d, p, "empty pipeline file");
		ynode_free(b.root);
		return NULL;
	}
	return b.root;
}

/* ------------------------------------------------------------ scalar types */

static bool plain(const struct ynode *n)
{
	return n->kind == YN_SCALAR && n->style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const struct ynode *n)
{
	return plain(n) && (n->len == 0 || strcmp(n->s, "~") == 0 ||
	                    strcmp(n->s, "null") == 0 || strcmp(n->s, "Null") == 0 ||
	                    strcmp(n->s, "NULL") == 0);
}

/* 1 true, 0 false, -1 not a boolean (YAML 1.2 core schema spellings). */
static int bool_value(const struct ynode *n)
{
	static const char *const t[] = { "true", "True", "TRUE" };
	static const char *const f[] = { "false", "False", "FALSE" };
	size_t i;

	if (!plain(n))
		return -1;
	for (i = 0; i < ARRAY_LEN(t); i++) {
		if (strcmp(n->s, t[i]) == 0)
			return 1;
		if (strcmp(n->s, f[i]) == 0)
			return 0;
	}
	return -1;
}

static const char *digits(const char *p)
{
	while (*p >= '0' && *p <= '9')
		p++;
	return p;
}

/* -?[0-9]+ */
static bool is_int_text(const char *s)
{
	const char *p = s + (*s == '-');
	const char *e = digits(p);
	return e > p && *e == '\0';
}

/* -?[0-9]+\.[0-9]*([eE][-+]?[0-9]+)? */
static bool is_real_text(const char *s)
{
	const char *p = s + (*s == '-');
	const char *e = digits(p);

	if (e == p || *e != '.')
		return false;
	e = digits(e + 1);
	if (*e == 'e' || *e == 'E') {
		const char *x = e + 1;
		x += (*x == '+' || *x == '-');
		e = digits(x);
		if (e == x)
			return false;
	}
	return *e == '\0';
}

static const char *describe(const struct ynode *n)
{
	switch (n->kind) {
	case YN_MAP:
		return "a mapping";
	case YN_SEQ:
		return "a sequence";
	case YN_BAD:
		return "an alias";
	case YN_SCALAR:
		break;
	}
	if (!plain(n))
		return "a string";
	if (is_null(n))
		return "null";
	if (bool_value(n) >= 0)
		return "a boolean";
	if (is_int_text(n->s))
		return "an integer";
	if (is_real_text(n->s))
		return "a number";
	return "a string";
}

/* ------------------------------------------------------------ names */

/* ^[A-Za-z_][A-Za-z0-9_]*$ (extra: further characters allowed after the first) */
static bool name_ok(const char *s, bool digit_first, const char *extra)
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
static bool token_ok(const char *s)
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
static const char *suggest(const char *name, const char *const *cands, size_t n)
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

/* ------------------------------------------------------------ mappings */

static size_t strv_len(const char *const *v)
{
	size_t n = 0;

	while (v[n])
		n++;
	return n;
}

/* Value node of key name in map m (first one when duplicated), or NULL;
 * *key gets the key node. */
static const struct ynode *map_get(const struct ynode *m, const char *name,
                                   const struct ynode **key)
{
	size_t i;

	if (!m || m->kind != YN_MAP)
		return NULL;
	for (i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *k = m->kids[i];
		if (k->kind == YN_SCALAR && strcmp(k->s, name) == 0) {
			if (key)
				*key = k;
			return m->kids[i + 1];
		}
	}
	return NULL;
}

/*
 * Checks that v (the value of key, what names it in messages) is a mapping
 * (null counts as an empty one) and reports keys not in allowed, suggesting
 * the closest (allowed NULL: any key). where is "in fetch" etc. Returns false
 * when v is no mapping.
 */
static bool map_check(struct cfg *c, const struct ynode *v, const char *what,
                      const char *where, const char *const *allowed)
{
	size_t i, j, n_allowed = allowed ? strv_len(allowed) : 0;

	if (v->kind == YN_BAD || is_null(v))
		return v->kind != YN_BAD;
	if (v->kind != YN_MAP) {
		diags_add(c->d, cpos(c, v), "expected a mapping for %s, got %s", what,
		          describe(v));
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
		s = suggest(k->s, allowed, n_allowed);
		if (s)
			diags_add(c->d, cpos(c, k), "unknown key \"%s\" %s (did you mean \"%s\"?)",
			          k->s, where, s);
		else
			diags_add(c->d, cpos(c, k), "unknown key \"%s\" %s", k->s, where);
	}
	return true;
}

/* Where to report something about mapping v given under key k. */
static struct pos map_pos(const struct cfg *c, const struct ynode *k, const struct ynode *v)
{
	return cpos(c, v->kind == YN_MAP && v->n > 0 ? v : k);
}

static void missing(struct cfg *c, struct pos p, const char *name, const char *where)
{
	diags_add(c->d, p, "missing required key \"%s\" %s", name, where);
}

/* ------------------------------------------------------------ typed readers */

/* A string: any scalar except null. Returns true and sets out (copy). */
static bool read_str_node(struct cfg *c, const struct ynode *v, const char *name,
                          struct sval *out)
{
	if (v->kind == YN_BAD)
		return false;
	if (v->kind != YN_SCALAR || is_null(v)) {
		diags_add(c->d, cpos(c, v), "expected a string for \"%s\", got %s", name,
		          describe(v));
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
static const struct ynode *read_str(struct cfg *c, const struct ynode *m, const char *name,
                                    struct sval *out)
{
	const struct ynode *v = map_get(m, name, NULL);

	if (v && !read_str_node(c, v, name, out))
		return NULL;
	return v;
}

static void read_plain_str(struct cfg *c, const struct ynode *m, const char *name, char **out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };

	read_str(c, m, name, &sv);
	if (sv.s) {
		free(*out);
		*out = sv.s;
	}
}

/* An integer lo..hi under key name of m. Returns the value node when one
 * was read into *out, NULL when absent or invalid (reported). */
static const struct ynode *read_integer(struct cfg *c, const struct ynode *m, const char *name,
                                        long long lo, long long hi, long long *out)
{
	const struct ynode *v = map_get(m, name, NULL);
	long long x;

	if (!v || v->kind == YN_BAD)
		return NULL;
	if (!plain(v) || !is_int_text(v->s)) {
		diags_add(c->d, cpos(c, v), "expected an integer for \"%s\", got %s", name,
		          describe(v));
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

static void read_int(struct cfg *c, const struct ynode *m, const char *name,
                     long long lo, long long hi, int *out)
{
	long long x;

	if (read_integer(c, m, name, lo, hi, &x))
		*out = (int)x;
}

static void read_bool(struct cfg *c, const struct ynode *m, const char *name, int *out)
{
	const struct ynode *v = map_get(m, name, NULL);
	int b;

	if (!v || v->kind == YN_BAD)
		return;
	b = bool_value(v);
	if (b < 0) {
		diags_add(c->d, cpos(c, v), "expected a boolean (true or false) for \"%s\", got %s",
		          name, describe(v));
		return;
	}
	*out = b;
}

/* Scans a number [0-9]+(\.[0-9]+)? at s; returns its end, or NULL. */
static const char *scan_number(const char *s, bool *frac)
{
	const char *e = digits(s);

	*frac = false;
	if (e == s)
		return NULL;
	if (*e == '.') {
		const char *f = digits(e + 1);
		if (f == e + 1)
			return NULL;
		*frac = true;
		e = f;
	}
	return e;
}

/* Syntax of a duration; returns 0 and the value (maybe 0), or -1. */
static int scan_duration(const char *s, double *out)
{
	static const struct {
		const char *unit;
		double mult;
	} units[] = { { "ms", 0.001 }, { "s", 1 }, { "m", 60 }, { "h", 3600 } };
	bool frac;
	const char *e;
	char *end;
	double v;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	v = strtod(s, &end);
	if (end != e)
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		if (strcmp(e, units[i].unit) == 0) {
			v *= units[i].mult;
			if (!isfinite(v))
				return -1;
			*out = v;
			return 0;
		}
	}
	return -1;
}

int parse_duration(const char *s, double *seconds)
{
	double v;

	if (scan_duration(s, &v) != 0 || !(v > 0))
		return -1;
	*seconds = v;
	return 0;
}

/* Syntax of a size; returns 0 and the value (maybe 0), or -1. */
static int scan_size(const char *s, long long *out)
{
	static const struct {
		const char *unit;
		unsigned long long mult;
	} units[] = {
		{ "", 1 }, { "B", 1 }, { "kB", 1000ULL }, { "MB", 1000000ULL },
		{ "GB", 1000000000ULL }, { "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 },
		{ "GiB", 1ULL << 30 },
	};
	bool frac;
	const char *e;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		unsigned long long m = units[i].mult, x;
		char *end;
		if (strcmp(e, units[i].unit) != 0)
			continue;
		if (frac) {
			/* 1.5KiB is 1536 bytes; 1.1KiB is not a whole number: rejected */
			double v = strtod(s, &end) * (double)m;
			if (end != e || !(v < 9.2e18) || v != floor(v))
				return -1;
			*out = (long long)v;
			return 0;
		}
		errno = 0;
		x = strtoull(s, &end, 10);
		if (errno || end != e || x > (unsigned long long)LLONG_MAX / m)
			return -1;
		*out = (long long)(x * m);
		return 0;
	}
	return -1;
}

int parse_size(const char *s, long long *bytes)
{
	long long v;

	if (scan_size(s, &v) != 0 || v <= 0)
		return -1;
	*bytes = v;
	return 0;
}

/* Syntax of a rate; returns 0 and the value per second (maybe 0), or -1. */
static int scan_rate(const char *s, double *out)
{
	static const struct {
		const char *unit;
		double per;
	} units[] = { { "/s", 1 }, { "/m", 60 }, { "/h", 3600 } };
	bool frac;
	const char *e;
	char *end;
	double v;
	size_t i;

	if (!s || !(e = scan_number(s, &frac)))
		return -1;
	v = strtod(s, &end);
	if (end != e || !isfinite(v))
		return -1;
	for (i = 0; i < ARRAY_LEN(units); i++) {
		if (strcmp(e, units[i].unit) == 0) {
			*out = v / units[i].per;
			return 0;
		}
	}
	return -1;
}

int parse_rate(const char *s, double *per_second)
{
	double v;

	if (scan_rate(s, &v) != 0 || !(v > 0))
		return -1;
	*per_second = v;
	return 0;
}

static void read_duration(struct cfg *c, const struct ynode *m, const char *name,
                          double *out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	double v = 0;

	if (!read_str(c, m, name, &sv) || !sv.s)
		return;
	if (scan_duration(sv.s, &v) != 0)
		diags_add(c->d, sv.pos,
		          "invalid duration \"%s\": expected a number followed by ms, s, m or h",
		          sv.s);
	else if (!(v > 0))
		diags_add(c->d, sv.pos, "invalid duration \"%s\": must be greater than 0", sv.s);
	else
		*out = v;
	free(sv.s);
}

static void read_size(struct cfg *c, const struct ynode *m, const char *name, long long *out)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	long long v = 0;

	if (!read_str(c, m, name, &sv) || !sv.s)
		return;
	if (scan_size(sv.s, &v) != 0)
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
static void diag_enum(struct cfg *c, struct pos p, const char *name, const char *word,
                      const char *const *vals, const char *text)
{
	size_t n = strv_len(vals);
	const char *sug = n > 1 ? suggest(word, vals, n) : NULL;

	if (sug)
		diags_add(c->d, p, "invalid %s \"%s\": expected %s%s (did you mean \"%s\"?)",
		          name, word, n > 1 ? "one of " : "", text, sug);
	else
		diags_add(c->d, p, "invalid %s \"%s\": expected %s%s", name, word,
		          n > 1 ? "one of " : "", text);
}

/* An enumeration; returns the index in vals, or -1 (absent or invalid). */
static int read_enum(struct cfg *c, const struct ynode *m, const char *name,
                     const char *const *vals, struct sval *keep)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	struct buf list;
	size_t i, n = strv_len(vals);

	if (!read_str(c, m, name, &sv) || !sv.s)
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
static const struct ynode *read_str_list(struct cfg *c, const struct ynode *m,
                                         const char *name, struct sval **v, size_t *n)
{
	const struct ynode *node = map_get(m, name, NULL);
	size_t i, cap = 0;

	if (!node || node->kind == YN_BAD)
		return node;
	if (node->kind == YN_SCALAR && !is_null(node)) {
		struct sval sv = { NULL, { NULL, 0, 0 } };
		if (read_str_node(c, node, name, &sv)) {
			*v = xcalloc(1, sizeof(**v));
			(*v)[0] = sv;
			*n = 1;
		}
		return node;
	}
	if (node->kind != YN_SEQ) {
		diags_add(c->d, cpos(c, node),
		          "expected a string or a sequence of strings for \"%s\", got %s", name,
		          describe(node));
		return node;
	}
	for (i = 0; i < node->n; i++) {
		struct sval sv = { NULL, { NULL, 0, 0 } };
		if (!read_str_node(c, node->kids[i], name, &sv))
			continue;
		xgrow(v, &cap, *n + 1, sizeof(**v));
		(*v)[(*n)++] = sv;
	}
	return node;
}

/* ------------------------------------------------------------ expressions */

static const struct expr_check *check_expr(struct cfg *c, const char *src, bool tmpl)
{
	struct expr_check *k;
	struct expr *e;
	size_t i;

	for (i = 0; i < c->n_checks; i++)
		if (c->checks[i].is_template == tmpl && strcmp(c->checks[i].src, src) == 0)
			return &c->checks[i];
	xgrow(&c->checks, &c->cap_checks, c->n_checks + 1, sizeof(*c->checks));
	k = &c->checks[c->n_checks++];
	memset(k, 0, sizeof(*k));
	k->is_template = tmpl;
	k->src = xstrdup(src);
	if (tmpl)
		e = expr_template(src, &c->scope, &k->err, &k->err_offset);
	else
		e = expr_compile(src, &c->scope, &k->err);
	if (e)
		expr_free(e);
	else if (!k->err)
		k->err = xstrdup("cannot compile");
	return k;
}

static void check_jq(struct cfg *c, const struct sval *sv, const char *name)
{
	const struct expr_check *k;

	if (!sv->s)
		return;
	k = check_expr(c, sv->s, false);
	if (k->err)
		diags_add(c->d, sv->pos, "invalid jq expression in \"%s\": %s", name, k->err);
}

/* Number of UTF-8 characters in the first n bytes of s. */
static int utf8_chars(const char *s, size_t n)
{
	int k = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			k++;
	return k;
}

/* Position of byte off of scalar n's value: exact when the value is the
 * source text verbatim on one line, otherwise the scalar's start. */
static struct pos scalar_offset_pos(struct cfg *c, const struct ynode *n, size_t off)
{
	struct pos p = cpos(c, n);
	int quote;
	size_t at;

	if (n->kind != YN_SCALAR || n->anchored || off > n->len)
		return p;
	if (n->style == YAML_PLAIN_SCALAR_STYLE)
		quote = 0;
	else if (n->style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	         n->style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
		quote = 1;
	else
		return p;
	at = text_offset(c, n->line, n->col);
	if (at == (size_t)-1)
		return p;
	at += (size_t)quote;
	if (at > c->s->text_len || c->s->text_len - at < n->len ||
	    memcmp(c->s->text + at, n->s, n->len) != 0 ||
	    memchr(n->s, '\n', off) || memchr(n->s, '\r', off))
		return p;
	p.col = n->col + quote + utf8_chars(n->s, off);
	return p;
}

static void check_template(struct cfg *c, const struct ynode *node, const char *src,
                           const char *label)
{
	const struct expr_check *k;

	/* A constant string has nothing to check; skipping it keeps the cache
	 * (searched linearly) small for files listing thousands of URLs. */
	if (expr_template_is_const(src))
		return;
	k = check_expr(c, src, true);

	if (k->err)
		diags_add(c->d, scalar_offset_pos(c, node, k->err_offset),
		          "invalid template in %s: %s", label, k->err);
}

/* ------------------------------------------------------------ stages */

static const char *const fetch_keys[] = {
	"url", "file", "format", "method", "headers", "body", "json", "records",
	"timeout", "connect_timeout", "concurrency", "max_body", "tls_verify", "retry",
	"idempotent", "pool", "paginate", "merge", "allow_hosts", NULL
};
static const char *const transform_keys[] = { "jq", "dedupe", NULL };
static const char *const load_keys[] = { "sqlite", "file", "stdout", "http", NULL };
static const char *const loadhttp_keys[] = {
	"url", "method", "headers", "batch", "timeout", "connect_timeout", "concurrency",
	"retry", "tls_verify", "allow_hosts", NULL
};
static const char *const http_methods[] = { "POST", "PUT", "PATCH", NULL };
static const char *const sqlite_keys[] = {
	"path", "table", "key", "on_conflict", "columns", NULL
};
static const char *const loadfile_keys[] = { "path", "format", NULL };
static const char *const stdout_keys[] = { "format", NULL };
static const char *const stage_keys[] = {
	"fetch", "transform", "load", "needs", "description", "on_error", "stage_timeout", NULL
};
static const char *const kind_names[] = { "fetch", "transform", "load", NULL };
static const char *const top_keys[] = {
	"pipeline", "description", "params", "settings", "defaults", "hosts", "stages", NULL
};
static const char *const settings_keys[] = {
	"concurrency", "queue", "batch_size", "run_timeout", NULL
};
static const char *const defaults_keys[] = {
	"timeout", "connect_timeout", "concurrency", "max_body", "retry", "on_error",
	"stage_timeout", NULL
};
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
/* in the order of enum on_error, from ON_ERROR_FAIL */
static const char *const on_errors[] = { "fail", "skip", "dlq", "pass", NULL };
static const char *const paginate_keys[] = {
	"next", "link", "param", "start", "step", "stop", "max_pages", NULL
};
static const char *const page_kinds[] = { "next", "link", "param", NULL };
static const char *const host_keys[] = { "concurrency", "rate", "burst", "breaker", NULL };
static const char *const breaker_keys[] = { "failures", "cooldown", "successes", NULL };
static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
static const char *const fetch_formats[] = { "json", "jsonl", NULL };
static const char *const load_formats[] = { "jsonl", NULL };
/* In the order of enum on_conflict. */
static const char *const on_conflicts[] = { "replace", "merge", "ignore", NULL };


/* ------------------------------------------------------------ resilience */

/*
 * retry.retry_on (or its older name retry.on): words and HTTP status codes
 * into p (replacing the default set). YAML 1.1 loaders (PyYAML's safe_load,
 * many editors) read the key on as the boolean true, so retry_on is the name
 * to use; on keeps working for pipectl, which reads YAML 1.2 scalars.
 */
static void read_retry_on(struct cfg *c, const struct ynode *m, struct retry_policy *p)
{
	struct sval *v = NULL;
	size_t n = 0, i, j;
	bool too_many = false;
	const struct ynode *k_on = NULL, *k_retry_on = NULL;
	const char *name = "retry_on";

	map_get(m, "on", &k_on);
	map_get(m, "retry_on", &k_retry_on);
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
	if (!read_str_list(c, m, name, &v, &n))
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
		if (!is_int_text(w)) {
			const char *sug = suggest(w, retry_words, ARRAY_LEN(retry_bits));
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
static void read_retry(struct cfg *c, const struct ynode *m, struct retry_spec *r)
{
	const struct ynode *k = NULL, *v = map_get(m, "retry", &k);
	int i;

	if (!v || !map_check(c, v, "\"retry\"", "in retry", retry_keys))
		return;
	r->set = true;
	r->pos = cpos(c, k);
	retry_policy_default(&r->p);
	read_int(c, v, "attempts", 1, 100, &r->p.attempts);
	if ((i = read_enum(c, v, "backoff", backoffs, NULL)) >= 0)
		r->p.backoff = (enum backoff_kind)i;
	read_duration(c, v, "initial", &r->p.initial);
	read_duration(c, v, "max", &r->p.max);
	if ((i = read_enum(c, v, "jitter", jitters, NULL)) >= 0)
		r->p.jitter = (enum jitter_kind)i;
	read_retry_on(c, v, &r->p);
	read_str(c, v, "when", &r->when);
	check_jq(c, &r->when, "when");
}

/* on_error: under m; returns ON_ERROR_UNSET when absent or invalid, and
 * the value's position in *at. */
static enum on_error read_on_error(struct cfg *c, const struct ynode *m, struct pos *at)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	int i = read_enum(c, m, "on_error", on_errors, &sv);

	if (i < 0)
		return ON_ERROR_UNSET;
	*at = sv.pos;
	free(sv.s);
	return (enum on_error)(ON_ERROR_FAIL + i);
}

static void pass_misplaced(struct cfg *c, struct pos at)
{
	diags_add(c->d, at, "on_error: pass is only for fetch stages with needs");
}

/* pool: must name an entry of hosts:. */
static void check_pool(struct cfg *c, const struct sval *pool)
{
	const char **names;
	const char *sug;
	size_t i, n = 0;

	if (map_get(c->hosts, pool->s, NULL))
		return;
	names = xcalloc(c->hosts ? c->hosts->n / 2 + 1 : 1, sizeof(*names));
	for (i = 0; c->hosts && c->hosts->kind == YN_MAP && i + 1 < c->hosts->n; i += 2)
		if (c->hosts->kids[i]->kind == YN_SCALAR)
			names[n++] = c->hosts->kids[i]->s;
	sug = suggest(pool->s, names, n);
	if (sug)
		diags_add(c->d, pool->pos, "unknown pool \"%s\" (did you mean \"%s\"?)",
		          pool->s, sug);
	else
		diags_add(c->d, pool->pos, "unknown pool \"%s\": hosts has no such entry", pool->s);
	free(names);
}

static void only_with_param(struct cfg *c, const struct ynode *m, const char *name)
{
	const struct ynode *k = NULL;

	if (map_get(m, name, &k))
		diags_add(c->d, cpos(c, k), "\"%s\" is only allowed with \"param\" in paginate",
		          name);
}

static void read_paginate(struct cfg *c, const struct ynode *m, struct paginate_spec *pg)
{
	const struct ynode *k = NULL, *v = map_get(m, "paginate", &k), *kind_k = NULL, *x;
	bool reported = false;
	int kind = -1, link = 1;
	size_t i;

	pg->start = 1;
	pg->step = 1;
	if (!v || !map_check(c, v, "\"paginate\"", "in paginate", paginate_keys))
		return;
	pg->pos = cpos(c, k);
	for (i = 0; v->kind == YN_MAP && i + 1 < v->n; i += 2) {
		const struct ynode *key = v->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; page_kinds[t] && strcmp(key->s, page_kinds[t]) != 0; t++)
			;
		if (!page_kinds[t] || key->dup)
			continue;
		if (!kind_k) {
			kind_k = key;
			kind = t;
		} else if (!reported) {
			diags_add(c->d, cpos(c, key),
			          "paginate can have only one of next, link and param");
			reported = true;
		}
	}
	if (!kind_k)
		diags_add(c->d, map_pos(c, k, v), "paginate needs one of next, link or param");
	else
		pg->kind = kind == 0 ? PAGE_NEXT : kind == 1 ? PAGE_LINK : PAGE_COUNTER;
	read_str(c, v, "next", &pg->next);
	check_jq(c, &pg->next, "next");
	read_bool(c, v, "link", &link);
	if (!link && (x = map_get(v, "link", NULL)))
		diags_add(c->d, cpos(c, x), "\"link\" can only be true (to not paginate, "
		          "leave paginate out)");
	read_str(c, v, "param", &pg->param);
	if (pg->param.s && !*pg->param.s)
		diags_add(c->d, pg->param.pos, "\"param\" must not be empty");
	read_integer(c, v, "start", LLONG_MIN, LLONG_MAX, &pg->start);
	if ((x = read_integer(c, v, "step", LLONG_MIN, LLONG_MAX, &pg->step)) && pg->step == 0) {
		diags_add(c->d, cpos(c, x), "invalid value 0 for \"step\": must not be 0");
		pg->step = 1;
	}
	read_str(c, v, "stop", &pg->stop);
	check_jq(c, &pg->stop, "stop");
	read_int(c, v, "max_pages", 1, 1000000, &pg->max_pages);
	if (pg->kind == PAGE_COUNTER && !map_get(v, "stop", NULL))
		diags_add(c->d, cpos(c, kind_k), "paginate with param needs stop");
	if (kind_k && pg->kind != PAGE_COUNTER) {
		only_with_param(c, v, "start");
		only_with_param(c, v, "step");
		only_with_param(c, v, "stop");
	}
}

/* ^[A-Za-z0-9_.:-]+$ */
static bool host_name_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!*p)
		return false;
	for (; *p; p++)
		if (!(isascii(*p) && (isalnum(*p) || strchr("_.:-", *p))))
			return false;
	return true;
}

static void read_breaker(struct cfg *c, const struct ynode *m, struct host_spec *h)
{
	const struct ynode *k = NULL, *v = map_get(m, "breaker", &k);

	if (!v || !map_check(c, v, "\"breaker\"", "in breaker", breaker_keys))
		return;
	if (!map_get(v, "failures", NULL))
		missing(c, map_pos(c, k, v), "failures", "in breaker");
	read_int(c, v, "failures", 1, 1000, &h->breaker_failures);
	read_duration(c, v, "cooldown", &h->breaker_cooldown);
	read_int(c, v, "successes", 1, 1000, &h->breaker_successes);
}

static void read_host(struct cfg *c, const struct ynode *k, const struct ynode *v,
                      struct host_spec *h)
{
	struct sval rate = { NULL, { NULL, 0, 0 } };
	const struct ynode *bk = NULL;
	long long burst = 0;
	char *where;
	bool ok;

	h->name = xstrdup(k->s);
	h->pos = cpos(c, k);
	h->breaker_cooldown = 30;
	h->breaker_successes = 1;
	if (!host_name_ok(k->s))
		diags_add(c->d, h->pos, "invalid host or pool name \"%s\": must contain only "
		          "letters, digits, _, ., : and -", k->s);
	where = xasprintf("in host \"%s\"", k->s);
	ok = map_check(c, v, "a host", where, host_keys);
	free(where);
	if (!ok)
		return;
	read_int(c, v, "concurrency", 1, 10000, &h->concurrency);
	if (read_str(c, v, "rate", &rate) && rate.s) {
		double r = 0;
		if (scan_rate(rate.s, &r) != 0)
			diags_add(c->d, rate.pos, "invalid rate \"%s\": expected a number "
			          "followed by /s, /m or /h", rate.s);
		else if (!(r > 0))
			diags_add(c->d, rate.pos, "invalid rate \"%s\": must be greater than 0",
			          rate.s);
		else
			h->rate = r;
	}
	free(rate.s);
	if (read_integer(c, v, "burst", 1, 100000, &burst))
		h->burst = (double)burst;
	if (map_get(v, "burst", &bk) && !map_get(v, "rate", NULL))
		diags_add(c->d, cpos(c, bk), "\"burst\" is only allowed with \"rate\"");
	if (h->rate > 0 && h->burst == 0)
		h->burst = h->rate > 1 ? ceil(h->rate) : 1;
	read_breaker(c, v, h);
}

static void read_hosts(struct cfg *c, const struct ynode *v)
{
	size_t i;

	if (!v || !map_check(c, v, "\"hosts\"", "in hosts", NULL) || v->kind != YN_MAP)
		return;
	c->hosts = v;
	c->s->hosts = xcalloc(v->n / 2 + 1, sizeof(*c->s->hosts));
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *k = v->kids[i];
		if (k->kind != YN_SCALAR || k->dup)
			continue;               /* bad or duplicate key: reported already */
		read_host(c, k, v->kids[i + 1], &c->s->hosts[c->s->n_hosts++]);
	}
}

static const struct ynode *url_item(const struct ynode *url, const struct sval *sv,
                                    size_t *from);

/* A source stage (no needs) renders its request with no input record: a
 * record reference in node's template or jq program (src) would render as
 * "null". */
static void check_no_record(struct cfg *c, const struct ynode *node, const char *src,
                            bool tmpl, const char *label, const char *stage)
{
	size_t off, n;

	if (!node || !src || (tmpl && expr_template_is_const(src)) ||
	    check_expr(c, src, tmpl)->err)
		return;                /* nothing to render, or reported already */
	off = expr_input_ref(src, tmpl);
	if (off == (size_t)-1)
		return;
	for (n = 1; src[off + n] && n < 40 &&
	     (strchr("_.[]\"", src[off + n]) || isalnum((unsigned char)src[off + n])); n++)
		;
	diags_add(c->d, scalar_offset_pos(c, node, off),
	          "%s refers to the input record (%.*s), but stage \"%s\" has no needs: "
	          "a stage without needs has no input record", label, (int)n, src + off, stage);
}

/* The record references of a source fetch (no needs), m its fetch: mapping. */
static void check_source_records(struct cfg *c, const struct stage_spec *st,
                                 const struct ynode *m)
{
	const struct fetch_spec *f = &st->u.fetch;
	const struct ynode *url = map_get(m, "url", NULL), *hs = map_get(m, "headers", NULL);
	size_t i, j;

	for (i = j = 0; url && i < f->n_urls; i++)
		check_no_record(c, url_item(url, &f->urls[i], &j), f->urls[i].s, true, "\"url\"",
		                st->id);
	/* The header nodes are walked in step with the headers read from them
	 * (in order, some left out): linear in their number. */
	for (i = j = 0; hs && hs->kind == YN_MAP && i + 1 < hs->n && j < f->n_headers; i += 2) {
		const struct ynode *hk = hs->kids[i];
		char *label;
		if (hk->kind != YN_SCALAR || hk->dup || strcmp(hk->s, f->headers[j].name) != 0)
			continue;
		label = xasprintf("header \"%s\"", f->headers[j].name);
		check_no_record(c, hs->kids[i + 1], f->headers[j].value.s, true, label, st->id);
		free(label);
		j++;
	}
	check_no_record(c, map_get(m, "file", NULL), f->file.s, true, "\"file\"", st->id);
	check_no_record(c, map_get(m, "body", NULL), f->body.s, true, "\"body\"", st->id);
	check_no_record(c, map_get(m, "json", NULL), f->json.s, false, "\"json\"", st->id);
}

/* Fan-out rules of a fetch stage (m: its fetch: mapping). */
static void check_fanout(struct cfg *c, size_t idx, const struct ynode *m)
{
	const struct stage_spec *st = &c->s->stages[idx];
	const struct ynode *k = NULL, *v;

	if (st->n_needs == 0 && !c->needs_bad[idx] && m->kind == YN_MAP)
		check_source_records(c, st, m);
	if (st->n_needs > 0) {
		v = map_get(m, "url", NULL);
		if (v && v->kind == YN_SEQ)
			diags_add(c->d, cpos(c, v), "a fetch stage with needs takes one url template");
		if (map_get(m, "file", NULL))
			diags_add(c->d, c->needs_key[idx], "a file fetch cannot have needs");
	} else if (!c->needs_bad[idx] && map_get(m, "merge", &k)) {
		diags_add(c->d, cpos(c, k), "merge is only for fetch stages with needs");
	}
}

/* The key node of the later of two keys of m (for "cannot have both"). */
static const struct ynode *later_key(const struct ynode *m, const char *a, const char *b)
{
	const struct ynode *ka = NULL, *kb = NULL;

	map_get(m, a, &ka);
	map_get(m, b, &kb);
	if (ka->line != kb->line)
		return ka->line > kb->line ? ka : kb;
	return ka->col > kb->col ? ka : kb;
}

/* The node that sv of a url: was read from: url itself when it is a
 * scalar, else the item of the sequence at sv's position. The values are
 * looked up in the order they were read, so the search starts at *from
 * (0 for the first) and moves it on: linear over all of them. */
static const struct ynode *url_item(const struct ynode *url, const struct sval *sv,
                                    size_t *from)
{
	size_t i;

	if (url->kind != YN_SEQ)
		return url;
	for (i = *from; i < url->n; i++)
		if (url->kids[i]->line == sv->pos.line && url->kids[i]->col == sv->pos.col) {
			*from = i + 1;
			return url->kids[i];
		}
	return url;
}

static void only_with_url(struct cfg *c, const struct ynode *m, const char *name)
{
	const struct ynode *k = NULL;

	if (map_get(m, name, &k))
		diags_add(c->d, cpos(c, k), "\"%s\" is only allowed with \"url\"", name);
}

static void read_headers(struct cfg *c, const struct ynode *m, struct fetch_spec *f)
{
	const struct ynode *k = NULL, *v = map_get(m, "headers", &k);
	size_t i, cap = 0;

	if (!v || !map_check(c, v, "\"headers\"", "in headers", NULL) || v->kind != YN_MAP)
		return;
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *hk = v->kids[i], *hv = v->kids[i + 1];
		struct sval sv = { NULL, { NULL, 0, 0 } };
		char *label;

		if (hk->kind != YN_SCALAR || hk->dup)
			continue;
		if (!token_ok(hk->s))
			diags_add(c->d, cpos(c, hk),
			          "invalid header name \"%s\": must be an HTTP token", hk->s);
		if (!read_str_node(c, hv, hk->s, &sv))
			continue;
		label = xasprintf("header \"%s\"", hk->s);
		check_template(c, hv, sv.s, label);
		free(label);
		xgrow(&f->headers, &cap, f->n_headers + 1, sizeof(*f->headers));
		f->headers[f->n_headers].name = xstrdup(hk->s);
		f->headers[f->n_headers].value = sv;
		f->n_headers++;
	}
}

/* allow_hosts: a host or a list of them ("host", "host:port", "*.domain",
 * "*"), never a URL. */
static void read_allow_hosts(struct cfg *c, const struct ynode *m, struct fetch_spec *f)
{
	size_t i;

	read_str_list(c, m, "allow_hosts", &f->allow_hosts, &f->n_allow_hosts);
	for (i = 0; i < f->n_allow_hosts; i++) {
		const char *h = f->allow_hosts[i].s, *p;
		bool bad = *h == '\0' || strchr(h, '/') != NULL || strchr(h, '@') != NULL ||
		           (h[0] == '*' && h[1] != '\0' && h[1] != '.') || strchr(h + 1, '*');
		for (p = h; *p && !bad; p++)
			if (*p == ' ' || *p == '\t' || (unsigned char)*p < 0x20)
				bad = true;
		if (bad)
			diags_add(c->d, f->allow_hosts[i].pos, "invalid host \"%s\" in "
			          "\"allow_hosts\": expected a host name, host:port, *.domain or *",
			          h);
	}
}

static void read_fetch(struct cfg *c, const struct ynode *k, const struct ynode *m,
                       struct fetch_spec *f)
{
	const struct ynode *url, *file, *body;
	size_t i, j;

	f->timeout = -1;
	f->connect_timeout = -1;
	f->tls_verify = -1;
	f->idempotent = -1;
	if (!map_check(c, m, "\"fetch\"", "in fetch", fetch_keys))
		return;
	url = read_str_list(c, m, "url", &f->urls, &f->n_urls);
	if (url && url->kind == YN_SEQ && url->n == 0)
		diags_add(c->d, cpos(c, url), "\"url\" must list at least one URL");
	for (i = j = 0; i < f->n_urls; i++)
		check_template(c, url_item(url, &f->urls[i], &j), f->urls[i].s, "\"url\"");
	file = read_str(c, m, "file", &f->file);
	if (file && f->file.s)
		check_template(c, file, f->file.s, "\"file\"");
	url = map_get(m, "url", NULL);
	file = map_get(m, "file", NULL);
	if (url && file) {
		diags_add(c->d, cpos(c, later_key(m, "url", "file")),
		          "fetch cannot have both \"url\" and \"file\"");
	} else if (!url && !file) {
		diags_add(c->d, map_pos(c, k, m), "fetch needs one of \"url\" or \"file\"");
	} else if (file) {
		only_with_url(c, m, "method");
		only_with_url(c, m, "headers");
		only_with_url(c, m, "body");
		only_with_url(c, m, "json");
		only_with_url(c, m, "idempotent");
		only_with_url(c, m, "pool");
		only_with_url(c, m, "paginate");
		only_with_url(c, m, "allow_hosts");
	}
	f->format = read_enum(c, m, "format", fetch_formats, NULL) == 1 ? FMT_JSONL : FMT_JSON;
	read_enum(c, m, "method", methods, &f->method);
	read_headers(c, m, f);
	body = read_str(c, m, "body", &f->body);
	if (body && f->body.s)
		check_template(c, body, f->body.s, "\"body\"");
	read_str(c, m, "json", &f->json);
	check_jq(c, &f->json, "json");
	if (map_get(m, "body", NULL) && map_get(m, "json", NULL))
		diags_add(c->d, cpos(c, later_key(m, "body", "json")),
		          "fetch cannot have both \"body\" and \"json\"");
	read_str(c, m, "records", &f->records);
	check_jq(c, &f->records, "records");
	read_duration(c, m, "timeout", &f->timeout);
	read_duration(c, m, "connect_timeout", &f->connect_timeout);
	read_int(c, m, "concurrency", 1, 10000, &f->concurrency);
	read_size(c, m, "max_body", &f->max_body);
	read_bool(c, m, "tls_verify", &f->tls_verify);
	read_retry(c, m, &f->retry);
	read_bool(c, m, "idempotent", &f->idempotent);
	if (read_str(c, m, "pool", &f->pool) && f->pool.s)
		check_pool(c, &f->pool);
	read_paginate(c, m, &f->paginate);
	read_allow_hosts(c, m, f);
	read_str(c, m, "merge", &f->merge);
	check_jq(c, &f->merge, "merge");
}

static void read_transform(struct cfg *c, const struct ynode *k, const struct ynode *m,
                           struct transform_spec *t)
{
	if (!map_check(c, m, "\"transform\"", "in transform", transform_keys))
		return;
	read_str(c, m, "jq", &t->jq);
	check_jq(c, &t->jq, "jq");
	read_str(c, m, "dedupe", &t->dedupe);
	check_jq(c, &t->dedupe, "dedupe");
	if (!map_get(m, "jq", NULL) && !map_get(m, "dedupe", NULL))
		diags_add(c->d, map_pos(c, k, m),
		          "transform needs at least one of \"jq\" or \"dedupe\"");
}

/* True when a and b are equal ignoring ASCII case, as SQLite compares
 * identifiers. */
static bool ident_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return false;
	return *a == *b;
}

/* sqlite columns: a column name or a sequence of them (SQLite compares them without
 * regard to case, so "Name" and "name" are the same column). */
static void read_columns(struct cfg *c, const struct ynode *m, struct load_spec *l)
{
	size_t i, j;

	read_str_list(c, m, "columns", &l->columns, &l->n_columns);
	for (i = 0; i < l->n_columns; i++) {
		if (!*l->columns[i].s) {
			diags_add(c->d, l->columns[i].pos, "\"columns\" names must not be empty");
			continue;
		}
		for (j = 0; j < i; j++)
			if (ident_eq(l->columns[i].s, l->columns[j].s)) {
				diags_add(c->d, l->columns[i].pos, "duplicate column \"%s\" in "
				          "\"columns\" (SQLite column names ignore case)",
				          l->columns[i].s);
				break;
			}
	}
}

static void read_on_conflict(struct cfg *c, const struct ynode *m, struct load_spec *l)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	int v = read_enum(c, m, "on_conflict", on_conflicts, &sv);

	if (v < 0)
		return;
	l->on_conflict = (enum on_conflict)v;
	if (!l->n_key)
		diags_add(c->d, sv.pos, "\"on_conflict\" needs a \"key\": without one every "
		          "record is a new row");
	free(sv.s);
}

static void read_table(struct cfg *c, const struct ynode *m, struct load_spec *l)
{
	size_t i;

	read_str(c, m, "table", &l->table);
	if (l->table.s && !name_ok(l->table.s, false, ""))
		diags_add(c->d, l->table.pos, "invalid table name \"%s\": must start with a "
		          "letter or _ and contain only letters, digits and _", l->table.s);
	read_str_list(c, m, "key", &l->key, &l->n_key);
	for (i = 0; i < l->n_key; i++) {
		size_t j;
		if (!*l->key[i].s)
			diags_add(c->d, l->key[i].pos, "\"key\" column names must not be empty");
		for (j = 0; j < i; j++)
			if (ident_eq(l->key[i].s, l->key[j].s)) {
				diags_add(c->d, l->key[i].pos, "duplicate column \"%s\" in \"key\"",
				          l->key[i].s);
				break;
			}
	}
	read_columns(c, m, l);
	read_on_conflict(c, m, l);
}

/* A sink's path: a template (params, run, env), rendered once per run. */
static void read_load_path(struct cfg *c, const struct ynode *m, struct load_spec *l)
{
	if (read_str(c, m, "path", &l->path) && l->path.s)
		check_template(c, map_get(m, "path", NULL), l->path.s, "\"path\"");
}

static void read_load(struct cfg *c, const struct ynode *k, const struct ynode *m,
                      struct load_spec *l)
{
	const struct ynode *tk = NULL, *tv = NULL;
	size_t i;

	l->format = FMT_JSONL;
	if (!map_check(c, m, "\"load\"", "in load", load_keys))
		return;
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; load_keys[t] && strcmp(key->s, load_keys[t]) != 0; t++)
			;
		if (!load_keys[t] || key->dup)
			continue;
		if (tk) {
			diags_add(c->d, cpos(c, key), "load cannot have both \"%s\" and \"%s\"",
			          tk->s, key->s);
			continue;
		}
		tk = key;
		tv = m->kids[i + 1];
		l->target = (enum load_target)t;
	}
	if (!tk) {
		diags_add(c->d, map_pos(c, k, m),
		          "load needs one of \"sqlite\", \"file\", \"stdout\" or \"http\"");
		return;
	}
	switch (l->target) {
	case LOAD_SQLITE:
		if (!map_check(c, tv, "\"sqlite\"", "in sqlite", sqlite_keys))
			return;
		if (!map_get(tv, "path", NULL))
			missing(c, map_pos(c, tk, tv), "path", "in sqlite");
		if (!map_get(tv, "table", NULL))
			missing(c, map_pos(c, tk, tv), "table", "in sqlite");
		read_load_path(c, tv, l);
		read_table(c, tv, l);
		break;
	case LOAD_FILE:
		if (!map_check(c, tv, "\"file\"", "in file", loadfile_keys))
			return;
		if (!map_get(tv, "path", NULL))
			missing(c, map_pos(c, tk, tv), "path", "in file");
		read_load_path(c, tv, l);
		read_enum(c, tv, "format", load_formats, NULL);
		break;
	case LOAD_STDOUT:
		if (!map_check(c, tv, "\"stdout\"", "in stdout", stdout_keys))
			return;
		read_enum(c, tv, "format", load_formats, NULL);
		break;
	case LOAD_HTTP: {
		struct fetch_spec *f = &l->http;
		const struct ynode *url;
		f->timeout = -1;
		f->connect_timeout = -1;
		f->tls_verify = -1;
		f->idempotent = 1;
		l->batch = 1;
		if (!map_check(c, tv, "\"http\"", "in http", loadhttp_keys))
			return;
		if (!map_get(tv, "url", NULL))
			missing(c, map_pos(c, tk, tv), "url", "in http");
		url = read_str_list(c, tv, "url", &f->urls, &f->n_urls);
		if (url && url->kind == YN_SEQ)
			diags_add(c->d, cpos(c, url), "\"url\" of an http load is one URL template");
		else if (url && f->n_urls == 1)
			check_template(c, url, f->urls[0].s, "\"url\"");
		read_enum(c, tv, "method", http_methods, &f->method);
		read_headers(c, tv, f);
		read_int(c, tv, "batch", 1, 10000, &l->batch);
		read_duration(c, tv, "timeout", &f->timeout);
		read_duration(c, tv, "connect_timeout", &f->connect_timeout);
		read_int(c, tv, "concurrency", 1, 10000, &f->concurrency);
		read_bool(c, tv, "tls_verify", &f->tls_verify);
		read_retry(c, tv, &f->retry);
		read_allow_hosts(c, tv, f);
		break;
	}
	}
}

static void read_stage(struct cfg *c, const struct ynode *k, const struct ynode *m, size_t idx)
{
	struct stage_spec *st = &c->s->stages[idx];
	const struct ynode *kind_k = NULL, *kind_v = NULL, *nk = NULL;
	struct pos on_error_at = { NULL, 0, 0 };
	char *where;
	size_t i;

	st->stage_timeout = -1;
	st->id = xstrdup(k->s);
	st->pos = cpos(c, k);
	if (!name_ok(st->id, false, "-"))
		diags_add(c->d, st->pos, "invalid stage id \"%s\": must start with a letter "
		          "or _ and contain only letters, digits, _ and -", st->id);
	if (m->kind == YN_BAD)
		return;
	if (m->kind != YN_MAP && !is_null(m)) {
		diags_add(c->d, cpos(c, m), "expected a mapping for stage \"%s\", got %s",
		          st->id, describe(m));
		return;
	}
	where = xasprintf("in stage \"%s\"", st->id);
	map_check(c, m, "a stage", where, stage_keys);
	free(where);
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; kind_names[t] && strcmp(key->s, kind_names[t]) != 0; t++)
			;
		if (!kind_names[t] || key->dup)
			continue;
		if (kind_k) {
			diags_add(c->d, cpos(c, key), "stage \"%s\" has both %s and %s", st->id,
			          kind_k->s, key->s);
			continue;
		}
		kind_k = key;
		kind_v = m->kids[i + 1];
		st->type = (enum stage_type)t;
	}
	if (map_get(m, "needs", &nk)) {
		size_t n0 = c->d->n;
		c->needs_key[idx] = cpos(c, nk);
		read_str_list(c, m, "needs", &st->needs, &st->n_needs);
		c->needs_bad[idx] = c->d->n != n0;
		for (i = 0; i < st->n_needs; i++) {
			size_t j;
			for (j = 0; j < i; j++)
				if (strcmp(st->needs[i].s, st->needs[j].s) == 0) {
					diags_add(c->d, st->needs[i].pos,
					          "duplicate stage \"%s\" in needs of \"%s\"",
					          st->needs[i].s, st->id);
					break;
				}
		}
	}
	read_plain_str(c, m, "description", &st->description);
	st->on_error = read_on_error(c, m, &on_error_at);
	read_duration(c, m, "stage_timeout", &st->stage_timeout);
	if (!kind_k) {
		diags_add(c->d, st->pos, "stage \"%s\" needs one of fetch, transform or load",
		          st->id);
		return;
	}
	st->type_pos = cpos(c, kind_k);
	c->kind_known[idx] = true;
	switch (st->type) {
	case STAGE_FETCH:
		read_fetch(c, kind_k, kind_v, &st->u.fetch);
		if (!st->u.fetch.records.s) {
			st->u.fetch.records.s = xstrdup(".");
			st->u.fetch.records.pos = st->type_pos;
		}
		check_fanout(c, idx, kind_v);
		break;
	case STAGE_TRANSFORM:
		read_transform(c, kind_k, kind_v, &st->u.transform);
		break;
	case STAGE_LOAD:
		read_load(c, kind_k, kind_v, &st->u.load);
		break;
	}
	if (st->on_error == ON_ERROR_PASS && !c->needs_bad[idx] &&
	    !(st->type == STAGE_FETCH && st->n_needs > 0))
		pass_misplaced(c, on_error_at);
}

/* Graph rules that depend on the stage kind (dag.c checks names and cycles;
 * the fan-out rules of fetch stages are in check_fanout). */
static void check_kind_needs(struct cfg *c)
{
	size_t i;

	for (i = 0; i < c->s->n_stages; i++) {
		const struct stage_spec *st = &c->s->stages[i];
		if (!c->kind_known[i])
			continue;
		if (st->type != STAGE_FETCH && st->n_needs == 0 && !c->needs_bad[i])
			diags_add(c->d, c->needs_key[i].line ? c->needs_key[i] : st->pos,
			          "%s stage \"%s\" needs an upstream stage (needs:)",
			          kind_names[st->type], st->id);
	}
}

static void read_stages(struct cfg *c, const struct ynode *k, const struct ynode *m)
{
	size_t i, n = 0;

	if (m->kind == YN_BAD)
		return;
	if (m->kind != YN_MAP && !is_null(m)) {
		diags_add(c->d, cpos(c, m), "expected a mapping for \"stages\", got %s",
		          describe(m));
		return;
	}
	if (m->kind != YN_MAP || m->n == 0) {
		diags_add(c->d, cpos(c, k), "\"stages\" must define at least one stage");
		return;
	}
	c->s->stages = xcalloc(m->n / 2, sizeof(*c->s->stages));
	c->kind_known = xcalloc(m->n / 2, sizeof(*c->kind_known));
	c->needs_key = xcalloc(m->n / 2, sizeof(*c->needs_key));
	c->needs_bad = xcalloc(m->n / 2, sizeof(*c->needs_bad));
	for (i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		if (key->kind != YN_SCALAR || key->dup)
			continue;               /* bad or duplicate key: reported already */
		read_stage(c, key, m->kids[i + 1], n++);
		c->s->n_stages = n;
	}
	check_kind_needs(c);
}

/* ------------------------------------------------------------ top level */

static json_t *scalar_json(const struct ynode *v)
{
	int b;

	if (!plain(v))
		return json_string(v->s);
	if (is_null(v))
		return json_null();
	if ((b = bool_value(v)) >= 0)
		return json_boolean(b);
	if (is_int_text(v->s)) {
		long long x;
		errno = 0;
		x = strtoll(v->s, NULL, 10);
		if (!errno)
			return json_integer(x);
		return json_real(strtod(v->s, NULL));
	}
	if (is_real_text(v->s))
		return json_real(strtod(v->s, NULL));
	return json_string(v->s);
}

static void read_params(struct cfg *c, const struct ynode *m)
{
	size_t i;

	if (!m || !map_check(c, m, "\"params\"", "in params", NULL) || m->kind != YN_MAP)
		return;
	for (i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *k = m->kids[i], *v = m->kids[i + 1];
		json_t *j;
		if (k->kind != YN_SCALAR || k->dup)
			continue;
		if (!name_ok(k->s, false, ""))
			diags_add(c->d, cpos(c, k), "invalid parameter name \"%s\": must start "
			          "with a letter or _ and contain only letters, digits and _", k->s);
		if (v->kind == YN_BAD)
			continue;
		if (v->kind != YN_SCALAR) {
			diags_add(c->d, cpos(c, v), "expected a scalar for parameter \"%s\", got %s",
			          k->s, describe(v));
			continue;
		}
		j = scalar_json(v);
		if (!j) {
			diags_add(c->d, cpos(c, v), "parameter \"%s\" is not valid UTF-8", k->s);
			continue;
		}
		json_object_set_new(c->s->params, k->s, j);
	}
}

static void read_top(struct cfg *c, const struct ynode *root)
{
	struct spec *s = c->s;
	const struct ynode *k = NULL, *v;
	struct pos top = cpos(c, root), at = { NULL, 0, 0 };

	if (root->kind != YN_MAP) {
		diags_add(c->d, top, "the top level of a pipeline file must be a mapping, got %s",
		          describe(root));
		return;
	}
	map_check(c, root, "the pipeline", "at the top level", top_keys);

	if (!map_get(root, "pipeline", NULL)) {
		missing(c, top, "pipeline", "at the top level");
	} else {
		struct sval name = { NULL, { NULL, 0, 0 } };
		read_str(c, root, "pipeline", &name);
		if (name.s && !name_ok(name.s, true, "_.-"))
			diags_add(c->d, name.pos, "invalid pipeline name \"%s\": must start with a "
			          "letter or digit and contain only letters, digits, _, . and -",
			          name.s);
		s->name = name.s;
	}
	read_plain_str(c, root, "description", &s->description);
	read_params(c, map_get(root, "params", NULL));

	v = map_get(root, "settings", &k);
	if (v && map_check(c, v, "\"settings\"", "in settings", settings_keys)) {
		int q = s->queue_high;
		read_int(c, v, "concurrency", 1, 10000, &s->concurrency);
		read_int(c, v, "queue", 1, 10000000, &q);
		s->queue_high = q;
		s->queue_low = q / 2;
		read_int(c, v, "batch_size", 1, 100000, &s->batch_size);
		read_duration(c, v, "run_timeout", &s->run_timeout);
	}
	v = map_get(root, "defaults", &k);
	if (v && map_check(c, v, "\"defaults\"", "in defaults", defaults_keys)) {
		read_duration(c, v, "timeout", &s->timeout);
		read_duration(c, v, "connect_timeout", &s->connect_timeout);
		read_int(c, v, "concurrency", 1, 10000, &s->stage_concurrency);
		read_size(c, v, "max_body", &s->max_body);
		read_retry(c, v, &s->retry);
		s->on_error = read_on_error(c, v, &at);
		if (s->on_error == ON_ERROR_PASS)
			pass_misplaced(c, at);
		if (s->on_error == ON_ERROR_UNSET || s->on_error == ON_ERROR_PASS)
			s->on_error = ON_ERROR_FAIL;
		read_duration(c, v, "stage_timeout", &s->stage_timeout);
	}
	read_hosts(c, map_get(root, "hosts", NULL));

	/* expressions are checked with the file's params and name in scope */
	c->run = json_pack("{s:i, s:s}", "id", 0, "pipeline", s->name ? s->name : "");
	c->scope.params = s->params;
	c->scope.run = c->run;

	v = map_get(root, "stages", &k);
	if (!v)
		missing(c, top, "stages", "at the top level");
	else
		read_stages(c, k, v);
	if (s->n_stages > 0)
		dag_free(dag_build(s, c->d));
}

static void spec_defaults(struct spec *s)
{
	s->params = json_object();
	s->concurrency = 64;
	s->queue_high = 10000;
	s->queue_low = 5000;
	s->batch_size = 500;
	s->timeout = 30;
	s->connect_timeout = 10;
	s->stage_concurrency = 16;
	s->max_body = 64LL << 20;
	retry_policy_default(&s->retry.p);
	s->on_error = ON_ERROR_FAIL;
	s->stage_timeout = -1;
	s->run_timeout = -1;
}

struct spec *config_load(const char *path, struct diags *d)
{
	struct spec *s = xcalloc(1, sizeof(*s));
	struct cfg c;
	struct ynode *root;
	size_t n0 = d->n, i;

	memset(&c, 0, sizeof(c));
	c.s = s;
	c.d = d;
	s->path = xstrdup(path);
	s->dir = path_dir(path);
	spec_defaults(s);
	s->text = read_file_max(path, (size_t)CONFIG_MAX_FILE_MIB << 20, &s->text_len);
	if (!s->text) {
		struct pos p = { s->path, 0, 0 };
		if (errno == EFBIG)
			diags_add(d, p, "file too large: a pipeline file may hold at most "
			          "%d MiB (%d bytes)", CONFIG_MAX_FILE_MIB, CONFIG_MAX_FILE_MIB << 20);
		else
			diags_add(d, p, "cannot read: %s", strerror(errno));
		spec_free(s);
		return NULL;
	}
	sha256_hex(s->text, s->text_len, s->hash);

	root = parse_tree(&c);
	if (root)
		read_top(&c, root);
	ynode_free(root);

	for (i = 0; i < c.n_checks; i++) {
		free(c.checks[i].src);
		free(c.checks[i].err);
	}
	free(c.checks);
	free(c.line_start);
	free(c.kind_known);
	free(c.needs_key);
	free(c.needs_bad);
	json_decref(c.run);
	if (d->n != n0) {
		spec_free(s);
		return NULL;
	}
	return s;
}

static void sval_free(struct sval *v)
{
	free(v->s);
	v->s = NULL;
}

static void fetch_spec_free(struct fetch_spec *f)
{
	size_t i;

	for (i = 0; i < f->n_urls; i++)
		sval_free(&f->urls[i]);
	free(f->urls);
	sval_free(&f->file);
	sval_free(&f->method);
	for (i = 0; i < f->n_headers; i++) {
		free(f->headers[i].name);
		sval_free(&f->headers[i].value);
	}
	free(f->headers);
	sval_free(&f->body);
	sval_free(&f->json);
	sval_free(&f->records);
	sval_free(&f->retry.when);
	sval_free(&f->pool);
	sval_free(&f->paginate.next);
	sval_free(&f->paginate.param);
	sval_free(&f->paginate.stop);
	sval_free(&f->merge);
	for (i = 0; i < f->n_allow_hosts; i++)
		sval_free(&f->allow_hosts[i]);
	free(f->allow_hosts);
}

static void stage_free(struct stage_spec *st)
{
	size_t i;

	free(st->id);
	free(st->description);
	for (i = 0; i < st->n_needs; i++)
		sval_free(&st->needs[i]);
	free(st->needs);
	switch (st->type) {
	case STAGE_FETCH:
		fetch_spec_free(&st->u.fetch);
		break;
	case STAGE_TRANSFORM:
		sval_free(&st->u.transform.jq);
		sval_free(&st->u.transform.dedupe);
		break;
	case STAGE_LOAD:
		fetch_spec_free(&st->u.load.http);
		sval_free(&st->u.load.path);
		sval_free(&st->u.load.table);
		for (i = 0; i < st->u.load.n_key; i++)
			sval_free(&st->u.load.key[i]);
		free(st->u.load.key);
		for (i = 0; i < st->u.load.n_columns; i++)
			sval_free(&st->u.load.columns[i]);
		free(st->u.load.columns);
		break;
	}
}

void spec_free(struct spec *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->n_stages; i++)
		stage_free(&s->stages[i]);
	free(s->stages);
	for (i = 0; i < s->n_hosts; i++)
		free(s->hosts[i].name);
	free(s->hosts);
	sval_free(&s->retry.when);
	json_decref(s->params);
	free(s->name);
	free(s->description);
	free(s->text);
	free(s->dir);
	free(s->path);
	free(s);
}

int spec_stage_index(const struct spec *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->n_stages; i++)
		if (strcmp(s->stages[i].id, id) == 0)
			return (int)i;
	return -1;
}
