/*
 * state_int: what the files of the state database share (state.c: open,
 * migrations, transactions, errors; state_runs.c, state_stages.c,
 * state_attempts.c, state_journal.c: one topic each). Private to
 * src/store/state*.c, which with the SQLite sink are the only files that
 * include sqlite3.h. Each topic file holds its SQL as named constants and
 * a table of them by statement index; state_open prepares them all.
 */
#ifndef PIPECTL_STATE_INT_H
#define PIPECTL_STATE_INT_H

#include <stdbool.h>

#include <sqlite3.h>

#include "base/util.h"
#include "store/state.h"

/* The statements prepared at open, by index, grouped by the file that
 * holds their SQL. */
enum state_stmt {
	/* state.c */
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
	/* state_runs.c */
	STMT_RUN_INSERT,
	STMT_RUN_FINISH,
	STMT_RUN_GET,
	STMT_RUN_LATEST,
	STMT_RUNS_LIST,
	STMT_RUN_SOURCE,
	STMT_RUN_SET_SOURCE,
	STMT_RUN_REOPEN,
	STMT_RUN_SET_PARAMS,
	STMT_RUN_SET_REPLAY_OF,
	STMT_RUN_REPLAY_OF,
	STMT_GC,
	STMT_FOREIGN_KEYS,
	STMT_LEASE_GET,
	STMT_LEASE_PUT,
	STMT_LEASE_RELEASE,
	/* state_stages.c */
	STMT_STAGE_INSERT,
	STMT_STAGE_UPDATE,
	STMT_STAGES_LIST,
	STMT_SINK_COLUMNS_PUT,
	STMT_SINK_COLUMNS_GET,
	/* state_attempts.c */
	STMT_ATTEMPT_INSERT,
	STMT_ATTEMPTS_LIST,
	STMT_DLQ_INSERT,
	STMT_DLQ_LIST,
	STMT_DLQ_REPLAYED,
	STMT_EVENT_INSERT,
	STMT_EVENTS_LIST,
	/* state_journal.c */
	STMT_JOURNAL_PUT,
	STMT_JOURNAL_GET,
	STMT_JOURNAL_COUNT,
	STMT_JOURNAL_COUNT_DIGESTS,
	STMT_JOURNAL_SCAN,
	STMT_JOURNAL_GET_ROW,
	STMT_COUNT
};

/* The SQL of each topic file's statements by index (NULL for the others). */
extern const char *const state_runs_sql[STMT_COUNT];
extern const char *const state_stages_sql[STMT_COUNT];
extern const char *const state_attempts_sql[STMT_COUNT];
extern const char *const state_journal_sql[STMT_COUNT];

struct state {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[STMT_COUNT];
	int depth;              /* state_begin nesting; >0 means a transaction is open */
	char *scope;            /* pipeline name lists are limited to; NULL: all */
	char *errmsg;           /* last error, malloc'd; NULL when none yet */
	struct journal_map *jmaps;  /* state_journal.c: lookups by fingerprint */
};

/* Frees the journal lookup maps of st (state_journal.c). */
void state_journal_maps_free(struct state *st);

/* Whether s is a value of enum run_status. */
bool state_status_valid(enum run_status s);

/* Records a failure of the last SQLite call: "<what>: <sqlite message>". */
void state_fail(struct state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Records a failure that SQLite did not report, as given. */
void state_failx(struct state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Ends a state_begin whose work failed (see state.c). */
void state_abort(struct state *st);

/* Makes a prepared statement ready for its next use. */
static inline void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Text is bound SQLITE_STATIC: every statement is reset and its bindings
 * cleared before the public function returns. NULL binds SQL NULL. */
static inline int bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (!v)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* A time of 0 means "not set" and binds NULL. */
static inline int bind_time(sqlite3_stmt *s, int i, double t)
{
	if (t == 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_double(s, i, t);
}

static inline char *column_strdup(sqlite3_stmt *s, int i)
{
	return xstrdup((const char *)sqlite3_column_text(s, i));
}

/* Steps a bound statement that returns no rows, then resets it. Returns 0,
 * or -1 with the message "<what>: <sqlite message>" (what is preformatted). */
static inline int stmt_exec(struct state *st, sqlite3_stmt *s, const char *what)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		state_fail(st, "%s", what);
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

#endif
