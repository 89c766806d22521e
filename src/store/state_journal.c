/*
 * state_journal: the response journal, the successful responses of a run
 * by (stage, request fingerprint), which a resume answers from.
 */
#include "store/state_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

/* The table has no key (see SQL_MIGRATE_JOURNAL_ROWID in state.c): of
 * entries with one (run, stage, fingerprint) the first, the lowest rowid,
 * is the one that counts. A NULL headers is stored as {}. */
static const char SQL_JOURNAL_PUT[] =
	"INSERT INTO journal (run_id, stage, fingerprint, status, headers, body, at, digest,"
	" size) VALUES (?1, ?2, ?3, ?4, COALESCE(?5, '{}'), ?6, ?7, ?8, ?9)";
/* Without the map's help (a hash collision): scans the stage's entries. */
static const char SQL_JOURNAL_GET[] =
	"SELECT status, headers, body, digest, size FROM journal"
	" WHERE run_id = ?1 AND stage = ?2 AND fingerprint = ?3 ORDER BY rowid LIMIT 1";
static const char SQL_JOURNAL_COUNT[] =
	"SELECT COUNT(*) FROM (SELECT 1 FROM journal WHERE run_id = ?1"
	" AND (?2 IS NULL OR stage = ?2) GROUP BY stage, fingerprint)";
static const char SQL_JOURNAL_COUNT_DIGESTS[] =
	"SELECT COUNT(*) FROM journal WHERE digest IS NOT NULL AND rowid IN"
	" (SELECT min(rowid) FROM journal WHERE run_id = ?1 AND (?2 IS NULL OR stage = ?2)"
	"  GROUP BY stage, fingerprint)";
/* The entries of a stage after a rowid, in order: what a map lacks. */
static const char SQL_JOURNAL_SCAN[] =
	"SELECT rowid, fingerprint FROM journal WHERE run_id = ?1 AND stage = ?2"
	" AND rowid > ?3 ORDER BY rowid";
/* The key binds as in SQL_JOURNAL_GET (see get_entry). */
static const char SQL_JOURNAL_GET_ROW[] =
	"SELECT status, headers, body, digest, size FROM journal"
	" WHERE rowid = ?4 AND run_id = ?1 AND stage = ?2 AND fingerprint = ?3";

const char *const state_journal_sql[STMT_COUNT] = {
	[STMT_JOURNAL_PUT] = SQL_JOURNAL_PUT,
	[STMT_JOURNAL_GET] = SQL_JOURNAL_GET,
	[STMT_JOURNAL_COUNT] = SQL_JOURNAL_COUNT,
	[STMT_JOURNAL_COUNT_DIGESTS] = SQL_JOURNAL_COUNT_DIGESTS,
	[STMT_JOURNAL_SCAN] = SQL_JOURNAL_SCAN,
	[STMT_JOURNAL_GET_ROW] = SQL_JOURNAL_GET_ROW,
};

/* ------------------------------------------------------------------ map */

/*
 * The lookup of a resumed run: per (run, stage), the 64-bit hash of each
 * fingerprint with the rowid of its first entry, built by one scan when the
 * stage is first asked and topped up from the rows appended since (any
 * handle's) on a miss. A hit is read back by rowid and checked against the
 * whole key, so a stale slot (a rolled-back put) or a hash collision only
 * costs a query. 16 bytes per entry at most half full: a fresh run, which
 * never asks, builds none.
 */
struct journal_slot {
	uint64_t hash;
	int64_t rowid;                 /* 0: empty */
};

struct journal_map {
	struct journal_map *next;
	int64_t run_id;
	char *stage;
	int64_t max_rowid;             /* every entry up to it is mapped */
	struct journal_slot *slots;
	size_t n, cap;                 /* cap: 0 or a power of two */
};

static uint64_t fp_hash(const char *fp)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	for (; *fp; fp++)
		h = (h ^ (unsigned char)*fp) * 1099511628211ULL;
	return h;
}

/* The slot of hash h: its entry, or the empty slot where it would go. */
static struct journal_slot *map_slot(struct journal_map *m, uint64_t h)
{
	size_t i = (size_t)h & (m->cap - 1);

	while (m->slots[i].rowid != 0 && m->slots[i].hash != h)
		i = (i + 1) & (m->cap - 1);
	return &m->slots[i];
}

/* Maps h to rowid unless an earlier entry holds it (the first counts). */
static void map_add(struct journal_map *m, uint64_t h, int64_t rowid)
{
	struct journal_slot *sl;

	if ((m->n + 1) * 2 > m->cap) {
		struct journal_slot *old = m->slots;
		size_t i, cap = m->cap;

		m->cap = cap ? cap * 2 : 256;
		m->slots = xcalloc(m->cap, sizeof(*m->slots));
		for (i = 0; i < cap; i++)
			if (old[i].rowid != 0)
				*map_slot(m, old[i].hash) = old[i];
		free(old);
	}
	sl = map_slot(m, h);
	if (sl->rowid == 0) {
		sl->hash = h;
		sl->rowid = rowid;
		m->n++;
	} else if (rowid < sl->rowid) {
		sl->rowid = rowid;
	}
}

static struct journal_map *map_find(struct state *st, int64_t run_id, const char *stage)
{
	struct journal_map *m;

	for (m = st->jmaps; m; m = m->next)
		if (m->run_id == run_id && strcmp(m->stage, stage) == 0)
			return m;
	return NULL;
}

/* Adds the stage's entries appended after m->max_rowid. Returns 0 or -1. */
static int map_refresh(struct state *st, struct journal_map *m)
{
	sqlite3_stmt *s = st->stmt[STMT_JOURNAL_SCAN];
	int rc;

	rc = sqlite3_bind_int64(s, 1, m->run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, m->stage);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 3, m->max_rowid);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *fp = (const char *)sqlite3_column_text(s, 1);
		m->max_rowid = sqlite3_column_int64(s, 0);
		if (fp)
			map_add(m, fp_hash(fp), m->max_rowid);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot read the journal of stage '%s' of run %lld", m->stage,
		           (long long)m->run_id);
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

void state_journal_maps_free(struct state *st)
{
	while (st->jmaps) {
		struct journal_map *m = st->jmaps;
		st->jmaps = m->next;
		free(m->stage);
		free(m->slots);
		free(m);
	}
}

/* Reads one entry with statement s (bound, stepped here) into *e. Returns
 * 1 found, 0 not found, -1 error. */
static int read_entry(struct state *st, sqlite3_stmt *s, int rc, const char *stage,
                      int64_t run_id, struct journal_entry *e)
{
	int ret;

	memset(e, 0, sizeof(*e));
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *headers = (const char *)sqlite3_column_text(s, 1);
		/* column_blob before column_bytes: the documented safe order. */
		const void *body = sqlite3_column_blob(s, 2);
		int len = sqlite3_column_bytes(s, 2);
		const char *digest = (const char *)sqlite3_column_text(s, 3);

		e->status = (long)sqlite3_column_int64(s, 0);
		e->headers = xstrdup(headers ? headers : "{}");
		e->body_len = len > 0 ? (size_t)len : 0;
		e->body = xmalloc(e->body_len + 1);
		if (e->body_len)
			memcpy(e->body, body, e->body_len);
		e->body[e->body_len] = '\0';
		if (digest) {
			e->digest = xstrdup(digest);
			e->body_len = 0;
			e->size = (size_t)sqlite3_column_int64(s, 4);
		}
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		state_fail(st, "cannot read the journal of stage '%s' of run %lld",
		           stage ? stage : "(null)", (long long)run_id);
		ret = -1;
	}
	stmt_done(s);
	return ret;
}

/* The first entry under the key: read by its rowid when rowid is not 0
 * (returns 0 when that row is not the key's: stale or a collision), else by
 * a scan of the stage's entries. Returns 1 found, 0 not found, -1 error. */
static int get_entry(struct state *st, int64_t rowid, int64_t run_id, const char *stage,
                     const char *fingerprint, struct journal_entry *e)
{
	sqlite3_stmt *s = st->stmt[rowid ? STMT_JOURNAL_GET_ROW : STMT_JOURNAL_GET];
	int rc;

	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, fingerprint);
	if (rc == SQLITE_OK && rowid)
		rc = sqlite3_bind_int64(s, 4, rowid);
	return read_entry(st, s, rc, stage, run_id, e);
}

/* ------------------------------------------------------------------ journal */

/* Records a response under (run, stage, fingerprint), stamped with the wall
 * clock. An entry already there is kept (first wins) and that is a success.
 * headers NULL stores "{}"; body is bound as a blob of body_len bytes (NUL
 * bytes kept; NULL only with body_len 0). One prepared statement, so callers
 * batch puts inside state_begin/state_commit. Nothing is retained. Returns
 * 0, or -1 (also for a missing run or a NULL stage or fingerprint). */
int state_journal_put(struct state *st, int64_t run_id, const char *stage,
                      const char *fingerprint, const struct journal_entry *e)
{
	sqlite3_stmt *s = st->stmt[STMT_JOURNAL_PUT];
	struct journal_map *m = NULL;
	int rc;

	if (!e || (!e->body && !e->digest && e->body_len > 0)) {
		state_failx(st, "cannot journal a response of stage '%s' of run %lld: "
		            "no body", stage ? stage : "(null)", (long long)run_id);
		return -1;
	}
	if (stage && fingerprint && (m = map_find(st, run_id, stage)) && m->cap) {
		/* A mapped stage (a resumed run) keeps its map current and
		 * skips a key it holds; otherwise a second entry is harmless
		 * (the first counts). */
		struct journal_entry old;
		struct journal_slot *sl = map_slot(m, fp_hash(fingerprint));
		if (sl->rowid != 0 && (rc = get_entry(st, sl->rowid, run_id, stage, fingerprint,
		                                      &old)) != 0) {
			journal_entry_free(&old);
			return rc > 0 ? 0 : -1;
		}
	}
	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, fingerprint);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, e->status);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 5, e->headers);
	if (rc == SQLITE_OK) {
		/* An empty body is an empty blob, never SQL NULL. */
		if (e->body && !e->digest)
			rc = sqlite3_bind_blob64(s, 6, e->body, e->body_len, SQLITE_STATIC);
		else
			rc = sqlite3_bind_zeroblob(s, 6, 0);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 7, now_wall());
	if (rc == SQLITE_OK && e->digest) {
		rc = bind_text(s, 8, e->digest);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(s, 9, (sqlite3_int64)e->body_len);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot journal a response of stage '%s' of run %lld",
		           stage ? stage : "(null)", (long long)run_id);
	else if (m && m->cap)
		map_add(m, fp_hash(fingerprint), sqlite3_last_insert_rowid(st->db));
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Looks up the response under (run, stage, fingerprint). *e is zeroed, and
 * when found filled with malloc'd headers and a malloc'd copy of the body
 * with a NUL added after body_len bytes (free with journal_entry_free).
 * Returns 1 found, 0 not found, -1 error. */
int state_journal_get(struct state *st, int64_t run_id, const char *stage,
                      const char *fingerprint, struct journal_entry *e)
{
	struct journal_map *m;
	struct journal_slot *sl;
	uint64_t h;
	int ret;

	memset(e, 0, sizeof(*e));
	if (!stage || !fingerprint)
		return 0;              /* no entry has a NULL key */
	m = map_find(st, run_id, stage);
	if (!m) {
		m = xcalloc(1, sizeof(*m));
		m->run_id = run_id;
		m->stage = xstrdup(stage);
		m->next = st->jmaps;
		st->jmaps = m;
	}
	h = fp_hash(fingerprint);
	if (!m->cap || map_slot(m, h)->rowid == 0) {
		/* Entries appended since the map last looked (or all of them). */
		if (map_refresh(st, m) != 0)
			return -1;
		if (!m->cap) {
			/* Empty, but built: puts keep it current from now. */
			m->cap = 256;
			m->slots = xcalloc(m->cap, sizeof(*m->slots));
		}
	}
	sl = map_slot(m, h);
	if (sl->rowid == 0)
		return 0;
	ret = get_entry(st, sl->rowid, run_id, stage, fingerprint, e);
	if (ret == 0)
		/* A rolled-back entry or another key with the same hash. */
		ret = get_entry(st, 0, run_id, stage, fingerprint, e);
	return ret;
}

/* Frees the fields of an entry (NULL-safe, also on its fields), not the
 * entry itself, and zeroes it. */
void journal_entry_free(struct journal_entry *e)
{
	if (!e)
		return;
	free(e->headers);
	free(e->body);
	free(e->digest);
	memset(e, 0, sizeof(*e));
}

/* Runs the counting statement idx, which takes the run id and a stage (NULL:
 * all stages) and yields one integer. Returns the count or -1 (the error is
 * recorded on st). */
static int64_t journal_count_with(struct state *st, enum state_stmt idx, int64_t run_id,
				  const char *stage)
{
	sqlite3_stmt *s = st->stmt[idx];
	int64_t n = -1;
	int rc;

	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	else
		state_fail(st, "cannot count the journal of run %lld", (long long)run_id);
	stmt_done(s);
	return n;
}

/* Counts the journal entries of a run, of one stage or (stage NULL) of all.
 * Returns the count or -1. */
int64_t state_journal_count(struct state *st, int64_t run_id, const char *stage)
{
	return journal_count_with(st, STMT_JOURNAL_COUNT, run_id, stage);
}

/* Counts the entries of a run (stage NULL = all) that keep only the
 * digest of their body. Returns the count or -1. */
int64_t state_journal_count_digests(struct state *st, int64_t run_id, const char *stage)
{
	return journal_count_with(st, STMT_JOURNAL_COUNT_DIGESTS, run_id, stage);
}
