/*
 * test_state: the run-state database against real files in a temporary
 * directory: round trips, partial updates, ordering, nesting, reopening,
 * and the refusals (missing, not a database, newer schema); schema v2:
 * attempts, dead letters and events, the v1 -> v2 migration and cascades;
 * schema v3: run source and reopen, the response journal (blobs with NUL
 * bytes, first wins), gc with its cascades, and v1/v2 -> v3 migrations.
 * The raw SQLite connection is used only to build and inspect files.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/lease.h"
#include "store/state.h"
#include "tap.h"
#include "base/util.h"

static char *tmpdir;

static bool exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static bool contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

/* Reads n bytes at off from path into out. Returns 0 or -1. */
static int read_at(const char *path, off_t off, unsigned char *out, size_t n)
{
	int fd = open(path, O_RDONLY);
	ssize_t got;

	if (fd < 0)
		return -1;
	got = pread(fd, out, n, off);
	close(fd);
	return got == (ssize_t)n ? 0 : -1;
}

static int write_at(const char *path, off_t off, const unsigned char *in, size_t n)
{
	int fd = open(path, O_WRONLY);
	ssize_t put;

	if (fd < 0)
		return -1;
	put = pwrite(fd, in, n, off);
	close(fd);
	return put == (ssize_t)n ? 0 : -1;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* The newest schema version (migrations[] in state.c). */
#define NEWEST 10

/* PRAGMA user_version lives big-endian at byte 60 of the file header. */
static long header_user_version(const char *path)
{
	unsigned char b[4];

	if (read_at(path, 60, b, 4) != 0)
		return -1;
	return ((long)b[0] << 24) | ((long)b[1] << 16) | ((long)b[2] << 8) | b[3];
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_status_names(void)
{
	int i, all = 1;

	for (i = ST_PENDING; i <= ST_INTERRUPTED; i++)
		if (state_status_parse(state_status_name((enum run_status)i)) != i)
			all = 0;
	ok(all, "status names parse back to their status");
	is_str(state_status_name(ST_SUCCEEDED), "succeeded", "succeeded name");
	is_str(state_status_name(ST_INTERRUPTED), "interrupted", "interrupted name");
	is_int(state_status_parse("cancelled"), ST_CANCELLED, "parse cancelled");
	is_int(state_status_parse("bogus"), -1, "unknown name parses to -1");
	is_int(state_status_parse(NULL), -1, "NULL parses to -1");
}

static void test_runs(struct state *st)
{
	struct run_row r;
	int64_t id = 0;

	ok(state_run_create(st, "demo", "/p/demo.yaml", "abc123", "{\"day\":\"1\"}",
	                    1000.5, &id) == 0, "create run");
	ok(id > 0, "run id assigned (%lld)", (long long)id);

	is_int(state_run_get(st, id, &r), 1, "get run by id");
	is_int(r.id, id, "id round trip");
	is_str(r.pipeline, "demo", "pipeline round trip");
	is_str(r.path, "/p/demo.yaml", "path round trip");
	is_str(r.hash, "abc123", "hash round trip");
	is_str(r.params, "{\"day\":\"1\"}", "params round trip");
	is_int(r.status, ST_RUNNING, "new run is running");
	ok(r.started == 1000.5, "started round trip");
	ok(r.finished == 0, "finished 0 while running");
	ok(r.error == NULL, "no error while running");
	run_row_free(&r);

	ok(state_run_finish(st, id, ST_FAILED, "stage x failed", 1010.25) == 0,
	   "finish run");
	is_int(state_run_get(st, id, &r), 1, "get finished run");
	is_int(r.status, ST_FAILED, "finished status stored");
	ok(r.finished == 1010.25, "finished time stored");
	is_str(r.error, "stage x failed", "error stored");
	run_row_free(&r);
	run_row_free(NULL);

	is_int(state_run_finish(st, id + 1000, ST_SUCCEEDED, NULL, 1.0), -1,
	       "finishing a missing run fails");
	ok(contains(state_errmsg(st), "no such run"), "message says no such run: %s",
	   state_errmsg(st));
	is_int(state_run_finish(st, id, (enum run_status)42, NULL, 1.0), -1,
	       "an invalid status is refused");
}

static void test_stages(struct state *st)
{
	struct stage_stats s1 = { 10, 8, 2, 3 };
	struct stage_row *rows = NULL;
	int64_t id = 0;
	int n;

	ok(state_run_create(st, "stages", "s.yaml", "h", "{}", 2000, &id) == 0,
	   "create run for stages");
	/* Creation order on purpose not alphabetical. */
	ok(state_stage_create(st, id, "zeta", "fetch_http") == 0, "create stage zeta");
	ok(state_stage_create(st, id, "alpha", "transform") == 0, "create stage alpha");
	ok(state_stage_create(st, id, "mid", "load_file") == 0, "create stage mid");

	n = state_stages_list(st, id, &rows);
	is_int(n, 3, "three stages listed");
	if (n == 3) {
		is_str(rows[0].stage, "zeta", "first created first");
		is_str(rows[1].stage, "alpha", "second created second");
		is_str(rows[2].stage, "mid", "third created third");
		is_str(rows[1].kind, "transform", "kind stored");
		is_int(rows[0].status, ST_PENDING, "new stage is pending");
		is_int(rows[0].stats.records_in, 0, "counters start at 0");
		ok(rows[0].started == 0 && rows[0].finished == 0, "times unset");
		ok(rows[0].error == NULL, "no error yet");
	}
	stage_rows_free(rows, n);

	ok(state_stage_update(st, id, "zeta", ST_RUNNING, &s1, 2001, 0, NULL) == 0,
	   "update: running with stats and start");
	s1.records_in = 20;
	ok(state_stage_update(st, id, "zeta", ST_FAILED, &s1, 0, 2005, "boom") == 0,
	   "update: failed with finish and error");
	n = state_stages_list(st, id, &rows);
	is_int(n, 3, "still three stages");
	if (n == 3) {
		is_int(rows[0].status, ST_FAILED, "status updated");
		is_int(rows[0].stats.records_in, 20, "records_in updated");
		is_int(rows[0].stats.records_out, 8, "records_out stored");
		is_int(rows[0].stats.errors, 2, "errors stored");
		is_int(rows[0].stats.requests, 3, "requests stored");
		ok(rows[0].started == 2001, "started kept when updated with 0");
		ok(rows[0].finished == 2005, "finished stored");
		is_str(rows[0].error, "boom", "error stored");
		is_int(rows[1].status, ST_PENDING, "other stage untouched");
	}
	stage_rows_free(rows, n);

	ok(state_stage_update(st, id, "zeta", ST_FAILED, NULL, 0, 0, NULL) == 0,
	   "update with nothing but status");
	n = state_stages_list(st, id, &rows);
	if (n == 3) {
		is_int(rows[0].stats.records_in, 20, "NULL stats keep counters");
		ok(rows[0].started == 2001 && rows[0].finished == 2005,
		   "0 times keep both times");
		is_str(rows[0].error, "boom", "NULL error keeps the error");
	} else {
		ok(0, "stages listed after partial update (got %d)", n);
	}
	stage_rows_free(rows, n);
	stage_rows_free(NULL, 0);

	is_int(state_stage_create(st, id, "zeta", "fetch_http"), -1,
	       "duplicate stage refused");
	ok(contains(state_errmsg(st), "cannot record stage 'zeta'") &&
	   contains(state_errmsg(st), "UNIQUE"), "message names stage and cause: %s",
	   state_errmsg(st));
	is_int(state_stage_create(st, id + 1000, "x", "transform"), -1,
	       "stage of a missing run refused (foreign keys on)");
	ok(contains(state_errmsg(st), "FOREIGN KEY"), "message names the cause: %s",
	   state_errmsg(st));
	is_int(state_stage_update(st, id, "nope", ST_RUNNING, NULL, 0, 0, NULL), -1,
	       "update of a missing stage fails");
	ok(contains(state_errmsg(st), "no such stage"), "message says no such stage: %s",
	   state_errmsg(st));

	rows = (struct stage_row *)&n;   /* must be overwritten */
	is_int(state_stages_list(st, id + 1000, &rows), 0, "no stages for a missing run");
	ok(rows == NULL, "empty list is NULL");
}

static void test_listing(struct state *st)
{
	struct run_row *rows = NULL, r;
	int64_t ids[3];
	int i, n, all, total;

	for (i = 0; i < 3; i++)
		ok(state_run_create(st, "list", "l.yaml", "h", "{}", 3000 + i, &ids[i]) == 0,
		   "create list run %d", i);
	ok(ids[0] < ids[1] && ids[1] < ids[2], "ids increase");

	n = state_runs_list(st, 2, &rows);
	is_int(n, 2, "limit 2 gives 2 runs");
	if (n == 2) {
		is_int(rows[0].id, ids[2], "newest first");
		is_int(rows[1].id, ids[1], "then the one before");
		ok(rows[0].started == 3002, "row filled");
	}
	run_rows_free(rows, n);

	total = state_runs_list(st, 0, &rows);
	ok(total >= 5, "limit 0 lists all (%d)", total);
	all = total > 0;
	for (i = 1; i < total; i++)
		if (rows[i - 1].id <= rows[i].id)
			all = 0;
	ok(all, "all runs in descending id order");
	run_rows_free(rows, total);

	is_int(state_run_get(st, 0, &r), 1, "latest run found with id 0");
	is_int(r.id, ids[2], "latest is the last created");
	run_row_free(&r);

	is_int(state_run_get(st, ids[2] + 1000, &r), 0, "missing run: not found");
	ok(r.pipeline == NULL, "not found leaves the row empty");
	run_row_free(&r);
}

static void test_nesting(struct state *st, const char *path)
{
	struct state *other;
	struct run_row r;
	char *err = NULL;
	int64_t before = 0, id = 0;

	other = state_open(path, false, &err);
	ok(other != NULL, "second handle on the same file: %s", err ? err : "ok");
	free(err);
	if (!other)
		return;
	is_int(state_run_get(other, 0, &r), 1, "second handle sees the latest run");
	before = r.id;
	run_row_free(&r);

	ok(state_begin(st) == 0, "begin (outer)");
	ok(state_begin(st) == 0, "begin (inner)");
	ok(state_run_create(st, "nested", "n.yaml", "h", "{}", 4000, &id) == 0,
	   "write inside the transaction");
	ok(state_stage_create(st, id, "a", "transform") == 0, "stage inside too");
	ok(state_commit(st) == 0, "commit (inner)");
	is_int(state_run_get(other, 0, &r), 1, "other handle reads");
	is_int(r.id, before, "inner commit does not commit");
	run_row_free(&r);
	ok(state_commit(st) == 0, "commit (outer)");
	is_int(state_run_get(other, 0, &r), 1, "other handle reads again");
	is_int(r.id, id, "outer commit makes the run visible");
	run_row_free(&r);

	is_int(state_commit(st), -1, "commit without begin fails");
	ok(contains(state_errmsg(st), "no transaction"), "message: %s", state_errmsg(st));
	state_close(other);
}

static void test_close_rolls_back(const char *path)
{
	struct state *st;
	struct run_row r;
	char *err = NULL;
	int64_t id = 0;

	st = state_open(path, false, &err);
	ok(st != NULL, "open for rollback test");
	free(err);
	if (!st)
		return;
	ok(state_begin(st) == 0 &&
	   state_run_create(st, "lost", "x.yaml", "h", "{}", 5000, &id) == 0,
	   "write in an open transaction");
	state_close(st);

	st = state_open(path, false, &err);
	ok(st != NULL, "reopen after close");
	free(err);
	if (!st)
		return;
	is_int(state_run_get(st, id, &r), 0, "uncommitted run was rolled back on close");
	run_row_free(&r);
	state_close(st);
}

static void test_reopen(const char *path)
{
	struct state *st;
	struct run_row *rows = NULL, r;
	char *err = NULL;
	int n;

	st = state_open(path, false, &err);
	ok(st != NULL, "reopen read-write");
	free(err);
	if (st) {
		is_int(state_run_get(st, 1, &r), 1, "first run still there");
		is_str(r.pipeline, "demo", "its data persisted");
		is_str(r.error, "stage x failed", "its error persisted");
		run_row_free(&r);
		state_close(st);
	}

	st = state_open(path, true, &err);
	ok(st != NULL, "open read-only: %s", err ? err : "ok");
	free(err);
	err = NULL;
	if (!st)
		return;
	n = state_runs_list(st, 0, &rows);
	ok(n >= 6, "read-only handle lists runs (%d)", n);
	run_rows_free(rows, n);
	is_int(state_run_finish(st, 1, ST_SUCCEEDED, NULL, 1.0), -1,
	       "read-only handle refuses writes");
	ok(contains(state_errmsg(st), "cannot finish run 1") &&
	   contains(state_errmsg(st), "readonly"), "message: %s", state_errmsg(st));
	state_close(st);
}

static void test_wal(const char *path)
{
	struct state *st;
	char *err = NULL, *wal = xasprintf("%s-wal", path);
	char *cmd, line[64] = "";
	unsigned char hdr[2] = { 0, 0 };
	int64_t id;
	FILE *p;

	st = state_open(path, false, &err);
	free(err);
	ok(st && state_run_create(st, "wal", "w.yaml", "h", "{}", 6000, &id) == 0,
	   "write for the WAL check");
	ok(exists(wal), "%s exists after a write", wal);
	state_close(st);
	if (read_at(path, 18, hdr, 2) != 0)
		hdr[0] = hdr[1] = 0;
	ok(hdr[0] == 2 && hdr[1] == 2, "file header says WAL (bytes 18-19 = %d %d)",
	   hdr[0], hdr[1]);

	/* And as the sqlite3 command sees it, when it is installed. */
	if (system("sqlite3 -version >/dev/null 2>&1") == 0) {
		cmd = xasprintf("sqlite3 '%s' 'PRAGMA journal_mode'", path);
		p = popen(cmd, "r");
		if (p) {
			if (!fgets(line, sizeof(line), p))
				line[0] = '\0';
			pclose(p);
		}
		line[strcspn(line, "\n")] = '\0';
		is_str(line, "wal", "sqlite3 reports journal_mode wal");
		free(cmd);
	} else {
		ok(1, "sqlite3 reports journal_mode wal # SKIP no sqlite3 command");
	}
	free(wal);
}

static void test_refusals(void)
{
	struct state *st;
	char *err = NULL, *missing, *junk, *newer, *empty, *want, *under;
	unsigned char v99[4] = { 0, 0, 0, 99 };
	const char *text = "this is a text file, certainly not a SQLite database.\n"
	                   "It has a few lines so that it is longer than a header.\n"
	                   "0123456789012345678901234567890123456789012345678901\n";
	char buf[256];
	size_t len = 0;

	/* read_only on a missing file, in a missing directory */
	missing = xasprintf("%s/nowhere/state.db", tmpdir);
	st = state_open(missing, true, &err);
	ok(st == NULL, "read-only open of a missing file fails");
	want = xasprintf("no state database at %s", missing);
	is_str(err, want, "message names the path");
	ok(!exists(missing), "no file was created");
	{
		char *dir = path_dir(missing);

		ok(!exists(dir), "no directory was created");
		free(dir);
	}
	free(want);
	free(err);
	err = NULL;
	state_close(NULL);

	/* a file that is not a database */
	junk = xasprintf("%s/junk.db", tmpdir);
	ok(write_file(junk, text) == 0, "wrote a text file");
	st = state_open(junk, false, &err);
	ok(st == NULL, "opening a text file fails");
	ok(contains(err, junk) && contains(err, "not a SQLite database"),
	   "message names the path: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	st = state_open(junk, true, &err);
	ok(st == NULL && contains(err, "not a SQLite database"),
	   "read-only open of a text file fails too");
	free(err);
	err = NULL;
	{
		char *back = read_file(junk, &len);

		is_str(back, text, "the text file is unchanged");
		free(back);
	}

	/* a directory that cannot be created (parent is a file) */
	under = xasprintf("%s/sub/state.db", junk);
	st = state_open(under, false, &err);
	ok(st == NULL && contains(err, "cannot create directory"),
	   "uncreatable directory fails: %s", err ? err : "(null)");
	free(err);
	err = NULL;

	/* a database from a newer pipectl */
	newer = xasprintf("%s/newer.db", tmpdir);
	st = state_open(newer, false, &err);
	ok(st != NULL, "create a database to age");
	free(err);
	err = NULL;
	state_close(st);
	is_int(header_user_version(newer), NEWEST, "fresh database has the newest user_version");
	ok(write_at(newer, 60, v99, 4) == 0, "set user_version to 99 in the header");
	st = state_open(newer, false, &err);
	ok(st == NULL, "newer schema refused");
	snprintf(buf, sizeof(buf), "state database %s has schema version 99; "
	         "this pipectl supports up to ", newer);
	ok(contains(err, buf), "message: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	st = state_open(newer, true, &err);
	ok(st == NULL && contains(err, "has schema version 99"),
	   "newer schema refused read-only too");
	free(err);
	err = NULL;
	is_int(header_user_version(newer), 99, "refused database left as it was");

	/* an empty file: read-only refuses it, read-write initialises it */
	empty = xasprintf("%s/empty.db", tmpdir);
	ok(write_file(empty, "") == 0, "wrote an empty file");
	st = state_open(empty, true, &err);
	ok(st == NULL && contains(err, "schema version 0"),
	   "read-only open of an uninitialised file fails: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	st = state_open(empty, false, &err);
	ok(st != NULL, "read-write open initialises an empty file");
	free(err);
	state_close(st);
	is_int(header_user_version(empty), NEWEST, "and migrates it to the newest version");

	free(missing);
	free(junk);
	free(under);
	free(newer);
	free(empty);
}


/* ------------------------------------------------------------------ raw SQLite helpers */

/* Runs sql on path through its own connection (foreign keys on). Returns 0
 * or -1 (the message is printed as a TAP comment). */
static int raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	int rc;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		printf("# raw_exec: %s\n", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The integer in the first column of the first row of sql, or -1. */
static long long raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		printf("# raw_int: %s\n", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* The text in the first column of the first row of sql (malloc'd), or NULL. */
static char *raw_text(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char *v = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* ------------------------------------------------------------------ v2 */

static struct attempt_row mk_attempt(int64_t run_id, const char *stage, int n,
                                     long status, const char *error)
{
	struct attempt_row a;

	memset(&a, 0, sizeof(a));
	a.run_id = run_id;
	a.stage = (char *)stage;
	a.fingerprint = (char *)"fp-1";
	a.method = (char *)"GET";
	a.url = (char *)"http://h/x?key=REDACTED";
	a.attempt = n;
	a.http_status = status;
	a.error = (char *)error;
	a.started = 7000 + n;
	a.duration = 0.25 * n;
	a.wait = n > 1 ? 0.5 * (n - 1) : 0;
	return a;
}

static void test_attempts(struct state *st, const char *path)
{
	struct attempt_row a, *rows = NULL;
	int64_t id = 0, other = 0;
	char *sql;
	int n;

	ok(state_run_create(st, "att", "a.yaml", "h", "{}", 7000, &id) == 0 &&
	   state_run_create(st, "att2", "a.yaml", "h", "{}", 7000, &other) == 0,
	   "create runs for attempts");
	/* Interleaved stages, stage names not in alphabetical order. */
	a = mk_attempt(id, "zfetch", 1, 0, "connection refused");
	ok(state_attempt_add(st, &a) == 0, "add attempt: no response");
	a = mk_attempt(id, "afetch", 1, 503, "HTTP 503");
	ok(state_attempt_add(st, &a) == 0, "add attempt of another stage");
	a = mk_attempt(id, "zfetch", 2, 200, NULL);
	a.fingerprint = (char *)"fp-2";
	a.method = (char *)"POST";
	a.wait_backoff = 0.125;
	a.wait_retry_after = 0.25;
	a.wait_rate = 0.0625;
	a.wait_concurrency = 0.03125;
	a.wait_breaker = 0.015625;
	ok(state_attempt_add(st, &a) == 0, "add attempt: success");
	a = mk_attempt(other, "zfetch", 1, 200, NULL);
	ok(state_attempt_add(st, &a) == 0, "add attempt of another run");

	n = state_attempts_list(st, id, NULL, &rows);
	is_int(n, 3, "all stages: three attempts of the run");
	if (n == 3) {
		is_str(rows[0].stage, "zfetch", "insertion order: first");
		is_str(rows[1].stage, "afetch", "insertion order: second");
		is_str(rows[2].stage, "zfetch", "insertion order: third");
		is_int(rows[0].run_id, id, "run_id round trip");
		is_str(rows[0].fingerprint, "fp-1", "fingerprint round trip");
		is_str(rows[2].fingerprint, "fp-2", "fingerprint of the third");
		is_str(rows[2].method, "POST", "method round trip");
		is_str(rows[0].url, "http://h/x?key=REDACTED", "url round trip");
		is_int(rows[2].attempt, 2, "attempt number round trip");
		is_int(rows[0].http_status, 0, "no response reads back 0");
		is_int(rows[1].http_status, 503, "status round trip");
		is_str(rows[0].error, "connection refused", "error round trip");
		ok(rows[2].error == NULL, "NULL error stays NULL");
		ok(rows[2].started == 7002, "started round trip");
		ok(rows[2].duration == 0.5, "duration round trip");
		ok(rows[2].wait == 0.5 && rows[0].wait == 0, "wait round trip");
		ok(rows[2].wait_backoff == 0.125 && rows[2].wait_retry_after == 0.25 &&
		   rows[2].wait_rate == 0.0625 && rows[2].wait_concurrency == 0.03125 &&
		   rows[2].wait_breaker == 0.015625, "waits by reason round trip");
		ok(rows[0].wait_backoff == 0 && rows[0].wait_retry_after == 0 &&
		   rows[0].wait_rate == 0 && rows[0].wait_concurrency == 0 &&
		   rows[0].wait_breaker == 0, "waits by reason default to 0");
	}
	attempt_rows_free(rows, n);

	n = state_attempts_list(st, id, "zfetch", &rows);
	is_int(n, 2, "one stage: its two attempts");
	if (n == 2)
		ok(rows[0].attempt == 1 && rows[1].attempt == 2 &&
		   strcmp(rows[1].stage, "zfetch") == 0, "in order, of that stage only");
	attempt_rows_free(rows, n);
	n = state_attempts_list(st, other, NULL, &rows);
	is_int(n, 1, "the other run has its own attempt only");
	attempt_rows_free(rows, n);
	rows = (struct attempt_row *)&n;   /* must be overwritten */
	is_int(state_attempts_list(st, id, "nope", &rows), 0, "unknown stage: none");
	ok(rows == NULL, "empty list is NULL");
	attempt_rows_free(NULL, 0);

	sql = xasprintf("SELECT COUNT(*) FROM attempts WHERE run_id = %lld AND "
	                "http_status IS NULL", (long long)id);
	is_int(raw_int(path, sql), 1, "status 0 is stored as NULL");
	free(sql);
	sql = xasprintf("SELECT COUNT(*) FROM attempts WHERE run_id = %lld AND "
	                "error IS NULL", (long long)id);
	is_int(raw_int(path, sql), 1, "NULL error is stored as NULL");
	free(sql);

	a = mk_attempt(id + 1000, "zfetch", 1, 200, NULL);
	is_int(state_attempt_add(st, &a), -1, "attempt of a missing run refused");
	ok(contains(state_errmsg(st), "cannot record attempt 1 of stage 'zfetch'") &&
	   contains(state_errmsg(st), "FOREIGN KEY"), "message: %s", state_errmsg(st));
	a = mk_attempt(id, NULL, 1, 200, NULL);
	is_int(state_attempt_add(st, &a), -1, "attempt without a stage refused");
	ok(contains(state_errmsg(st), "NOT NULL"), "message: %s", state_errmsg(st));
	a = mk_attempt(id, "zfetch", 3, 200, NULL);
	ok(state_attempt_add(st, &a) == 0, "statement usable after a failure");
}

static void test_attempt_batch(struct state *st, const char *path)
{
	struct attempt_row a, *rows = NULL;
	int64_t id = 0;
	char *sql;
	int i, n, failed = 0;

	ok(state_run_create(st, "batch", "b.yaml", "h", "{}", 8000, &id) == 0,
	   "create run for the batch");
	ok(state_begin(st) == 0, "begin the batch");
	for (i = 0; i < 10000; i++) {
		a = mk_attempt(id, i % 2 ? "odd" : "even", i + 1, 200, NULL);
		if (state_attempt_add(st, &a) != 0)
			failed++;
	}
	is_int(failed, 0, "10000 inserts inside one transaction");
	ok(state_commit(st) == 0, "commit the batch");
	sql = xasprintf("SELECT COUNT(*) FROM attempts WHERE run_id = %lld",
	                (long long)id);
	is_int(raw_int(path, sql), 10000, "10000 rows stored");
	free(sql);
	n = state_attempts_list(st, id, "odd", &rows);
	is_int(n, 5000, "half of them in stage odd");
	if (n == 5000)
		ok(rows[0].attempt == 2 && rows[4999].attempt == 10000,
		   "listed in insertion order");
	attempt_rows_free(rows, n);
}

static void test_dlq(struct state *st)
{
	struct dlq_row *rows = NULL;
	int64_t r1 = 0, r2 = 0, ids[4] = { 0, 0, 0, 0 };
	int n, all;

	ok(state_run_create(st, "dlq1", "d.yaml", "h", "{}", 9000, &r1) == 0 &&
	   state_run_create(st, "dlq2", "d.yaml", "h", "{}", 9001, &r2) == 0,
	   "create runs for dead letters");
	n = state_dlq_list(st, r1, NULL, &rows);
	is_int(n, 0, "no dead letters yet");
	dlq_rows_free(rows, n);

	ok(state_dlq_add(st, r1, "t", "{\"a\":1}", "bad record",
	                 "[{\"attempt\":1,\"status\":500}]", 9000.5, &ids[0]) == 0,
	   "add dead letter 1");
	ok(state_dlq_add(st, r2, "t", "{\"a\":2}", "bad again", NULL, 9001.5,
	                 &ids[1]) == 0, "add dead letter to the other run, attempts NULL");
	ok(state_dlq_add(st, r1, "fetch", "{\"method\":\"GET\",\"url\":\"u\",\"body\":null}",
	                 "HTTP 404", "[]", 9002.5, &ids[2]) == 0, "add a fetch dead letter");
	ok(state_dlq_add(st, r1, "t", "{\"a\":3}", "third", "[]", 9003.5, NULL) == 0,
	   "add with id NULL");
	ok(ids[0] > 0 && ids[0] < ids[1] && ids[1] < ids[2], "ids increase");

	n = state_dlq_list(st, r1, NULL, &rows);
	is_int(n, 3, "run 1: three dead letters");
	if (n == 3) {
		is_int(rows[0].id, ids[0], "oldest first");
		is_int(rows[1].id, ids[2], "then the next");
		ok(rows[2].id > ids[2], "then the one added with id NULL");
		is_int(rows[0].run_id, r1, "run_id round trip");
		is_str(rows[0].stage, "t", "stage round trip");
		is_str(rows[0].payload, "{\"a\":1}", "payload round trip");
		is_str(rows[0].error, "bad record", "error round trip");
		is_str(rows[0].attempts, "[{\"attempt\":1,\"status\":500}]",
		       "attempts round trip");
		ok(rows[0].created == 9000.5, "created round trip");
		is_int(rows[0].replayed, 0, "not replayed");
		is_str(rows[1].payload, "{\"method\":\"GET\",\"url\":\"u\",\"body\":null}",
		       "fetch payload round trip");
	}
	dlq_rows_free(rows, n);

	n = state_dlq_list(st, r1, "t", &rows);
	is_int(n, 2, "run 1, stage t: two");
	if (n == 2)
		ok(rows[0].id == ids[0] && strcmp(rows[1].payload, "{\"a\":3}") == 0,
		   "in id order");
	dlq_rows_free(rows, n);

	n = state_dlq_list(st, r2, NULL, &rows);
	is_int(n, 1, "run 2: one");
	if (n == 1)
		is_str(rows[0].attempts, "[]", "NULL attempts stored as []");
	dlq_rows_free(rows, n);

	n = state_dlq_list(st, 0, "t", &rows);
	ok(n >= 3, "every run, stage t: at least three (%d)", n);
	all = n > 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(rows[i].stage, "t") != 0)
			all = 0;
		if (i > 0 && rows[i - 1].id >= rows[i].id)
			all = 0;
	}
	ok(all, "all of stage t, in id order");
	all = 0;
	for (int i = 0; i < n; i++)
		if (rows[i].run_id == r2)
			all = 1;
	ok(all, "includes the other run");
	dlq_rows_free(rows, n);

	n = state_dlq_list(st, 0, NULL, &rows);
	ok(n >= 4, "every run, every stage (%d)", n);
	dlq_rows_free(rows, n);
	dlq_rows_free(NULL, 0);

	ok(state_dlq_mark_replayed(st, ids[2]) == 0, "mark one replayed");
	n = state_dlq_list(st, r1, NULL, &rows);
	if (n == 3)
		ok(rows[0].replayed == 0 && rows[1].replayed == 1 && rows[2].replayed == 0,
		   "only that one is replayed");
	else
		ok(0, "list after mark_replayed (got %d)", n);
	dlq_rows_free(rows, n);
	ok(state_dlq_mark_replayed(st, ids[2]) == 0, "marking again is fine");
	is_int(state_dlq_mark_replayed(st, ids[2] + 1000), -1, "missing id fails");
	ok(contains(state_errmsg(st), "no such dead letter"), "message: %s",
	   state_errmsg(st));

	is_int(state_dlq_add(st, r1 + 1000, "t", "{}", "e", "[]", 1, NULL), -1,
	       "dead letter of a missing run refused");
	ok(contains(state_errmsg(st), "FOREIGN KEY"), "message: %s", state_errmsg(st));
	is_int(state_dlq_add(st, r1, "t", NULL, "e", "[]", 1, NULL), -1,
	       "NULL payload refused");
}

static void test_events(struct state *st)
{
	struct event_row *rows = NULL;
	int64_t id = 0, other = 0;
	int n;

	ok(state_run_create(st, "ev", "e.yaml", "h", "{}", 10000, &id) == 0 &&
	   state_run_create(st, "ev2", "e.yaml", "h", "{}", 10000, &other) == 0,
	   "create runs for events");
	ok(state_event_add(st, id, "f", "breaker", "host h: open", 10001) == 0,
	   "add breaker event");
	ok(state_event_add(st, other, "f", "timeout", "elsewhere", 10001) == 0,
	   "add event of another run");
	ok(state_event_add(st, id, NULL, "timeout", "run timed out", 10000.5) == 0,
	   "add run-wide event (stage NULL)");

	n = state_events_list(st, id, &rows);
	is_int(n, 2, "two events of the run");
	if (n == 2) {
		is_str(rows[0].kind, "breaker", "insertion order, not time order");
		is_int(rows[0].run_id, id, "run_id round trip");
		is_str(rows[0].stage, "f", "stage round trip");
		is_str(rows[0].message, "host h: open", "message round trip");
		ok(rows[0].at == 10001, "at round trip");
		ok(rows[1].stage == NULL, "NULL stage stays NULL");
		is_str(rows[1].message, "run timed out", "second message");
	}
	event_rows_free(rows, n);
	event_rows_free(NULL, 0);
	rows = (struct event_row *)&n;
	is_int(state_events_list(st, id + 1000, &rows), 0, "missing run: none");
	ok(rows == NULL, "empty list is NULL");

	is_int(state_event_add(st, id, NULL, NULL, "m", 1), -1, "NULL kind refused");
	is_int(state_event_add(st, id + 1000, NULL, "k", "m", 1), -1,
	       "event of a missing run refused");
}

/* Deleting a run row deletes its stages, attempts, dead letters and events. */
static void test_cascade(struct state *st, const char *path)
{
	struct attempt_row a;
	struct stage_row *srows = NULL;
	struct attempt_row *arows = NULL;
	struct dlq_row *drows = NULL;
	struct event_row *erows = NULL;
	int64_t id = 0, keep = 0;
	char *sql;
	int n;

	ok(state_run_create(st, "gone", "g.yaml", "h", "{}", 11000, &id) == 0 &&
	   state_run_create(st, "kept", "g.yaml", "h", "{}", 11000, &keep) == 0,
	   "create runs for the cascade");
	a = mk_attempt(id, "s", 1, 200, NULL);
	ok(state_stage_create(st, id, "s", "fetch.http") == 0 &&
	   state_attempt_add(st, &a) == 0 &&
	   state_dlq_add(st, id, "s", "{}", "e", "[]", 11001, NULL) == 0 &&
	   state_event_add(st, id, "s", "breaker", "open", 11002) == 0,
	   "one row of each kind for the doomed run");
	a.run_id = keep;
	ok(state_attempt_add(st, &a) == 0 &&
	   state_dlq_add(st, keep, "s", "{}", "e", "[]", 11001, NULL) == 0 &&
	   state_event_add(st, keep, "s", "breaker", "open", 11002) == 0,
	   "and for the kept run");

	sql = xasprintf("DELETE FROM runs WHERE id = %lld", (long long)id);
	ok(raw_exec(path, sql) == 0, "delete the run row (foreign keys on)");
	free(sql);

	n = state_stages_list(st, id, &srows);
	is_int(n, 0, "its stages are gone");
	stage_rows_free(srows, n);
	n = state_attempts_list(st, id, NULL, &arows);
	is_int(n, 0, "its attempts are gone");
	attempt_rows_free(arows, n);
	n = state_dlq_list(st, id, NULL, &drows);
	is_int(n, 0, "its dead letters are gone");
	dlq_rows_free(drows, n);
	n = state_events_list(st, id, &erows);
	is_int(n, 0, "its events are gone");
	event_rows_free(erows, n);

	n = state_attempts_list(st, keep, NULL, &arows);
	is_int(n, 1, "the other run keeps its attempt");
	attempt_rows_free(arows, n);
	n = state_dlq_list(st, keep, NULL, &drows);
	is_int(n, 1, "and its dead letter");
	dlq_rows_free(drows, n);
	n = state_events_list(st, keep, &erows);
	is_int(n, 1, "and its event");
	event_rows_free(erows, n);
}

/* The schema as version 1 wrote it, with some data. */
static const char V1_DATABASE[] =
	"CREATE TABLE runs ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL,"
	" path TEXT NOT NULL, hash TEXT NOT NULL, params TEXT NOT NULL,"
	" status TEXT NOT NULL, started REAL NOT NULL, finished REAL, error TEXT);"
	"CREATE TABLE stage_runs ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL,"
	" status TEXT NOT NULL, records_in INTEGER NOT NULL DEFAULT 0,"
	" records_out INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,"
	" requests INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL,"
	" error TEXT, PRIMARY KEY (run_id, stage));"
	"INSERT INTO runs VALUES (1, 'old', 'old.yaml', 'h1', '{\"x\":1}',"
	" 'succeeded', 100, 110, NULL);"
	"INSERT INTO runs VALUES (2, 'old', 'old.yaml', 'h2', '{}',"
	" 'failed', 200, 210, 'stage b: boom');"
	"INSERT INTO stage_runs VALUES (2, 'a', 'fetch.http', 1, 'succeeded',"
	" 0, 5, 0, 5, 201, 205, NULL);"
	"INSERT INTO stage_runs VALUES (2, 'b', 'transform', 2, 'failed',"
	" 5, 0, 1, 0, 205, 210, 'boom');"
	"PRAGMA journal_mode = WAL;"
	"PRAGMA user_version = 1;";

static void test_migration(void)
{
	char *path = xasprintf("%s/v1.db", tmpdir), *err = NULL, *text;
	struct state *st;
	struct run_row r;
	struct stage_row *rows = NULL;
	struct attempt_row a, *arows = NULL;
	int64_t id = 0, new_run = 0;
	int n;

	ok(raw_exec(path, V1_DATABASE) == 0, "wrote a version 1 database");
	is_int(header_user_version(path), 1, "it has user_version 1");
	is_int(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'attempts'"),
	       0, "and no attempts table");

	st = state_open(path, true, &err);
	ok(st == NULL && contains(err, "has schema version 1"),
	   "read-only open of a version 1 database is refused: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	is_int(header_user_version(path), 1, "and leaves it at version 1");

	st = state_open(path, false, &err);
	ok(st != NULL, "read-write open migrates it: %s", err ? err : "ok");
	free(err);
	err = NULL;
	if (!st) {
		free(path);
		return;
	}
	is_int(raw_int(path, "PRAGMA user_version"), NEWEST, "now at the newest user_version");
	is_int(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
	               " AND name IN ('attempts', 'dlq', 'events')"), 3,
	       "the three new tables exist");
	is_int(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'"
	               " AND tbl_name IN ('attempts', 'dlq', 'events')"
	               " AND name NOT LIKE 'sqlite_%'"), 3, "with their indexes");
	text = raw_text(path, "SELECT group_concat(name, ',') FROM"
	                " (SELECT name FROM pragma_index_info('attempts_run_stage'))");
	is_str(text, "run_id,stage", "attempts indexed on (run_id, stage)");
	free(text);
	text = raw_text(path, "SELECT group_concat(name, ',') FROM"
	                " pragma_table_info('dlq')");
	is_str(text, "id,run_id,stage,payload,error,attempts,created,replayed",
	       "dlq columns");
	free(text);

	text = raw_text(path, "SELECT group_concat(name, ',') FROM"
	                " pragma_table_info('runs')");
	is_str(text, "id,pipeline,path,hash,params,status,started,finished,error,text,pid,replay_of",
	       "runs gained text, pid and replay_of");
	free(text);
	is_int(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
	               " AND name = 'journal'"), 1, "the journal table exists");
	{
		char *src = (char *)"x";
		long pid = -1;

		is_int(state_run_source(st, 2, &src, &pid), 1, "source of an old run: found");
		ok(src == NULL && pid == 0, "and not recorded (NULL, 0)");
		free(src);
	}

	is_int(state_run_get(st, 1, &r), 1, "old run 1 survives");
	is_str(r.params, "{\"x\":1}", "with its params");
	is_int(r.status, ST_SUCCEEDED, "and status");
	run_row_free(&r);
	is_int(state_run_get(st, 2, &r), 1, "old run 2 survives");
	is_str(r.error, "stage b: boom", "with its error");
	ok(r.finished == 210, "and finish time");
	run_row_free(&r);
	n = state_stages_list(st, 2, &rows);
	is_int(n, 2, "its stages survive");
	if (n == 2) {
		is_str(rows[1].stage, "b", "in order");
		is_int(rows[0].stats.records_out, 5, "with their counters");
	}
	stage_rows_free(rows, n);

	ok(state_run_create(st, "new", "n.yaml", "h", "{}", 300, &new_run) == 0,
	   "new run after migration");
	ok(new_run > 2, "does not reuse old ids (%lld)", (long long)new_run);
	a = mk_attempt(2, "a", 1, 200, NULL);
	ok(state_attempt_add(st, &a) == 0, "attempt recorded against an old run");
	n = state_attempts_list(st, 2, "a", &arows);
	is_int(n, 1, "and read back");
	attempt_rows_free(arows, n);
	ok(state_dlq_add(st, 2, "b", "{}", "boom", NULL, 301, &id) == 0 &&
	   state_event_add(st, new_run, NULL, "timeout", "m", 302) == 0,
	   "dead letters and events work on the migrated file");
	state_close(st);

	st = state_open(path, false, &err);
	ok(st != NULL, "reopen the migrated file");
	free(err);
	state_close(st);
	is_int(header_user_version(path), NEWEST, "still the newest version (no migration twice)");
	free(path);
}

/* ------------------------------------------------------------------ v3 */

static void test_source(struct state *st)
{
	int64_t id = 0;
	char *text = NULL;
	long pid = -1;
	const char *yaml = "pipeline: src\nstages:\n  - id: a\n";

	ok(state_run_create(st, "src", "s.yaml", "h", "{}", 12000, &id) == 0,
	   "create a run for its source");
	is_int(state_run_source(st, id, &text, &pid), 1, "source of a new run: found");
	ok(text == NULL && pid == 0, "not recorded yet (NULL, 0)");
	free(text);

	ok(state_run_set_source(st, id, yaml, 4242) == 0, "set source and pid");
	is_int(state_run_source(st, id, &text, &pid), 1, "source read back");
	is_str(text, yaml, "text round trip");
	is_int(pid, 4242, "pid round trip");
	free(text);
	text = NULL;

	ok(state_run_set_source(st, id, yaml, 0) == 0, "set pid 0 (none)");
	is_int(state_run_source(st, id, NULL, &pid), 1, "pid alone read back");
	is_int(pid, 0, "pid 0 reads back as 0");

	is_int(state_run_source(st, id + 1000, &text, &pid), 0, "missing run: not found");
	ok(text == NULL && pid == 0, "outputs cleared");
	is_int(state_run_set_source(st, id + 1000, yaml, 1), -1,
	       "set source of a missing run fails");
	ok(contains(state_errmsg(st), "no such run"), "message: %s", state_errmsg(st));
}

static void test_run_reopen(struct state *st)
{
	struct run_row r;
	int64_t id = 0;
	long pid = 0;

	ok(state_run_create(st, "again", "a.yaml", "h", "{}", 13000, &id) == 0 &&
	   state_run_set_source(st, id, "pipeline: again\n", 100) == 0 &&
	   state_run_finish(st, id, ST_INTERRUPTED, "interrupted by SIGINT", 13010) == 0,
	   "an interrupted run");
	is_int(state_run_get(st, id, &r), 1, "read it");
	ok(r.status == ST_INTERRUPTED && r.finished == 13010 && r.error != NULL,
	   "interrupted, finished, with an error");
	run_row_free(&r);

	ok(state_run_reopen(st, id, 200) == 0, "reopen it");
	is_int(state_run_get(st, id, &r), 1, "read it again");
	is_int(r.status, ST_RUNNING, "status running");
	ok(r.finished == 0, "finished cleared");
	ok(r.error == NULL, "error cleared");
	ok(r.started == 13000, "started kept");
	run_row_free(&r);
	is_int(state_run_source(st, id, NULL, &pid), 1, "source after reopen");
	is_int(pid, 200, "pid is the new one");

	is_int(state_run_reopen(st, id + 1000, 1), -1, "reopen of a missing run fails");
	ok(contains(state_errmsg(st), "cannot reopen run") &&
	   contains(state_errmsg(st), "no such run"), "message: %s", state_errmsg(st));
}

static struct journal_entry mk_entry(long status, const char *headers,
                                     const char *body, size_t len)
{
	struct journal_entry e;

	memset(&e, 0, sizeof(e));
	e.status = status;
	e.headers = (char *)headers;
	e.body = (char *)body;
	e.body_len = len;
	return e;
}

/* sink_columns: put replaces, get finds per (pipeline, stage, table). */
static void test_sink_columns(struct state *st)
{
	char *cols = (char *)"unset";

	is_int(state_sink_columns_get(st, "p", "db", "t", &cols), 0, "no columns recorded yet");
	ok(cols == NULL, "and none returned");
	ok(state_sink_columns_put(st, "p", "db", "t", "[\"id\",\"a\"]", 100) == 0,
	   "record columns");
	ok(state_sink_columns_put(st, "p", "db", "u", "[\"x\"]", 100) == 0,
	   "record another table's");
	is_int(state_sink_columns_get(st, "p", "db", "t", &cols), 1, "found");
	is_str(cols, "[\"id\",\"a\"]", "as recorded");
	free(cols);
	ok(state_sink_columns_put(st, "p", "db", "t", "[\"id\",\"a\",\"b\"]", 200) == 0,
	   "record them again");
	is_int(state_sink_columns_get(st, "p", "db", "t", &cols), 1, "found again");
	is_str(cols, "[\"id\",\"a\",\"b\"]", "the later record replaces the earlier");
	free(cols);
	is_int(state_sink_columns_get(st, "q", "db", "t", &cols), 0,
	       "another pipeline's stage of the same name has none");
}

static void test_journal(struct state *st, const char *path)
{
	static const char nul_body[] = "{\"a\":\0\"b\"}\0tail";   /* 15 bytes + NUL */
	const size_t nul_len = sizeof(nul_body) - 1;
	const size_t big_len = 1024 * 1024;
	struct journal_entry e, got;
	int64_t id = 0, other = 0;
	char *big, *text, *sql;
	size_t i;
	int same;

	ok(state_run_create(st, "journal", "j.yaml", "h", "{}", 14000, &id) == 0 &&
	   state_run_create(st, "journal2", "j.yaml", "h", "{}", 14000, &other) == 0,
	   "runs for the journal");

	e = mk_entry(200, "{\"content-type\":\"application/json\"}", "[1,2,3]", 7);
	ok(state_journal_put(st, id, "fetch", "fp-a", &e) == 0, "put a response");
	memset(&got, 0x5a, sizeof(got));
	is_int(state_journal_get(st, id, "fetch", "fp-a", &got), 1, "get it back");
	is_int(got.status, 200, "status");
	is_str(got.headers, "{\"content-type\":\"application/json\"}", "headers");
	is_int(got.body_len, 7, "body length");
	ok(got.body && memcmp(got.body, "[1,2,3]", 8) == 0, "body, NUL-terminated");
	journal_entry_free(&got);
	ok(got.body == NULL && got.headers == NULL, "free zeroes the entry");
	journal_entry_free(&got);   /* again: NULL fields */
	journal_entry_free(NULL);

	/* NUL bytes inside the body */
	e = mk_entry(201, NULL, nul_body, nul_len);
	ok(state_journal_put(st, id, "fetch", "fp-nul", &e) == 0, "put a body with NULs");
	is_int(state_journal_get(st, id, "fetch", "fp-nul", &got), 1, "get it");
	is_int(got.body_len, nul_len, "full length despite NULs");
	ok(got.body && memcmp(got.body, nul_body, nul_len) == 0, "every byte kept");
	ok(got.body && got.body[nul_len] == '\0', "terminated after body_len");
	is_str(got.headers, "{}", "NULL headers stored as {}");
	is_int(got.status, 201, "status 201");
	journal_entry_free(&got);
	sql = xasprintf("SELECT typeof(body) || ':' || length(body) FROM journal"
	                " WHERE run_id = %lld AND fingerprint = 'fp-nul'", (long long)id);
	text = raw_text(path, sql);
	is_str(text, "blob:15", "stored as a blob of 15 bytes");
	free(text);
	free(sql);

	/* empty body, status 0 (file://) */
	e = mk_entry(0, "{}", NULL, 0);
	ok(state_journal_put(st, id, "file", "fp-empty", &e) == 0, "put an empty body");
	is_int(state_journal_get(st, id, "file", "fp-empty", &got), 1, "get it");
	ok(got.status == 0 && got.body_len == 0 && got.body && got.body[0] == '\0',
	   "status 0, empty terminated body");
	journal_entry_free(&got);

	/* 1 MiB, every byte value */
	big = xmalloc(big_len);
	for (i = 0; i < big_len; i++)
		big[i] = (char)(i * 31 + (i >> 8));
	e = mk_entry(200, "{}", big, big_len);
	ok(state_journal_put(st, id, "fetch", "fp-big", &e) == 0, "put a 1 MiB body");
	is_int(state_journal_get(st, id, "fetch", "fp-big", &got), 1, "get it");
	is_int(got.body_len, big_len, "1 MiB back");
	same = got.body && memcmp(got.body, big, big_len) == 0 && got.body[big_len] == '\0';
	ok(same, "identical bytes");
	journal_entry_free(&got);
	free(big);

	/* digest only (a body too large to keep) */
	e = mk_entry(200, "{}", NULL, 0);
	e.digest = (char *)"9b485f42f6508707931e7b80bd247c0311303187452c837b15890236898c3eb1";
	e.body_len = 5u << 20;
	ok(state_journal_put(st, id, "fetch", "fp-digest", &e) == 0, "put a digest-only entry");
	is_int(state_journal_get(st, id, "fetch", "fp-digest", &got), 1, "get it");
	is_str(got.digest, e.digest, "its digest");
	ok(got.size == (5u << 20) && got.body_len == 0 && got.body && got.body[0] == '\0',
	   "its size, and an empty body");
	journal_entry_free(&got);
	ok(got.digest == NULL, "free clears the digest");
	is_int(state_journal_get(st, id, "fetch", "fp-a", &got), 1, "an entry with its body");
	ok(got.digest == NULL, "has no digest");
	journal_entry_free(&got);
	is_int(state_journal_count_digests(st, id, "fetch"), 1, "digest-only entries counted");
	is_int(state_journal_count_digests(st, id, "file"), 0, "per stage");

	/* first wins */
	e = mk_entry(500, "{\"x\":\"second\"}", "second", 6);
	ok(state_journal_put(st, id, "fetch", "fp-a", &e) == 0,
	   "a second put for the same key succeeds");
	is_int(state_journal_get(st, id, "fetch", "fp-a", &got), 1, "get the key");
	is_int(got.status, 200, "first status kept");
	is_str(got.body, "[1,2,3]", "first body kept");
	is_str(got.headers, "{\"content-type\":\"application/json\"}", "first headers kept");
	journal_entry_free(&got);

	/* the key has three parts */
	e = mk_entry(202, "{}", "other-stage", 11);
	ok(state_journal_put(st, id, "fetch2", "fp-a", &e) == 0,
	   "same fingerprint, other stage");
	e = mk_entry(203, "{}", "other-run", 9);
	ok(state_journal_put(st, other, "fetch", "fp-a", &e) == 0,
	   "same fingerprint, other run");
	is_int(state_journal_get(st, id, "fetch2", "fp-a", &got), 1, "other stage found");
	is_str(got.body, "other-stage", "with its own body");
	journal_entry_free(&got);
	is_int(state_journal_get(st, other, "fetch", "fp-a", &got), 1, "other run found");
	is_int(got.status, 203, "with its own status");
	journal_entry_free(&got);

	/* missing keys */
	memset(&got, 0x5a, sizeof(got));
	is_int(state_journal_get(st, id, "fetch", "fp-none", &got), 0,
	       "missing fingerprint: 0");
	ok(got.body == NULL && got.headers == NULL && got.body_len == 0 && got.status == 0,
	   "entry zeroed when not found");
	is_int(state_journal_get(st, id, "nostage", "fp-a", &got), 0, "missing stage: 0");
	is_int(state_journal_get(st, id + 1000, "fetch", "fp-a", &got), 0,
	       "missing run: 0");
	journal_entry_free(&got);

	/* counts */
	is_int(state_journal_count(st, id, NULL), 6, "six entries in the run (one digest only)");
	is_int(state_journal_count(st, id, "fetch"), 4, "four in stage fetch");
	is_int(state_journal_count(st, id, "file"), 1, "one in stage file");
	is_int(state_journal_count(st, id, "nostage"), 0, "none in an unknown stage");
	is_int(state_journal_count(st, other, NULL), 1, "one in the other run");
	is_int(state_journal_count(st, id + 1000, NULL), 0, "none in a missing run");

	/* refusals */
	e = mk_entry(200, "{}", "x", 1);
	is_int(state_journal_put(st, id + 1000, "fetch", "fp", &e), -1,
	       "put for a missing run refused (foreign keys)");
	ok(contains(state_errmsg(st), "FOREIGN KEY"), "message: %s", state_errmsg(st));
	is_int(state_journal_put(st, id, NULL, "fp", &e), -1,
	       "NULL stage refused, not silently ignored");
	ok(contains(state_errmsg(st), "NOT NULL"), "message: %s", state_errmsg(st));
	e = mk_entry(200, "{}", NULL, 3);
	is_int(state_journal_put(st, id, "fetch", "fp-bad", &e), -1,
	       "NULL body with a length refused");
	is_int(state_journal_count(st, id, NULL), 6, "refused puts stored nothing");

	/* a batch */
	ok(state_begin(st) == 0, "begin a batch of puts");
	same = 1;
	for (i = 0; i < 200; i++) {
		char fp[32], body[32];
		int len = snprintf(body, sizeof(body), "body %zu", i);

		snprintf(fp, sizeof(fp), "batch-%zu", i);
		e = mk_entry(200, NULL, body, (size_t)len);
		if (state_journal_put(st, other, "batch", fp, &e) != 0)
			same = 0;
	}
	ok(same, "200 puts in one transaction");
	ok(state_commit(st) == 0, "commit the batch");
	is_int(state_journal_count(st, other, "batch"), 200, "all 200 stored");
	is_int(state_journal_get(st, other, "batch", "batch-137", &got), 1, "one of them");
	is_str(got.body, "body 137", "with its body");
	journal_entry_free(&got);
}

/* Adds a row in every child table of run id. Returns 0 or -1. */
static int fill_run(struct state *st, int64_t id, double at)
{
	struct attempt_row a = mk_attempt(id, "s", 1, 200, NULL);
	struct journal_entry e = mk_entry(200, "{}", "b\0dy", 4);

	return (state_stage_create(st, id, "s", "fetch.http") == 0 &&
	        state_attempt_add(st, &a) == 0 &&
	        state_dlq_add(st, id, "s", "{}", "e", "[]", at, NULL) == 0 &&
	        state_event_add(st, id, "s", "breaker", "open", at) == 0 &&
	        state_journal_put(st, id, "s", "fp", &e) == 0) ? 0 : -1;
}

/* Rows of run id in the five child tables. */
static long long child_rows(const char *path, int64_t id)
{
	char *sql = xasprintf(
		"SELECT (SELECT COUNT(*) FROM stage_runs WHERE run_id = %1$lld)"
		" + (SELECT COUNT(*) FROM attempts WHERE run_id = %1$lld)"
		" + (SELECT COUNT(*) FROM dlq WHERE run_id = %1$lld)"
		" + (SELECT COUNT(*) FROM events WHERE run_id = %1$lld)"
		" + (SELECT COUNT(*) FROM journal WHERE run_id = %1$lld)", (long long)id);
	long long n = raw_int(path, sql);

	free(sql);
	return n;
}

/* Sets status interrupted and leaves finished NULL, as a run killed before
 * it could record its end and then marked by hand would be. */
static int mark_interrupted(const char *path, int64_t id)
{
	char *sql = xasprintf("UPDATE runs SET status = 'interrupted' WHERE id = %lld",
	                      (long long)id);
	int rc = raw_exec(path, sql);

	free(sql);
	return rc;
}

/* gc keeps a run while a dlq replay of it runs (the replay marks its dead
 * letters when it ends), and removes it once the replay finished. */
static void test_gc_replay(void)
{
	char *path = xasprintf("%s/gc-replay.db", tmpdir), *err = NULL;
	struct state *st = state_open(path, false, &err);
	struct run_row r;
	int64_t old = 0, replay = 0, deleted = -1;

	ok(st != NULL, "open a database for gc of a replayed run: %s", err ? err : "ok");
	free(err);
	if (!st) {
		free(path);
		return;
	}
	ok(state_run_create(st, "p", "p.yaml", "h", "{}", 100, &old) == 0 &&
	   state_run_finish(st, old, ST_SUCCEEDED, NULL, 110) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 120, &replay) == 0 &&
	   state_run_set_replay_of(st, replay, old) == 0,
	   "an old run, and a running replay of it");
	ok(state_gc(st, 1000, &deleted) == 0, "gc before 1000");
	is_int(deleted, 0, "nothing deleted while the replay runs");
	is_int(state_run_get(st, old, &r), 1, "the replayed run is kept");
	run_row_free(&r);
	ok(state_run_finish(st, replay, ST_SUCCEEDED, NULL, 130) == 0, "the replay ends");
	ok(state_gc(st, 1000, &deleted) == 0, "gc again");
	is_int(deleted, 2, "both runs deleted now");
	state_close(st);
	free(path);
}

static void test_gc(void)
{
	char *path = xasprintf("%s/gc.db", tmpdir), *err = NULL;
	struct state *st, *other;
	struct run_row r;
	int64_t old_ok = 0, old_failed = 0, old_unfinished = 0, old_running = 0;
	int64_t recent = 0, recent_running = 0, boundary = 0, deleted = -1;

	st = state_open(path, false, &err);
	ok(st != NULL, "open a database for gc: %s", err ? err : "ok");
	free(err);
	err = NULL;
	if (!st) {
		free(path);
		return;
	}
	/* gc before 1000 */
	ok(state_run_create(st, "p", "p.yaml", "h", "{}", 100, &old_ok) == 0 &&
	   state_run_finish(st, old_ok, ST_SUCCEEDED, NULL, 110) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 200, &old_failed) == 0 &&
	   state_run_finish(st, old_failed, ST_FAILED, "boom", 210) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 300, &old_unfinished) == 0 &&
	   mark_interrupted(path, old_unfinished) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 50, &old_running) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 500, &recent) == 0 &&
	   state_run_finish(st, recent, ST_SUCCEEDED, NULL, 1500) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 2000, &recent_running) == 0 &&
	   state_run_create(st, "p", "p.yaml", "h", "{}", 900, &boundary) == 0 &&
	   state_run_finish(st, boundary, ST_SUCCEEDED, NULL, 1000) == 0,
	   "seven runs: three old finished, one old running, three recent");
	ok(raw_int(path, "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'"
	           " AND finished IS NULL") == 1, "one interrupted run has no finish time");
	ok(fill_run(st, old_ok, 111) == 0 && fill_run(st, old_failed, 211) == 0 &&
	   fill_run(st, old_unfinished, 301) == 0 && fill_run(st, old_running, 51) == 0 &&
	   fill_run(st, recent, 501) == 0 && fill_run(st, recent_running, 2001) == 0 &&
	   fill_run(st, boundary, 901) == 0, "every run has a row in every child table");
	is_int(child_rows(path, old_ok), 5, "five child rows per run");

	ok(state_gc(st, 1000, &deleted) == 0, "gc before 1000");
	is_int(deleted, 3, "three runs deleted");
	is_int(state_run_get(st, old_ok, &r), 0, "old succeeded run gone");
	run_row_free(&r);
	is_int(state_run_get(st, old_failed, &r), 0, "old failed run gone");
	run_row_free(&r);
	is_int(state_run_get(st, old_unfinished, &r), 0,
	       "old interrupted run without finish time gone (by its start)");
	run_row_free(&r);
	is_int(child_rows(path, old_ok) + child_rows(path, old_failed) +
	       child_rows(path, old_unfinished), 0,
	       "their stages, attempts, dead letters, events and journal are gone");
	is_int(state_run_get(st, old_running, &r), 1, "old running run kept");
	run_row_free(&r);
	is_int(child_rows(path, old_running), 5, "with its rows");
	is_int(state_run_get(st, recent, &r), 1, "recent finished run kept");
	run_row_free(&r);
	is_int(child_rows(path, recent), 5, "with its rows");
	is_int(state_run_get(st, recent_running, &r), 1, "recent running run kept");
	run_row_free(&r);
	is_int(state_run_get(st, boundary, &r), 1, "run finished exactly at the cutoff kept");
	run_row_free(&r);
	is_int(child_rows(path, boundary) + child_rows(path, recent_running), 10,
	       "with their rows");
	is_int(raw_int(path, "SELECT COUNT(*) FROM runs"), 4, "four runs left");

	ok(state_gc(st, 1000, &deleted) == 0, "gc again");
	is_int(deleted, 0, "nothing more to delete");

	/* Inside a caller's transaction: nothing is visible until its commit. */
	other = state_open(path, false, &err);
	ok(other != NULL, "second handle: %s", err ? err : "ok");
	free(err);
	err = NULL;
	ok(state_begin(st) == 0, "begin around gc");
	ok(state_gc(st, 1e9, &deleted) == 0, "gc of everything finished");
	is_int(deleted, 2, "two finished runs deleted");
	if (other) {
		is_int(state_run_get(other, recent, &r), 1, "not yet for the other handle");
		run_row_free(&r);
	}
	ok(state_commit(st) == 0, "commit");
	if (other) {
		is_int(state_run_get(other, recent, &r), 0, "now gone for the other handle");
		run_row_free(&r);
		state_close(other);
	}
	is_int(raw_int(path, "SELECT COUNT(*) FROM runs WHERE status = 'running'"), 2,
	       "the two running runs are all that is left");
	is_int(raw_int(path, "SELECT COUNT(*) FROM runs"), 2, "and nothing else");
	is_int(raw_int(path, "SELECT COUNT(*) FROM journal"), 2, "their journal is kept");

	/* A delete that fails (a trigger refuses it) rolls back gc's own
	 * transaction, and leaves a caller's transaction open with its work. */
	ok(state_run_finish(st, old_running, ST_FAILED, "x", 60) == 0,
	   "finish the old running run");
	ok(raw_exec(path, "CREATE TRIGGER refuse BEFORE DELETE ON runs"
	            " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END") == 0,
	   "install a trigger that refuses deletes");
	deleted = -1;
	is_int(state_gc(st, 1e9, &deleted), -1, "gc fails");
	is_int(deleted, 0, "and reports 0 deleted");
	ok(contains(state_errmsg(st), "cannot delete old runs") &&
	   contains(state_errmsg(st), "refused by trigger"), "message: %s",
	   state_errmsg(st));
	ok(raw_exec(path, "UPDATE runs SET pid = 1") == 0,
	   "another connection can write: the lock was released");
	ok(state_begin(st) == 0, "begin a caller's transaction");
	ok(state_run_set_source(st, recent_running, "kept text", 5) == 0,
	   "write in it");
	is_int(state_gc(st, 1e9, &deleted), -1, "gc inside it fails");
	ok(state_commit(st) == 0, "the caller's transaction still commits");
	{
		char *text = NULL;

		is_int(state_run_source(st, recent_running, &text, NULL), 1, "read the write");
		is_str(text, "kept text", "the caller's write survived the failed gc");
		free(text);
	}
	is_int(raw_int(path, "SELECT COUNT(*) FROM runs"), 2, "no run deleted");
	ok(raw_exec(path, "DROP TRIGGER refuse") == 0, "drop the trigger");
	ok(state_gc(st, 1e9, &deleted) == 0, "gc works again");
	is_int(deleted, 1, "and deletes the run finished above");
	state_close(st);

	/* A read-only handle cannot gc, and the failure leaves no transaction. */
	st = state_open(path, true, &err);
	ok(st != NULL, "read-only handle: %s", err ? err : "ok");
	free(err);
	if (st) {
		deleted = -1;
		ok(state_gc(st, 1e9, &deleted) == -1, "gc on a read-only handle fails");
		is_int(deleted, 0, "and reports 0 deleted");
		ok(contains(state_errmsg(st), "read-only"), "message: %s", state_errmsg(st));
		state_close(st);
	}
	free(path);
}

/* A version 2 database, as version 2 wrote it, with data in every table. */
static const char V2_TABLES[] =
	"CREATE TABLE attempts ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL, fingerprint TEXT NOT NULL, method TEXT NOT NULL,"
	" url TEXT NOT NULL, attempt INTEGER NOT NULL, http_status INTEGER,"
	" error TEXT, started REAL NOT NULL, duration REAL NOT NULL,"
	" wait REAL NOT NULL DEFAULT 0);"
	"CREATE INDEX attempts_run_stage ON attempts (run_id, stage);"
	"CREATE TABLE dlq ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL, payload TEXT NOT NULL, error TEXT NOT NULL,"
	" attempts TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL,"
	" replayed INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX dlq_run_stage ON dlq (run_id, stage);"
	"CREATE TABLE events ("
	" run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT, kind TEXT NOT NULL, message TEXT NOT NULL, at REAL NOT NULL);"
	"CREATE INDEX events_run ON events (run_id);"
	"INSERT INTO attempts VALUES (2, 'a', 'fp', 'GET', 'http://h/', 1, 503,"
	" 'HTTP 503', 201, 0.5, 0);"
	"INSERT INTO attempts VALUES (2, 'a', 'fp', 'GET', 'http://h/', 2, 200,"
	" NULL, 202, 0.25, 1);"
	"INSERT INTO dlq VALUES (7, 2, 'b', '{\"r\":1}', 'boom', '[]', 209, 0);"
	"INSERT INTO events VALUES (2, 'a', 'breaker', 'open', 203);"
	"PRAGMA user_version = 2;";

static void test_migration_v2(void)
{
	char *path = xasprintf("%s/v2.db", tmpdir), *err = NULL, *sql;
	struct state *st;
	struct run_row r;
	struct attempt_row *arows = NULL;
	struct dlq_row *drows = NULL;
	struct event_row *erows = NULL;
	struct journal_entry e = mk_entry(200, "{}", "x\0y", 3), got;
	int64_t deleted = 0;
	long pid = -1;
	char *text = NULL;
	int n;

	/* V1_DATABASE ends by setting version 1; V2_TABLES then sets 2. */
	sql = xasprintf("%s%s", V1_DATABASE, V2_TABLES);
	ok(raw_exec(path, sql) == 0, "wrote a version 2 database");
	free(sql);
	is_int(header_user_version(path), 2, "it has user_version 2");
	is_int(raw_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'journal'"),
	       0, "and no journal table");
	st = state_open(path, true, &err);
	ok(st == NULL && contains(err, "has schema version 2"),
	   "read-only open of a version 2 database is refused: %s", err ? err : "(null)");
	free(err);
	err = NULL;

	st = state_open(path, false, &err);
	ok(st != NULL, "read-write open migrates it: %s", err ? err : "ok");
	free(err);
	if (!st) {
		free(path);
		return;
	}
	is_int(raw_int(path, "PRAGMA user_version"), NEWEST, "now at the newest user_version");
	text = raw_text(path, "SELECT group_concat(name, ',') FROM"
	                " pragma_table_info('journal')");
	is_str(text, "run_id,stage,fingerprint,status,headers,body,at,digest,size",
	       "journal columns");
	free(text);
	text = raw_text(path, "SELECT group_concat(name, ',') FROM"
	                " (SELECT name FROM pragma_index_info('journal_run_stage') ORDER BY seqno)");
	is_str(text, "run_id,stage", "journal indexed on (run_id, stage), where rows append");
	free(text);
	is_int(raw_int(path, "SELECT COUNT(*) FROM pragma_index_list('journal')"), 1,
	       "and by nothing else (no index on the fingerprint, a hash)");
	is_int(raw_int(path, "SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master"
	               " WHERE name = 'journal'"), 0,
	       "a rowid table (rows append; only the key lands at random)");
	is_int(raw_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_list('journal')"
	               " WHERE \"table\" = 'runs' AND on_delete = 'CASCADE'"), 1,
	       "journal references runs, cascading");

	is_int(state_run_get(st, 2, &r), 1, "old run 2 survives");
	is_str(r.error, "stage b: boom", "with its error");
	is_int(r.status, ST_FAILED, "and status");
	run_row_free(&r);
	n = state_attempts_list(st, 2, NULL, &arows);
	is_int(n, 2, "its attempts survive");
	if (n == 2) {
		is_int(arows[0].http_status, 503, "in order");
		is_str(arows[0].error, "HTTP 503", "with their errors");
		ok(arows[1].wait == 1, "and waits");
		ok(arows[1].wait_backoff == 0 && arows[1].wait_rate == 0 &&
		   arows[1].wait_breaker == 0, "with no split of their waits (0 by reason)");
	}
	attempt_rows_free(arows, n);
	n = state_dlq_list(st, 2, NULL, &drows);
	is_int(n, 1, "its dead letter survives");
	if (n == 1) {
		is_int(drows[0].id, 7, "with its id");
		is_str(drows[0].payload, "{\"r\":1}", "and payload");
	}
	dlq_rows_free(drows, n);
	n = state_events_list(st, 2, &erows);
	is_int(n, 1, "its event survives");
	if (n == 1)
		is_str(erows[0].message, "open", "with its message");
	event_rows_free(erows, n);
	is_int(state_run_source(st, 2, &text, &pid), 1, "old run has a source row");
	ok(text == NULL && pid == 0, "with nothing recorded");
	free(text);

	ok(state_journal_put(st, 2, "a", "fp", &e) == 0, "journal an old run");
	is_int(state_journal_get(st, 2, "a", "fp", &got), 1, "and read it back");
	ok(got.body_len == 3 && memcmp(got.body, "x\0y", 4) == 0, "with its body");
	journal_entry_free(&got);
	ok(state_run_reopen(st, 2, 77) == 0, "reopen an old run");
	is_int(state_run_source(st, 2, NULL, &pid), 1, "its pid");
	is_int(pid, 77, "is recorded");
	ok(state_run_finish(st, 2, ST_FAILED, "again", 250) == 0, "finish it again");
	ok(state_gc(st, 260, &deleted) == 0, "gc the migrated file");
	is_int(deleted, 2, "both old runs deleted");
	is_int(child_rows(path, 2), 0, "with every row of run 2 (v1, v2 and v3 tables)");
	state_close(st);

	st = state_open(path, true, &err);
	ok(st != NULL, "read-only open now works: %s", err ? err : "ok");
	free(err);
	state_close(st);
	is_int(header_user_version(path), NEWEST, "still the newest version");
	free(path);
}

/* Leases: rows round-trip, release deletes only the owner's, and the owner
 * check tells this process (alive) from a pid with another start time or
 * no process at all (gone) and another host (unknown). */
static void test_leases(struct state *st)
{
	struct lease_row self, l, other;
	int64_t id;
	const char *why = NULL;

	lease_self(&self);
	self.command = xstrdup("run");
	ok(self.pid == (long)getpid() && self.pid_start > 0, "lease_self: pid and start time");
	ok(state_run_create(st, "lease", "l.yaml", "h", "{}", 1, &id) == 0, "a run to lease");
	l = self;
	l.resource = (char *)"run:x";
	l.run_id = id;
	ok(state_lease_put(st, &l) == 0, "lease written");
	is_int(state_lease_get(st, "run:x", &other), 1, "lease read back");
	if (other.resource) {
		is_int(other.pid, self.pid, "pid stored");
		ok(other.pid_start == self.pid_start, "start time stored");
		is_str(other.command, "run", "command stored");
		is_int(other.run_id, id, "run id stored");
		is_int(lease_owner_check(&other, &self, &why), LEASE_OWNER_ALIVE, "owner alive");
		other.pid_start++;
		is_int(lease_owner_check(&other, &self, &why), LEASE_OWNER_GONE,
		       "another start time: the pid was reused");
		ok(strstr(why, "another process") != NULL, "why: %s", why);
		other.pid_start--;
		free(other.host);
		other.host = xstrdup("elsewhere.example");
		is_int(lease_owner_check(&other, &self, &why), LEASE_OWNER_UNKNOWN,
		       "another host: unknown");
		lease_row_free(&other);
	}
	l.resource = (char *)"run:y";
	l.pid = 0x7ffffff0;   /* above any pid_max */
	ok(state_lease_put(st, &l) == 0, "a lease of a process that does not exist");
	is_int(state_lease_get(st, "run:y", &other), 1, "read back");
	if (other.resource) {
		is_int(lease_owner_check(&other, &self, &why), LEASE_OWNER_GONE, "gone");
		is_str(why, "has exited", "why: has exited");
		lease_row_free(&other);
	}
	ok(state_lease_release(st, &self) == 0, "release");
	is_int(state_lease_get(st, "run:x", &other), 0, "this process's lease is gone");
	is_int(state_lease_get(st, "run:y", &other), 1, "the other one stays");
	lease_row_free(&other);
	lease_row_free(&self);
}

/* A database whose journal is as schema version 8 made it (WITHOUT ROWID,
 * keyed on its primary key), with entries: the migration keeps them, and
 * the key still decides (first wins). */
static void test_migration_journal_rowid(void)
{
	char *path = xasprintf("%s/v8-journal.db", tmpdir), *err = NULL;
	struct state *st;
	struct journal_entry e = mk_entry(299, "{\"a\":\"b\"}", "x\0y", 3), got;
	int64_t id = 0;

	st = state_open(path, false, &err);
	ok(st != NULL, "v8 journal: a fresh database: %s", err ? err : "ok");
	free(err);
	err = NULL;
	if (!st) {
		free(path);
		return;
	}
	ok(state_run_create(st, "p", "p.yaml", "h", "{}", 14000, &id) == 0, "v8 journal: a run");
	state_close(st);
	ok(raw_exec(path,
	            "DROP TABLE journal;"
	            "CREATE TABLE journal ("
	            " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	            " stage TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,"
	            " headers TEXT NOT NULL DEFAULT '{}', body BLOB NOT NULL, at REAL NOT NULL,"
	            " digest TEXT, size INTEGER,"
	            " PRIMARY KEY (run_id, stage, fingerprint)) WITHOUT ROWID;"
	            "INSERT INTO journal VALUES (1, 'a', 'fp1', 200, '{}', x'780079', 1, NULL,"
	            " NULL);"
	            "INSERT INTO journal VALUES (1, 'a', 'fp2', 201, '{}', x'', 2, 'abc', 7);"
	            "PRAGMA user_version = 8;") == 0,
	   "wrote a version 8 journal with two entries");
	is_int(header_user_version(path), 8, "it has user_version 8");
	st = state_open(path, false, &err);
	ok(st != NULL, "read-write open migrates it: %s", err ? err : "ok");
	free(err);
	if (!st) {
		free(path);
		return;
	}
	is_int(raw_int(path, "PRAGMA user_version"), NEWEST, "now at the newest user_version");
	is_int(raw_int(path, "SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master"
	               " WHERE name = 'journal'"), 0, "the journal is a rowid table");
	is_int(state_journal_count(st, id, NULL), 2, "both entries survive");
	is_int(state_journal_count_digests(st, id, NULL), 1, "one of them digest-only");
	is_int(state_journal_get(st, id, "a", "fp1", &got), 1, "the first is found");
	ok(got.status == 200 && got.body_len == 3 && memcmp(got.body, "x\0y", 4) == 0,
	   "with its status and body");
	journal_entry_free(&got);
	is_int(state_journal_get(st, id, "a", "fp2", &got), 1, "the second is found");
	ok(got.status == 201 && got.digest && strcmp(got.digest, "abc") == 0 && got.size == 7,
	   "with its digest and size");
	journal_entry_free(&got);
	ok(state_journal_put(st, id, "a", "fp1", &e) == 0, "putting fp1 again succeeds");
	is_int(state_journal_get(st, id, "a", "fp1", &got), 1, "and reads back");
	is_int(got.status, 200, "the first entry (first wins)");
	journal_entry_free(&got);
	is_int(state_journal_count(st, id, "a"), 2, "still two entries");
	state_close(st);
	free(path);
}

/* Lookups by fingerprint: the first entry of a key counts whether or not
 * the handle had looked before (a fresh run puts without looking, a resumed
 * one looks first); entries another handle appends after a look are found;
 * an entry removed behind the handle's back is not. */
static void test_journal_lookup(void)
{
	char *path = xasprintf("%s/lookup.db", tmpdir), *err = NULL;
	struct state *st, *st2;
	struct journal_entry e, got;
	int64_t id = 0;
	char fp[32];
	int i, found = 0, bodies = 0;

	st = state_open(path, false, &err);
	st2 = st ? state_open(path, false, &err) : NULL;
	ok(st && st2, "lookup: two handles: %s", err ? err : "ok");
	free(err);
	if (!st || !st2) {
		state_close(st);
		free(path);
		return;
	}
	ok(state_run_create(st, "lookup", "l.yaml", "h", "{}", 14000, &id) == 0, "lookup: a run");
	/* Puts without any look first, as a fresh run makes them. */
	ok(state_begin(st) == 0, "one transaction");
	for (i = 0; i < 1000; i++) {
		char body[32];
		snprintf(fp, sizeof(fp), "fp-%d", i);
		snprintf(body, sizeof(body), "body-%d", i);
		e = mk_entry(200, "{}", body, strlen(body));
		if (state_journal_put(st, id, "s", fp, &e) != 0)
			break;
	}
	ok(state_commit(st) == 0 && i == 1000, "1000 entries put");
	e = mk_entry(500, "{}", "second", 6);
	ok(state_journal_put(st, id, "s", "fp-7", &e) == 0,
	   "a second put for a key, before any look, succeeds");
	is_int(state_journal_count(st, id, "s"), 1000, "the count is of keys: 1000");
	for (i = 0; i < 1000; i++) {
		char body[32];
		snprintf(fp, sizeof(fp), "fp-%d", i);
		snprintf(body, sizeof(body), "body-%d", i);
		if (state_journal_get(st, id, "s", fp, &got) == 1) {
			found++;
			bodies += got.status == 200 && strcmp(got.body, body) == 0;
		}
		journal_entry_free(&got);
	}
	is_int(found, 1000, "every key is found");
	is_int(bodies, 1000, "each with its first entry (fp-7 keeps its first)");
	is_int(state_journal_get(st, id, "s", "fp-1000", &got), 0, "a key never put: 0");

	/* Another handle appends after st looked. */
	e = mk_entry(201, "{}", "late", 4);
	ok(state_journal_put(st2, id, "s", "fp-late", &e) == 0, "another handle puts a key");
	is_int(state_journal_get(st, id, "s", "fp-late", &got), 1, "st finds it");
	is_str(got.body, "late", "with its body");
	journal_entry_free(&got);
	e = mk_entry(502, "{}", "late-second", 11);
	ok(state_journal_put(st, id, "s", "fp-late", &e) == 0, "st puts it again");
	is_int(state_journal_get(st2, id, "s", "fp-late", &got), 1, "the other handle finds it");
	is_int(got.status, 201, "the first entry");
	journal_entry_free(&got);
	is_int(raw_int(path, "SELECT COUNT(*) FROM journal WHERE fingerprint = 'fp-late'"), 1,
	       "a put for a key st has looked up adds no row");

	/* Removed behind st's back: its map still names the row. */
	ok(raw_exec(path, "DELETE FROM journal WHERE fingerprint = 'fp-3'") == 0,
	   "delete fp-3 directly");
	is_int(state_journal_get(st, id, "s", "fp-3", &got), 0, "st no longer finds it");
	journal_entry_free(&got);
	e = mk_entry(203, "{}", "again", 5);
	ok(state_journal_put(st, id, "s", "fp-3", &e) == 0, "put it again");
	is_int(state_journal_get(st, id, "s", "fp-3", &got), 1, "found again");
	is_str(got.body, "again", "the new entry");
	journal_entry_free(&got);

	state_close(st2);
	state_close(st);
	free(path);
}

/* Many stage rows: each keeps its creation order, and the next row's seq
 * is found in the index (a bounded number of steps), not by reading every
 * row of the run. */
static void test_many_stages(struct state *st, const char *path)
{
	enum { MANY = 3000 };
	struct stage_row *rows = NULL;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int64_t id = 0;
	int n, i, bad = 0, steps = -1;

	ok(state_run_create(st, "many", "m.yaml", "h", "{}", 6000, &id) == 0,
	   "create run for many stages");
	state_begin(st);
	for (i = 0; i < MANY; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%05d", MANY - i);   /* not alphabetical */
		bad += state_stage_create(st, id, name, "transform") != 0;
	}
	ok(state_commit(st) == 0, "%d stage rows in one transaction", MANY);
	is_int(bad, 0, "every stage row created");
	n = state_stages_list(st, id, &rows);
	is_int(n, MANY, "all listed");
	for (i = bad = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%05d", MANY - i);
		bad += strcmp(rows[i].stage, name) != 0;
	}
	is_int(bad, 0, "listed in creation order");
	stage_rows_free(rows, n);

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(seq), 0) + 1 FROM stage_runs"
	                       " WHERE run_id = ?1", -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_bind_int64(q, 1, id) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
		is_int(sqlite3_column_int(q, 0), MANY + 1, "the next seq follows the last");
		steps = sqlite3_stmt_status(q, SQLITE_STMTSTATUS_VM_STEP, 0);
	} else {
		ok(0, "query the next seq: %s", db ? sqlite3_errmsg(db) : "no handle");
	}
	ok(steps >= 0 && steps < 100, "the next seq takes a bounded number of steps (%d)",
	   steps);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

int main(void)
{
	char tmpl[] = "/tmp/pipectl-state-XXXXXX";
	char *path;
	struct state *st;
	char *err = NULL;

	tmpdir = mkdtemp(tmpl);
	if (!tmpdir) {
		perror("mkdtemp");
		return 1;
	}
	path = xasprintf("%s/a/b/state.db", tmpdir);

	test_status_names();

	st = state_open(path, false, &err);
	ok(st != NULL, "open creates missing directories: %s", err ? err : "ok");
	free(err);
	ok(exists(path), "database file exists");
	if (st) {
		is_str(state_errmsg(st), "no error", "no error after open");
		test_runs(st);
		test_stages(st);
		test_listing(st);
		test_nesting(st, path);
		test_attempts(st, path);
		test_attempt_batch(st, path);
		test_dlq(st);
		test_events(st);
		test_cascade(st, path);
		test_source(st);
		test_run_reopen(st);
		test_journal(st, path);
		test_sink_columns(st);
		test_leases(st);
		test_many_stages(st, path);
		state_close(st);
	}
	test_close_rolls_back(path);
	test_reopen(path);
	test_wal(path);
	test_refusals();
	test_migration();
	test_migration_v2();
	test_migration_journal_rowid();
	test_journal_lookup();
	test_gc();
	test_gc_replay();

	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
	return done_testing();
}
