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

/* First wins. The conflict clause names the key, so only a duplicate is
 * skipped: a NULL in a NOT NULL column is still an error (INSERT OR IGNORE
 * would drop that row silently). A NULL headers is stored as {}. */
static const char SQL_JOURNAL_PUT[] =
	"INSERT INTO journal (run_id, stage, fingerprint, status, headers, body, at, digest,"
	" size) VALUES (?1, ?2, ?3, ?4, COALESCE(?5, '{}'), ?6, ?7, ?8, ?9)"
	" ON CONFLICT (run_id, stage, fingerprint) DO NOTHING";
static const char SQL_JOURNAL_GET[] =
	"SELECT status, headers, body, digest, size FROM journal"
	" WHERE run_id = ?1 AND stage = ?2 AND fingerprint = ?3";
static const char SQL_JOURNAL_COUNT[] =
	"SELECT COUNT(*) FROM journal WHERE run_id = ?1 AND (?2 IS NULL OR stage = ?2)";
static const char SQL_JOURNAL_COUNT_DIGESTS[] =
	"SELECT COUNT(*) FROM journal WHERE run_id = ?1 AND (?2 IS NULL OR stage = ?2)"
	" AND digest IS NOT NULL";

const char *const state_journal_sql[STMT_COUNT] = {
	[STMT_JOURNAL_PUT] = SQL_JOURNAL_PUT,
	[STMT_JOURNAL_GET] = SQL_JOURNAL_GET,
	[STMT_JOURNAL_COUNT] = SQL_JOURNAL_COUNT,
	[STMT_JOURNAL_COUNT_DIGESTS] = SQL_JOURNAL_COUNT_DIGESTS,
};

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
	int rc;

	if (!e || (!e->body && !e->digest && e->body_len > 0)) {
		state_failx(st, "cannot journal a response of stage '%s' of run %lld: "
		            "no body", stage ? stage : "(null)", (long long)run_id);
		return -1;
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
	sqlite3_stmt *s = st->stmt[STMT_JOURNAL_GET];
	int rc, ret;

	memset(e, 0, sizeof(*e));
	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, fingerprint);
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
