/*
 * yaml: libyaml's event parser into a tree of nodes with 1-based positions
 * (see yaml.h). YAML aliases and tags are rejected, duplicate keys reported.
 */
#include "core/yaml.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/util.h"

static enum ynode_style scalar_style(yaml_scalar_style_t s)
{
	switch (s) {
	case YAML_PLAIN_SCALAR_STYLE: return YS_PLAIN;
	case YAML_SINGLE_QUOTED_SCALAR_STYLE: return YS_SINGLE;
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE: return YS_DOUBLE;
	default: return YS_BLOCK;
	}
}

void ytext_free(struct ytext *t)
{
	free(t->line_start);
	t->line_start = NULL;
	t->n_lines = 0;
}

void ynode_free(struct ynode *n)
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

struct pos ynode_pos(const struct ytext *t, const struct ynode *n)
{
	struct pos p = { t->file, n->line, n->col };
	return p;
}

static struct pos mark_pos(const struct ytext *t, yaml_mark_t m)
{
	struct pos p = { t->file, (int)m.line + 1, (int)m.column + 1 };
	return p;
}
/* ------------------------------------------------------------ source text */

static void index_lines(struct ytext *t)
{
	size_t cap = 0, i;
	const char *tx = t->text;

	if (t->line_start)
		return;
	xgrow(&t->line_start, &cap, 1, sizeof(*t->line_start));
	t->line_start[t->n_lines++] = 0;
	for (i = 0; i < t->len; i++) {
		if (tx[i] == '\r' && i + 1 < t->len && tx[i + 1] == '\n')
			i++;
		else if (tx[i] != '\n' && tx[i] != '\r')
			continue;
		xgrow(&t->line_start, &cap, t->n_lines + 1, sizeof(*t->line_start));
		t->line_start[t->n_lines++] = i + 1;
	}
}

/* Byte offset of 1-based (line, col) where col counts characters as libyaml
 * does, or (size_t)-1 when it is outside the text. */
static size_t text_offset(struct ytext *t, int line, int col)
{
	const unsigned char *tx = (const unsigned char *)t->text;
	size_t o;
	int k;

	index_lines(t);
	if (line < 1 || (size_t)line > t->n_lines || col < 1)
		return (size_t)-1;
	o = t->line_start[line - 1];
	for (k = 1; k < col; k++) {
		if (o >= t->len || tx[o] == '\n' || tx[o] == '\r')
			return (size_t)-1;
		o++;
		while (o < t->len && (tx[o] & 0xC0) == 0x80)
			o++;
	}
	return o;
}

/* Inverse of text_offset: the position of byte offset off. */
static struct pos offset_pos(struct ytext *t, size_t off)
{
	const unsigned char *tx = (const unsigned char *)t->text;
	struct pos p = { t->file, 1, 1 };
	size_t lo = 0, hi, o;

	index_lines(t);
	hi = t->n_lines;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (t->line_start[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	p.line = (int)lo + 1;
	for (o = t->line_start[lo]; o < off && o < t->len; o++)
		if ((tx[o] & 0xC0) != 0x80)
			p.col++;
	return p;
}

/* ------------------------------------------------------------ YAML -> tree */

struct builder {
	struct ytext *t;
	struct diags *d;               /* tree diagnostics, kept only without a syntax error */
	struct ynode *root;
	struct ynode **stack;
	size_t depth, cap, max_depth;
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
		diags_add(b->d, ynode_pos(b->t, m->kids[2 * i]),
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
			diags_add(b->d, ynode_pos(b->t, n), "mapping keys must be scalars, got a %s",
			          n->kind == YN_MAP ? "mapping" : "sequence");
	} else if (top->kind == YN_MAP && n->kind == YN_SCALAR && n->len == 0 &&
	           n->style == YS_PLAIN) {
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
		diags_add(b->d, mark_pos(b->t, m), "YAML tags are not supported (\"%s\")",
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
			diags_add(b->d, mark_pos(b->t, ev->start_mark),
			          "multiple YAML documents in one file are not supported");
		break;
	case YAML_SCALAR_EVENT:
		n = ynode_new(YN_SCALAR, ev->start_mark);
		n->style = scalar_style(ev->data.scalar.style);
		n->anchored = ev->data.scalar.anchor != NULL;
		n->s = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->len = ev->data.scalar.length;
		builder_tag(b, ev->data.scalar.tag, ev->start_mark);
		builder_attach(b, n);
		break;
	case YAML_ALIAS_EVENT:
		diags_add(b->d, mark_pos(b->t, ev->start_mark), "YAML aliases are not supported");
		builder_attach(b, ynode_new(YN_BAD, ev->start_mark));
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (b->depth >= b->max_depth) {
			diags_add(b->d, mark_pos(b->t, ev->start_mark),
			          "YAML nesting deeper than %zu levels", b->max_depth);
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
static void report_syntax_error(struct ytext *t, struct diags *d, yaml_parser_t *p)
{
	struct pos at, from;
	const char *problem = p->problem ? p->problem : "cannot parse";
	const char *hint = "", *opener;
	size_t off;

	if (p->error == YAML_READER_ERROR) {
		const unsigned char *tx = (const unsigned char *)t->text;
		off = p->problem_offset;
		if (p->problem && strcmp(p->problem, "invalid trailing UTF-8 octet") == 0) {
			/* back to the leading byte of the sequence */
			while (off > 0 && off <= t->len && (tx[off - 1] & 0xC0) == 0x80)
				off--;
			if (off > 0)
				off--;
		}
		at = offset_pos(t, off);
		if (strstr(problem, "UTF-8") && off < t->len)
			diags_add(d, at, "YAML syntax error: invalid UTF-8 (byte 0x%02X); "
			          "the file must be UTF-8 (is it Latin-1?)", tx[off]);
		else
			diags_add(d, at, "YAML syntax error: %s", problem);
		return;
	}
	at = mark_pos(t, p->problem_mark);
	off = text_offset(t, at.line, at.col);
	if (off != (size_t)-1 && off < t->len && t->text[off] == '\t')
		hint = "; tabs cannot be used for indentation";
	opener = syntax_opener(p->context);
	from = mark_pos(t, p->context_mark);
	if (opener && (from.line != at.line || from.col != at.col)) {
		diags_add(d, from, "YAML syntax error: this %s is not closed (%s at line %d, "
		          "column %d)", opener, problem, at.line, at.col);
		diags_add(d, at, "YAML syntax error: %s (%s opened at line %d, column %d)%s",
		          problem, p->context, from.line, from.col, hint);
	} else if (p->context) {
		diags_add(d, at, "YAML syntax error: %s (%s)%s", problem, p->context, hint);
	} else {
		diags_add(d, at, "YAML syntax error: %s%s", problem, hint);
	}
}

/* Parses the text into a tree. Returns the root of the first document, or
 * NULL (with a diagnostic) on a syntax error or an empty file. */
struct ynode *ytree_parse(struct ytext *t, struct diags *d, size_t max_depth)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct builder b;
	int done = 0, failed = 0;

	memset(&b, 0, sizeof(b));
	b.t = t;
	b.max_depth = max_depth;
	b.d = xcalloc(1, sizeof(*b.d));
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)t->text,
	                             t->len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			report_syntax_error(t, d, &parser);
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
			diags_move(d, b.d);
		diags_free(b.d);
		free(b.d);
		ynode_free(b.root);
		return NULL;
	}
	diags_move(d, b.d);
	free(b.d);
	if (!b.root || (b.root->kind == YN_SCALAR && b.root->len == 0 &&
	                b.root->style == YS_PLAIN)) {
		/* at 1:1, so editors and the compiler-like format still get a position */
		struct pos p = { t->file, 1, 1 };
		diags_add(d, p, "empty pipeline file");
		ynode_free(b.root);
		return NULL;
	}
	return b.root;
}

/* ------------------------------------------------------------ scalar types */

bool ynode_plain(const struct ynode *n)
{
	return n->kind == YN_SCALAR && n->style == YS_PLAIN;
}

bool ynode_is_null(const struct ynode *n)
{
	return ynode_plain(n) && (n->len == 0 || strcmp(n->s, "~") == 0 ||
	                    strcmp(n->s, "null") == 0 || strcmp(n->s, "Null") == 0 ||
	                    strcmp(n->s, "NULL") == 0);
}

/* 1 true, 0 false, -1 not a boolean (YAML 1.2 core schema spellings). */
int ynode_bool(const struct ynode *n)
{
	static const char *const t[] = { "true", "True", "TRUE" };
	static const char *const f[] = { "false", "False", "FALSE" };
	size_t i;

	if (!ynode_plain(n))
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
bool text_is_int(const char *s)
{
	const char *p = s + (*s == '-');
	const char *e = digits(p);
	return e > p && *e == '\0';
}

/* -?[0-9]+\.[0-9]*([eE][-+]?[0-9]+)? */
bool text_is_real(const char *s)
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

const char *ynode_describe(const struct ynode *n)
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
	if (!ynode_plain(n))
		return "a string";
	if (ynode_is_null(n))
		return "null";
	if (ynode_bool(n) >= 0)
		return "a boolean";
	if (text_is_int(n->s))
		return "an integer";
	if (text_is_real(n->s))
		return "a number";
	return "a string";
}

/* ------------------------------------------------------------ names */


/* Value node of key name in map m (first one when duplicated), or NULL;
 * *key gets the key node. */
const struct ynode *ynode_get(const struct ynode *m, const char *name,
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
struct pos ynode_offset_pos(struct ytext *t, const struct ynode *n, size_t off)
{
	struct pos p = ynode_pos(t, n);
	int quote;
	size_t at;

	if (n->kind != YN_SCALAR || n->anchored || off > n->len)
		return p;
	if (n->style == YS_PLAIN)
		quote = 0;
	else if (n->style == YS_SINGLE ||
	         n->style == YS_DOUBLE)
		quote = 1;
	else
		return p;
	at = text_offset(t, n->line, n->col);
	if (at == (size_t)-1)
		return p;
	at += (size_t)quote;
	if (at > t->len || t->len - at < n->len ||
	    memcmp(t->text + at, n->s, n->len) != 0 ||
	    memchr(n->s, '\n', off) || memchr(n->s, '\r', off))
		return p;
	p.col = n->col + quote + utf8_chars(n->s, off);
	return p;
}
