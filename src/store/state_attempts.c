/*
 * state_attempts: the history of a run: its HTTP attempts, its dead
 * letters (dlq) and its events.
 */
#include "store/state_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

/* v2. An http_status of NULL means no response; a NULL stage matches all. */
static const char SQL_ATTEMPT_INSERT[] =
	"INSERT INTO attempts (run_id, stage, fingerprint, method, url, attempt,"
	" http_status, error, started, duration, wait, wait_backoff, wait_retry_after,"
	" wait_rate, wait_concurrency, wait_breaker)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
static const char SQL_ATTEMPTS_LIST[] =
	"SELECT run_id, stage, fingerprint, method, url, attempt, http_status,"
	" error, started, duration, wait, wait_backoff, wait_retry_after, wait_rate,"
	" wait_concurrency, wait_breaker FROM attempts"
	" WHERE run_id = ?1 AND (?2 IS NULL OR stage = ?2) ORDER BY rowid";
/* A NULL attempts list is stored as the empty array. */
static const char SQL_DLQ_INSERT[] =
	"INSERT INTO dlq (run_id, stage, payload, error, attempts, created)"
	" VALUES (?1, ?2, ?3, ?4, COALESCE(?5, '[]'), ?6) RETURNING id";
/* run_id 0 matches every run. */
static const char SQL_DLQ_LIST[] =
	"SELECT id, run_id, stage, payload, error, attempts, created, replayed"
	" FROM dlq WHERE (?1 = 0 OR run_id = ?1) AND (?2 IS NULL OR stage = ?2)"
	" AND (?3 IS NULL OR run_id IN (SELECT id FROM runs WHERE pipeline = ?3))"
	" ORDER BY id";
static const char SQL_DLQ_REPLAYED[] =
	"UPDATE dlq SET replayed = 1 WHERE id = ?1";
static const char SQL_EVENT_INSERT[] =
	"INSERT INTO events (run_id, stage, kind, message, at)"
	" VALUES (?1, ?2, ?3, ?4, ?5)";
static const char SQL_EVENTS_LIST[] =
	"SELECT run_id, stage, kind, message, at FROM events"
	" WHERE run_id = ?1 ORDER BY rowid";

const char *const state_attempts_sql[STMT_COUNT] = {
	[STMT_ATTEMPT_INSERT] = SQL_ATTEMPT_INSERT,
	[STMT_ATTEMPTS_LIST] = SQL_ATTEMPTS_LIST,
	[STMT_DLQ_INSERT] = SQL_DLQ_INSERT,
	[STMT_DLQ_LIST] = SQL_DLQ_LIST,
	[STMT_DLQ_REPLAYED] = SQL_DLQ_REPLAYED,
	[STMT_EVENT_INSERT] = SQL_EVENT_INSERT,
	[STMT_EVENTS_LIST] = SQL_EVENTS_LIST,
};

/* ------------------------------------------------------------------ attempts */

/* An HTTP status of 0 (no response) binds NULL. */
static int bind_status(sqlite3_stmt *s, int i, long status)
{
	if (status == 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_int64(s, i, status);
}

/* Records one HTTP attempt. One prepared INSERT and nothing else, so callers
 * can batch many inside state_begin/state_commit. Returns 0, or -1 (also
 * when the run does not exist or a NOT NULL field is NULL). */
int state_attempt_add(struct state *st, const struct attempt_row *a)
{
	sqlite3_stmt *s = st->stmt[STMT_ATTEMPT_INSERT];
	int rc;

	rc = sqlite3_bind_int64(s, 1, a->run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, a->stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, a->fingerprint);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 4, a->method);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 5, a->url);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 6, a->attempt);
	if (rc == SQLITE_OK)
		rc = bind_status(s, 7, a->http_status);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 8, a->error);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 9, a->started);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 10, a->duration);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 11, a->wait);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 12, a->wait_backoff);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 13, a->wait_retry_after);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 14, a->wait_rate);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 15, a->wait_concurrency);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 16, a->wait_breaker);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot record attempt %d of stage '%s' of run %lld",
		           a->attempt, a->stage ? a->stage : "(null)", (long long)a->run_id);
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Lists the attempts of a run, of one stage or (stage NULL) of all, in
 * insertion order. Returns the count and a malloc'd array in *out (free with
 * attempt_rows_free; NULL when the count is 0 or on error), or -1. */
int state_attempts_list(struct state *st, int64_t run_id, const char *stage,
                        struct attempt_row **out)
{
	sqlite3_stmt *s = st->stmt[STMT_ATTEMPTS_LIST];
	struct attempt_row *rows = NULL;
	size_t cap = 0;
	int n = 0, rc;

	*out = NULL;
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	    bind_text(s, 2, stage) != SQLITE_OK) {
		state_fail(st, "cannot list attempts of run %lld", (long long)run_id);
		stmt_done(s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct attempt_row *r;

		xgrow(&rows, &cap, (size_t)n + 1, sizeof(*rows));
		r = &rows[n++];
		r->run_id = sqlite3_column_int64(s, 0);
		r->stage = column_strdup(s, 1);
		r->fingerprint = column_strdup(s, 2);
		r->method = column_strdup(s, 3);
		r->url = column_strdup(s, 4);
		r->attempt = sqlite3_column_int(s, 5);
		r->http_status = (long)sqlite3_column_int64(s, 6);   /* NULL reads 0 */
		r->error = column_strdup(s, 7);
		r->started = sqlite3_column_double(s, 8);
		r->duration = sqlite3_column_double(s, 9);
		r->wait = sqlite3_column_double(s, 10);
		r->wait_backoff = sqlite3_column_double(s, 11);
		r->wait_retry_after = sqlite3_column_double(s, 12);
		r->wait_rate = sqlite3_column_double(s, 13);
		r->wait_concurrency = sqlite3_column_double(s, 14);
		r->wait_breaker = sqlite3_column_double(s, 15);
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot list attempts of run %lld", (long long)run_id);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		attempt_rows_free(rows, n);
		return -1;
	}
	*out = rows;
	return n;
}

/* Frees n rows and the array (NULL-safe). */
void attempt_rows_free(struct attempt_row *rows, int n)
{
	int i;

	if (!rows)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].stage);
		free(rows[i].fingerprint);
		free(rows[i].method);
		free(rows[i].url);
		free(rows[i].error);
	}
	free(rows);
}

/* ------------------------------------------------------------------ dead letters */

/* Adds a dead letter (not replayed); attempts NULL stores "[]". payload and
 * attempts are stored as given (the caller passes JSON text). Returns 0 and
 * sets *id when id is not NULL, or -1. */
int state_dlq_add(struct state *st, int64_t run_id, const char *stage,
                  const char *payload, const char *error, const char *attempts,
                  double created, int64_t *id)
{
	sqlite3_stmt *s = st->stmt[STMT_DLQ_INSERT];
	int64_t got = 0;
	int rc;

	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, payload);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 4, error);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 5, attempts);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 6, created);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		got = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot record dead letter of stage '%s' of run %lld",
		           stage ? stage : "(null)", (long long)run_id);
	stmt_done(s);
	if (rc != SQLITE_DONE)
		return -1;
	if (id)
		*id = got;
	return 0;
}

/* Lists dead letters of a run (run_id 0: of every run), of one stage or
 * (stage NULL) of all, oldest (lowest id) first. Returns the count and a
 * malloc'd array in *out (free with dlq_rows_free; NULL when the count is 0
 * or on error), or -1. */
int state_dlq_list(struct state *st, int64_t run_id, const char *stage,
                   struct dlq_row **out)
{
	sqlite3_stmt *s = st->stmt[STMT_DLQ_LIST];
	struct dlq_row *rows = NULL;
	size_t cap = 0;
	int n = 0, rc;

	*out = NULL;
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	    bind_text(s, 2, stage) != SQLITE_OK ||
	    bind_text(s, 3, st->scope) != SQLITE_OK) {
		state_fail(st, "cannot list dead letters");
		stmt_done(s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct dlq_row *r;

		xgrow(&rows, &cap, (size_t)n + 1, sizeof(*rows));
		r = &rows[n++];
		r->id = sqlite3_column_int64(s, 0);
		r->run_id = sqlite3_column_int64(s, 1);
		r->stage = column_strdup(s, 2);
		r->payload = column_strdup(s, 3);
		r->error = column_strdup(s, 4);
		r->attempts = column_strdup(s, 5);
		r->created = sqlite3_column_double(s, 6);
		r->replayed = sqlite3_column_int(s, 7) != 0;
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot list dead letters");
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		dlq_rows_free(rows, n);
		return -1;
	}
	*out = rows;
	return n;
}

/* Marks dead letter id as replayed. Returns 0, or -1 on a database error or
 * when there is no such dead letter. */
int state_dlq_mark_replayed(struct state *st, int64_t id)
{
	sqlite3_stmt *s = st->stmt[STMT_DLQ_REPLAYED];
	char what[64];

	snprintf(what, sizeof(what), "cannot mark dead letter %lld replayed",
	         (long long)id);
	if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
		state_fail(st, "%s", what);
		stmt_done(s);
		return -1;
	}
	if (stmt_exec(st, s, what) != 0)
		return -1;
	if (sqlite3_changes(st->db) == 0) {
		state_failx(st, "%s: no such dead letter", what);
		return -1;
	}
	return 0;
}

/* Frees n rows and the array (NULL-safe). */
void dlq_rows_free(struct dlq_row *rows, int n)
{
	int i;

	if (!rows)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].stage);
		free(rows[i].payload);
		free(rows[i].error);
		free(rows[i].attempts);
	}
	free(rows);
}

/* ------------------------------------------------------------------ events */

/* Records an event of a run; stage may be NULL (an event of the whole run).
 * Returns 0 or -1. */
int state_event_add(struct state *st, int64_t run_id, const char *stage,
                    const char *kind, const char *message, double at)
{
	sqlite3_stmt *s = st->stmt[STMT_EVENT_INSERT];
	int rc;

	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, kind);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 4, message);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 5, at);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot record %s event of run %lld",
		           kind ? kind : "(null)", (long long)run_id);
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Lists the events of a run in insertion order. Returns the count and a
 * malloc'd array in *out (free with event_rows_free; NULL when the count is
 * 0 or on error), or -1. */
int state_events_list(struct state *st, int64_t run_id, struct event_row **out)
{
	sqlite3_stmt *s = st->stmt[STMT_EVENTS_LIST];
	struct event_row *rows = NULL;
	size_t cap = 0;
	int n = 0, rc;

	*out = NULL;
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK) {
		state_fail(st, "cannot list events of run %lld", (long long)run_id);
		stmt_done(s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct event_row *r;

		xgrow(&rows, &cap, (size_t)n + 1, sizeof(*rows));
		r = &rows[n++];
		r->run_id = sqlite3_column_int64(s, 0);
		r->stage = column_strdup(s, 1);
		r->kind = column_strdup(s, 2);
		r->message = column_strdup(s, 3);
		r->at = sqlite3_column_double(s, 4);
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot list events of run %lld", (long long)run_id);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		event_rows_free(rows, n);
		return -1;
	}
	*out = rows;
	return n;
}

/* Frees n rows and the array (NULL-safe). */
void event_rows_free(struct event_row *rows, int n)
{
	int i;

	if (!rows)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].stage);
		free(rows[i].kind);
		free(rows[i].message);
	}
	free(rows);
}
