/*
 * fetch.sqlite: a source stage whose records are the rows of one read-only
 * SQL query on a SQLite file:
 *
 *   fetch:
 *     sqlite:
 *       path: data/app.db
 *       query: SELECT id, name FROM users WHERE team = :team
 *       bind: { team: "${params.team}" }
 *
 * The file is opened read-only (a missing file is an error, never a new
 * empty database) and the query must be one statement that SQLite calls
 * read-only and that returns columns. Its named parameters (:name, @name,
 * $name) get their values from `bind:`, one ${...} template each; a
 * parameter without an entry, an entry without a parameter, and positional
 * parameters (?, ?1) are errors, at validate time when the query shows them
 * and again, authoritatively, when the statement is prepared. A bind value
 * that is exactly one ${expr} keeps the JSON type of its value (integer ->
 * INTEGER, real -> REAL, string -> TEXT, null -> NULL, true/false -> 1/0,
 * an array or object -> its JSON text); any other template binds its
 * rendered text.
 *
 * Each row becomes an object keyed by column name: INTEGER -> integer, REAL
 * -> real, TEXT -> string, NULL -> null. A BLOB value fails the stage (JSON
 * has no bytes; select hex(col) instead), and so do two result columns with
 * one name. `records:` (jq) may reshape each row, as in the other fetches.
 *
 * Streaming: the statement is stepped for at most one batch of the run's
 * batch size per turn of the loop, and only while the stages fed have room;
 * the engine calls resume() when they have room again. The result is never
 * held whole.
 *
 * Locks: SQLite's busy timeout would block the loop, so none is set. A
 * SQLITE_BUSY answer (another connection holds a write lock) goes to the
 * engine (engine_source_retry), which calls resume() again after the backoff
 * of the stage's retry policy (`retry:`, else defaults.retry) and fails the
 * stage with "PATH: database is locked (after N attempts)" once the attempts
 * are used up. A turn that ends without a lock resets the count.
 *
 * Resume: nothing of the query is journaled; a resumed run that needs the
 * stage runs the query again, and sinks absorb the repeats (upsert on key,
 * delivery log). If the file changed between the runs, the resumed run loads
 * what the query returns now.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sqlite3.h>

#include "core/engine.h"
#include "core/option.h"
#include "core/yaml.h"
#include "expr/expr.h"
#include "stages/records.h"
#include "base/log.h"
#include "base/util.h"

/* One bind: entry: the parameter's name (without :, @ or $) and its value. */
struct fsq_bind {
	char *name;
	struct pos pos;                /* of the key */
	struct sval value;             /* a ${...} template */
	bool number;                   /* an unquoted number in the file */
};

struct fsq_binds {
	struct fsq_bind *v;
	size_t n;
};

/* The options, as the option walker fills them from the table below. */
struct fetch_sqlite_opts {
	struct sval path;              /* template, relative to the pipeline dir */
	struct sval query;
	struct fsq_binds bind;
	struct sval records;           /* jq per row; default: the row */
	struct retry_spec retry;       /* !set: inherit defaults.retry */
};

struct fetch_sqlite {
	struct emitter em;
	const struct fetch_sqlite_opts *o;
	char *path;
	json_t **vals;                 /* per bind entry: its value (owned) */
	sqlite3 *db;
	sqlite3_stmt *stmt;            /* NULL until prepared */
	int ncol;
	const char **cols;             /* column names (owned by stmt) */
	long long rows;
	bool stopped;
};

/* ------------------------------------------------------- parameters */

/* Byte length of an SQLite identifier character run starting at s. */
static size_t fsq_idlen(const char *s)
{
	size_t n = 0;

	for (;;) {
		unsigned char ch = (unsigned char)s[n];
		if (ch >= 0x80 || ch == '_' || (ch >= '0' && ch <= '9') ||
		    ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
			n++;
		else if (ch == ':' && s[n + 1] == ':' && n > 0)
			n += 2;
		else
			return n;
	}
}

/*
 * Calls fn for each parameter of sql as SQLite's tokenizer sees it (outside
 * string literals, quoted identifiers and comments): name is the parameter
 * without its prefix ("" for a positional one), off its byte offset.
 */
static void fsq_scan_params(const char *sql,
                            void (*fn)(void *arg, const char *name, size_t len, size_t off),
                            void *arg)
{
	size_t i = 0, n;

	while (sql[i]) {
		char ch = sql[i];
		if (ch == '\'' || ch == '"' || ch == '`' || ch == '[') {
			char close = ch == '[' ? ']' : ch;
			for (i++; sql[i] && sql[i] != close; i++)
				;
			if (sql[i])
				i++;       /* a doubled quote reads as two strings: fine here */
		} else if (ch == '-' && sql[i + 1] == '-') {
			while (sql[i] && sql[i] != '\n')
				i++;
		} else if (ch == '/' && sql[i + 1] == '*') {
			const char *e = strstr(sql + i + 2, "*/");
			i = e ? (size_t)(e - sql) + 2 : strlen(sql);
		} else if (ch == '?') {
			fn(arg, "", 0, i);
			for (i++; sql[i] >= '0' && sql[i] <= '9'; i++)
				;
		} else if ((ch == ':' || ch == '@' || ch == '$') && (n = fsq_idlen(sql + i + 1)) > 0) {
			fn(arg, sql + i + 1, n, i);
			i += 1 + n;
		} else if ((unsigned char)ch >= 0x80 || ch == '_' || ((ch | 0x20) >= 'a' &&
		           (ch | 0x20) <= 'z') || (ch >= '0' && ch <= '9')) {
			/* A word (a$b is one identifier, 1e5 one number): no
			 * parameter starts inside it. */
			while ((n = fsq_idlen(sql + i)) > 0 || sql[i] == '$')
				i += n > 0 ? n : 1;
		} else {
			i++;
		}
	}
}

/* The bind entry named name (len bytes), or -1. */
static long fsq_bind_find(const struct fsq_binds *b, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (strlen(b->v[i].name) == len && memcmp(b->v[i].name, name, len) == 0)
			return (long)i;
	return -1;
}

/* The value template of a bind entry when it is exactly one ${expr}: the
 * expression (malloc'd), else NULL. */
static char *fsq_single_expr(const char *src)
{
	size_t len = strlen(src);
	char *inner, *err = NULL;
	struct expr *e;

	if (len < 4 || strncmp(src, "${", 2) != 0 || src[len - 1] != '}')
		return NULL;
	inner = xstrndup(src + 2, len - 3);
	/* "${.a}-${.b}" also starts with ${ and ends with }, but its inside,
	 * ".a}-${.b", is no jq program: only one ${...} compiles. */
	e = expr_compile(inner, NULL, &err);
	free(err);
	if (!e) {
		free(inner);
		return NULL;
	}
	expr_free(e);
	return inner;
}

/* ------------------------------------------------------- config */

/* bind: a mapping of parameter name -> template. */
static void fsq_read_bind(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                          const struct ynode *v, void *field, void *opts)
{
	struct fsq_binds *b = field;
	size_t i, cap = 0;

	(void)o;
	(void)k;
	(void)opts;
	if (!v || v->kind == YN_BAD || ynode_is_null(v))
		return;                /* absent, already reported, or empty */
	if (v->kind != YN_MAP) {
		opt_error(c, opt_pos(c, v), "expected a mapping of parameter names to values for "
		          "\"bind\", got %s", ynode_describe(v));
		return;
	}
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *kk = v->kids[i], *vv = v->kids[i + 1];
		struct fsq_bind *e;
		if (kk->dup || kk->kind != YN_SCALAR)
			continue;      /* reported by the YAML reader */
		if (!*kk->s || fsq_idlen(kk->s) != strlen(kk->s)) {
			opt_error(c, opt_pos(c, kk), "bind: \"%s\" is no parameter name (letters, "
			          "digits and _; write it without its :, @ or $)", kk->s);
			continue;
		}
		xgrow(&b->v, &cap, b->n + 1, sizeof(*b->v));
		e = &b->v[b->n];
		memset(e, 0, sizeof(*e));
		if (!opt_read_str(c, vv, "bind value", &e->value))
			continue;
		e->name = xstrdup(kk->s);
		e->pos = opt_pos(c, kk);
		/* An unquoted number is one: min: 5 binds the INTEGER 5. */
		e->number = ynode_plain(vv) && (text_is_int(vv->s) || text_is_real(vv->s));
		opt_check_template(c, vv, e->value.s, "bind value");
		b->n++;
	}
}

static void fsq_free_bind(void *field)
{
	struct fsq_binds *b = field;
	size_t i;

	for (i = 0; i < b->n; i++) {
		free(b->v[i].name);
		free(b->v[i].value.s);
	}
	free(b->v);
	b->v = NULL;
	b->n = 0;
}

struct fsq_check {
	struct opt_ctx *c;
	const struct fetch_sqlite_opts *o;
	bool *used;
	struct pos qpos;
	bool positional;
	json_t *missing;               /* names reported missing (a set) */
};

static void fsq_check_param(void *arg, const char *name, size_t len, size_t off)
{
	struct fsq_check *k = arg;
	long i;

	(void)off;
	if (len == 0) {
		if (!k->positional)
			opt_error(k->c, k->qpos, "positional parameter \"?\" in \"query\": name it "
			          "(:name) and give its value in \"bind\"");
		k->positional = true;
		return;
	}
	i = fsq_bind_find(&k->o->bind, name, len);
	if (i < 0) {
		/* Each missing name once, however often the query uses it. */
		char *nm = xstrndup(name, len);
		if (!json_object_get(k->missing, nm)) {
			json_object_set_new(k->missing, nm, json_true());
			opt_error(k->c, k->qpos, "query parameter \"%s\" has no value: add it to "
			          "\"bind\"", nm);
		}
		free(nm);
		return;
	}
	k->used[i] = true;
}

/* Missing and unused bind entries, as far as the query text shows them. */
static void fsq_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                      const struct ynode *m)
{
	const struct fetch_sqlite_opts *o = sp->opts;
	struct fsq_check ck = { c, o, NULL, o->query.pos, false, NULL };
	size_t i;

	(void)k;
	(void)m;
	if (sp->n_needs > 0)
		opt_error(c, sp->needs[0].pos, "fetch.sqlite takes no input: it runs its query "
		          "once (remove \"needs\")");
	if (!o->query.s)
		return;
	ck.used = xcalloc(o->bind.n + 1, sizeof(bool));
	ck.missing = json_object();
	fsq_scan_params(o->query.s, fsq_check_param, &ck);
	json_decref(ck.missing);
	for (i = 0; i < o->bind.n; i++)
		if (!ck.used[i])
			opt_error(c, o->bind.v[i].pos, "bind: \"%s\" is not a parameter of the "
			          "query (write it there as :%s)", o->bind.v[i].name,
			          o->bind.v[i].name);
	free(ck.used);
}

static void fsq_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct fetch_sqlite_opts *o = sp->opts;
	size_t i;

	fn(arg, &o->path, true, REF_SECRETS | REF_ENV | REF_PARAM, "\"path\"");
	for (i = 0; i < o->bind.n; i++)
		fn(arg, &o->bind.v[i].value, true, REF_SECRETS | REF_ENV | REF_PARAM,
		   "a bind value");
	fn(arg, &o->records, false, REF_SECRETS, "\"records\"");
}

static const struct opt fsq_options[] = {
	{ .key = "path", .type = OPT_TEMPLATE, .flags = OPT_REQUIRED,
	  .offset = offsetof(struct fetch_sqlite_opts, path),
	  .doc = "the database file (a template), relative to the pipeline's directory; "
	         "opened read-only" },
	{ .key = "query", .type = OPT_STRING, .flags = OPT_REQUIRED,
	  .offset = offsetof(struct fetch_sqlite_opts, query),
	  .doc = "one read-only SQL statement; each row is a record" },
	{ .key = "bind", .type = OPT_CUSTOM, .shape = "mapping",
	  .offset = offsetof(struct fetch_sqlite_opts, bind),
	  .read = fsq_read_bind, .free = fsq_free_bind,
	  .doc = "the value (a template) of each named parameter of the query" },
	{ .key = "records", .type = OPT_JQ, .def = ".",
	  .offset = offsetof(struct fetch_sqlite_opts, records),
	  .doc = "jq: row -> 0..n records (default: the row)" },
	{ .key = "retry", .type = OPT_CUSTOM, .read = opt_read_retry, .free = opt_free_retry,
	  .shape = "retry", .offset = offsetof(struct fetch_sqlite_opts, retry),
	  .doc = "retry policy while another connection locks the file (replaces "
	         "defaults.retry)" },
	{ .key = NULL },
};

static const struct retry_spec *fsq_retry(const struct stage_spec *sp)
{
	const struct fetch_sqlite_opts *o = sp->opts;

	return &o->retry;
}

/* ------------------------------------------------------- running */

/* Renders the bind values (before the loop: they do not change). */
static int fsq_values(struct stage *st, struct fetch_sqlite *c, char **err)
{
	const struct fsq_binds *b = &c->o->bind;
	size_t i;

	c->vals = xcalloc(b->n + 1, sizeof(*c->vals));
	for (i = 0; i < b->n; i++) {
		const char *src = b->v[i].value.s;
		char *inner = fsq_single_expr(src), *msg = NULL;
		size_t off;
		struct expr *e = NULL;
		if (b->v[i].number) {
			long long n;
			errno = 0;
			n = strtoll(src, NULL, 10);
			c->vals[i] = text_is_int(src) && errno == 0 ? json_integer(n)
			                                            : json_real(strtod(src, NULL));
		} else if (inner) {
			e = expr_compile(inner, engine_scope(st->eng), &msg);
			free(inner);
			if (e) {
				json_t *dummy = json_null();
				c->vals[i] = expr_eval1(e, dummy, &msg);
				json_decref(dummy);
			}
		} else {
			e = expr_template(src, engine_scope(st->eng), &msg, &off);
			if (e) {
				char *s = expr_render(e, NULL, &msg);
				if (s)
					c->vals[i] = json_string(s);
				if (s && !c->vals[i])
					msg = xstrdup("the value is not valid UTF-8");
				free(s);
			}
		}
		expr_free(e);
		if (!c->vals[i]) {
			*err = xasprintf("bind \"%s\": %s", b->v[i].name, msg ? msg : "no value");
			free(msg);
			return -1;
		}
	}
	return 0;
}

/* Binds value v (borrowed) to parameter i. */
static int fsq_bind_one(sqlite3_stmt *s, int i, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		return sqlite3_bind_int64(s, i, (sqlite3_int64)json_integer_value(v));
	case JSON_REAL:
		return sqlite3_bind_double(s, i, json_real_value(v));
	case JSON_STRING:
		return sqlite3_bind_text(s, i, json_string_value(v), (int)json_string_length(v),
		                         SQLITE_TRANSIENT);
	case JSON_TRUE:
		return sqlite3_bind_int(s, i, 1);
	case JSON_FALSE:
		return sqlite3_bind_int(s, i, 0);
	case JSON_NULL:
		return sqlite3_bind_null(s, i);
	default: {
		char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		int rc = sqlite3_bind_text(s, i, t ? t : "null", -1, SQLITE_TRANSIENT);
		free(t);
		return rc;
	}
	}
}

/* After a prepare: one statement only, read-only, returning distinct
 * columns, every parameter bound by name. Returns 0 or -1 with *err. */
static int fsq_check_stmt(struct fetch_sqlite *c, const char *tail, char **err)
{
	const struct fsq_binds *b = &c->o->bind;
	bool *used = NULL;
	int i, j, n;

	while (*tail) {
		sqlite3_stmt *next = NULL;
		const char *rest = NULL;
		int rc = sqlite3_prepare_v2(c->db, tail, -1, &next, &rest);
		if (next) {
			sqlite3_finalize(next);
			*err = xstrdup("\"query\" holds more than one statement; give one");
			return -1;
		}
		if (rc != SQLITE_OK) {
			*err = xasprintf("\"query\": %s", sqlite3_errmsg(c->db));
			return -1;
		}
		if (!rest || rest == tail)
			break;
		tail = rest;
	}
	if (!sqlite3_stmt_readonly(c->stmt)) {
		*err = xstrdup("\"query\" is not read-only: fetch.sqlite only reads (SELECT, "
		               "WITH ... SELECT, VALUES)");
		return -1;
	}
	c->ncol = sqlite3_column_count(c->stmt);
	if (c->ncol == 0) {
		*err = xstrdup("\"query\" returns no columns: give a SELECT");
		return -1;
	}
	c->cols = xcalloc((size_t)c->ncol, sizeof(*c->cols));
	for (i = 0; i < c->ncol; i++) {
		json_t *probe;
		c->cols[i] = sqlite3_column_name(c->stmt, i);
		if (!c->cols[i]) {
			*err = xstrdup("out of memory");
			return -1;
		}
		probe = json_string(c->cols[i]);
		if (!probe) {
			*err = xasprintf("\"query\": the name of column %d is not valid UTF-8", i + 1);
			return -1;
		}
		json_decref(probe);
		for (j = 0; j < i; j++)
			if (strcmp(c->cols[i], c->cols[j]) == 0) {
				*err = xasprintf("\"query\" returns two columns named \"%s\" (columns %d "
				                 "and %d): give one another name with AS", c->cols[i],
				                 j + 1, i + 1);
				return -1;
			}
	}
	n = sqlite3_bind_parameter_count(c->stmt);
	used = xcalloc(b->n + 1, sizeof(bool));
	for (i = 1; i <= n; i++) {
		const char *name = sqlite3_bind_parameter_name(c->stmt, i);
		long k;
		if (!name || name[0] == '?') {
			*err = xstrdup("positional parameter \"?\" in \"query\": name it (:name) and "
			               "give its value in \"bind\"");
			goto fail;
		}
		k = fsq_bind_find(b, name + 1, strlen(name + 1));
		if (k < 0) {
			*err = xasprintf("query parameter \"%s\" has no value: add it to \"bind\"",
			                 name + 1);
			goto fail;
		}
		used[k] = true;
		if (fsq_bind_one(c->stmt, i, c->vals[k]) != SQLITE_OK) {
			*err = xasprintf("bind \"%s\": %s", name + 1, sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	for (i = 0; (size_t)i < b->n; i++)
		if (!used[i]) {
			*err = xasprintf("bind: \"%s\" is not a parameter of the query", b->v[i].name);
			goto fail;
		}
	free(used);
	return 0;
fail:
	free(used);
	return -1;
}

/* Prepares the statement. Returns 0, 1 when the file is locked (try again),
 * or -1 with *err. */
static int fsq_prepare(struct fetch_sqlite *c, char **err)
{
	const char *tail = NULL;
	int rc;

	rc = sqlite3_prepare_v2(c->db, c->o->query.s, -1, &c->stmt, &tail);
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		sqlite3_finalize(c->stmt);
		c->stmt = NULL;
		return 1;
	}
	if (rc != SQLITE_OK) {
		*err = xasprintf("%s: \"query\": %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	if (!c->stmt) {
		*err = xstrdup("\"query\" is empty");
		return -1;
	}
	if (fsq_check_stmt(c, tail, err) != 0) {
		char *m = *err;
		*err = xasprintf("%s: %s", c->path, m);
		free(m);
		return -1;
	}
	return 0;
}

static int fsq_create(struct stage *st, char **err)
{
	const struct fetch_sqlite_opts *o = st->spec->opts;
	struct fetch_sqlite *c = xcalloc(1, sizeof(*c));
	struct stat sb;
	int rc;

	st->ctx = c;
	c->o = o;
	if (emitter_init(&c->em, st, &o->records, err) != 0)
		return -1;
	c->path = engine_render_path(st->eng, o->path.s, err);
	if (!c->path)
		return -1;
	if (fsq_values(st, c, err) != 0)
		return -1;
	/* A read-only open of a missing file fails with SQLite's vague "unable
	 * to open database file"; say what is wrong instead. */
	if (stat(c->path, &sb) != 0) {
		*err = xasprintf("cannot open %s: %s", c->path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		*err = xasprintf("cannot open %s: not a regular file", c->path);
		return -1;
	}
	rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		*err = xasprintf("cannot open %s: %s", c->path,
		                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		return -1;
	}
	/* Read-only means this file only: no ATTACH of another. */
	sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
	/* A locked file is retried once the loop runs (fsq_step). */
	rc = fsq_prepare(c, err);
	return rc < 0 ? -1 : 0;
}

/* SQLITE_BUSY: the engine calls resume() again after a backoff, or fails
 * the stage once the attempts of its retry policy are used up. */
static void fsq_busy(struct stage *st)
{
	struct fetch_sqlite *c = st->ctx;
	char *why = xasprintf("%s: database is locked", c->path);

	engine_source_retry(st, why);
	free(why);
}

/* One row as a record (new reference), or NULL with *err. */
static json_t *fsq_row(struct fetch_sqlite *c, char **err)
{
	json_t *rec = json_object(), *v = NULL;
	int i;

	for (i = 0; i < c->ncol; i++) {
		switch (sqlite3_column_type(c->stmt, i)) {
		case SQLITE_INTEGER:
			v = json_integer((json_int_t)sqlite3_column_int64(c->stmt, i));
			break;
		case SQLITE_FLOAT: {
			double d = sqlite3_column_double(c->stmt, i);
			v = isfinite(d) ? json_real(d) : NULL;
			if (!v)
				*err = xasprintf("column \"%s\" of row %lld is %g, which JSON cannot hold",
				                 c->cols[i], c->rows + 1, d);
			break;
		}
		case SQLITE_TEXT: {
			const char *t = (const char *)sqlite3_column_text(c->stmt, i);
			v = json_stringn(t ? t : "", (size_t)sqlite3_column_bytes(c->stmt, i));
			if (!v)
				*err = xasprintf("column \"%s\" of row %lld is not valid UTF-8 text",
				                 c->cols[i], c->rows + 1);
			break;
		}
		case SQLITE_NULL:
			v = json_null();
			break;
		default:
			v = NULL;
			*err = xasprintf("column \"%s\" of row %lld is a BLOB, which JSON cannot "
			                 "hold: select hex(%s) or CAST(%s AS TEXT)", c->cols[i],
			                 c->rows + 1, c->cols[i], c->cols[i]);
			break;
		}
		if (!v) {
			json_decref(rec);
			return NULL;
		}
		json_object_set_new_nocheck(rec, c->cols[i], v);
	}
	return rec;
}

/* Steps the statement for up to one batch of rows. */
static void fsq_step(struct stage *st)
{
	struct fetch_sqlite *c = st->ctx;
	char *err = NULL;
	int n, max = engine_batch_size(st->eng), rc;

	if (c->stopped)
		return;
	if (!c->stmt) {
		rc = fsq_prepare(c, &err);
		if (rc < 0)
			goto fail;
		if (rc > 0) {
			fsq_busy(st);
			return;
		}
	}
	for (n = 0; n < max; n++) {
		json_t *row;
		rc = sqlite3_step(c->stmt);
		if (rc == SQLITE_DONE) {
			emitter_flush(&c->em);
			st->stats.records_in = c->rows;
			engine_touch(st);
			engine_stage_done(st);
			return;
		}
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
			/* The statement keeps its place: prepare_v2 statements step on
			 * after a BUSY. */
			fsq_busy(st);
			return;
		}
		if (rc != SQLITE_ROW) {
			err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
			goto fail;
		}
		row = fsq_row(c, &err);
		if (!row)
			goto fail;
		c->rows++;
		rc = emitter_doc(&c->em, row, c->path, &err);
		json_decref(row);
		if (rc != 0)
			goto fail;
	}
	st->stats.records_in = c->rows;
	engine_touch(st);
	/* Go on when there is room; the engine calls resume() then. */
	if (engine_may_emit(st))
		engine_want_run(st);
	return;
fail:
	engine_stage_fail(st, "%s", err);
	free(err);
}

/* One query: `requests` counts it once, `records_in` counts rows. */
static void fsq_start(struct stage *st)
{
	st->stats.requests = 1;
	fsq_step(st);
}

static void fsq_resume(struct stage *st) { fsq_step(st); }

static void fsq_stop(struct stage *st)
{
	struct fetch_sqlite *c = st->ctx;

	if (!c)
		return;
	c->stopped = true;
}

static void fsq_destroy(struct stage *st)
{
	struct fetch_sqlite *c = st->ctx;
	size_t i;

	if (!c)
		return;
	emitter_free(&c->em);
	sqlite3_finalize(c->stmt);
	sqlite3_close(c->db);
	for (i = 0; c->vals && i < c->o->bind.n; i++)
		json_decref(c->vals[i]);
	free(c->vals);
	free(c->cols);
	free(c->path);
	free(c);
	st->ctx = NULL;
}

const struct stage_kind stage_fetch_sqlite = {
	.name = "fetch.sqlite",
	.description = "rows of a read-only SQL query on a SQLite file",
	.role = "fetch",
	.selector = "sqlite",
	.nested = true,
	.source = true,
	.journaled = false,
	.options = fsq_options,
	.opts_size = sizeof(struct fetch_sqlite_opts),
	.check = fsq_check,
	.refs = fsq_refs,
	.retry = fsq_retry,
	.create = fsq_create,
	.start = fsq_start,
	.resume = fsq_resume,
	.stop = fsq_stop,
	.destroy = fsq_destroy,
};
