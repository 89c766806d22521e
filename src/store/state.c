/*
 * state: the run-state database. The only file that includes sqlite3.h.
 * Every statement is a named SQL constant below, prepared once at open and
 * reset (bindings cleared) after each use; values are always bound. The
 * schema version is PRAGMA user_version and migrations[] upgrades it.
 */
#include "store/state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "base/util.h"

/* ------------------------------------------------------------------ SQL */

static const char SQL_USER_VERSION[] = "PRAGMA user_version";
static const char SQL_JOURNAL_WAL[] = "PRAGMA journal_mode = WAL";
static const char SQL_CONNECTION[] =
	"PRAGMA synchronous = NORMAL;"
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

static const char *const migrations[] = {
	SQL_SCHEMA_V1,
	SQL_SCHEMA_V2,
	SQL_SCHEMA_V3,
	SQL_MIGRATE_SINK_COLUMNS,
	SQL_MIGRATE_WAITS,
	SQL_MIGRATE_LEASE,
	SQL_MIGRATE_JOURNAL_DIGEST,
	SQL_MIGRATE_REPLAY_OF,
};
#define STATE_SCHEMA_VERSION ((int)ARRAY_LEN(migrations))

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_SINK_COLUMNS_PUT[] =
	"INSERT INTO sink_columns (pipeline, stage, tbl, columns, at)"
	" VALUES (?1, ?2, ?3, ?4, ?5)"
	" ON CONFLICT (pipeline, stage, tbl) DO UPDATE SET columns = excluded.columns,"
	" at = excluded.at";
static const char SQL_SINK_COLUMNS_GET[] =
	"SELECT columns FROM sink_columns WHERE pipeline = ?1 AND stage = ?2 AND tbl = ?3";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

static const char SQL_RUN_INSERT[] =
	"INSERT INTO runs (pipeline, path, hash, params, status, started)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id";
static const char SQL_RUN_FINISH[] =
	"UPDATE runs SET status = ?2, error = ?3, finished = ?4 WHERE id = ?1";
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
static const char SQL_STAGES_LIST[] =
	"SELECT stage, kind, status, records_in, records_out, errors, requests,"
	" started, finished, error FROM stage_runs WHERE run_id = ?1 ORDER BY seq";

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

/* v3. A NULL pid is stored for "none". */
static const char SQL_RUN_SOURCE[] =
	"SELECT text, pid FROM runs WHERE id = ?1";
static const char SQL_RUN_SET_SOURCE[] =
	"UPDATE runs SET text = ?2, pid = ?3 WHERE id = ?1";
static const char SQL_RUN_REOPEN[] =
	"UPDATE runs SET status = ?2, finished = NULL, error = NULL, pid = ?3"
	" WHERE id = ?1";
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
/* Deleting a run deletes its rows in every other table (ON DELETE CASCADE). */
/* A run that a running dlq replay replays is kept: the replay marks its
 * dead letters when it ends. */
static const char SQL_GC[] =
	"DELETE FROM runs WHERE status <> ?2 AND COALESCE(finished, started) < ?1"
	" AND (?3 IS NULL OR pipeline = ?3)"
	" AND id NOT IN (SELECT replay_of FROM runs WHERE status = ?2"
	" AND replay_of IS NOT NULL)";
static const char SQL_FOREIGN_KEYS[] = "PRAGMA foreign_keys";
static const char SQL_RUN_SET_REPLAY_OF[] =
	"UPDATE runs SET replay_of = ?2 WHERE id = ?1";
static const char SQL_RUN_REPLAY_OF[] =
	"SELECT COALESCE(replay_of, 0) FROM runs WHERE id = ?1";
static const char SQL_RUN_SET_PARAMS[] =
	"UPDATE runs SET params = ?2 WHERE id = ?1";
static const char SQL_LEASE_GET[] =
	"SELECT resource, run_id, pid, pid_start, host, boot, command, acquired"
	" FROM leases WHERE resource = ?1";
static const char SQL_LEASE_PUT[] =
	"INSERT OR REPLACE INTO leases"
	" (resource, run_id, pid, pid_start, host, boot, command, acquired)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char SQL_LEASE_RELEASE[] =
	"DELETE FROM leases WHERE pid = ?1 AND pid_start = ?2 AND host = ?3 AND boot = ?4";

/* The statements prepared at open, by index. */
enum state_stmt {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_RUN_INSERT,
	STMT_RUN_FINISH,
	STMT_STAGE_INSERT,
	STMT_STAGE_UPDATE,
	STMT_RUN_GET,
	STMT_RUN_LATEST,
	STMT_RUNS_LIST,
	STMT_STAGES_LIST,
	STMT_ATTEMPT_INSERT,
	STMT_ATTEMPTS_LIST,
	STMT_DLQ_INSERT,
	STMT_DLQ_LIST,
	STMT_DLQ_REPLAYED,
	STMT_EVENT_INSERT,
	STMT_EVENTS_LIST,
	STMT_RUN_SOURCE,
	STMT_RUN_SET_SOURCE,
	STMT_RUN_REOPEN,
	STMT_JOURNAL_PUT,
	STMT_JOURNAL_GET,
	STMT_JOURNAL_COUNT,
	STMT_JOURNAL_COUNT_DIGESTS,
	STMT_GC,
	STMT_FOREIGN_KEYS,
	STMT_SINK_COLUMNS_PUT,
	STMT_SINK_COLUMNS_GET,
	STMT_RUN_SET_PARAMS,
	STMT_LEASE_GET,
	STMT_LEASE_PUT,
	STMT_LEASE_RELEASE,
	STMT_RUN_SET_REPLAY_OF,
	STMT_RUN_REPLAY_OF,
	STMT_COUNT
};

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_BEGIN] = SQL_BEGIN,
	[STMT_COMMIT] = SQL_COMMIT,
	[STMT_ROLLBACK] = SQL_ROLLBACK,
	[STMT_RUN_INSERT] = SQL_RUN_INSERT,
	[STMT_RUN_FINISH] = SQL_RUN_FINISH,
	[STMT_STAGE_INSERT] = SQL_STAGE_INSERT,
	[STMT_STAGE_UPDATE] = SQL_STAGE_UPDATE,
	[STMT_RUN_GET] = SQL_RUN_GET,
	[STMT_RUN_LATEST] = SQL_RUN_LATEST,
	[STMT_RUNS_LIST] = SQL_RUNS_LIST,
	[STMT_STAGES_LIST] = SQL_STAGES_LIST,
	[STMT_ATTEMPT_INSERT] = SQL_ATTEMPT_INSERT,
	[STMT_ATTEMPTS_LIST] = SQL_ATTEMPTS_LIST,
	[STMT_DLQ_INSERT] = SQL_DLQ_INSERT,
	[STMT_DLQ_LIST] = SQL_DLQ_LIST,
	[STMT_DLQ_REPLAYED] = SQL_DLQ_REPLAYED,
	[STMT_EVENT_INSERT] = SQL_EVENT_INSERT,
	[STMT_EVENTS_LIST] = SQL_EVENTS_LIST,
	[STMT_RUN_SOURCE] = SQL_RUN_SOURCE,
	[STMT_RUN_SET_SOURCE] = SQL_RUN_SET_SOURCE,
	[STMT_RUN_REOPEN] = SQL_RUN_REOPEN,
	[STMT_JOURNAL_PUT] = SQL_JOURNAL_PUT,
	[STMT_JOURNAL_GET] = SQL_JOURNAL_GET,
	[STMT_JOURNAL_COUNT] = SQL_JOURNAL_COUNT,
	[STMT_JOURNAL_COUNT_DIGESTS] = SQL_JOURNAL_COUNT_DIGESTS,
	[STMT_GC] = SQL_GC,
	[STMT_FOREIGN_KEYS] = SQL_FOREIGN_KEYS,
	[STMT_SINK_COLUMNS_PUT] = SQL_SINK_COLUMNS_PUT,
	[STMT_SINK_COLUMNS_GET] = SQL_SINK_COLUMNS_GET,
	[STMT_RUN_SET_PARAMS] = SQL_RUN_SET_PARAMS,
	[STMT_LEASE_GET] = SQL_LEASE_GET,
	[STMT_LEASE_PUT] = SQL_LEASE_PUT,
	[STMT_LEASE_RELEASE] = SQL_LEASE_RELEASE,
	[STMT_RUN_SET_REPLAY_OF] = SQL_RUN_SET_REPLAY_OF,
	[STMT_RUN_REPLAY_OF] = SQL_RUN_REPLAY_OF,
};

/* ------------------------------------------------------------------ handle */

struct state {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[STMT_COUNT];
	int depth;              /* state_begin nesting; >0 means a transaction is open */
	char *scope;            /* pipeline name lists are limited to; NULL: all */
	char *errmsg;           /* last error, malloc'd; NULL when none yet */
};

static const char *const status_names[] = {
	[ST_PENDING] = "pending",
	[ST_RUNNING] = "running",
	[ST_SUCCEEDED] = "succeeded",
	[ST_FAILED] = "failed",
	[ST_CANCELLED] = "cancelled",
	[ST_INTERRUPTED] = "interrupted",
};

static bool status_valid(enum run_status s)
{
	return (int)s >= 0 && (size_t)s < ARRAY_LEN(status_names);
}

/* The name of a status (static); "unknown" for a value outside the enum. */
const char *state_status_name(enum run_status s)
{
	return status_valid(s) ? status_names[s] : "unknown";
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
static void state_fail(struct state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void state_fail(struct state *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	state_vfail(st, true, fmt, ap);
	va_end(ap);
}

/* Records a failure that SQLite did not report, as given. */
static void state_failx(struct state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void state_failx(struct state *st, const char *fmt, ...)
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

/* Makes a prepared statement ready for its next use. */
static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Text is bound SQLITE_STATIC: every statement is reset and its bindings
 * cleared before the public function returns. NULL binds SQL NULL. */
static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (!v)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* A time of 0 means "not set" and binds NULL. */
static int bind_time(sqlite3_stmt *s, int i, double t)
{
	if (t == 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_double(s, i, t);
}

static char *column_strdup(sqlite3_stmt *s, int i)
{
	return xstrdup((const char *)sqlite3_column_text(s, i));
}

/* Steps a bound statement that returns no rows, then resets it. Returns 0,
 * or -1 with the message "<what>: <sqlite message>" (what is preformatted). */
static int stmt_exec(struct state *st, sqlite3_stmt *s, const char *what)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		state_fail(st, "%s", what);
	stmt_done(s);
	return rc == SQLITE_DONE ? 0 : -1;
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

static int prepare_all(struct state *st)
{
	int i;

	for (i = 0; i < STMT_COUNT; i++) {
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
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
	sqlite3_close(st->db);
	free(st->path);
	free(st->errmsg);
	free(st->scope);
	free(st);
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

/* ------------------------------------------------------------------ writes */

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
	if (!status_valid(status)) {
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

	if (!status_valid(status)) {
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

/* ------------------------------------------------------------------ reads */

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

/* ------------------------------------------------------------------ v2: attempts, dlq, events */

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

/* ------------------------------------------------------------------ v3: resume */

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

/* Ends a state_begin whose work failed: the outermost one rolls back, an
 * inner one leaves the caller's transaction open (SQLite has already undone
 * the failed statement). Keeps the handle's message. */
static void state_abort(struct state *st)
{
	if (st->depth == 0 || --st->depth > 0)
		return;
	if (!sqlite3_get_autocommit(st->db)) {
		sqlite3_step(st->stmt[STMT_ROLLBACK]);
		stmt_done(st->stmt[STMT_ROLLBACK]);
	}
}

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

/* Limits the latest run (state_run_get with 0), state_runs_list,
 * state_dlq_list and state_gc to the runs of pipeline (copied; NULL lifts
 * the limit). A run read by its id is not limited. */
void state_set_scope(struct state *st, const char *pipeline)
{
	free(st->scope);
	st->scope = xstrdup(pipeline);
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
