/*
 * state_runs: the runs table (a run's row, its params, source and replay
 * link), the leases table, and gc, which deletes old runs with every row
 * that hangs off them.
 */
#include "store/state_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

static const char SQL_RUN_INSERT[] =
	"INSERT INTO runs (pipeline, path, hash, params, status, started)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id";
static const char SQL_RUN_FINISH[] =
	"UPDATE runs SET status = ?2, error = ?3, finished = ?4 WHERE id = ?1";
#define RUN_COLUMNS \
	"id, pipeline, path, hash, params, status, started, finished, error"
static const char SQL_RUN_GET[] =
	"SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1";
/* The scope (state_set_scope) is bound as a pipeline name, NULL for all. */
static const char SQL_RUN_LATEST[] =
	"SELECT " RUN_COLUMNS " FROM runs WHERE (?1 IS NULL OR pipeline = ?1)"
	" ORDER BY id DESC LIMIT 1";
/* A negative LIMIT means no limit. */
static const char SQL_RUNS_LIST[] =
	"SELECT " RUN_COLUMNS " FROM runs WHERE (?2 IS NULL OR pipeline = ?2)"
	" ORDER BY id DESC LIMIT ?1";
/* v3. A NULL pid is stored for "none". */
static const char SQL_RUN_SOURCE[] =
	"SELECT text, pid FROM runs WHERE id = ?1";
static const char SQL_RUN_SET_SOURCE[] =
	"UPDATE runs SET text = ?2, pid = ?3 WHERE id = ?1";
static const char SQL_RUN_REOPEN[] =
	"UPDATE runs SET status = ?2, finished = NULL, error = NULL, pid = ?3"
	" WHERE id = ?1";
static const char SQL_RUN_SET_PARAMS[] =
	"UPDATE runs SET params = ?2 WHERE id = ?1";
static const char SQL_RUN_SET_REPLAY_OF[] =
	"UPDATE runs SET replay_of = ?2 WHERE id = ?1";
static const char SQL_RUN_REPLAY_OF[] =
	"SELECT COALESCE(replay_of, 0) FROM runs WHERE id = ?1";
/* Deleting a run deletes its rows in every other table (ON DELETE CASCADE). */
/* A run that a running dlq replay replays is kept: the replay marks its
 * dead letters when it ends. */
static const char SQL_GC[] =
	"DELETE FROM runs WHERE status <> ?2 AND COALESCE(finished, started) < ?1"
	" AND (?3 IS NULL OR pipeline = ?3)"
	" AND id NOT IN (SELECT replay_of FROM runs WHERE status = ?2"
	" AND replay_of IS NOT NULL)";
static const char SQL_FOREIGN_KEYS[] = "PRAGMA foreign_keys";
static const char SQL_LEASE_GET[] =
	"SELECT resource, run_id, pid, pid_start, host, boot, command, acquired"
	" FROM leases WHERE resource = ?1";
static const char SQL_LEASE_PUT[] =
	"INSERT OR REPLACE INTO leases"
	" (resource, run_id, pid, pid_start, host, boot, command, acquired)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char SQL_LEASE_RELEASE[] =
	"DELETE FROM leases WHERE pid = ?1 AND pid_start = ?2 AND host = ?3 AND boot = ?4";

const char *const state_runs_sql[STMT_COUNT] = {
	[STMT_RUN_INSERT] = SQL_RUN_INSERT,
	[STMT_RUN_FINISH] = SQL_RUN_FINISH,
	[STMT_RUN_GET] = SQL_RUN_GET,
	[STMT_RUN_LATEST] = SQL_RUN_LATEST,
	[STMT_RUNS_LIST] = SQL_RUNS_LIST,
	[STMT_RUN_SOURCE] = SQL_RUN_SOURCE,
	[STMT_RUN_SET_SOURCE] = SQL_RUN_SET_SOURCE,
	[STMT_RUN_REOPEN] = SQL_RUN_REOPEN,
	[STMT_RUN_SET_PARAMS] = SQL_RUN_SET_PARAMS,
	[STMT_RUN_SET_REPLAY_OF] = SQL_RUN_SET_REPLAY_OF,
	[STMT_RUN_REPLAY_OF] = SQL_RUN_REPLAY_OF,
	[STMT_GC] = SQL_GC,
	[STMT_FOREIGN_KEYS] = SQL_FOREIGN_KEYS,
	[STMT_LEASE_GET] = SQL_LEASE_GET,
	[STMT_LEASE_PUT] = SQL_LEASE_PUT,
	[STMT_LEASE_RELEASE] = SQL_LEASE_RELEASE,
};

/* ------------------------------------------------------------------ runs */

/* Inserts a run with status running. Returns 0 and sets *run_id, or -1. */
int state_run_create(struct state *st, const char *pipeline, const char *path,
                     const char *hash, const char *params_json, double started,
                     int64_t *run_id)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_INSERT];
	int rc;

	if (bind_text(s, 1, pipeline) != SQLITE_OK ||
	    bind_text(s, 2, path) != SQLITE_OK ||
	    bind_text(s, 3, hash) != SQLITE_OK ||
	    bind_text(s, 4, params_json) != SQLITE_OK ||
	    bind_text(s, 5, state_status_name(ST_RUNNING)) != SQLITE_OK ||
	    sqlite3_bind_double(s, 6, started) != SQLITE_OK) {
		state_fail(st, "cannot record run");
		stmt_done(s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*run_id = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE)
		state_fail(st, "cannot record run");
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Sets a run's final status, error (NULL for none) and finish time.
 * Returns 0, or -1 on a database error or when there is no such run. */
int state_run_finish(struct state *st, int64_t run_id, enum run_status status,
                     const char *error, double finished)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_FINISH];
	char what[64];

	snprintf(what, sizeof(what), "cannot finish run %lld", (long long)run_id);
	if (!state_status_valid(status)) {
		state_failx(st, "%s: invalid status %d", what, (int)status);
		return -1;
	}
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	    bind_text(s, 2, state_status_name(status)) != SQLITE_OK ||
	    bind_text(s, 3, error) != SQLITE_OK ||
	    bind_time(s, 4, finished) != SQLITE_OK) {
		state_fail(st, "%s", what);
		stmt_done(s);
		return -1;
	}
	if (stmt_exec(st, s, what) != 0)
		return -1;
	if (sqlite3_changes(st->db) == 0) {
		state_failx(st, "%s: no such run", what);
		return -1;
	}
	return 0;
}

/* Fills *r from the current row of a RUN_COLUMNS query. Returns 0, or -1
 * (r freed) when the stored status is unknown. */
static int run_from_row(struct state *st, sqlite3_stmt *s, struct run_row *r)
{
	const char *status = (const char *)sqlite3_column_text(s, 5);
	int code = state_status_parse(status);

	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(s, 0);
	if (code < 0) {
		state_failx(st, "run %lld has an unknown status '%s'", (long long)r->id,
		            status ? status : "(null)");
		return -1;
	}
	r->pipeline = column_strdup(s, 1);
	r->path = column_strdup(s, 2);
	r->hash = column_strdup(s, 3);
	r->params = column_strdup(s, 4);
	r->status = (enum run_status)code;
	r->started = sqlite3_column_double(s, 6);
	r->finished = sqlite3_column_double(s, 7);
	r->error = column_strdup(s, 8);
	return 0;
}

/* Reads run run_id, or the latest run when run_id is 0, into *out (freed
 * with run_row_free; zeroed unless found). Returns 1 found, 0 not found,
 * -1 error. */
int state_run_get(struct state *st, int64_t run_id, struct run_row *out)
{
	sqlite3_stmt *s;
	int rc, ret;

	memset(out, 0, sizeof(*out));
	if (run_id == 0) {
		s = st->stmt[STMT_RUN_LATEST];
		if (bind_text(s, 1, st->scope) != SQLITE_OK) {
			state_fail(st, "cannot read the latest run");
			stmt_done(s);
			return -1;
		}
	} else {
		s = st->stmt[STMT_RUN_GET];
		if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK) {
			state_fail(st, "cannot read run %lld", (long long)run_id);
			stmt_done(s);
			return -1;
		}
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = run_from_row(st, s, out) == 0 ? 1 : -1;
	else if (rc == SQLITE_DONE)
		ret = 0;
	else {
		state_fail(st, "cannot read run %lld", (long long)run_id);
		ret = -1;
	}
	stmt_done(s);
	return ret;
}

/* Frees the strings of a row (NULL-safe), not the row itself. */
void run_row_free(struct run_row *r)
{
	if (!r)
		return;
	free(r->pipeline);
	free(r->path);
	free(r->hash);
	free(r->params);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

/* Lists the latest runs, newest first; limit <= 0 lists all. Returns the
 * count and a malloc'd array in *out (free with run_rows_free; NULL when the
 * count is 0 or on error), or -1. */
int state_runs_list(struct state *st, int limit, struct run_row **out)
{
	sqlite3_stmt *s = st->stmt[STMT_RUNS_LIST];
	struct run_row *rows = NULL;
	size_t cap = 0;
	int n = 0, rc;

	*out = NULL;
	if (sqlite3_bind_int(s, 1, limit > 0 ? limit : -1) != SQLITE_OK ||
	    bind_text(s, 2, st->scope) != SQLITE_OK) {
		state_fail(st, "cannot list runs");
		stmt_done(s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		xgrow(&rows, &cap, (size_t)n + 1, sizeof(*rows));
		if (run_from_row(st, s, &rows[n]) != 0)
			break;
		n++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		state_fail(st, "cannot list runs");
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		run_rows_free(rows, n);
		return -1;
	}
	*out = rows;
	return n;
}

/* Frees n rows and the array (NULL-safe). */
void run_rows_free(struct run_row *rows, int n)
{
	int i;

	if (!rows)
		return;
	for (i = 0; i < n; i++)
		run_row_free(&rows[i]);
	free(rows);
}

/* ------------------------------------------------------------------ source, params, replays */

/* A pid of 0 (or less) means none and binds NULL. */
static int bind_pid(sqlite3_stmt *s, int i, long pid)
{
	if (pid <= 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_int64(s, i, pid);
}

/* Runs an UPDATE of one run by id (bound as ?1 by the caller, with the
 * rest; bind_failed says a bind went wrong, and then nothing runs). Returns
 * 0, or -1 on a database error or when there is no such run. */
static int run_update(struct state *st, sqlite3_stmt *s, bool bind_failed, const char *what)
{
	if (bind_failed) {
		state_fail(st, "%s", what);
		stmt_done(s);
		return -1;
	}
	if (stmt_exec(st, s, what) != 0)
		return -1;
	if (sqlite3_changes(st->db) == 0) {
		state_failx(st, "%s: no such run", what);
		return -1;
	}
	return 0;
}

/* Reads the pipeline text and pid of a run. *text is malloc'd (the caller
 * frees it) or NULL when not recorded (runs from before v3); *pid is 0 when
 * not recorded. Either pointer may be NULL. Returns 1 found, 0 not found
 * (outputs NULL/0), -1 error. */
int state_run_source(struct state *st, int64_t run_id, char **text, long *pid)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_SOURCE];
	int rc, ret;

	if (text)
		*text = NULL;
	if (pid)
		*pid = 0;
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK) {
		state_fail(st, "cannot read the source of run %lld", (long long)run_id);
		stmt_done(s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (text)
			*text = column_strdup(s, 0);
		if (pid)
			*pid = (long)sqlite3_column_int64(s, 1);   /* NULL reads 0 */
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		state_fail(st, "cannot read the source of run %lld", (long long)run_id);
		ret = -1;
	}
	stmt_done(s);
	return ret;
}

/* Records the pipeline text (NULL stores NULL) and pid (0 for none) of a
 * run. Returns 0, or -1 on a database error or when there is no such run. */
int state_run_set_source(struct state *st, int64_t run_id, const char *text, long pid)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_SET_SOURCE];
	char what[64];
	bool bad;

	snprintf(what, sizeof(what), "cannot record the source of run %lld",
	         (long long)run_id);
	bad = sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	      bind_text(s, 2, text) != SQLITE_OK ||
	      bind_pid(s, 3, pid) != SQLITE_OK;
	return run_update(st, s, bad, what);
}

/* Marks a run running again for a resume: status running, finished and
 * error NULL, pid set (0 for none). Returns 0, or -1 on a database error or
 * when there is no such run. */
int state_run_reopen(struct state *st, int64_t run_id, long pid)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_REOPEN];
	char what[64];
	bool bad;

	snprintf(what, sizeof(what), "cannot reopen run %lld", (long long)run_id);
	bad = sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	      bind_text(s, 2, state_status_name(ST_RUNNING)) != SQLITE_OK ||
	      bind_pid(s, 3, pid) != SQLITE_OK;
	return run_update(st, s, bad, what);
}

/* Replaces the params (JSON text) recorded for a run (a resume with -p).
 * Returns 0, or -1 on a database error or when there is no such run. */
int state_run_set_params(struct state *st, int64_t run_id, const char *params_json)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_SET_PARAMS];
	char what[64];
	bool bad;

	snprintf(what, sizeof(what), "cannot record the params of run %lld", (long long)run_id);
	bad = sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	      bind_text(s, 2, params_json) != SQLITE_OK;
	return run_update(st, s, bad, what);
}

/* Records that run run_id is a dlq replay of run `of`. Returns 0 or -1. */
int state_run_set_replay_of(struct state *st, int64_t run_id, int64_t of)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_SET_REPLAY_OF];
	char what[64];
	bool bad;

	snprintf(what, sizeof(what), "cannot record run %lld as a replay", (long long)run_id);
	bad = sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	      sqlite3_bind_int64(s, 2, of) != SQLITE_OK;
	return run_update(st, s, bad, what);
}

/* The run whose dead letters run run_id replayed: its id, 0 when run_id is
 * no dlq replay (or unknown), -1 on a database error. */
int64_t state_run_replay_of(struct state *st, int64_t run_id)
{
	sqlite3_stmt *s = st->stmt[STMT_RUN_REPLAY_OF];
	int64_t of = 0;
	int rc;

	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK) {
		state_fail(st, "cannot read run %lld", (long long)run_id);
		stmt_done(s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		of = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		state_fail(st, "cannot read run %lld", (long long)run_id);
		of = -1;
	}
	stmt_done(s);
	return of;
}

/* ------------------------------------------------------------------ gc */

/* Reads PRAGMA foreign_keys. Returns 1 on, 0 off, -1 error. */
static int foreign_keys_on(struct state *st)
{
	sqlite3_stmt *s = st->stmt[STMT_FOREIGN_KEYS];
	int ret = -1;

	if (sqlite3_step(s) == SQLITE_ROW)
		ret = sqlite3_column_int(s, 0) != 0;
	else
		state_fail(st, "cannot read PRAGMA foreign_keys");
	stmt_done(s);
	return ret;
}

/* Deletes, in one transaction, the runs whose status is not running and
 * that finished (or, never finished, started) before `before`; their
 * stages, attempts, journal, dead letters and events go with them through
 * ON DELETE CASCADE, so this refuses to run when foreign keys are off. Sets
 * *runs_deleted (0 on error). Does not VACUUM. Returns 0 or -1. */
int state_gc(struct state *st, double before, int64_t *runs_deleted)
{
	sqlite3_stmt *s = st->stmt[STMT_GC];
	int64_t n;
	int fk;

	*runs_deleted = 0;
	if (sqlite3_db_readonly(st->db, "main") == 1) {
		state_failx(st, "cannot delete old runs: state database %s is open read-only",
		            st->path);
		return -1;
	}
	fk = foreign_keys_on(st);
	if (fk < 0)
		return -1;
	if (fk == 0) {
		state_failx(st, "cannot delete old runs: foreign keys are off on state "
		            "database %s", st->path);
		return -1;
	}
	if (state_begin(st) != 0)
		return -1;
	if (sqlite3_bind_double(s, 1, before) != SQLITE_OK ||
	    bind_text(s, 2, state_status_name(ST_RUNNING)) != SQLITE_OK ||
	    bind_text(s, 3, st->scope) != SQLITE_OK) {
		state_fail(st, "cannot delete old runs");
		stmt_done(s);
		state_abort(st);
		return -1;
	}
	if (stmt_exec(st, s, "cannot delete old runs") != 0) {
		state_abort(st);
		return -1;
	}
	/* Rows deleted by the statement itself: cascades are not counted. */
	n = sqlite3_changes(st->db);
	if (state_commit(st) != 0)
		return -1;
	*runs_deleted = n;
	return 0;
}

/* ------------------------------------------------------------------ leases */

/* Reads the lease on resource. Returns 1 found (*out filled, free with
 * lease_row_free), 0 none, -1 error. */
int state_lease_get(struct state *st, const char *resource, struct lease_row *out)
{
	sqlite3_stmt *s = st->stmt[STMT_LEASE_GET];
	int rc, ret;

	memset(out, 0, sizeof(*out));
	if (bind_text(s, 1, resource) != SQLITE_OK) {
		state_fail(st, "cannot read the lease on %s", resource);
		stmt_done(s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->resource = column_strdup(s, 0);
		out->run_id = sqlite3_column_int64(s, 1);   /* NULL reads 0 */
		out->pid = (long)sqlite3_column_int64(s, 2);
		out->pid_start = (long long)sqlite3_column_int64(s, 3);
		out->host = column_strdup(s, 4);
		out->boot = column_strdup(s, 5);
		out->command = column_strdup(s, 6);
		out->acquired = sqlite3_column_double(s, 7);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		state_fail(st, "cannot read the lease on %s", resource);
		ret = -1;
	}
	stmt_done(s);
	return ret;
}

/* Writes l (replacing any lease on l->resource); a run_id of 0 stores NULL.
 * Returns 0 or -1. */
int state_lease_put(struct state *st, const struct lease_row *l)
{
	sqlite3_stmt *s = st->stmt[STMT_LEASE_PUT];

	if (bind_text(s, 1, l->resource) != SQLITE_OK ||
	    (l->run_id > 0 ? sqlite3_bind_int64(s, 2, l->run_id) :
	                     sqlite3_bind_null(s, 2)) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, l->pid) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, l->pid_start) != SQLITE_OK ||
	    bind_text(s, 5, l->host) != SQLITE_OK ||
	    bind_text(s, 6, l->boot) != SQLITE_OK ||
	    bind_text(s, 7, l->command) != SQLITE_OK ||
	    sqlite3_bind_double(s, 8, l->acquired) != SQLITE_OK) {
		state_fail(st, "cannot record the lease on %s", l->resource);
		stmt_done(s);
		return -1;
	}
	return stmt_exec(st, s, "cannot record a lease");
}

/* Deletes every lease held by the process named by owner (pid, pid_start,
 * host, boot; the other fields are ignored): leases another process took
 * over stay. Returns 0 or -1. */
int state_lease_release(struct state *st, const struct lease_row *owner)
{
	sqlite3_stmt *s = st->stmt[STMT_LEASE_RELEASE];

	if (sqlite3_bind_int64(s, 1, owner->pid) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, owner->pid_start) != SQLITE_OK ||
	    bind_text(s, 3, owner->host) != SQLITE_OK ||
	    bind_text(s, 4, owner->boot) != SQLITE_OK) {
		state_fail(st, "cannot release leases");
		stmt_done(s);
		return -1;
	}
	return stmt_exec(st, s, "cannot release leases");
}

/* Frees the strings of a lease row (NULL-safe) and clears it. */
void lease_row_free(struct lease_row *l)
{
	if (!l)
		return;
	free(l->resource);
	free(l->host);
	free(l->boot);
	free(l->command);
	memset(l, 0, sizeof(*l));
}
