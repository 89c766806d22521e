/*
 * http_opts: the options of the HTTP kinds (fetch.http, load.http) and of
 * fetch.file, which is written beside fetch.http (fetch: {file} vs fetch:
 * {url}) and shares its options struct: the struct, the readers of the
 * options that are more than a value (headers, paginate, pool,
 * allow_hosts, url) and the tables.
 */
#ifndef PIPECTL_HTTP_OPTS_H
#define PIPECTL_HTTP_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/option.h"
#include "core/spec.h"
#include "core/stage.h"

struct header {
	char *name;
	struct sval value;             /* a ${...} template */
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

/* fetch.http and fetch.file. Durations are seconds (double); -1 means
 * "not set, inherit" (defaults:). */
struct fetch_spec {
	struct sval *urls;             /* templates; n_urls == 0 when file is set */
	size_t n_urls;
	struct sval file;              /* local path template (relative to the pipeline dir) */
	int format;                    /* enum data_format: of each response / of the file */
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

/* load.http: records sent as JSON request bodies (one record, or an array
 * of `batch` records). Uses urls[0] (a template: `.` is the record, or the
 * array when batch > 1), method (POST, PUT or PATCH; default POST),
 * headers, timeout, connect_timeout, concurrency, retry and tls_verify of
 * http; requests are always idempotent (Idempotency-Key). */
struct load_http_opts {
	struct fetch_spec http;
	int batch;                     /* records per request (default 1) */
};

/* Read hooks (OPT_CUSTOM) of the HTTP kinds: headers (a mapping of names
 * to templates, into the fetch_spec at opts: a load_http_opts starts with
 * one; freed by http_opts_free) and paginate (into a struct paginate_spec). */
void http_opts_read_headers(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                            const struct ynode *v, void *field, void *opts);
void http_opts_read_paginate(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                             const struct ynode *v, void *field, void *opts);
void http_opts_free_paginate(void *field);

/* Reports an allow_hosts entry of f that is no host, host:port, *.domain
 * or *. */
void http_opts_check_allow_hosts(struct opt_ctx *c, const struct fetch_spec *f);

/* Calls fn for the URLs and headers of f (what a request goes to). */
void http_opts_target_refs(const struct fetch_spec *f, stage_ref_fn fn, void *arg);

/* The fetch_spec of a stage of fetch.http, fetch.file or load.http. */
const struct fetch_spec *http_opts_fetch(const struct stage_spec *sp);

/* Hooks shared by fetch.http and fetch.file (struct stage_kind). */
void fetch_opts_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                      const struct ynode *m);
void fetch_opts_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg);


/* free_opts hook: the headers of the fetch_spec at opts (fetch.http,
 * fetch.file; load.http's frees them through it). */
void http_opts_free(void *opts);

#endif
