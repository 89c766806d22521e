/*
 * load.sqlite: writes records into a SQLite table. The table is created on
 * the first batch with one column per record key, typed from the values the
 * batch holds for it (INTEGER: integers and booleans only; NUMERIC: numbers,
 * some of them reals; TEXT: strings only; no type, so any value is kept as
 * bound:
 * objects and arrays (JSON text), mixed or only null values); a column added
 * later is typed from the rest of the batch that brings it. A value of
 * another type later is stored as SQLite's type affinity allows, except
 * where the affinity would change it (a string "007" in an INTEGER column, an
 * integer beyond 2^53 in a REAL one of an existing table): that value is stored as a BLOB of its
 * text, and a REAL bound to a TEXT column is written as its shortest
 * round-trip text, so no value loses digits. A key given in the pipeline
 * becomes the primary key (INTEGER PRIMARY KEY, the rowid, when it is one
 * column holding only integers in the first batch); rows are then upserted
 * on it as on_conflict says (replace, merge or ignore). Keys that appear
 * later add columns. Column names are matched without regard to ASCII case,
 * as SQLite matches them, so a record with keys that differ only in case is
 * refused before it can reach the table. Identifiers are quoted, values are
 * always bound.
 *
 * Transactions span batches: one is committed when it holds commit_rows rows,
 * when commit_interval has passed since it began (at the end of a batch, or
 * by a timer when no batch comes), when the stage finishes and when it is
 * stopped. Each batch runs inside a SAVEPOINT, so a batch that fails is
 * undone alone, as if it had been its own transaction. What a run's state
 * says was loaded never runs ahead of the file: the sink answers a batch
 * when it is in the open transaction, but keeps its lineage (engine_hold)
 * until the transaction that holds its rows committed, so no source is
 * acked for rows a kill could still take away; records_out and the records
 * refused (skip, dlq) are counted and reported at the commit; and the stage
 * is done only after its last commit. A kill -9 loses at most the open
 * transaction, which a resume writes again; rows committed before the kill
 * and written again are upserted on the key (or, without one, found by
 * their row identity), so none is loaded twice.
 *
 * The loop never waits for a lock: there is no busy timeout; a batch that
 * meets SQLITE_BUSY or SQLITE_LOCKED is rolled back (with what it changed in
 * this file's caches: columns, occurrence counts, refused records) and
 * answered SINK_RETRY, so the engine writes it again after a backoff.
 *
 * This is the one sink that includes sqlite3.h; the run state has its own
 * module (state.c).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "core/engine.h"
#include "core/yaml.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "base/policy.h"
#include "base/util.h"
#include "core/flow.h"
#include <ctype.h>
#include <math.h>

/* on_conflict: what a record whose key is already in the table does. */
enum on_conflict {
	ON_CONFLICT_REPLACE = 0,       /* the row becomes the record (absent columns NULL) */
	ON_CONFLICT_MERGE,             /* only the columns present in the record change */
	ON_CONFLICT_IGNORE,            /* the existing row stays as it is */
};

struct sqlite_opts {
	struct sval path;              /* relative to the pipeline dir */
	struct sval table;
	struct sval *key;              /* upsert key columns */
	size_t n_key;
	int on_conflict;               /* enum on_conflict, with a key */
	struct sval *columns;          /* columns the table has even before (or
	                                  without) a record with them */
	size_t n_columns;
	struct retry_spec retry;       /* of batches that find the file locked;
	                                  !set: inherit defaults.retry */
	long long commit_rows;         /* rows per transaction, at most (about:
	                                  whole batches) */
	double commit_interval;        /* seconds a transaction stays open, at most */
};

/* A column's type affinity, from its declared type (SQLite's rules). */
enum aff {
	AFF_NONE = 0,                  /* BLOB affinity: values kept as bound */
	AFF_INTEGER,
	AFF_REAL,
	AFF_TEXT,
	AFF_NUMERIC,
};

/* Key-less tables get this column: "<run id>:<content hash>:<occurrence>",
 * unique, so a resumed run (same run id, same records) cannot add a row
 * twice, while a new run inserts its rows again. */
#define ROW_COL "_pipectl_row"

/* Occurrences per content hash, open addressing (hash 0 marks a free slot). */
struct occ_table {
	uint64_t *keys;
	uint32_t *counts;
	size_t cap, n;
};

struct load_sqlite {
	struct load_sqlite *next;      /* in the list of live sinks (sinks) */
	struct stage *st;
	struct occ_table occ;
	long long run_id;
	sqlite3 *db;
	char *path;
	char *table;
	char **key;
	size_t n_key;
	enum on_conflict on_conflict;
	char **cols;                   /* columns the table has */
	unsigned char *affs;           /* their affinities (enum aff) */
	size_t n_cols, cap_cols, cap_affs;
	const json_t **vals;           /* the current record's value per column (borrowed) */
	size_t cap_vals;
	long *order;                   /* the last record's keys in order: column index
	                                  of each (-1: none), a guess for the next */
	size_t n_order, cap_order;
	size_t exact_found;            /* keys of the current record that are columns'
	                                  exact names (see exact_columns) */
	sqlite3_stmt *sp_begin, *sp_release;   /* SAVEPOINT / RELEASE of a batch */
	sqlite3_stmt *ins;             /* prepared for the current column set */
	bool table_ready;
	json_t *prev_cols;             /* without records: the columns the table had
	                                  after the last successful run, or NULL */
	size_t rejected;               /* records of the current batch skipped or dead-lettered */
	struct buf sql, tmp;
	bool wal;                      /* journal_mode=WAL is set */
	bool busy;                     /* the last error was SQLITE_BUSY or SQLITE_LOCKED */
	bool schema_error;             /* the last error is the table's, not the batch's */
	/* The current attempt: hashes whose occurrence it counted (undone on a
	 * rollback), and the records refused, reported once it committed. */
	uint64_t *occ_done;
	size_t n_occ_done, cap_occ_done;
	json_t *refused;               /* [[record, why], ...] */
	/* finish: a table created without records meets a lock too. */
	ev_timer finish_retry;
	int finish_attempt;
	/* The open transaction (see the top of the file). */
	long long commit_rows;
	double commit_interval;
	bool in_txn;                   /* BEGIN done, COMMIT not yet */
	bool in_batch;                 /* inside a batch's SAVEPOINT */
	size_t txn_rows;               /* rows written in it */
	size_t refused_mark;           /* c->refused before the current batch */
	unsigned long long commits;    /* transactions committed, for the log */
	ev_timer commit_timer;         /* commits it when commit_interval passed */
	struct flow_set **holds;       /* lineages of its batches, until it commits */
	size_t n_holds, cap_holds;
};

static void finish_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void commit_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static int commit(struct stage *st, char **err);

/* Every load.sqlite stage of this process (one loop: no lock needed). Two of
 * them writing to one file would otherwise lock each other out for as long
 * as a transaction stays open: before it begins one, a sink asks the others
 * on its file to commit theirs (yield_file). */
static struct load_sqlite *sinks;

/* Returns the occurrence number (1, 2, ...) of hash h. */
static uint32_t occ_next(struct occ_table *t, uint64_t h)
{
	size_t i;

	if (h == 0)
		h = 1;
	if ((t->n + 1) * 2 > t->cap) {
		struct occ_table g = { 0 };
		g.cap = t->cap ? t->cap * 2 : 1024;
		g.keys = xcalloc(g.cap, sizeof(*g.keys));
		g.counts = xcalloc(g.cap, sizeof(*g.counts));
		for (i = 0; i < t->cap; i++) {
			size_t j;
			if (!t->keys[i])
				continue;
			for (j = t->keys[i] & (g.cap - 1); g.keys[j]; j = (j + 1) & (g.cap - 1))
				;
			g.keys[j] = t->keys[i];
			g.counts[j] = t->counts[i];
		}
		g.n = t->n;
		free(t->keys);
		free(t->counts);
		*t = g;
	}
	for (i = h & (t->cap - 1); t->keys[i] && t->keys[i] != h; i = (i + 1) & (t->cap - 1))
		;
	if (!t->keys[i]) {
		t->keys[i] = h;
		t->n++;
	}
	return ++t->counts[i];
}

/* Takes back one occurrence of hash h counted by occ_next (a rolled-back
 * attempt: its retry numbers the same records the same way). */
static void occ_undo(struct occ_table *t, uint64_t h)
{
	size_t i;

	if (h == 0)
		h = 1;
	for (i = h & (t->cap - 1); t->keys[i] && t->keys[i] != h; i = (i + 1) & (t->cap - 1))
		;
	if (t->keys[i] && t->counts[i] > 0)
		t->counts[i]--;
}

/* Appends "name" with embedded quotes doubled. */
static void quote_ident(struct buf *b, const char *name)
{
	buf_addc(b, '"');
	for (; *name; name++) {
		if (*name == '"')
			buf_addc(b, '"');
		buf_addc(b, *name);
	}
	buf_addc(b, '"');
}

/* Notes whether result code rc is a lock another connection holds. */
static void note_busy(struct load_sqlite *c, int rc)
{
	c->busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

static int exec_sql(struct load_sqlite *c, const char *sql, char **err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		note_busy(c, rc);
		*err = xasprintf("%s: %s", c->path, msg ? msg : sqlite3_errmsg(c->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* The index of column name (compared as SQLite compares identifiers,
 * without regard to ASCII case), or -1. */
static long col_index(struct load_sqlite *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->n_cols; i++)
		if (sqlite3_stricmp(c->cols[i], name) == 0)
			return (long)i;
	return -1;
}

static bool has_col(struct load_sqlite *c, const char *name)
{
	return col_index(c, name) >= 0;
}

/* rec's value for column name: the key of that name, else one that differs
 * only in case (borrowed), or NULL. */
static json_t *rec_get(json_t *rec, const char *name)
{
	json_t *v = json_object_get(rec, name);
	const char *k;

	if (v)
		return v;
	json_object_foreach(rec, k, v)
		if (sqlite3_stricmp(k, name) == 0)
			return v;
	return NULL;
}

static bool is_key(struct load_sqlite *c, const char *col)
{
	size_t i;

	for (i = 0; i < c->n_key; i++)
		if (sqlite3_stricmp(col, c->key[i]) == 0)
			return true;
	return false;
}

static void add_col_name(struct load_sqlite *c, const char *name, enum aff a)
{
	xgrow(&c->cols, &c->cap_cols, c->n_cols + 1, sizeof(*c->cols));
	xgrow(&c->affs, &c->cap_affs, c->n_cols + 1, sizeof(*c->affs));
	c->affs[c->n_cols] = (unsigned char)a;
	c->cols[c->n_cols++] = xstrdup(name);
}

/* The affinity of a declared column type, by SQLite's rules (section 3.1 of
 * its "Datatypes" page): INT; else CHAR, CLOB or TEXT; else BLOB or none;
 * else REAL, FLOA or DOUB; else NUMERIC. */
static enum aff decl_aff(const char *t)
{
	if (!t || !*t)
		return AFF_NONE;
	if (sqlite3_strlike("%INT%", t, 0) == 0)
		return AFF_INTEGER;
	if (sqlite3_strlike("%CHAR%", t, 0) == 0 || sqlite3_strlike("%CLOB%", t, 0) == 0 ||
	    sqlite3_strlike("%TEXT%", t, 0) == 0)
		return AFF_TEXT;
	if (sqlite3_strlike("%BLOB%", t, 0) == 0)
		return AFF_NONE;
	if (sqlite3_strlike("%REAL%", t, 0) == 0 || sqlite3_strlike("%FLOA%", t, 0) == 0 ||
	    sqlite3_strlike("%DOUB%", t, 0) == 0)
		return AFF_REAL;
	return AFF_NUMERIC;
}

/* The declared type a new column gets for affinity a. */
static const char *aff_decl(enum aff a)
{
	return a == AFF_INTEGER ? " INTEGER" : a == AFF_REAL ? " REAL" :
	       a == AFF_TEXT ? " TEXT" : a == AFF_NUMERIC ? " NUMERIC" : "";
}

/* What the values of a column hold (bits), see col_type. */
enum { V_INT = 1, V_BOOL = 2, V_REAL = 4, V_STR = 8, V_OTHER = 16 };

/* The kinds of values (V_* bits; null and absent ones add none) that the
 * records of batch from index from on hold for column name. */
static unsigned col_values(json_t *batch, size_t from, const char *name)
{
	unsigned m = 0;
	size_t i;

	for (i = from; i < json_array_size(batch); i++) {
		json_t *rec = json_array_get(batch, i), *v;
		if (!json_is_object(rec) || !(v = rec_get(rec, name)))
			continue;
		switch (json_typeof(v)) {
		case JSON_INTEGER: m |= V_INT; break;
		case JSON_TRUE:
		case JSON_FALSE: m |= V_BOOL; break;
		case JSON_REAL: m |= V_REAL; break;
		case JSON_STRING: m |= V_STR; break;
		case JSON_NULL: break;
		default: m |= V_OTHER; break;
		}
	}
	return m;
}

/* The type of a new column whose values are m (col_values): INTEGER for
 * integers and booleans, NUMERIC for numbers some of which are reals, TEXT
 * for strings; none for anything else (objects and arrays, other mixes, no
 * value), which keeps every value as bound. Not REAL: it would store a
 * later integer 24 as 24.0, so what a row holds would depend on which batch
 * came first; INTEGER and NUMERIC store every number alike (24 and 24.0 as
 * the integer 24, 19.99 as a real), whichever of them the column got. */
static enum aff col_type(unsigned m)
{
	if (m && !(m & ~(unsigned)(V_INT | V_BOOL)))
		return AFF_INTEGER;
	if ((m & V_REAL) && !(m & ~(unsigned)(V_INT | V_BOOL | V_REAL)))
		return AFF_NUMERIC;
	if (m == V_STR)
		return AFF_TEXT;
	return AFF_NONE;
}

static int ls_create(struct stage *st, char **err)
{
	const struct sqlite_opts *l = st->spec->opts;
	struct load_sqlite *c = xcalloc(1, sizeof(*c));
	char *dir;
	size_t i;

	st->ctx = c;
	c->st = st;
	c->next = sinks;
	sinks = c;
	buf_init(&c->sql);
	buf_init(&c->tmp);
	ev_timer_init(&c->finish_retry, finish_retry_cb, 0, 0);
	c->finish_retry.data = st;
	ev_timer_init(&c->commit_timer, commit_timer_cb, 0, 0);
	c->commit_timer.data = st;
	c->commit_rows = l->commit_rows;
	c->commit_interval = l->commit_interval;
	if (!(c->path = engine_render_path(st->eng, l->path.s, err)))
		return -1;
	c->run_id = (long long)json_integer_value(json_object_get(engine_scope(st->eng)->run, "id"));
	c->table = xstrdup(l->table.s);
	c->n_key = l->n_key;
	c->on_conflict = l->on_conflict;
	c->key = xcalloc(c->n_key ? c->n_key : 1, sizeof(*c->key));
	for (i = 0; i < c->n_key; i++)
		c->key[i] = xstrdup(l->key[i].s);
	dir = path_dir(c->path);
	if (mkdir_p(dir, 0755) != 0) {
		*err = xasprintf("cannot create directory %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	if (sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
	                    NULL) != SQLITE_OK) {
		*err = xasprintf("cannot open %s: %s", c->path,
		                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
		return -1;
	}
	/* No busy timeout: a lock held elsewhere is answered with a retry
	 * after a backoff, never waited for on the loop. */
	/* WAL with synchronous=NORMAL: a commit is a write(), not an fsync, and
	 * survives a kill of the process. The page cache stays SQLite's 2 MiB:
	 * it bounds RSS whatever the table's size (measured: the same peak for
	 * 1M and 5M rows). A larger one pays only for upserts in an order other
	 * than the key's into a large table (1M random keys: 11 s of CPU with
	 * 2 MiB, 10 s with 8, 6 s with 16), and adds its size to the RSS of
	 * every run (8 MiB: the 1M-record projection bench went from 29 to
	 * 35 MB). */
	if (exec_sql(c, "PRAGMA synchronous=NORMAL", err) != 0)
		return -1;
	if (exec_sql(c, "PRAGMA journal_mode=WAL", err) != 0) {
		if (!c->busy)
			return -1;
		free(*err);            /* locked now: set with the first write */
		*err = NULL;
	} else {
		c->wal = true;
	}
	return 0;
}

/* Reads the existing table's columns; returns 1 if it exists, 0 if not, -1. */
static int read_columns(struct load_sqlite *c, char **err)
{
	sqlite3_stmt *s;
	int rc, found = 0;

	if (sqlite3_prepare_v2(c->db, "SELECT name, type FROM pragma_table_info(?1)", -1, &s,
	                       NULL) != SQLITE_OK) {
		*err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	sqlite3_bind_text(s, 1, c->table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		add_col_name(c, (const char *)sqlite3_column_text(s, 0),
		             decl_aff((const char *)sqlite3_column_text(s, 1)));
		found = 1;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		*err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	return found;
}

/* Adds the rows of s (one column: a column name) to *n, counting in *matched
 * those that are key columns. Returns false on an error. */
static bool count_key_cols(struct load_sqlite *c, sqlite3_stmt *s, size_t *n, size_t *matched)
{
	int rc;

	*n = *matched = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(s, 0);
		(*n)++;
		if (col && is_key(c, col))   /* NULL: an expression in an index */
			(*matched)++;
	}
	return rc == SQLITE_DONE;
}

/* True when the table's PRIMARY KEY (also an INTEGER PRIMARY KEY, which is
 * the rowid and has no index of its own) or a UNIQUE index that is not
 * partial covers exactly the key columns: what ON CONFLICT (key) needs. */
static bool has_unique_key(struct load_sqlite *c)
{
	sqlite3_stmt *pk = NULL, *il = NULL, *ii = NULL;
	size_t n, matched;
	bool ok = false;

	if (sqlite3_prepare_v2(c->db, "SELECT name FROM pragma_table_info(?1) WHERE pk > 0",
	                       -1, &pk, NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_text(pk, 1, c->table, -1, SQLITE_STATIC);
	if (count_key_cols(c, pk, &n, &matched) && n == c->n_key && matched == c->n_key) {
		ok = true;
		goto done;
	}
	if (sqlite3_prepare_v2(c->db, "SELECT name FROM pragma_index_list(?1) "
	                       "WHERE \"unique\" AND NOT partial", -1, &il, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db, "SELECT name FROM pragma_index_info(?1)", -1, &ii,
	                       NULL) != SQLITE_OK)
		goto done;
	sqlite3_bind_text(il, 1, c->table, -1, SQLITE_STATIC);
	while (!ok && sqlite3_step(il) == SQLITE_ROW) {
		sqlite3_reset(ii);
		sqlite3_bind_text(ii, 1, (const char *)sqlite3_column_text(il, 0), -1,
		                  SQLITE_TRANSIENT);
		ok = count_key_cols(c, ii, &n, &matched) && n == c->n_key && matched == c->n_key;
	}
done:
	sqlite3_finalize(pk);
	sqlite3_finalize(il);
	sqlite3_finalize(ii);
	return ok;
}

/* Key-less tables: the row identity column and its unique index. */
static int ensure_row_col(struct load_sqlite *c, char **err)
{
	if (!has_col(c, ROW_COL)) {
		buf_reset(&c->sql);
		buf_adds(&c->sql, "ALTER TABLE ");
		quote_ident(&c->sql, c->table);
		buf_adds(&c->sql, " ADD COLUMN " ROW_COL);
		if (exec_sql(c, c->sql.data, err) != 0)
			return -1;
		add_col_name(c, ROW_COL, AFF_NONE);
	}
	buf_reset(&c->sql);
	buf_adds(&c->sql, "CREATE UNIQUE INDEX IF NOT EXISTS ");
	{
		char *ix = xasprintf("%s_" ROW_COL, c->table);
		quote_ident(&c->sql, ix);
		free(ix);
	}
	buf_adds(&c->sql, " ON ");
	quote_ident(&c->sql, c->table);
	buf_adds(&c->sql, " (" ROW_COL ")");
	return exec_sql(c, c->sql.data, err);
}

/* Adds a column named name, of type a, to the table. */
static int alter_add(struct load_sqlite *c, const char *name, enum aff a, char **err)
{
	buf_reset(&c->sql);
	buf_adds(&c->sql, "ALTER TABLE ");
	quote_ident(&c->sql, c->table);
	buf_adds(&c->sql, " ADD COLUMN ");
	quote_ident(&c->sql, name);
	buf_adds(&c->sql, aff_decl(a));
	if (exec_sql(c, c->sql.data, err) != 0)
		return -1;
	add_col_name(c, name, a);
	return 0;
}

/* Creates the table, or checks the existing one. Its columns: the key, the
 * declared columns, and the keys of the record at index from of batch
 * (NULL when there is none, for a load that received no records), typed
 * from the values of the batch from there on. */
static int ensure_table(struct stage *st, json_t *batch, size_t from, char **err)
{
	struct load_sqlite *c = st->ctx;
	const struct sqlite_opts *l = st->spec->opts;
	json_t *first = batch ? json_array_get(batch, from) : NULL;
	bool int_key;
	const char *k;
	json_t *v;
	size_t i;
	int exists = read_columns(c, err);

	if (exists < 0)
		return -1;
	if (exists) {
		if (c->n_key && !has_unique_key(c)) {
			struct buf b;
			buf_init(&b);
			for (i = 0; i < c->n_key; i++)
				buf_printf(&b, "%s%s", i ? ", " : "", c->key[i]);
			*err = xasprintf("%s: table \"%s\" exists without a PRIMARY KEY or UNIQUE "
			                 "index on exactly (%s), so rows cannot be upserted on the "
			                 "key; add one with CREATE UNIQUE INDEX, or load into a new "
			                 "table", c->path, c->table, b.data);
			buf_free(&b);
			return -1;
		}
		for (i = 0; i < l->n_columns; i++)
			if (!has_col(c, l->columns[i].s) &&
			    alter_add(c, l->columns[i].s, batch ? col_type(col_values(batch, from,
			              l->columns[i].s)) : AFF_NONE, err) != 0)
				return -1;
		c->table_ready = true;
		return c->n_key ? 0 : ensure_row_col(c, err);
	}
	for (i = 0; i < c->n_key; i++)
		add_col_name(c, c->key[i], AFF_NONE);
	for (i = 0; i < l->n_columns; i++)
		if (!has_col(c, l->columns[i].s))
			add_col_name(c, l->columns[i].s, AFF_NONE);
	if (first)
		json_object_foreach(first, k, v)
			if (!has_col(c, k))
				add_col_name(c, k, AFF_NONE);
	json_array_foreach(c->prev_cols, i, v)
		if (json_is_string(v) && *json_string_value(v) &&
		    strcmp(json_string_value(v), ROW_COL) != 0 && !has_col(c, json_string_value(v)))
			add_col_name(c, json_string_value(v), AFF_NONE);
	/* Each column's type from the batch's values (none for a column no
	 * record of it has: one declared by columns: or an earlier run). */
	for (i = 0; batch && i < c->n_cols; i++)
		c->affs[i] = (unsigned char)col_type(col_values(batch, from, c->cols[i]));
	/* One key column holding only integers becomes the rowid: no separate
	 * index to keep, and lookups on it are the table's own order. */
	int_key = c->n_key == 1 && first && col_values(batch, from, c->key[0]) == V_INT;
	buf_reset(&c->sql);
	buf_adds(&c->sql, "CREATE TABLE IF NOT EXISTS ");
	quote_ident(&c->sql, c->table);
	buf_adds(&c->sql, " (");
	for (i = 0; i < c->n_cols; i++) {
		if (i)
			buf_adds(&c->sql, ", ");
		quote_ident(&c->sql, c->cols[i]);
		if (int_key && i == 0)
			buf_adds(&c->sql, " INTEGER PRIMARY KEY");
		else
			buf_adds(&c->sql, aff_decl(c->affs[i]));
	}
	if (c->n_key && !int_key) {
		buf_adds(&c->sql, ", PRIMARY KEY (");
		for (i = 0; i < c->n_key; i++) {
			if (i)
				buf_adds(&c->sql, ", ");
			quote_ident(&c->sql, c->key[i]);
		}
		buf_addc(&c->sql, ')');
	}
	buf_adds(&c->sql, ")");
	if (exec_sql(c, c->sql.data, err) != 0)
		return -1;
	c->table_ready = true;
	return c->n_key ? 0 : ensure_row_col(c, err);
}

/*
 * Prepares INSERT ... ON CONFLICT for all columns: parameters 1..n are the
 * values. With a key, on_conflict decides the DO part: replace sets every
 * other column from the record (absent ones NULL), merge only those present
 * in it (parameter n + 1 + i is 1 when column i is present), ignore does
 * nothing.
 */
static int prepare_insert(struct load_sqlite *c, char **err)
{
	size_t i;
	bool any_update = false;

	sqlite3_finalize(c->ins);
	c->ins = NULL;
	buf_reset(&c->sql);
	buf_adds(&c->sql, "INSERT INTO ");
	quote_ident(&c->sql, c->table);
	buf_adds(&c->sql, " (");
	for (i = 0; i < c->n_cols; i++) {
		if (i)
			buf_adds(&c->sql, ", ");
		quote_ident(&c->sql, c->cols[i]);
	}
	buf_adds(&c->sql, ") VALUES (");
	for (i = 0; i < c->n_cols; i++)
		buf_printf(&c->sql, "%s?%zu", i ? ", " : "", i + 1);
	buf_adds(&c->sql, ")");
	if (c->n_key) {
		buf_adds(&c->sql, " ON CONFLICT (");
		for (i = 0; i < c->n_key; i++) {
			if (i)
				buf_adds(&c->sql, ", ");
			quote_ident(&c->sql, c->key[i]);
		}
		buf_adds(&c->sql, ") DO ");
		for (i = 0; c->on_conflict != ON_CONFLICT_IGNORE && i < c->n_cols; i++) {
			if (is_key(c, c->cols[i]))
				continue;
			buf_adds(&c->sql, any_update ? ", " : "UPDATE SET ");
			quote_ident(&c->sql, c->cols[i]);
			if (c->on_conflict == ON_CONFLICT_MERGE) {
				/* Unqualified, a column is the row's current value. */
				buf_printf(&c->sql, " = CASE WHEN ?%zu THEN excluded.", c->n_cols + i + 1);
				quote_ident(&c->sql, c->cols[i]);
				buf_adds(&c->sql, " ELSE ");
				quote_ident(&c->sql, c->cols[i]);
				buf_adds(&c->sql, " END");
			} else {
				buf_adds(&c->sql, " = excluded.");
				quote_ident(&c->sql, c->cols[i]);
			}
			any_update = true;
		}
		if (!any_update)
			buf_adds(&c->sql, "NOTHING");
	} else {
		buf_adds(&c->sql, " ON CONFLICT (" ROW_COL ") DO NOTHING");
	}
	if (sqlite3_prepare_v2(c->db, c->sql.data, -1, &c->ins, NULL) != SQLITE_OK) {
		*err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	return 0;
}

/* Adds columns for keys of rec (the record at index from of batch) the
 * table lacks, typed from the values the batch holds for them from there
 * on. Returns 1 if any, 0, -1. */
static int add_columns(struct load_sqlite *c, json_t *batch, size_t from, json_t *rec,
                       char **err)
{
	const char *k;
	json_t *v;
	int added = 0;

	json_object_foreach(rec, k, v) {
		if (has_col(c, k))
			continue;
		if (alter_add(c, k, col_type(col_values(batch, from, k)), err) != 0)
			return -1;
		added = 1;
	}
	return added;
}

/* Largest magnitude up to which every integer is a double exactly. */
#define EXACT_DOUBLE_INT 9007199254740992LL

/* True when a column of affinity a (INTEGER, REAL or NUMERIC) would store
 * text s (n bytes) as a number that does not read back as s: "007", " 42",
 * "1e3", "1.50", "-0", an integer beyond 2^53 in a REAL column. SQLite
 * converts text that is a decimal number, spaces around it allowed; what
 * strtod reads whole (after those spaces) is a superset of that, so no such
 * text is missed (and the few strtod takes that SQLite would not are kept
 * as BLOBs too, which loses nothing either). */
static bool numeric_text_changes(enum aff a, const char *s, size_t n)
{
	char buf[64], back[40], *end;
	size_t i, b, e;
	long long ll;
	double d;

	for (b = 0; b < n && isspace((unsigned char)s[b]); b++)
		;
	for (e = n; e > b && isspace((unsigned char)s[e - 1]); e--)
		;
	if (b == e)
		return false;
	for (i = b; i < e; i++)        /* not inf, nan, hex: SQLite keeps those */
		if (!s[i] || !strchr("0123456789+-.eE", s[i]))
			return false;
	if (e - b >= sizeof(buf))
		return true;           /* too long to be read back the same */
	memcpy(buf, s + b, e - b);
	buf[e - b] = '\0';
	errno = 0;
	d = strtod(buf, &end);
	if (*end || end == buf)
		return false;          /* stays text */
	if (b != 0 || e != n)
		return true;           /* the spaces would go */
	errno = 0;
	ll = strtoll(buf, &end, 10);
	if (!*end && errno == 0) {
		snprintf(back, sizeof(back), "%lld", ll);
		return strcmp(back, buf) != 0 ||
		       (a == AFF_REAL && (ll > EXACT_DOUBLE_INT || ll < -EXACT_DOUBLE_INT));
	}
	/* A real: kept when its %.15g text (how SQLite shows a REAL) is s; an
	 * INTEGER or NUMERIC column would make an integral one an integer. */
	snprintf(back, sizeof(back), "%.15g", d);
	return strcmp(back, buf) != 0 || (a != AFF_REAL && d == floor(d)) || d == 0;
}

/* Binds v (NULL: the column is absent) as parameter idx of the column of
 * affinity a, so that the affinity cannot change it (see the top). */
static void bind_value(struct load_sqlite *c, int idx, enum aff a, const json_t *v)
{
	if (!v) {                      /* a column this record does not have */
		sqlite3_bind_null(c->ins, idx);
		return;
	}
	switch (json_typeof(v)) {
	case JSON_INTEGER: {
		json_int_t n = json_integer_value(v);
		if (a == AFF_REAL && (n > EXACT_DOUBLE_INT || n < -EXACT_DOUBLE_INT)) {
			char num[32];
			int len = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, n);
			sqlite3_bind_blob(c->ins, idx, num, len, SQLITE_TRANSIENT);
		} else {
			sqlite3_bind_int64(c->ins, idx, (sqlite3_int64)n);
		}
		break;
	}
	case JSON_REAL:
		if (a == AFF_TEXT) {
			/* SQLite would write %.15g: "0.30000000000000004"
			 * would become "0.3". */
			char num[40];
			jsonw_real(json_real_value(v), num, sizeof(num));
			sqlite3_bind_text(c->ins, idx, num, -1, SQLITE_TRANSIENT);
		} else {
			sqlite3_bind_double(c->ins, idx, json_real_value(v));
		}
		break;
	case JSON_STRING:
		if (a != AFF_NONE && a != AFF_TEXT &&
		    numeric_text_changes(a, json_string_value(v), json_string_length(v)))
			sqlite3_bind_blob(c->ins, idx, json_string_value(v),
			                  (int)json_string_length(v), SQLITE_STATIC);
		else
			sqlite3_bind_text(c->ins, idx, json_string_value(v),
			                  (int)json_string_length(v), SQLITE_STATIC);
		break;
	case JSON_TRUE:
		sqlite3_bind_int(c->ins, idx, 1);
		break;
	case JSON_FALSE:
		sqlite3_bind_int(c->ins, idx, 0);
		break;
	case JSON_OBJECT:
	case JSON_ARRAY:
		buf_reset(&c->tmp);
		jsonw_append(&c->tmp, v);
		sqlite3_bind_text(c->ins, idx, c->tmp.data, (int)c->tmp.len, SQLITE_TRANSIENT);
		break;
	default:
		sqlite3_bind_null(c->ins, idx);
	}
}

/* Sets c->vals[i] to rec's value for column i (spelled exactly), or NULL.
 * Returns how many of rec's keys are columns' exact names. Records of a
 * stream mostly have the same keys in the same order: the i-th key is first
 * compared with the column the last record's i-th key was, so a record
 * costs one strcmp per key, not a hash lookup per column. */
static size_t exact_columns(struct load_sqlite *c, json_t *rec)
{
	size_t i = 0, found = 0;
	const char *k;
	json_t *v;

	xgrow(&c->vals, &c->cap_vals, c->n_cols, sizeof(*c->vals));
	if (c->n_cols)                 /* vals is NULL before the first column */
		memset(c->vals, 0, c->n_cols * sizeof(*c->vals));
	xgrow(&c->order, &c->cap_order, json_object_size(rec), sizeof(*c->order));
	json_object_foreach(rec, k, v) {
		long j = i < c->n_order ? c->order[i] : -1;
		if (j < 0 || (size_t)j >= c->n_cols || strcmp(c->cols[j], k) != 0) {
			size_t n;
			for (n = 0, j = -1; n < c->n_cols; n++)
				if (strcmp(c->cols[n], k) == 0) {
					j = (long)n;
					break;
				}
			c->order[i] = j;
		}
		if (j >= 0) {
			c->vals[j] = v;
			found++;
		}
		i++;
	}
	c->n_order = i;
	return found;
}

static bool has_upper(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return true;
	return false;
}

/* Two keys of rec that differ only in ASCII case would be one SQLite column:
 * says which, and how to rename one (malloc'd), or NULL. */
static char *case_clash(json_t *rec)
{
	const char *k, *k2;
	json_t *v, *v2;

	json_object_foreach(rec, k, v) {
		if (!has_upper(k))         /* of two such keys, one has a capital */
			continue;
		json_object_foreach(rec, k2, v2) {
			json_t *from, *to;
			char *fs, *ts, *msg, *nk;
			if (strcmp(k, k2) == 0 || sqlite3_stricmp(k, k2) != 0)
				continue;
			nk = xasprintf("%s_2", k);
			from = json_string(k);
			to = json_string(nk);
			fs = jsonw_dumps(from);
			ts = jsonw_dumps(to);
			msg = xasprintf("record keys \"%s\" and \"%s\" differ only in case, but "
			                "SQLite column names ignore case, so both would be column "
			                "\"%s\"; rename one in a transform before this stage, e.g. "
			                "jq: 'with_entries(if .key == %s then .key = %s else . end)'",
			                k2, k, k2, fs, ts);
			json_decref(from);
			json_decref(to);
			free(fs);
			free(ts);
			free(nk);
			return msg;
		}
	}
	return NULL;
}

/* Why rec cannot be a row (malloc'd), or NULL when it can. */
static char *record_problem(struct load_sqlite *c, json_t *rec)
{
	size_t j;

	if (!json_is_object(rec)) {
		/* Say what came, and the usual cause: a response that is a
		 * list of rows, taken as one record. */
		char *text = jsonw_dumps(rec), *msg;
		size_t n = strlen(text);
		msg = xasprintf("record is %s, not a JSON object: a SQLite row needs named "
		                "columns (received: %.*s%s)%s",
		                json_is_array(rec) ? "an array" : json_is_string(rec) ? "a string" :
		                json_is_null(rec) ? "null" : json_is_boolean(rec) ? "a boolean" :
		                "a number", n > 80 ? 77 : (int)n, text, n > 80 ? "..." : "",
		                json_is_array(rec) ? "; if the array holds the rows, split it into "
		                "records with records: '.[]' in the fetch stage" :
		                "; make an object of it, e.g. with a transform jq: '{value: .}'");
		free(text);
		return msg;
	}
	for (j = 0; j < c->n_key; j++) {
		json_t *kv = rec_get(rec, c->key[j]);
		if (!kv || json_is_null(kv))
			return xasprintf("record has no value for key column \"%s\"", c->key[j]);
	}
	/* Keys that are all columns' exact names cannot clash (the table's
	 * columns differ in more than case): the pairwise check is for the
	 * records that bring a new or differently spelled key. */
	c->exact_found = exact_columns(c, rec);
	return c->exact_found == json_object_size(rec) ? NULL : case_clash(rec);
}

/* Sets c->vals[i] to rec's value for column i, or NULL; a key matches the
 * column of its name in any case (case_clash made sure only one does).
 * remap: the columns changed since record_problem mapped rec. */
static void map_values(struct load_sqlite *c, json_t *rec, bool remap)
{
	const char *k;
	json_t *v;

	if (remap)
		c->exact_found = exact_columns(c, rec);
	if (c->exact_found == json_object_size(rec))
		return;
	json_object_foreach(rec, k, v) {
		long j = col_index(c, k);
		if (j >= 0 && !c->vals[j])
			c->vals[j] = v;
	}
}

/* A record the table cannot take (an INTEGER PRIMARY KEY is given something
 * that is not an integer): says what (malloc'd). */
static char *mismatch_problem(struct load_sqlite *c, json_t *rec)
{
	size_t j;

	for (j = 0; j < c->n_key; j++) {
		json_t *kv = rec_get(rec, c->key[j]);
		if (kv && !json_is_integer(kv))
			return xasprintf("key \"%s\" is not an integer, but column \"%s\" of "
			                 "table \"%s\" is an INTEGER PRIMARY KEY, which holds only "
			                 "integers", c->key[j], c->key[j], c->table);
	}
	return xasprintf("table \"%s\": %s", c->table, sqlite3_errmsg(c->db));
}

/* A record the table cannot take (why: malloc'd, taken). With on_error:
 * fail the stage fails now (returns -1); otherwise the record is kept and
 * reported to on_error once the batch committed, so an attempt that is
 * rolled back and retried does not skip or dead-letter it twice. */
static int refuse(struct stage *st, json_t *rec, char *why)
{
	struct load_sqlite *c = st->ctx;

	if (engine_on_error(st) == ON_ERROR_FAIL) {
		engine_record_failure(st, rec, why, NULL);
		free(why);
		return -1;
	}
	json_array_append_new(c->refused, json_pack("[O, s]", rec, why));
	free(why);
	c->rejected++;
	return 0;
}

/* Writes the batch's rows. Returns 0, -1 with *err (a database error), or
 * -2 when the stage already failed (on_error: fail). */
static int write_batch(struct stage *st, json_t *batch, char **err)
{
	struct load_sqlite *c = st->ctx;
	json_t *rec;
	size_t i, j;
	int rc;

	json_array_foreach(batch, i, rec) {
		char *bad = record_problem(c, rec);
		if (bad) {
			/* A record that cannot be a row: on_error decides. */
			if (refuse(st, rec, bad) != 0)
				return -2;
			continue;
		}
		bool remap = false;
		if (!c->table_ready) {
			if (ensure_table(st, batch, i, err) != 0) {
				c->schema_error = !c->busy;
				return -1;
			}
			remap = true;
		}
		/* Keys that are all columns' exact names add none. */
		rc = 0;
		if (remap || c->exact_found != json_object_size(rec))
			rc = add_columns(c, batch, i, rec, err);
		if (rc < 0)
			return -1;
		if ((rc || !c->ins) && prepare_insert(c, err) != 0)
			return -1;
		map_values(c, rec, remap || rc);
		if (!c->n_key) {
			/* Content hash and occurrence: a deterministic row identity. */
			char hex[65], *id;
			uint64_t h = 0;
			int k;
			buf_reset(&c->tmp);
			jsonw_append(&c->tmp, rec);
			sha256_hex(c->tmp.data, c->tmp.len, hex);
			for (k = 0; k < 16; k++)
				h = (h << 4) | (uint64_t)(hex[k] <= '9' ? hex[k] - '0' : hex[k] - 'a' + 10);
			id = xasprintf("%lld:%.32s:%u", c->run_id, hex, occ_next(&c->occ, h));
			xgrow(&c->occ_done, &c->cap_occ_done, c->n_occ_done + 1,
			      sizeof(*c->occ_done));
			c->occ_done[c->n_occ_done++] = h;
			for (j = 0; j < c->n_cols; j++) {
				if (strcmp(c->cols[j], ROW_COL) == 0)
					sqlite3_bind_text(c->ins, (int)j + 1, id, -1, SQLITE_TRANSIENT);
				else
					bind_value(c, (int)j + 1, c->affs[j], c->vals[j]);
			}
			free(id);
		} else {
			for (j = 0; j < c->n_cols; j++) {
				bind_value(c, (int)j + 1, c->affs[j], c->vals[j]);
				if (c->on_conflict == ON_CONFLICT_MERGE && !is_key(c, c->cols[j]))
					sqlite3_bind_int(c->ins, (int)(c->n_cols + j + 1), c->vals[j] != NULL);
			}
		}
		/* Every parameter is bound for every row: nothing to clear. */
		rc = sqlite3_step(c->ins);
		sqlite3_reset(c->ins);
		if (rc == SQLITE_MISMATCH) {
			/* Only this statement was undone; on_error decides. */
			if (refuse(st, rec, mismatch_problem(c, rec)) != 0)
				return -2;
			continue;
		}
		if (rc != SQLITE_DONE) {
			note_busy(c, rc);
			*err = xasprintf("%s: insert into \"%s\": %s", c->path, c->table,
			                 sqlite3_errmsg(c->db));
			return -1;
		}
	}
	return 0;
}

/* Runs the statement *s (prepared from sql the first time) once. */
static int step_cached(struct load_sqlite *c, sqlite3_stmt **s, const char *sql, char **err)
{
	int rc;

	if (!*s && (rc = sqlite3_prepare_v2(c->db, sql, -1, s, NULL)) != SQLITE_OK) {
		note_busy(c, rc);
		*err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	rc = sqlite3_step(*s);
	sqlite3_reset(*s);
	if (rc != SQLITE_DONE) {
		note_busy(c, rc);
		*err = xasprintf("%s: %s", c->path, sqlite3_errmsg(c->db));
		return -1;
	}
	return 0;
}

/* Runs sql whose failure leaves nothing to do (a rollback), keeping
 * c->busy as the error that led to it set it. */
static void exec_quiet(struct load_sqlite *c, const char *sql)
{
	char *ignored = NULL;
	bool busy = c->busy;

	exec_sql(c, sql, &ignored);
	free(ignored);
	c->busy = busy;
}

/* Forgets the columns read or added: the next batch reads them from the
 * table again. */
static void forget_columns(struct load_sqlite *c)
{
	size_t i;

	for (i = 0; i < c->n_cols; i++)
		free(c->cols[i]);
	c->n_cols = 0;
	c->table_ready = false;
	sqlite3_finalize(c->ins);
	c->ins = NULL;
}

/* Undoes an attempt at a batch: its savepoint (a transaction begun for it
 * alone, when it wrote nothing yet), and what this file learned in it
 * (columns added, the statement for them, occurrence counts, refusals), so
 * that a retry starts from what the file holds. Safe to call twice. */
static void rollback(struct load_sqlite *c)
{
	size_t i;

	if (c->in_batch) {
		exec_quiet(c, "ROLLBACK TO batch");
		exec_quiet(c, "RELEASE batch");
		c->in_batch = false;
	}
	if (c->in_txn && !c->txn_rows && !c->n_holds) {
		exec_quiet(c, "ROLLBACK");
		c->in_txn = false;
	}
	for (i = 0; i < c->n_occ_done; i++)
		occ_undo(&c->occ, c->occ_done[i]);
	c->n_occ_done = 0;
	while (c->refused && json_array_size(c->refused) > c->refused_mark)
		json_array_remove(c->refused, json_array_size(c->refused) - 1);
	c->rejected = 0;
	forget_columns(c);
}

/* Poisons and drops the lineages held for the open transaction: its rows
 * are lost, and their sources must never be acked. */
static void drop_holds(struct load_sqlite *c)
{
	size_t i;

	for (i = 0; i < c->n_holds; i++) {
		flow_poison(c->holds[i]);
		engine_release(c->holds[i]);
	}
	c->n_holds = 0;
}

/* Commits the open transaction. Then, and only then, its rows count as
 * loaded: records_out grows, the records it refused go to on_error, and
 * the lineages of its batches are released (their sources may be acked).
 * Returns 0, or -1 with *err: the transaction is rolled back and its
 * lineages poisoned (the caller fails the stage). */
static int commit(struct stage *st, char **err)
{
	struct load_sqlite *c = st->ctx;
	json_t *r;
	size_t i;

	if (ev_is_active(&c->commit_timer))
		ev_timer_stop(engine_loop(st->eng), &c->commit_timer);
	if (!c->in_txn)
		return 0;
	if (exec_sql(c, "COMMIT", err) != 0) {
		if (!sqlite3_get_autocommit(c->db))
			exec_quiet(c, "ROLLBACK");
		c->in_txn = false;
		c->txn_rows = 0;
		drop_holds(c);
		json_array_clear(c->refused);
		forget_columns(c);
		return -1;
	}
	c->in_txn = false;
	c->commits++;
	log_debug("stage %s: committed %zu rows (transaction %llu)", st->spec->id,
	          c->txn_rows, c->commits);
	st->stats.records_out += (int64_t)c->txn_rows;
	c->txn_rows = 0;
	/* Committed: now the records refused are on_error's (skip or dlq:
	 * on_error: fail failed the stage when one was refused). */
	json_array_foreach(c->refused, i, r)
		engine_record_failure(st, json_array_get(r, 0),
		                      json_string_value(json_array_get(r, 1)), NULL);
	json_array_clear(c->refused);
	for (i = 0; i < c->n_holds; i++)
		engine_release(c->holds[i]);
	c->n_holds = 0;
	engine_touch(st);
	return 0;
}

/* The transaction has been open for commit_interval: commits it, as no
 * batch came to do so. */
static void commit_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stage *st = w->data;
	struct load_sqlite *c = st->ctx;
	char *err = NULL;

	(void)loop;
	(void)revents;
	if (c->in_batch || st->status >= ST_SUCCEEDED)
		return;
	if (commit(st, &err) != 0) {
		engine_stage_fail(st, "%s", err);
		free(err);
	}
}

/* Sets journal_mode=WAL if create could not (the file was locked). */
static int ensure_wal(struct load_sqlite *c, char **err)
{
	if (c->wal)
		return 0;
	if (exec_sql(c, "PRAGMA journal_mode=WAL", err) != 0)
		return -1;
	c->wal = true;
	return 0;
}

/* Commits the open transactions of the other sinks of this process on c's
 * database file, which would make c's BEGIN IMMEDIATE meet SQLITE_BUSY
 * until they end. A commit that fails fails its stage. */
static void yield_file(struct load_sqlite *c)
{
	const char *mine = sqlite3_db_filename(c->db, "main");
	struct load_sqlite *o;

	for (o = sinks; o; o = o->next) {
		const char *theirs;
		char *err = NULL;
		if (o == c || !o->in_txn || o->in_batch)
			continue;
		theirs = sqlite3_db_filename(o->db, "main");
		if (!mine || !theirs || strcmp(mine, theirs) != 0)
			continue;
		if (commit(o->st, &err) != 0) {
			engine_stage_fail(o->st, "%s", err);
			free(err);
		}
	}
}

/* Writes a batch into the open transaction (beginning one if none is),
 * inside a savepoint, and commits when the transaction is full or old
 * enough (see the top of the file). */
static enum sink_result ls_write(struct stage *st, json_t *batch, char **reason)
{
	struct load_sqlite *c = st->ctx;
	char *err = NULL;
	int rc;

	c->rejected = 0;
	c->n_occ_done = 0;
	c->busy = c->schema_error = false;
	if (!c->refused)
		c->refused = json_array();
	c->refused_mark = json_array_size(c->refused);
	if (!c->in_txn) {
		yield_file(c);
		if (ensure_wal(c, &err) != 0 || exec_sql(c, "BEGIN IMMEDIATE", &err) != 0)
			goto fail;
		c->in_txn = true;
		c->txn_rows = 0;
		ev_timer_set(&c->commit_timer, c->commit_interval, 0);
		ev_timer_start(engine_loop(st->eng), &c->commit_timer);
	}
	if (step_cached(c, &c->sp_begin, "SAVEPOINT batch", &err) != 0) {
		rollback(c);
		goto fail;
	}
	c->in_batch = true;
	if ((rc = write_batch(st, batch, &err)) != 0) {
		rollback(c);
		if (rc == -2)
			return SINK_FAIL;      /* the stage failed (on_error: fail) */
		goto fail;
	}
	c->in_batch = false;
	if (step_cached(c, &c->sp_release, "RELEASE batch", &err) != 0) {
		rollback(c);
		goto fail;
	}
	/* In the transaction: the batch's sources wait for its commit. */
	{
		struct flow_set *h = engine_hold(st);
		if (h) {
			xgrow(&c->holds, &c->cap_holds, c->n_holds + 1, sizeof(*c->holds));
			c->holds[c->n_holds++] = h;
		}
	}
	c->txn_rows += json_array_size(batch) - c->rejected;
	log_debug("stage %s: %zu rows written, %zu in the open transaction", st->spec->id,
	          json_array_size(batch) - c->rejected, c->txn_rows);
	engine_touch(st);
	if ((long long)c->txn_rows >= c->commit_rows) {
		if (commit(st, &err) != 0) {
			engine_stage_fail(st, "%s", err);
			free(err);
			return SINK_FAIL;
		}
	}
	return SINK_OK;
fail:
	if (c->busy) {
		*reason = err;         /* e.g. "out.db: database is locked" */
		return SINK_RETRY;
	}
	if (c->schema_error) {
		/* Every batch would meet it: the stage fails, on_error aside. */
		engine_stage_fail(st, "%s", err);
		free(err);
		return SINK_FAIL;
	}
	*reason = err;
	return SINK_FAIL;
}

/* Records the table's columns for a later run that receives no records. */
static void save_columns(struct stage *st)
{
	struct load_sqlite *c = st->ctx;
	json_t *cols = json_array();
	size_t i;

	for (i = 0; i < c->n_cols; i++)
		if (strcmp(c->cols[i], ROW_COL) != 0)
			json_array_append_new(cols, json_string(c->cols[i]));
	engine_sink_columns_save(st, c->table, cols);
	json_decref(cols);
}

/* No record reached the table: create it anyway when its columns are known
 * (key, columns:, or those it had after the last successful run), so that
 * queries on it work and find no rows. */
static void ls_finish(struct stage *st)
{
	struct load_sqlite *c = st->ctx;
	const struct sqlite_opts *l = st->spec->opts;
	char *err = NULL;

	/* The last rows are committed before the stage can be done. */
	if (commit(st, &err) != 0) {
		engine_stage_fail(st, "%s", err);
		free(err);
		return;
	}
	if (!c->table_ready && !c->prev_cols)
		c->prev_cols = engine_sink_columns(st, c->table);
	c->busy = false;
	if (!c->table_ready && (c->n_key || l->n_columns || json_array_size(c->prev_cols))) {
		yield_file(c);
		if (ensure_wal(c, &err) != 0 || exec_sql(c, "BEGIN IMMEDIATE", &err) != 0)
			goto fail;
		if (ensure_table(st, NULL, 0, &err) != 0) {
			rollback(c);
			goto fail;
		}
		if (exec_sql(c, "COMMIT", &err) != 0) {
			rollback(c);
			goto fail;
		}
	}
	if (c->table_ready)
		save_columns(st);
	engine_stage_done(st);
	return;
fail:
	if (c->busy) {
		/* As for a batch: try again after the retry policy's backoff. */
		struct retry_policy p;
		engine_retry_policy(st, &p);
		if (++c->finish_attempt < p.attempts) {
			double d = retry_delay(&p, c->finish_attempt + 1, drand48());
			log_warn("stage %s: %s, retry %d/%d in %.*f%s", st->spec->id, err,
			         c->finish_attempt + 1, p.attempts, d < 1 ? 0 : 1,
			         d < 1 ? d * 1000 : d, d < 1 ? "ms" : "s");
			free(err);
			ev_timer_set(&c->finish_retry, d, 0);
			ev_timer_start(engine_loop(st->eng), &c->finish_retry);
			return;
		}
	}
	engine_stage_fail(st, "%s", err);
	free(err);
}

static void finish_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stage *st = w->data;

	if (st->status < ST_SUCCEEDED)
		ls_finish(st);
}

/* The stage stops (it failed, was cancelled or interrupted): a batch being
 * written is undone, and the batches written before it are committed, as
 * they would have been with a transaction each; a resume writes them again
 * (upserted, or found by their row identity). */
static void ls_stop(struct stage *st)
{
	struct load_sqlite *c = st->ctx;
	char *err = NULL;

	if (!c)
		return;
	if (ev_is_active(&c->finish_retry))
		ev_timer_stop(engine_loop(st->eng), &c->finish_retry);
	if (c->in_batch)
		rollback(c);
	if (commit(st, &err) != 0) {
		log_warn("stage %s: %s", st->spec->id, err);
		free(err);
	}
}

static void ls_destroy(struct stage *st)
{
	struct load_sqlite *c = st->ctx;
	size_t i;

	if (!c)
		return;
	{
		struct load_sqlite **p;
		for (p = &sinks; *p; p = &(*p)->next)
			if (*p == c) {
				*p = c->next;
				break;
			}
	}
	if (ev_is_active(&c->finish_retry))
		ev_timer_stop(engine_loop(st->eng), &c->finish_retry);
	if (ev_is_active(&c->commit_timer))
		ev_timer_stop(engine_loop(st->eng), &c->commit_timer);
	/* Still open (the run ended without a stop): not committed, so its
	 * rows are not loaded, and sqlite3_close rolls it back. */
	drop_holds(c);
	free(c->holds);
	sqlite3_finalize(c->ins);
	sqlite3_finalize(c->sp_begin);
	sqlite3_finalize(c->sp_release);
	sqlite3_close(c->db);
	for (i = 0; i < c->n_key; i++)
		free(c->key[i]);
	free(c->key);
	for (i = 0; i < c->n_cols; i++)
		free(c->cols[i]);
	free(c->cols);
	free(c->affs);
	free(c->vals);
	free(c->order);
	json_decref(c->prev_cols);
	free(c->path);
	free(c->table);
	buf_free(&c->sql);
	buf_free(&c->tmp);
	free(c->occ.keys);
	free(c->occ.counts);
	free(c->occ_done);
	json_decref(c->refused);
	free(c);
	st->ctx = NULL;
}

/* ------------------------------------------------------------ options */

/* In the order of enum on_conflict. */
static const char *const on_conflicts[] = { "replace", "merge", "ignore", NULL };

/* True when a and b are equal ignoring ASCII case, as SQLite compares
 * identifiers. */
static bool ident_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return false;
	return *a == *b;
}

static void ls_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                     const struct ynode *m)
{
	const struct sqlite_opts *l = sp->opts;
	const struct ynode *v;
	size_t i, j;

	(void)k;
	if (l->table.s && !opt_name_ok(l->table.s, false, ""))
		opt_error(c, l->table.pos, "invalid table name \"%s\": must start with a "
		          "letter or _ and contain only letters, digits and _", l->table.s);
	for (i = 0; i < l->n_key; i++) {
		if (!*l->key[i].s)
			opt_error(c, l->key[i].pos, "\"key\" column names must not be empty");
		for (j = 0; j < i; j++)
			if (ident_eq(l->key[i].s, l->key[j].s)) {
				opt_error(c, l->key[i].pos, "duplicate column \"%s\" in \"key\"",
				          l->key[i].s);
				break;
			}
	}
	/* SQLite compares column names without regard to case, so "Name" and
	 * "name" are the same column. */
	for (i = 0; i < l->n_columns; i++) {
		if (!*l->columns[i].s) {
			opt_error(c, l->columns[i].pos, "\"columns\" names must not be empty");
			continue;
		}
		for (j = 0; j < i; j++)
			if (ident_eq(l->columns[i].s, l->columns[j].s)) {
				opt_error(c, l->columns[i].pos, "duplicate column \"%s\" in "
				          "\"columns\" (SQLite column names ignore case)",
				          l->columns[i].s);
				break;
			}
	}
	v = opt_get(m, "on_conflict", NULL);
	if (v && v->kind == YN_SCALAR && !l->n_key)
		for (i = 0; on_conflicts[i]; i++)
			if (strcmp(v->s, on_conflicts[i]) == 0)
				opt_error(c, opt_pos(c, v), "\"on_conflict\" needs a \"key\": without "
				          "one every record is a new row");
}

static void ls_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct sqlite_opts *l = sp->opts;

	fn(arg, &l->path, true, REF_SECRETS | REF_ENV | REF_PARAM, "\"path\"");
}

static void ls_describe(const struct stage_spec *sp, struct engine *e, struct state *st,
                        const struct spec *s, long long records, FILE *out)
{
	const struct sqlite_opts *l = sp->opts;
	char *err = NULL, *path, *shown;

	/* The path as this run rendered it (the stage succeeded, so it did). */
	if (!(path = engine_render_path(e, l->path.s, &err))) {
		free(err);
		return;
	}
	/* A path may be built from env values: secrets. */
	shown = redact(path);
	free(path);
	fprintf(out, "%s: %lld records in table \"%s\" of %s\n", sp->id, records, l->table.s,
	        shown);
	/* Without a record the sink can create the table only from the
	 * columns the pipeline declares or an earlier run recorded. */
	if (records == 0) {
		char *cols = NULL;
		bool known = l->n_key || l->n_columns ||
		             state_sink_columns_get(st, s->name, sp->id, l->table.s, &cols) == 1;
		free(cols);
		fprintf(out, "  0 records loaded: %s\n", known ?
		        "the table exists, with the columns known from key, columns: or "
		        "an earlier run" :
		        "a table that did not exist was not created, as its columns are "
		        "unknown (declare them with columns:)");
	}
	fprintf(out, "  look: sqlite3 %s 'SELECT * FROM \"%s\" LIMIT 10'\n", shown, l->table.s);
	free(shown);
}

#define LS(field) offsetof(struct sqlite_opts, field)
static const struct opt ls_options[] = {
	{ .key = "path", .type = OPT_TEMPLATE, .offset = LS(path), .flags = OPT_REQUIRED,
	  .doc = "database file (template), relative to the pipeline file" },
	{ .key = "table", .type = OPT_STRING, .offset = LS(table), .flags = OPT_REQUIRED,
	  .doc = "table name (created, and columns added, as records need)" },
	{ .key = "key", .type = OPT_STRING_LIST, .offset = LS(key), .n_offset = LS(n_key),
	  .doc = "upsert key column(s)" },
	{ .key = "on_conflict", .type = OPT_ENUM, .offset = LS(on_conflict), .def = "replace",
	  .words = on_conflicts, .doc = "a record whose key exists: replace, merge or ignore" },
	{ .key = "columns", .type = OPT_STRING_LIST, .offset = LS(columns),
	  .n_offset = LS(n_columns), .doc = "columns the table has even without records" },
	{ .key = "retry", .type = OPT_CUSTOM, .offset = LS(retry), .read = opt_read_retry,
	  .free = opt_free_retry, .shape = "retry",
	  .doc = "retry policy of batches that find the database locked (replaces "
	         "defaults.retry)" },
	{ .key = "commit_rows", .type = OPT_LONG, .offset = LS(commit_rows), .def = "100000",
	  .min = 1, .max = 100000000,
	  .doc = "rows per transaction, at most (whole batches: a batch is never split)" },
	{ .key = "commit_interval", .type = OPT_DURATION, .offset = LS(commit_interval),
	  .def = "1s", .doc = "time a transaction stays open, at most" },
	{ .key = NULL },
};

static const struct retry_spec *ls_retry(const struct stage_spec *sp)
{
	const struct sqlite_opts *l = sp->opts;

	return &l->retry;
}

const struct stage_kind stage_load_sqlite = {
	.role = "load",
	.selector = "sqlite",
	.nested = true,
	.sink = true,
	.options = ls_options,
	.opts_size = sizeof(struct sqlite_opts),
	.check = ls_check,
	.refs = ls_refs,
	.describe = ls_describe,
	.retry = ls_retry,
	.name = "load.sqlite",
	.description = "insert or upsert records into a SQLite table",
	.create = ls_create,
	.write = ls_write,
	.finish = ls_finish,
	.stop = ls_stop,
	.destroy = ls_destroy,
};
