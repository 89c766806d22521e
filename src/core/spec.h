/*
 * config: reads a pipeline YAML file with libyaml into a typed spec that keeps
 * the source position of every value, so that any later error can point at a
 * line. Reading does no I/O beyond the file itself. All errors in a file are
 * collected (not just the first) as diagnostics; see diag.h.
 *
 * Ownership: config_load returns a spec the caller frees with spec_free; every
 * string and array inside belongs to the spec.
 */
#ifndef PIPECTL_CONFIG_H
#define PIPECTL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "base/diag.h"
#include "base/policy.h"
#include "net/hostreg.h"

/* A string from the file with its position (s == NULL when absent). */
struct sval {
	char *s;
	struct pos pos;
};

struct header {
	char *name;
	struct sval value;             /* a ${...} template */
};

enum data_format { FMT_JSON = 0, FMT_JSONL };

/* retry: (in defaults: or a fetch stage; a stage's retry replaces the
 * default one as a whole). */
struct retry_spec {
	bool set;                      /* the key was given */
	struct pos pos;
	struct retry_policy p;         /* unset keys keep retry_policy_default() */
	struct sval when;              /* jq predicate on a 2xx body: retry when true */
};

/* on_error: what a stage does with a record or request that failed for good. */
enum on_error {
	ON_ERROR_UNSET = 0,            /* inherit (default: fail) */
	ON_ERROR_FAIL,                 /* fail the stage; cancel what depends on it */
	ON_ERROR_SKIP,                 /* count it, log it, go on */
	ON_ERROR_DLQ,                  /* store it in the dead-letter queue, go on */
	ON_ERROR_PASS,                 /* fan-out fetch only: pass the input record on
	                                  with an "_errors" field */
};

/* paginate: (fetch with url). Exactly one kind. */
enum page_kind { PAGE_NONE = 0, PAGE_NEXT, PAGE_LINK, PAGE_COUNTER };
struct paginate_spec {
	enum page_kind kind;
	struct pos pos;
	struct sval next;              /* NEXT: jq on the body -> next URL (absolute or
	                                  relative to the current one), or null/empty to stop */
	struct sval param;             /* COUNTER: query parameter to set (e.g. page, offset) */
	long long start;               /* COUNTER: first value (default 1) */
	long long step;                /* COUNTER: increment (default 1) */
	struct sval stop;              /* COUNTER: jq predicate on the body: stop when true
	                                  (required for COUNTER; default for others: none) */
	int max_pages;                 /* 0 = unlimited; else stop after this many pages */
};

/* hosts: entries (top-level map; a key is a host name, "host:port", or a
 * pool name that stages select with `pool:`): the limits of a host pool,
 * as net/hostreg.h declares them (the name keeps config.c's spelling). */
#define host_spec host_limits

/* Durations are seconds (double); -1 means "not set, inherit". */
struct fetch_spec {
	struct sval *urls;             /* templates; n_urls == 0 when file is set */
	size_t n_urls;
	struct sval file;              /* local path template (relative to the pipeline dir) */
	enum data_format format;       /* of each response / of the file */
	struct sval method;            /* default GET (s NULL) */
	struct header *headers;
	size_t n_headers;
	struct sval body;              /* raw body template, or */
	struct sval json;              /* jq expression whose value is sent as JSON */
	struct sval records;           /* jq: document -> 0..n records; default "." */
	double timeout;                /* per attempt */
	double connect_timeout;
	int concurrency;               /* transfers in flight for this stage; 0 = inherit */
	long long max_body;            /* bytes; 0 = inherit */
	int tls_verify;                /* 1, 0, or -1 = inherit (default on) */
	struct retry_spec retry;       /* !set: inherit defaults.retry */
	int idempotent;                /* -1 unset (GET/HEAD/PUT/DELETE yes; POST/PATCH no), 0, 1 */
	struct sval pool;              /* a hosts: entry to use instead of the URL's host */
	struct paginate_spec paginate;
	/* Hosts other than the job's own that a URL a server supplies (a next
	 * page, a redirect) may go to: "host", "host:port", "*.domain", "*". */
	struct sval *allow_hosts;
	size_t n_allow_hosts;
	/* Fan-out (a fetch stage with needs): runs once per input record, with
	 * url/headers/body/json templated from it (`.` is the record). */
	struct sval merge;             /* jq on {"record": in, "response": r} for each
	                                  response record r -> 0..n outputs; absent:
	                                  outputs are the response records */
};

struct transform_spec {
	struct sval jq;                /* per-record expression, 0..n outputs (optional) */
	struct sval dedupe;            /* key expression: keep the first record per key (optional) */
};

enum load_target { LOAD_SQLITE = 0, LOAD_FILE, LOAD_STDOUT, LOAD_HTTP };

/* sqlite on_conflict: what a record whose key is already in the table does. */
enum on_conflict {
	ON_CONFLICT_REPLACE = 0,       /* the row becomes the record (absent columns NULL) */
	ON_CONFLICT_MERGE,             /* only the columns present in the record change */
	ON_CONFLICT_IGNORE,            /* the existing row stays as it is */
};

struct load_spec {
	enum load_target target;
	struct sval path;              /* sqlite, file: relative to the pipeline dir */
	struct sval table;             /* sqlite */
	struct sval *key;              /* sqlite: upsert key columns */
	size_t n_key;
	enum on_conflict on_conflict;  /* sqlite, with a key */
	struct sval *columns;          /* sqlite: columns the table has even before
	                                  (or without) a record with them */
	size_t n_columns;
	enum data_format format;       /* file, stdout: FMT_JSONL only for now */
	/* http: records sent as JSON request bodies (one record, or an array of
	 * `batch` records). Uses urls[0] (a template: `.` is the record, or the
	 * array when batch > 1), method (POST, PUT or PATCH; default POST),
	 * headers, timeout, connect_timeout, concurrency, retry and tls_verify
	 * of this fetch_spec; requests are always idempotent (Idempotency-Key). */
	struct fetch_spec http;
	int batch;                     /* http: records per request (default 1) */
};

enum stage_type { STAGE_FETCH = 0, STAGE_TRANSFORM, STAGE_LOAD };

struct stage_spec {
	char *id;
	struct pos pos;                /* of the stage's key */
	char *description;
	enum on_error on_error;        /* UNSET: inherit defaults.on_error */
	double stage_timeout;          /* seconds; -1 = inherit (default: none) */
	struct sval *needs;
	size_t n_needs;
	enum stage_type type;
	struct pos type_pos;           /* of the fetch:/transform:/load: key */
	union {
		struct fetch_spec fetch;
		struct transform_spec transform;
		struct load_spec load;
	} u;
};

struct spec {
	char *path;                    /* as given on the command line */
	char *dir;                     /* directory relative paths resolve against */
	char *text;                    /* the file's bytes */
	size_t text_len;
	char hash[65];                 /* sha256 of text */

	char *name;                    /* pipeline: */
	char *description;
	json_t *params;                /* object: name -> scalar (defaults; -p overrides) */

	/* settings: (engine-wide) */
	int concurrency;               /* HTTP transfers in flight, whole run (default 64) */
	int queue_high, queue_low;     /* records per stage input queue (10000 / 5000) */
	int batch_size;                /* records per batch (default 500) */

	/* defaults: (inherited by fetch stages) */
	double timeout;                /* default 30s */
	double connect_timeout;        /* default 10s */
	int stage_concurrency;         /* default 16 */
	long long max_body;            /* default 64MiB */
	struct retry_spec retry;       /* default: retry_policy_default() */
	enum on_error on_error;        /* default ON_ERROR_FAIL */
	double stage_timeout;          /* default -1: none */

	double run_timeout;            /* settings.run_timeout; -1 = none */
	struct host_spec *hosts;       /* hosts: (top level) */
	size_t n_hosts;

	struct stage_spec *stages;     /* in file order */
	size_t n_stages;
};

/*
 * Parses and checks path. Returns the spec, or NULL when any error was found;
 * every error found is appended to d (so callers print them all). Checks:
 * YAML syntax, duplicate keys, unknown keys (with a suggestion), types,
 * required keys, durations/sizes, stage references, cycles (dag.c), jq
 * expressions and ${...} templates (expr.c). A file larger than 16 MiB is
 * refused unread ("file too large").
 */
struct spec *config_load(const char *path, struct diags *d);
void spec_free(struct spec *s);

/* Index of the stage named id, or -1. */
int spec_stage_index(const struct spec *s, const char *id);

/* Strict value parsers, shared with the command line. Return 0 or -1. */
int parse_duration(const char *s, double *seconds);   /* 250ms 10s 5m 1h 1.5s */
int parse_size(const char *s, long long *bytes);      /* 512 64KiB 64MiB 1GiB 10kB 5MB */
int parse_rate(const char *s, double *per_second);    /* 5/s 300/m 1000/h 0.5/s */

#endif
