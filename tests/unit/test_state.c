/*
 * test_state: the run-state database against real files in a temporary
 * directory: round trips, partial updates, ordering, nesting, reopening,
 * and the refusals (missing, not a database, newer schema); schema v2:
 * attempts, dead letters and events, the v1 -> v2 migration and cascades.
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

#include "state.h"
#include "tap.h"
#include "util.h"

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
	is_int(header_user_version(newer), 2, "fresh database has user_version 2");
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
	is_int(header_user_version(empty), 2, "and migrates it to version 2");

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
	is_int(raw_int(path, "PRAGMA user_version"), 2, "now at user_version 2");
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
	is_int(header_user_version(path), 2, "still version 2 (no migration twice)");
	free(path);
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
		state_close(st);
	}
	test_close_rolls_back(path);
	test_reopen(path);
	test_wal(path);
	test_refusals();
	test_migration();

	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
	return done_testing();
}
