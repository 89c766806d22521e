/*
 * project: simple jq programs (paths, iteration, object construction and
 * pipes of them) run on jansson values. The per-record cost of jq is the
 * jansson -> jv -> jansson round trip and the interpreter; a projection
 * needs neither: outputs share the input's values, and only numbers that
 * jq would print differently (integral reals) are rebuilt.
 */
#include "expr/project.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonr.h"
#include "base/util.h"

/* Largest magnitude up to which every integer is exact in a double (as in
 * expr.c): beyond it jq's result depends on rounding and on the other big
 * integers of the input, so jq decides. */
#define PROJECT_MAX_EXACT 9007199254740992.0

enum pstep_kind { PSTEP_KEY, PSTEP_ITER };

struct pstep {
	enum pstep_kind kind;
	char *key;                     /* PSTEP_KEY: the name (klen bytes) */
	size_t klen;
};

/* A path: no steps is the identity. */
struct ppath {
	struct pstep *steps;
	size_t n, cap;
	bool iter;                     /* has a PSTEP_ITER step */
};

struct pentry {
	char *key;
	size_t klen;
	struct ppath val;
};

struct pterm {
	bool is_obj;
	struct ppath path;             /* !is_obj */
	struct pentry *ents;           /* is_obj */
	size_t nents, cap;
};

struct project {
	struct pterm *terms;
	size_t n, cap;
	bool single;                   /* no term iterates: one output */
};

/* A value being passed along a pipe, with whether it is already in the
 * form jq would output (see project_norm). */
struct pval {
	json_t *v;                     /* a reference */
	bool norm;
};

struct pvec {
	struct pval *a;
	size_t n, cap;
};

/* ------------------------------------------------------------ UTF-8 */

/* True when s[0, n) is valid UTF-8 as jq checks it (no overlong forms, no
 * surrogates, nothing above U+10FFFF): jq replaces bad bytes, so strings
 * that fail go to jq. */
static bool project_utf8_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + n;
	size_t len;

	while (s < end) {
		if (*s < 0x80)
			len = 1;
		else if (!(len = jsonr_utf8_len(s, end)))
			return false;
		s += len;
	}
	return true;
}

/* ------------------------------------------------------------ parsing */

static const char *const project_keywords[] = {
	"def", "if", "then", "elif", "else", "end", "as", "reduce", "foreach",
	"try", "catch", "label", "import", "include", "and", "or", "not",
	"__loc__", NULL,
};

static bool project_is_ident(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

static const char *project_ws(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	return s;
}

/* An identifier at s that is not a jq keyword: returns its end and sets
 * *name, *len; NULL when there is none. */
static const char *project_ident(const char *s, const char **name, size_t *len)
{
	size_t n = 0, k;

	if (!project_is_ident(s[0], true))
		return NULL;
	while (project_is_ident(s[n], false))
		n++;
	if (s[n] == ':' && s[n + 1] == ':')
		return NULL;           /* a module path */
	for (k = 0; project_keywords[k]; k++)
		if (strlen(project_keywords[k]) == n && memcmp(s, project_keywords[k], n) == 0)
			return NULL;
	*name = s;
	*len = n;
	return s + n;
}

/* A string literal at s without escapes or control characters, valid
 * UTF-8: returns the end (past the closing quote) and sets *name, *len;
 * NULL otherwise. */
static const char *project_string(const char *s, const char **name, size_t *len)
{
	size_t n = 0;

	if (*s != '"')
		return NULL;
	s++;
	while (s[n] && s[n] != '"') {
		if (s[n] == '\\' || (unsigned char)s[n] < 0x20)
			return NULL;
		n++;
	}
	if (s[n] != '"' || !project_utf8_ok(s, n))
		return NULL;
	*name = s;
	*len = n;
	return s + n + 1;
}

static void project_add_step(struct ppath *p, enum pstep_kind kind, const char *key,
                             size_t klen)
{
	xgrow(&p->steps, &p->cap, p->n + 1, sizeof(*p->steps));
	p->steps[p->n].kind = kind;
	p->steps[p->n].key = kind == PSTEP_KEY ? xstrndup(key, klen) : NULL;
	p->steps[p->n].klen = klen;
	p->n++;
	if (kind == PSTEP_ITER)
		p->iter = true;
}

static void project_path_free(struct ppath *p)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		free(p->steps[i].key);
	free(p->steps);
}

/* Parses a path at s ('.' first, no spaces inside) into p. Returns its
 * end, or NULL when it is not a path of the subset. */
static const char *project_parse_path(const char *s, struct ppath *p)
{
	const char *name, *e;
	size_t len;

	if (*s != '.')
		return NULL;
	s++;
	/* The first step: .a  ."k"  .["k"]  .[]  or nothing. */
	if ((e = project_ident(s, &name, &len)) != NULL) {
		project_add_step(p, PSTEP_KEY, name, len);
		s = e;
	} else if (*s == '"') {
		if (!(e = project_string(s, &name, &len)))
			return NULL;
		project_add_step(p, PSTEP_KEY, name, len);
		s = e;
	} else if (*s == '.' || project_is_ident(*s, false)) {
		return NULL;           /* "..", ".1", a keyword */
	}
	/* Then: .a  ."k"  ["k"]  [] */
	for (;;) {
		if (*s == '.') {
			s++;
			if ((e = project_ident(s, &name, &len)) == NULL &&
			    (e = project_string(s, &name, &len)) == NULL)
				return NULL;
			project_add_step(p, PSTEP_KEY, name, len);
			s = e;
		} else if (*s == '[') {
			if (s[1] == ']') {
				project_add_step(p, PSTEP_ITER, NULL, 0);
				s += 2;
				continue;
			}
			if (!(e = project_string(s + 1, &name, &len)) || *e != ']')
				return NULL;
			project_add_step(p, PSTEP_KEY, name, len);
			s = e + 1;
		} else {
			break;
		}
	}
	/* The path must end here: what follows is the grammar's business, but
	 * nothing may stick to it (".a?", ".a[0]", ".a as $x"...). */
	if (project_is_ident(*s, false) || *s == '?' || *s == '"' || *s == '$')
		return NULL;
	return s;
}

/* Parses an object construction at s ('{') into t. Returns its end or NULL. */
static const char *project_parse_obj(const char *s, struct pterm *t)
{
	const char *name, *e;
	struct pentry *en;
	size_t len;

	t->is_obj = true;
	s = project_ws(s + 1);
	if (*s == '}')
		return s + 1;
	for (;;) {
		if ((e = project_ident(s, &name, &len)) == NULL &&
		    (e = project_string(s, &name, &len)) == NULL)
			return NULL;
		xgrow(&t->ents, &t->cap, t->nents + 1, sizeof(*t->ents));
		en = &t->ents[t->nents++];
		memset(en, 0, sizeof(*en));
		en->key = xstrndup(name, len);
		en->klen = len;
		s = project_ws(e);
		if (*s == ':') {
			s = project_ws(s + 1);
			if (!(s = project_parse_path(s, &en->val)) || en->val.iter)
				return NULL;
			s = project_ws(s);
		} else {
			/* {a} and {"a"} mean {a: .a} */
			project_add_step(&en->val, PSTEP_KEY, name, len);
		}
		if (*s == '}')
			return s + 1;
		if (*s != ',')
			return NULL;
		s = project_ws(s + 1);
	}
}

/* Parses src into a program of the subset, or returns NULL. */
struct project *project_parse(const char *src)
{
	struct project *p = xcalloc(1, sizeof(*p));
	const char *s = project_ws(src);
	struct pterm *t;

	for (;;) {
		xgrow(&p->terms, &p->cap, p->n + 1, sizeof(*p->terms));
		t = &p->terms[p->n++];
		memset(t, 0, sizeof(*t));
		if (*s == '{')
			s = project_parse_obj(s, t);
		else
			s = project_parse_path(s, &t->path);
		if (!s)
			goto fail;
		s = project_ws(s);
		if (*s == '\0') {
			size_t i;
			p->single = true;
			for (i = 0; i < p->n; i++)
				if (!p->terms[i].is_obj && p->terms[i].path.iter)
					p->single = false;
			return p;
		}
		if (*s != '|')
			goto fail;
		s = project_ws(s + 1);
	}
fail:
	project_free(p);
	return NULL;
}

/* Frees p; NULL is fine. */
void project_free(struct project *p)
{
	size_t i, k;

	if (!p)
		return;
	for (i = 0; i < p->n; i++) {
		project_path_free(&p->terms[i].path);
		for (k = 0; k < p->terms[i].nents; k++) {
			free(p->terms[i].ents[k].key);
			project_path_free(&p->terms[i].ents[k].val);
		}
		free(p->terms[i].ents);
	}
	free(p->terms);
	free(p);
}

/* ------------------------------------------------------------ running */

/*
 * Returns v (borrowed) as jq would output it, as a new reference: v itself
 * when nothing changes, else a copy of the containers on the way to what
 * changes. Integral reals become integers (jq 1.6 has only doubles and
 * prints them as integers). NULL when jq must decide: a number of magnitude
 * 2^53 or more, a string or key that is not valid UTF-8.
 */
static json_t *project_norm(json_t *v)
{
	json_t *copy = NULL, *item, *c;
	const char *key;
	size_t i, klen, k;
	double d;

	switch (json_typeof(v)) {
	case JSON_INTEGER:
		if (json_integer_value(v) >= (1LL << 53) || json_integer_value(v) <= -(1LL << 53))
			return NULL;
		return json_incref(v);
	case JSON_REAL:
		d = json_real_value(v);
		if (fabs(d) >= PROJECT_MAX_EXACT)
			return NULL;
		if (d == floor(d))
			return json_integer((json_int_t)d);
		return json_incref(v);
	case JSON_STRING:
		if (!project_utf8_ok(json_string_value(v), json_string_length(v)))
			return NULL;
		return json_incref(v);
	case JSON_ARRAY:
		json_array_foreach(v, i, item) {
			if (!(c = project_norm(item)))
				goto fail;
			if (!copy && c != item) {
				copy = json_array();
				for (k = 0; k < i; k++)
					json_array_append(copy, json_array_get(v, k));
			}
			if (copy)
				json_array_append_new(copy, c);
			else
				json_decref(c);
		}
		return copy ? copy : json_incref(v);
	case JSON_OBJECT:
		i = 0;
		json_object_keylen_foreach(v, key, klen, item) {
			if (!project_utf8_ok(key, klen) || !(c = project_norm(item)))
				goto fail;
			if (!copy && c != item) {
				const char *k2;
				size_t k2len;
				json_t *it2;
				copy = json_object();
				k = 0;
				json_object_keylen_foreach(v, k2, k2len, it2) {
					if (k++ == i)
						break;
					json_object_setn_nocheck(copy, k2, k2len, it2);
				}
			}
			if (copy)
				json_object_setn_new_nocheck(copy, key, klen, c);
			else
				json_decref(c);
			i++;
		}
		return copy ? copy : json_incref(v);
	default:
		return json_incref(v);
	}
fail:
	json_decref(copy);
	return NULL;
}

/*
 * project_norm for a value that becomes an output or a member of a built
 * object: a number or string is copied rather than shared, so the input
 * record is freed whole when its batch is (records a sink holds then keep
 * no parts of it alive; measured faster through malloc than sharing).
 */
static json_t *project_out(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		if (json_integer_value(v) >= (1LL << 53) || json_integer_value(v) <= -(1LL << 53))
			return NULL;
		return json_integer(json_integer_value(v));
	case JSON_REAL:
		if (fabs(json_real_value(v)) >= PROJECT_MAX_EXACT)
			return NULL;
		if (json_real_value(v) == floor(json_real_value(v)))
			return json_integer((json_int_t)json_real_value(v));
		return json_real(json_real_value(v));
	case JSON_STRING:
		if (!project_utf8_ok(json_string_value(v), json_string_length(v)))
			return NULL;
		return json_stringn_nocheck(json_string_value(v), json_string_length(v));
	default:
		return project_norm(v);
	}
}

static void project_push(struct pvec *o, json_t *v, bool norm)
{
	xgrow(&o->a, &o->cap, o->n + 1, sizeof(*o->a));
	o->a[o->n].v = v;
	o->a[o->n].norm = norm;
	o->n++;
}

static void project_vec_clear(struct pvec *o)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		json_decref(o->a[i].v);
	o->n = 0;
}

/* Applies steps s[0, n) to v (borrowed), pushing each result to o.
 * Returns 0, or -1 when jq must decide (a type jq reports an error for). */
static int project_steps(const struct pstep *s, size_t n, json_t *v, bool norm,
                         struct pvec *o)
{
	const char *key;
	json_t *item;
	size_t i;

	for (; n > 0; s++, n--) {
		if (s->kind == PSTEP_KEY) {
			if (json_is_object(v)) {
				v = json_object_getn(v, s->key, s->klen);
				if (!v)
					v = json_null();
			} else if (!json_is_null(v)) {
				return -1;
			}
			continue;
		}
		/* .[]: array elements, or object values in the object's order
		 * (jq iterates its objects in insertion order, which the
		 * conversion from jansson keeps). */
		if (json_is_array(v)) {
			json_array_foreach(v, i, item)
				if (project_steps(s + 1, n - 1, item, norm, o) != 0)
					return -1;
			return 0;
		}
		if (json_is_object(v)) {
			json_object_foreach(v, key, item)
				if (project_steps(s + 1, n - 1, item, norm, o) != 0)
					return -1;
			return 0;
		}
		return -1;
	}
	project_push(o, json_incref(v), norm);
	return 0;
}

/* Applies a path without [] to v (borrowed). Returns the value (borrowed),
 * or NULL when jq must decide. */
static json_t *project_get(const struct ppath *p, json_t *v)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (json_is_object(v)) {
			v = json_object_getn(v, p->steps[i].key, p->steps[i].klen);
			if (!v)
				v = json_null();
		} else if (!json_is_null(v)) {
			return NULL;
		}
	}
	return v;
}

/* Builds object term t from v (borrowed; norm: already in jq's output
 * form). Returns a new object, or NULL when jq must decide. */
static json_t *project_obj(const struct pterm *t, json_t *v, bool norm)
{
	json_t *obj = json_object(), *c;
	size_t i;

	for (i = 0; i < t->nents; i++) {
		c = project_get(&t->ents[i].val, v);
		c = !c ? NULL : norm ? json_incref(c) : project_out(c);
		if (!c) {
			json_decref(obj);
			return NULL;
		}
		json_object_setn_new_nocheck(obj, t->ents[i].key, t->ents[i].klen, c);
	}
	return obj;
}

/* A program without []: one value along the pipe, no vectors. 0 or -1. */
static int project_run_single(const struct project *p, json_t *v, json_t *out)
{
	json_t *own = NULL, *o;
	bool norm = false;
	size_t t;

	for (t = 0; t < p->n; t++) {
		if (!p->terms[t].is_obj) {
			v = project_get(&p->terms[t].path, v);
		} else {
			o = project_obj(&p->terms[t], v, norm);
			json_decref(own);
			v = own = o;
			norm = true;
		}
		if (!v) {
			json_decref(own);
			return -1;
		}
	}
	o = norm ? json_incref(v) : project_out(v);
	json_decref(own);
	if (!o)
		return -1;
	json_array_append_new(out, o);
	return 0;
}

/* Applies term t to v (borrowed), pushing the results to o. 0 or -1. */
static int project_term(const struct pterm *t, json_t *v, bool norm, struct pvec *o)
{
	json_t *obj;

	if (!t->is_obj)
		return project_steps(t->path.steps, t->path.n, v, norm, o);
	obj = project_obj(t, v, norm);
	if (!obj)
		return -1;
	project_push(o, obj, true);
	return 0;
}

/* Runs p on input: 0 with the outputs appended to out, or -1 (out unchanged)
 * when jq must decide. */
int project_run(const struct project *p, const json_t *input, json_t *out)
{
	/* jansson's API takes non-const pointers; nothing is changed. */
	json_t *in = input ? (json_t *)input : json_null();
	struct pvec cur = { NULL, 0, 0 }, next = { NULL, 0, 0 }, tmp;
	size_t t, i;
	int rc = -1;

	if (p->single)
		return project_run_single(p, in, out);
	project_push(&cur, json_incref(in), false);
	for (t = 0; t < p->n; t++) {
		for (i = 0; i < cur.n; i++)
			if (project_term(&p->terms[t], cur.a[i].v, cur.a[i].norm, &next) != 0)
				goto out;
		project_vec_clear(&cur);
		tmp = cur;
		cur = next;
		next = tmp;
	}
	for (i = 0; i < cur.n; i++) {
		if (!cur.a[i].norm) {
			json_t *c = project_out(cur.a[i].v);
			if (!c)
				goto out;
			json_decref(cur.a[i].v);
			cur.a[i].v = c;
			cur.a[i].norm = true;
		}
	}
	for (i = 0; i < cur.n; i++) {
		json_array_append_new(out, cur.a[i].v);
		cur.a[i].v = NULL;
	}
	cur.n = 0;
	rc = 0;
out:
	project_vec_clear(&cur);
	project_vec_clear(&next);
	free(cur.a);
	free(next.a);
	return rc;
}
