/*
 * test_state: the run-state database against real files in a temporary
 * directory: round trips, partial updates, ordering, nesting, reopening,
 * and the refusals (missing, not a database, newer schema).
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
	is_int(header_user_version(newer), 1, "fresh database has user_version 1");
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
	is_int(header_user_version(empty), 1, "and migrates it to version 1");

	free(missing);
	free(junk);
	free(under);
	free(newer);
	free(empty);
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
		state_close(st);
	}
	test_close_rolls_back(path);
	test_reopen(path);
	test_wal(path);
	test_refusals();

	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
	return done_testing();
}
