/*
 * state: the run-state database (SQLite, WAL). Only the state*.c files
 * include sqlite3.h; all SQL lives there as named constants (one file per
 * topic: runs, stages, attempts, journal), prepared once and reset after
 * use. Schema version is PRAGMA user_version; migrations run on open.
 *
 * Tables (see man/pipectl.1, FILES):
 *   runs(id, pipeline, path, hash, params, status, started, finished, error)
 *   stage_runs(run_id, stage, kind, status, records_in, records_out, errors,
 *              requests, started, finished, error)
 * Times are seconds since the epoch (REAL). Status strings are those of
 * state_status_name().
 */
#ifndef PIPECTL_STATE_H
#define PIPECTL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state;

/* ---- the handle (state.c): statuses, open and close, errors,
 * transactions, the scope of lists */
enum run_status {
	ST_PENDING = 0,   /* not started yet */
	ST_RUNNING,
	ST_SUCCEEDED,
	ST_FAILED,
	ST_CANCELLED,     /* a stage skipped because something it needs failed */
	ST_INTERRUPTED,   /* stopped by a signal */
};
const char *state_status_name(enum run_status s);
/* Returns the status for a name, or -1. */
int state_status_parse(const char *name);

/*
 * Opens (creating the file and its directory if needed) and migrates.
 * Returns NULL with *err set (malloc'd) on failure. read_only opens an
 * existing database without creating or migrating it.
 */
struct state *state_open(const char *path, bool read_only, char **err);
void state_close(struct state *st);   /* NULL-safe */
/* The last error message of this handle (borrowed). */
const char *state_errmsg(struct state *st);

/* Groups many updates in one transaction (one fsync). Nestable: only the
 * outermost pair commits. Returns 0 or -1. */
int state_begin(struct state *st);
int state_commit(struct state *st);

/* Limits the latest run (state_run_get with 0), state_runs_list,
 * state_dlq_list and state_gc to the runs of pipeline (copied; NULL lifts
 * the limit). A run read by its id is not limited. */
void state_set_scope(struct state *st, const char *pipeline);

/* ---- runs (state_runs.c); since schema v3 a run also keeps `text` (the
 * pipeline file's bytes when it started) and `pid` (of the process running
 * it) */
struct run_row {
	int64_t id;
	char *pipeline, *path, *hash, *params, *error;   /* malloc'd; error may be NULL */
	enum run_status status;
	double started, finished;                        /* finished 0 while running */
};

/* Creates a run (status running). Returns 0 and sets *run_id, or -1. */
int state_run_create(struct state *st, const char *pipeline, const char *path,
                     const char *hash, const char *params_json, double started,
                     int64_t *run_id);
int state_run_finish(struct state *st, int64_t run_id, enum run_status status,
                     const char *error, double finished);

/* Reads run id (0 = the latest). Returns 1 found, 0 not found, -1 error. */
int state_run_get(struct state *st, int64_t run_id, struct run_row *out);
void run_row_free(struct run_row *r);
/* The latest `limit` runs, newest first. Returns the count or -1; *out is a
 * malloc'd array the caller frees with run_rows_free. */
int state_runs_list(struct state *st, int limit, struct run_row **out);
void run_rows_free(struct run_row *rows, int n);

/* The pipeline text and pid of a run (v3 columns). *text malloc'd (may be
 * NULL for runs recorded before v3). Returns 1 found, 0 not found, -1. */
int state_run_source(struct state *st, int64_t run_id, char **text, long *pid);
int state_run_set_source(struct state *st, int64_t run_id, const char *text, long pid);
/* Marks a run running again (resume): status running, finished NULL,
 * error NULL, pid set. */
int state_run_reopen(struct state *st, int64_t run_id, long pid);

/* Replaces the params (JSON text) recorded for a run (a resume with -p).
 * Returns 0 or -1. */
int state_run_set_params(struct state *st, int64_t run_id, const char *params_json);
/* Records that run run_id is a dlq replay of run `of`. Returns 0 or -1. */
int state_run_set_replay_of(struct state *st, int64_t run_id, int64_t of);
/* The run whose dead letters run run_id replayed: its id, 0 when run_id is
 * no dlq replay, -1 on a database error. */
int64_t state_run_replay_of(struct state *st, int64_t run_id);

/* Deletes runs that finished (any status but running) before `before`
 * (epoch seconds), with everything that belongs to them (stages, attempts,
 * journal, dlq, events). *runs_deleted set. Returns 0 or -1. */
int state_gc(struct state *st, double before, int64_t *runs_deleted);

/* ---- leases (schema v4, state_runs.c): one process owns a run, and each
 * file a run writes, at a time. See lease.h for the rules; these are the
 * rows. */
struct lease_row {
	char *resource;                /* "run:ID" or "file:/absolute/path" */
	int64_t run_id;                /* 0 when none */
	long pid;
	long long pid_start;           /* start time of pid, clock ticks after boot; 0 unknown */
	char *host;                    /* gethostname() */
	char *boot;                    /* boot id of the host ("" when unknown) */
	char *command;                 /* "run", "resume", "dlq replay" */
	double acquired;               /* wall clock */
};
int state_lease_get(struct state *st, const char *resource, struct lease_row *out);
int state_lease_put(struct state *st, const struct lease_row *l);
int state_lease_release(struct state *st, const struct lease_row *owner);
void lease_row_free(struct lease_row *l);

/* ---- stages (state_stages.c) */
struct stage_stats {
	int64_t records_in;
	int64_t records_out;
	int64_t errors;
	int64_t requests;
};

struct stage_row {
	char *stage, *kind, *error;                      /* error may be NULL */
	enum run_status status;
	struct stage_stats stats;
	double started, finished;                        /* 0 when not set */
};

/* Inserts a stage_runs row (pending). */
int state_stage_create(struct state *st, int64_t run_id, const char *stage,
                       const char *kind);
/* Updates a stage row; started/finished of 0 leave the stored value as is;
 * error NULL leaves it as is. */
int state_stage_update(struct state *st, int64_t run_id, const char *stage,
                       enum run_status status, const struct stage_stats *stats,
                       double started, double finished, const char *error);

/* Stages of a run in creation (topological) order. Returns count or -1. */
int state_stages_list(struct state *st, int64_t run_id, struct stage_row **out);
void stage_rows_free(struct stage_row *rows, int n);

/* sink_columns: the columns of a SQLite sink's table when its stage last
 * succeeded, per (pipeline, stage, table); a JSON array of names. */
int state_sink_columns_put(struct state *st, const char *pipeline, const char *stage,
                           const char *table, const char *columns, double at);
/* 1 found (*columns malloc'd), 0 not found, -1 error. */
int state_sink_columns_get(struct state *st, const char *pipeline, const char *stage,
                           const char *table, char **columns);

/* ---- attempts, dead letters, events (schema v2, state_attempts.c).
 * Writes work inside or outside state_begin/commit; callers batch them. */
/* One HTTP attempt (schema v2, table attempts). url is stored redacted. */
struct attempt_row {
	int64_t run_id;
	char *stage;
	char *fingerprint;             /* request identity: sha256 of method, url, body */
	char *method, *url;
	int attempt;                   /* 1-based */
	long http_status;              /* 0 when no response */
	char *error;                   /* NULL on success */
	double started;                /* wall clock */
	double duration;               /* seconds */
	double wait;                   /* seconds waited before this attempt: the sum of */
	double wait_backoff;           /* the retry's own backoff, */
	double wait_retry_after;       /* the delay the server asked for (Retry-After), */
	double wait_rate;              /* the host's rate limit, */
	double wait_concurrency;       /* a free slot of the host's concurrency, */
	double wait_breaker;           /* the end of the host's breaker cool-down */
};

/* A dead letter (schema v2, table dlq): a record or request that failed for
 * good in a stage with on_error: dlq. */
struct dlq_row {
	int64_t id, run_id;
	char *stage;
	char *payload;                 /* JSON text: the input record, or for a source
	                                  fetch {"method","url","body"} */
	char *error;
	char *attempts;                /* JSON array text of {attempt, status, error, ...} */
	double created;
	int replayed;                  /* 0/1: pipectl dlq replay succeeded for it */
};

/* A notable event of a run (schema v2, table events): breaker transitions,
 * timeouts. */
struct event_row {
	int64_t run_id;
	char *stage;                   /* may be NULL */
	char *kind;                    /* "breaker", "timeout", ... */
	char *message;
	double at;
};

int state_attempt_add(struct state *st, const struct attempt_row *a);
/* Attempts of a run (stage NULL = all) in insertion order. Count or -1. */
int state_attempts_list(struct state *st, int64_t run_id, const char *stage,
                        struct attempt_row **out);
void attempt_rows_free(struct attempt_row *rows, int n);

/* Adds a dead letter; sets *id when id is not NULL. */
int state_dlq_add(struct state *st, int64_t run_id, const char *stage,
                  const char *payload, const char *error, const char *attempts,
                  double created, int64_t *id);
/* Dead letters of a run (0 = every run), stage NULL = all, oldest first. */
int state_dlq_list(struct state *st, int64_t run_id, const char *stage,
                   struct dlq_row **out);
int state_dlq_mark_replayed(struct state *st, int64_t id);
void dlq_rows_free(struct dlq_row *rows, int n);

int state_event_add(struct state *st, int64_t run_id, const char *stage,
                    const char *kind, const char *message, double at);
int state_events_list(struct state *st, int64_t run_id, struct event_row **out);
void event_rows_free(struct event_row *rows, int n);

/* ---- the response journal (schema v3, state_journal.c): successful
 * responses per (run, stage, request fingerprint), so a resumed run serves
 * them without asking the server again. */
struct journal_entry {
	long status;                   /* HTTP status (0 for file://) */
	char *headers;                 /* JSON object text {name: value} of the response */
	char *body;                    /* response body (may hold NUL bytes) */
	size_t body_len;
	/* A large body is not kept (schema v4): put with digest set (hex
	 * SHA-256) stores digest and body_len instead of the body; get sets
	 * digest and size, with an empty body. */
	char *digest;
	size_t size;
};

/* Records a response. An existing entry for the key is kept (first wins). */
int state_journal_put(struct state *st, int64_t run_id, const char *stage,
                      const char *fingerprint, const struct journal_entry *e);
/* Looks one up: 1 found (*e filled, free with journal_entry_free), 0 not
 * found, -1 error. */
int state_journal_get(struct state *st, int64_t run_id, const char *stage,
                      const char *fingerprint, struct journal_entry *e);
void journal_entry_free(struct journal_entry *e);

/* Entries of a run (stage NULL = all). Returns the count or -1. */
int64_t state_journal_count(struct state *st, int64_t run_id, const char *stage);
/* Of those, entries that keep only a digest. Returns the count or -1. */
int64_t state_journal_count_digests(struct state *st, int64_t run_id, const char *stage);

#endif
