/*
 * state_stages: the stage rows of a run (stage_runs), and the columns a
 * SQLite sink's table had when its stage last succeeded (sink_columns).
 */
#include "store/state_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

/* seq: creation order within the run. */
static const char SQL_STAGE_INSERT[] =
	"INSERT INTO stage_runs (run_id, stage, kind, seq, status)"
	" VALUES (?1, ?2, ?3,"
	"  (SELECT COALESCE(MAX(seq), 0) + 1 FROM stage_runs WHERE run_id = ?1),"
	"  ?4)";
/* A NULL parameter keeps the stored value. */
static const char SQL_STAGE_UPDATE[] =
	"UPDATE stage_runs SET status = ?3,"
	" records_in = COALESCE(?4, records_in),"
	" records_out = COALESCE(?5, records_out),"
	" errors = COALESCE(?6, errors),"
	" requests = COALESCE(?7, requests),"
	" started = COALESCE(?8, started),"
	" finished = COALESCE(?9, finished),"
	" error = COALESCE(?10, error)"
	" WHERE run_id = ?1 AND stage = ?2";
static const char SQL_STAGES_LIST[] =
	"SELECT stage, kind, status, records_in, records_out, errors, requests,"
	" started, finished, error FROM stage_runs WHERE run_id = ?1 ORDER BY seq";
static const char SQL_SINK_COLUMNS_PUT[] =
	"INSERT INTO sink_columns (pipeline, stage, tbl, columns, at)"
	" VALUES (?1, ?2, ?3, ?4, ?5)"
	" ON CONFLICT (pipeline, stage, tbl) DO UPDATE SET columns = excluded.columns,"
	" at = excluded.at";
static const char SQL_SINK_COLUMNS_GET[] =
	"SELECT columns FROM sink_columns WHERE pipeline = ?1 AND stage = ?2 AND tbl = ?3";

const char *const state_stages_sql[STMT_COUNT] = {
	[STMT_STAGE_INSERT] = SQL_STAGE_INSERT,
	[STMT_STAGE_UPDATE] = SQL_STAGE_UPDATE,
	[STMT_STAGES_LIST] = SQL_STAGES_LIST,
	[STMT_SINK_COLUMNS_PUT] = SQL_SINK_COLUMNS_PUT,
	[STMT_SINK_COLUMNS_GET] = SQL_SINK_COLUMNS_GET,
};

/* ------------------------------------------------------------------ stages */

/* Inserts a pending stage row after the run's other stages. Returns 0 or -1
 * (also when the run does not exist or the stage is already recorded). */
int state_stage_create(struct state *st, int64_t run_id, const char *stage,
                       const char *kind)
{
	sqlite3_stmt *s = st->stmt[STMT_STAGE_INSERT];
	char *what = xasprintf("cannot record stage '%s' of run %lld", stage,
	                       (long long)run_id);
	int rc;

	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK ||
	    bind_text(s, 2, stage) != SQLITE_OK ||
	    bind_text(s, 3, kind) != SQLITE_OK ||
	    bind_text(s, 4, state_status_name(ST_PENDING)) != SQLITE_OK) {
		state_fail(st, "%s", what);
		stmt_done(s);
		rc = -1;
	} else {
		rc = stmt_exec(st, s, what);
	}
	free(what);
	return rc;
}

/* Updates a stage row. started/finished of 0 and error NULL keep the stored
 * values; stats NULL keeps the stored counters. Returns 0, or -1 on a
 * database error or when there is no such stage row. */
int state_stage_update(struct state *st, int64_t run_id, const char *stage,
                       enum run_status status, const struct stage_stats *stats,
                       double started, double finished, const char *error)
{
	sqlite3_stmt *s = st->stmt[STMT_STAGE_UPDATE];
	char *what = xasprintf("cannot update stage '%s' of run %lld", stage,
	                       (long long)run_id);
	int rc = -1, i;

	if (!state_status_valid(status)) {
		state_failx(st, "%s: invalid status %d", what, (int)status);
		goto out;
	}
	rc = sqlite3_bind_int64(s, 1, run_id);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, state_status_name(status));
	if (rc == SQLITE_OK && stats) {
		const int64_t v[4] = {
			stats->records_in, stats->records_out, stats->errors, stats->requests
		};

		for (i = 0; i < 4 && rc == SQLITE_OK; i++)
			rc = sqlite3_bind_int64(s, 4 + i, v[i]);
	}
	if (rc == SQLITE_OK)
		rc = bind_time(s, 8, started);
	if (rc == SQLITE_OK)
		rc = bind_time(s, 9, finished);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 10, error);
	if (rc != SQLITE_OK) {
		state_fail(st, "%s", what);
		stmt_done(s);
		rc = -1;
		goto out;
	}
	rc = stmt_exec(st, s, what);
	if (rc == 0 && sqlite3_changes(st->db) == 0) {
		state_failx(st, "%s: no such stage", what);
		rc = -1;
	}
out:
	free(what);
	return rc;
}

/* Lists a run's stages in creation order. Returns the count and a malloc'd
 * array in *out (free with stage_rows_free; NULL when the count is 0 or on
 * error), or -1. A run without stages, or no such run, gives 0. */
int state_stages_list(struct state *st, int64_t run_id, struct stage_row **out)
{
	sqlite3_stmt *s = st->stmt[STMT_STAGES_LIST];
	struct stage_row *rows = NULL;
	size_t cap = 0;
	int n = 0, rc;

	*out = NULL;
	if (sqlite3_bind_int64(s, 1, run_id) != SQLITE_OK) {
		state_fail(st, "cannot list stages of run %lld", (long long)run_id);
		stmt_done(s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct stage_row *r;
		const char *status = (const char *)sqlite3_column_text(s, 2);
		int code = state_status_parse(status);

		if (code < 0) {
			state_failx(st, "stage '%s' of run %lld has an unknown status '%s'",
			            (const char *)sqlite3_column_text(s, 0), (long long)run_id,
			            status ? status : "(null)");
			break;
		}
		xgrow(&rows, &cap, (size_t)n + 1, sizeof(*rows));
		r = &rows[n++];
		memset(r, 0, sizeof(*r));
		r->stage = column_strdup(s, 0);
		r->kind = column_strdup(s, 1);
		r->status = (enum run_status)code;
		r->stats.records_in = sqlite3_column_int64(s, 3);
		r->stats.records_out = sqlite3_column_int64(s, 4);
		r->stats.errors = sqlite3_column_int64(s, 5);
		r->stats.requests = sqlite3_column_int64(s, 6);
		r->started = sqlite3_column_double(s, 7);
		r->finished = sqlite3_column_double(s, 8);
		r->error = column_strdup(s, 9);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		state_fail(st, "cannot list stages of run %lld", (long long)run_id);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		stage_rows_free(rows, n);
		return -1;
	}
	*out = rows;
	return n;
}

/* Frees n rows and the array (NULL-safe). */
void stage_rows_free(struct stage_row *rows, int n)
{
	int i;

	if (!rows)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].stage);
		free(rows[i].kind);
		free(rows[i].error);
	}
	free(rows);
}

/* ------------------------------------------------------------------ sink columns */

/* Records the columns (JSON array text) of a sink's table, replacing what
 * was recorded for (pipeline, stage, table). Returns 0 or -1. */
int state_sink_columns_put(struct state *st, const char *pipeline, const char *stage,
                           const char *table, const char *columns, double at)
{
	sqlite3_stmt *s = st->stmt[STMT_SINK_COLUMNS_PUT];
	char *what = xasprintf("cannot record the columns of table '%s' of stage '%s'",
	                       table, stage);
	int rc;

	if (bind_text(s, 1, pipeline) != SQLITE_OK || bind_text(s, 2, stage) != SQLITE_OK ||
	    bind_text(s, 3, table) != SQLITE_OK || bind_text(s, 4, columns) != SQLITE_OK ||
	    sqlite3_bind_double(s, 5, at) != SQLITE_OK) {
		state_fail(st, "%s", what);
		stmt_done(s);
		free(what);
		return -1;
	}
	rc = stmt_exec(st, s, what);
	free(what);
	return rc;
}

/* The columns recorded for (pipeline, stage, table): 1 with *columns set
 * (malloc'd JSON array text), 0 when none, -1 on an error. */
int state_sink_columns_get(struct state *st, const char *pipeline, const char *stage,
                           const char *table, char **columns)
{
	sqlite3_stmt *s = st->stmt[STMT_SINK_COLUMNS_GET];
	int rc, ret;

	*columns = NULL;
	rc = bind_text(s, 1, pipeline);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, stage);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, table);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*columns = xstrdup((const char *)sqlite3_column_text(s, 0));
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		state_fail(st, "cannot read the columns of table '%s' of stage '%s'", table, stage);
		ret = -1;
	}
	stmt_done(s);
	return ret;
}
