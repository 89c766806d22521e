/*
 * state: the run-state database: open, migrations, transactions, errors.
 * The tables' own statements are in a file per topic (state_runs.c,
 * state_stages.c, state_attempts.c, state_journal.c; see state_int.h).
 * Every statement is a named SQL constant, prepared once at open and reset
 * (bindings cleared) after each use; values are always bound. The schema
 * version is PRAGMA user_version and migrations[] upgrades it.
 */
#include "store/state_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

static const char SQL_USER_VERSION[] = "PRAGMA user_version";
static const char SQL_JOURNAL_WAL[] = "PRAGMA journal_mode = WAL";
/* A checkpoint copies every page the WAL holds back into the database (and
 * fsyncs): pages rewritten by many group commits (the last pages of the
 * journal and attempts) are copied once per checkpoint, so fewer, larger
 * checkpoints copy less. The run's writes append, so a small page cache
 * serves them (the default is 2 MB of the process's memory). */
static const char SQL_CONNECTION[] =
	"PRAGMA synchronous = NORMAL;"
	"PRAGMA wal_autocheckpoint = 8192;"
	"PRAGMA cache_size = -512;"
	"PRAGMA foreign_keys = ON;";

/*
 * Schema steps. Step i takes the database from version i to i + 1 and must
 * end by setting user_version to i + 1 (PRAGMA values cannot be bound, so
 * the number is written here; state_open checks it). Append new steps only;
 * never edit a released one.
 */
static const char SQL_SCHEMA_V1[] =
	"CREATE TABLE runs ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" pipeline TEXT NOT NULL,"
	" path TEXT NOT NULL,"
	" hash TEXT NOT NULL,"
	" params TEXT NOT NULL,"
	" status TEXT NOT NULL,"
	" started REAL NOT NULL,"
	" finished REAL,"
	" error TEXT);"
	"CREATE TABLE stage_runs ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL,"
	" kind TEXT NOT NULL,"
	" seq INTEGER NOT NULL,"
	" status TEXT NOT NULL,"
	" records_in INTEGER NOT NULL DEFAULT 0,"
	" records_out INTEGER NOT NULL DEFAULT 0,"
	" errors INTEGER NOT NULL DEFAULT 0,"
	" requests INTEGER NOT NULL DEFAULT 0,"
	" started REAL,"
	" finished REAL,"
	" error TEXT,"
	" PRIMARY KEY (run_id, stage));"
	"PRAGMA user_version = 1;";

/* v2: HTTP attempts, dead letters and events. attempts and events have no
 * key of their own; their rowid gives insertion order. */
static const char SQL_SCHEMA_V2[] =
	"CREATE TABLE attempts ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL,"
	" fingerprint TEXT NOT NULL,"
	" method TEXT NOT NULL,"
	" url TEXT NOT NULL,"
	" attempt INTEGER NOT NULL,"
	" http_status INTEGER,"
	" error TEXT,"
	" started REAL NOT NULL,"
	" duration REAL NOT NULL,"
	" wait REAL NOT NULL DEFAULT 0);"
	"CREATE INDEX attempts_run_stage ON attempts (run_id, stage);"
	"CREATE TABLE dlq ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL,"
	" payload TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" attempts TEXT NOT NULL DEFAULT '[]',"
	" created REAL NOT NULL,"
	" replayed INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX dlq_run_stage ON dlq (run_id, stage);"
	"CREATE TABLE events ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT,"
	" kind TEXT NOT NULL,"
	" message TEXT NOT NULL,"
	" at REAL NOT NULL);"
	"CREATE INDEX events_run ON events (run_id);"
	"PRAGMA user_version = 2;";

/* v3: resume. runs gains the pipeline text and the pid running it; journal
 * keeps successful responses. Its key is the lookup, so the table is
 * WITHOUT ROWID and the key's run_id prefix serves the cascade. */
static const char SQL_SCHEMA_V3[] =
	"ALTER TABLE runs ADD COLUMN text TEXT;"
	"ALTER TABLE runs ADD COLUMN pid INTEGER;"
	"CREATE TABLE journal ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL,"
	" fingerprint TEXT NOT NULL,"
	" status INTEGER NOT NULL,"
	" headers TEXT NOT NULL DEFAULT '{}',"
	" body BLOB NOT NULL,"
	" at REAL NOT NULL,"
	" PRIMARY KEY (run_id, stage, fingerprint)) WITHOUT ROWID;"
	"PRAGMA user_version = 3;";

/* sink_columns: the columns a SQLite sink's table had when the stage last
 * succeeded, per pipeline, stage and table, so that a later run that
 * receives no records can still create the table (at a path of its own,
 * say). Not tied to a run: gc leaves it. */
static const char SQL_MIGRATE_SINK_COLUMNS[] =
	"CREATE TABLE sink_columns ("
	" pipeline TEXT NOT NULL,"
	" stage TEXT NOT NULL,"
	" tbl TEXT NOT NULL,"
	" columns TEXT NOT NULL,"
	" at REAL NOT NULL,"
	" PRIMARY KEY (pipeline, stage, tbl)) WITHOUT ROWID;"
	"PRAGMA user_version = 4;";

/* Waits by reason: attempts.wait stays the total before the attempt, and
 * these columns split it (rows recorded before this step keep 0 in each). */
static const char SQL_MIGRATE_WAITS[] =
	"ALTER TABLE attempts ADD COLUMN wait_backoff REAL NOT NULL DEFAULT 0;"
	"ALTER TABLE attempts ADD COLUMN wait_retry_after REAL NOT NULL DEFAULT 0;"
	"ALTER TABLE attempts ADD COLUMN wait_rate REAL NOT NULL DEFAULT 0;"
	"ALTER TABLE attempts ADD COLUMN wait_concurrency REAL NOT NULL DEFAULT 0;"
	"ALTER TABLE attempts ADD COLUMN wait_breaker REAL NOT NULL DEFAULT 0;"
	"PRAGMA user_version = 5;";

/* Leases: which process owns a run, or a file a run writes. resource is
 * "run:ID" or "file:/absolute/path"; a process is named by its pid, its
 * start time (clock ticks after boot, /proc/PID/stat) and the host and boot
 * it runs on, so a reused pid or a zombie is not taken for the owner. */
static const char SQL_MIGRATE_LEASE[] =
	"CREATE TABLE leases ("
	" resource TEXT PRIMARY KEY,"
	" run_id INTEGER REFERENCES runs(id) ON DELETE CASCADE,"
	" pid INTEGER NOT NULL,"
	" pid_start INTEGER NOT NULL,"
	" host TEXT NOT NULL,"
	" boot TEXT NOT NULL,"
	" command TEXT NOT NULL,"
	" acquired REAL NOT NULL);"
	"PRAGMA user_version = 6;";

/* Journal entries of large bodies: the body is not stored, only its
 * SHA-256 (digest) and size; a resume fetches it again. */
static const char SQL_MIGRATE_JOURNAL_DIGEST[] =
	"ALTER TABLE journal ADD COLUMN digest TEXT;"
	"ALTER TABLE journal ADD COLUMN size INTEGER;"
	"PRAGMA user_version = 7;";

/* A dlq replay's run names the run whose dead letters it sends again: a
 * resume cannot redo it (its payloads are the dead letters). */
static const char SQL_MIGRATE_REPLAY_OF[] =
	"ALTER TABLE runs ADD COLUMN replay_of INTEGER;"
	"PRAGMA user_version = 8;";

/* The journal as a rowid table, indexed by (run_id, stage) only. In a
 * WITHOUT ROWID table keyed by fingerprint, a hash, each row (headers and
 * body, hundreds of bytes) sits at a random place of the key's B-tree, and
 * so would each entry of a unique index on the fingerprint: every group
 * commit of a busy fetch dirtied about one random page per response, and
 * the WAL took a page per row. Now rows and index entries append. Lookups
 * by fingerprint go through a map that state_journal.c builds in memory
 * when a resumed run first asks; of entries with one key the first (lowest
 * rowid) counts. */
static const char SQL_MIGRATE_JOURNAL_ROWID[] =
	"CREATE TABLE journal_rowid ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL,"
	" fingerprint TEXT NOT NULL,"
	" status INTEGER NOT NULL,"
	" headers TEXT NOT NULL DEFAULT '{}',"
	" body BLOB NOT NULL,"
	" at REAL NOT NULL,"
	" digest TEXT,"
	" size INTEGER);"
	"INSERT INTO journal_rowid (run_id, stage, fingerprint, status, headers, body, at,"
	" digest, size) SELECT run_id, stage, fingerprint, status, headers, body, at, digest,"
	" size FROM journal;"
	"DROP TABLE journal;"
	"ALTER TABLE journal_rowid RENAME TO journal;"
	"CREATE INDEX journal_run_stage ON journal (run_id, stage);"
	"PRAGMA user_version = 9;";

/* The stage rows of a run in creation order: a new row's seq (the largest
 * so far plus one) is found in the index instead of by reading every row of
 * the run, which made recording a run of many stages quadratic. */
static const char SQL_MIGRATE_STAGE_SEQ[] =
	"CREATE INDEX IF NOT EXISTS stage_runs_seq ON stage_runs (run_id, seq);"
	"PRAGMA user_version = 10;";

static const char *const migrations[] = {
	SQL_SCHEMA_V1,
	SQL_SCHEMA_V2,
	SQL_SCHEMA_V3,
	SQL_MIGRATE_SINK_COLUMNS,
	SQL_MIGRATE_WAITS,
	SQL_MIGRATE_LEASE,
	SQL_MIGRATE_JOURNAL_DIGEST,
	SQL_MIGRATE_REPLAY_OF,
	SQL_MIGRATE_JOURNAL_ROWID,
	SQL_MIGRATE_STAGE_SEQ,
};
#define STATE_SCHEMA_VERSION ((int)ARRAY_LEN(migrations))

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

/* The statements of this file; each topic file has its own table. */
static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_BEGIN] = SQL_BEGIN,
	[STMT_COMMIT] = SQL_COMMIT,
	[STMT_ROLLBACK] = SQL_ROLLBACK,
};

/* ------------------------------------------------------------------ handle */

static const char *const status_names[] = {
	[ST_PENDING] = "pending",
	[ST_RUNNING] = "running",
	[ST_SUCCEEDED] = "succeeded",
	[ST_FAILED] = "failed",
	[ST_CANCELLED] = "cancelled",
	[ST_INTERRUPTED] = "interrupted",
};

/* Whether s is a value of the enum. */
bool state_status_valid(enum run_status s)
{
	return (int)s >= 0 && (size_t)s < ARRAY_LEN(status_names);
}

/* The name of a status (static); "unknown" for a value outside the enum. */
const char *state_status_name(enum run_status s)
{
	return state_status_valid(s) ? status_names[s] : "unknown";
}

/* The status for a name, or -1 for NULL or an unknown name. */
int state_status_parse(const char *name)
{
	size_t i;

	if (!name)
		return -1;
	for (i = 0; i < ARRAY_LEN(status_names); i++)
		if (strcmp(name, status_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Replaces the handle's message with the formatted text, followed by
 * ": <sqlite message>" when with_db. */
static void state_vfail(struct state *st, bool with_db, const char *fmt, va_list ap)
	PRINTF_LIKE(3, 0);
static void state_vfail(struct state *st, bool with_db, const char *fmt, va_list ap)
{
	char *what = xvasprintf(fmt, ap);

	free(st->errmsg);
	if (with_db && st->db) {
		st->errmsg = xasprintf("%s: %s", what, sqlite3_errmsg(st->db));
		free(what);
	} else {
		st->errmsg = what;
	}
}

/* Records a failure of the last SQLite call: "<what>: <sqlite message>". */
void state_fail(struct state *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	state_vfail(st, true, fmt, ap);
	va_end(ap);
}

/* Records a failure that SQLite did not report, as given. */
void state_failx(struct state *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	state_vfail(st, false, fmt, ap);
	va_end(ap);
}

/* The last error of this handle (borrowed; valid until the next call). */
const char *state_errmsg(struct state *st)
{
	if (!st || !st->errmsg)
		return "no error";
	return st->errmsg;
}

/* ------------------------------------------------------------------ open */

/* Reads PRAGMA user_version into *version. Returns 0 or -1. */
static int read_user_version(struct state *st, int *version)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(st->db, SQL_USER_VERSION, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*version = sqlite3_column_int(s, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK) {
		if (rc == SQLITE_NOTADB)
			state_failx(st, "state database %s is not a SQLite database", st->path);
		else
			state_fail(st, "cannot read state database %s", st->path);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : -1;
}

static int check_not_newer(struct state *st, int version)
{
	if (version <= STATE_SCHEMA_VERSION)
		return 0;
	state_failx(st, "state database %s has schema version %d; this pipectl supports up to %d",
	            st->path, version, STATE_SCHEMA_VERSION);
	return -1;
}

/* Applies the missing migration steps in one transaction. The version is
 * read again under the write lock, so two processes opening a new database
 * at the same time migrate it once. Returns 0 or -1. */
static int migrate(struct state *st)
{
	int version, i;

	if (sqlite3_exec(st->db, SQL_BEGIN, NULL, NULL, NULL) != SQLITE_OK) {
		state_fail(st, "cannot migrate state database %s", st->path);
		return -1;
	}
	if (read_user_version(st, &version) != 0 || check_not_newer(st, version) != 0)
		goto fail;
	for (i = version; i < STATE_SCHEMA_VERSION; i++) {
		int now;

		if (sqlite3_exec(st->db, migrations[i], NULL, NULL, NULL) != SQLITE_OK) {
			state_fail(st, "cannot migrate state database %s to schema version %d",
			           st->path, i + 1);
			goto fail;
		}
		if (read_user_version(st, &now) != 0)
			goto fail;
		if (now != i + 1) {
			state_failx(st, "migration to schema version %d left user_version at %d",
			            i + 1, now);
			goto fail;
		}
	}
	if (sqlite3_exec(st->db, SQL_COMMIT, NULL, NULL, NULL) != SQLITE_OK) {
		state_fail(st, "cannot migrate state database %s", st->path);
		goto fail;
	}
	return 0;
fail:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, SQL_ROLLBACK, NULL, NULL, NULL);
	return -1;
}

/* Connection settings for a writable handle. WAL is asked for and not
 * insisted on: a file system without shared memory keeps another mode. */
static int configure(struct state *st)
{
	if (sqlite3_exec(st->db, SQL_JOURNAL_WAL, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, SQL_CONNECTION, NULL, NULL, NULL) != SQLITE_OK) {
		state_fail(st, "cannot configure state database %s", st->path);
		return -1;
	}
	return 0;
}

/* The SQL of every statement, each in the file of its topic. */
static const char *const *const stmt_tables[] = {
	stmt_sql,
	state_runs_sql,
	state_stages_sql,
	state_attempts_sql,
	state_journal_sql,
};

static int prepare_all(struct state *st)
{
	size_t t;
	int i;

	for (i = 0; i < STMT_COUNT; i++) {
		const char *sql = NULL;

		for (t = 0; t < ARRAY_LEN(stmt_tables) && !sql; t++)
			sql = stmt_tables[t][i];
		if (!sql) {
			state_failx(st, "statement %d of state database %s has no SQL", i,
			            st->path);
			return -1;
		}
		if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
		                       &st->stmt[i], NULL) != SQLITE_OK) {
			state_fail(st, "cannot prepare statement on state database %s", st->path);
			return -1;
		}
	}
	return 0;
}

/*
 * Opens the database at path. Unless read_only, creates the file and its
 * parent directories, switches to WAL and migrates to the newest schema.
 * read_only needs an existing database at the current schema version.
 * Returns the handle (free with state_close) or NULL with *err set to a
 * malloc'd message the caller frees.
 */
struct state *state_open(const char *path, bool read_only, char **err)
{
	struct state *st = xcalloc(1, sizeof(*st));
	int flags, version, rc;
	struct stat sb;

	*err = NULL;
	st->path = xstrdup(path);
	if (read_only) {
		if (stat(path, &sb) != 0) {
			if (errno == ENOENT)
				state_failx(st, "no state database at %s", path);
			else
				state_failx(st, "cannot open state database %s: %s", path,
				            strerror(errno));
			goto fail;
		}
		flags = SQLITE_OPEN_READONLY;
	} else {
		char *dir = path_dir(path);

		if (mkdir_p(dir, 0777) != 0) {
			state_failx(st, "cannot create directory %s for state database: %s",
			            dir, strerror(errno));
			free(dir);
			goto fail;
		}
		free(dir);
		flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	}

	rc = sqlite3_open_v2(path, &st->db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (st->db)
			state_fail(st, "cannot open state database %s", path);
		else
			state_failx(st, "cannot open state database %s: %s", path,
			            sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 5000);

	/* Check the version before changing anything in the file. */
	if (read_user_version(st, &version) != 0 || check_not_newer(st, version) != 0)
		goto fail;
	if (read_only) {
		if (version == 0) {
			state_failx(st, "state database %s is empty (schema version 0)", path);
			goto fail;
		}
		if (version < STATE_SCHEMA_VERSION) {
			state_failx(st, "state database %s has schema version %d; open it for "
			            "writing once to upgrade it to %d", path, version,
			            STATE_SCHEMA_VERSION);
			goto fail;
		}
	} else if (configure(st) != 0 || migrate(st) != 0) {
		goto fail;
	}
	if (prepare_all(st) != 0)
		goto fail;
	return st;
fail:
	*err = st->errmsg;
	st->errmsg = NULL;
	state_close(st);
	return NULL;
}

/* Closes the handle (NULL-safe). A transaction still open from state_begin
 * is rolled back. */
void state_close(struct state *st)
{
	int i;

	if (!st)
		return;
	if (st->db && !sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, SQL_ROLLBACK, NULL, NULL, NULL);
	for (i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	state_journal_maps_free(st);
	sqlite3_close(st->db);
	free(st->path);
	free(st->errmsg);
	free(st->scope);
	free(st);
}

/* Limits the latest run (state_run_get with 0), state_runs_list,
 * state_dlq_list and state_gc to the runs of pipeline (copied; NULL lifts
 * the limit). A run read by its id is not limited. */
void state_set_scope(struct state *st, const char *pipeline)
{
	free(st->scope);
	st->scope = xstrdup(pipeline);
}

/* ------------------------------------------------------------------ transactions */

/* Opens a write transaction at depth 0 (BEGIN IMMEDIATE takes the write
 * lock now, so a busy database fails here rather than halfway through).
 * Returns 0 or -1. */
int state_begin(struct state *st)
{
	if (st->depth == 0 &&
	    stmt_exec(st, st->stmt[STMT_BEGIN], "cannot begin transaction") != 0)
		return -1;
	st->depth++;
	return 0;
}

/* Ends one state_begin; the outermost one commits. If the commit fails the
 * transaction is rolled back and the depth returns to 0. Returns 0 or -1. */
int state_commit(struct state *st)
{
	if (st->depth == 0) {
		state_failx(st, "cannot commit: no transaction was begun");
		return -1;
	}
	if (--st->depth > 0)
		return 0;
	if (stmt_exec(st, st->stmt[STMT_COMMIT], "cannot commit transaction") != 0) {
		if (!sqlite3_get_autocommit(st->db)) {
			sqlite3_step(st->stmt[STMT_ROLLBACK]);
			stmt_done(st->stmt[STMT_ROLLBACK]);
		}
		return -1;
	}
	return 0;
}

/* Ends a state_begin whose work failed: the outermost one rolls back, an
 * inner one leaves the caller's transaction open (SQLite has already undone
 * the failed statement). Keeps the handle's message. */
void state_abort(struct state *st)
{
	if (st->depth == 0 || --st->depth > 0)
		return;
	if (!sqlite3_get_autocommit(st->db)) {
		sqlite3_step(st->stmt[STMT_ROLLBACK]);
		stmt_done(st->stmt[STMT_ROLLBACK]);
	}
}
