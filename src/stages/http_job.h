/*
 * The HTTP job shared by the fetch.http and load.http kinds: the stage
 * context, the request settings compiled from the spec, a job rendering
 * its url, headers and body from the templates and going through the
 * run's requester, what a job that fails for good does, and the stage
 * hooks both kinds use. Private to src/stages/.
 */
#ifndef PIPECTL_HTTP_JOB_H
#define PIPECTL_HTTP_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/engine.h"
#include "net/http.h"
#include "net/request.h"
#include "stages/records.h"
#include "stages/http_opts.h"

struct job {
	struct stage *st;
	json_t *input;                 /* fan-out: the input record; NULL for a source */
	char *url;                     /* of the current page */
	char *origin;                  /* the URL the job started from: next pages
	                                  and redirects are checked against it */
	char **headers;                /* rendered "Name: value", NULL-terminated */
	char *body;
	size_t body_len;
	int page;                      /* pages fetched so far */
	int emitted;                   /* pages whose records went on */
	long long counter;             /* paginate param value of the current page */
	struct job *next;              /* pending FIFO */
	struct job *all_prev, *all_next;   /* every live job of the stage */
};

struct fetch_http {
	struct emitter em;             /* source mode: records -> batches */
	bool fanout;
	bool sink;                     /* load: http: records are the request bodies,
	                                  responses are only acknowledgements */
	int batch;                     /* sink: records per request */
	char *method;
	struct expr **url_t;           /* templates */
	size_t n_url_t;
	struct expr **hdr_t;
	char **hdr_name;
	size_t n_hdr;
	struct expr *body_t;           /* raw body template */
	struct expr *json_x;           /* JSON body expression */
	bool add_ctype;
	struct expr *records;          /* fan-out: per response; NULL = identity */
	struct expr *merge;            /* fan-out: {record, response} -> outputs */
	struct expr *page_next, *page_stop;
	struct retry_policy retry;
	struct expr *when;
	char **allow_hosts;            /* NULL-terminated copy of allow_hosts */
	struct request_spec rs;        /* shared settings */
	size_t next_url;               /* source: next URL template to start */
	struct job *pend_head, *pend_tail; /* fan-out: jobs not started yet */
	struct job *park_head, *park_tail; /* next pages held while downstream is full */
	struct job *jobs;              /* every live job (freed at destroy) */
	int outstanding;               /* jobs started, not finished */
	int waiting;                   /* of those, in backoff (maintained by request.c) */
	int concurrency;
	bool finishing, stopped;
};

/* The request settings of stage st (a fetch stage's own, or an http
 * load's); owned by the spec. */
const struct fetch_spec *fspec(const struct stage *st);

/* Adds one output record to the stage's emitter, which takes rec. */
void emit_out(struct fetch_http *c, json_t *rec);

/* The stage hooks of both kinds (struct stage_kind): create returns 0, or
 * -1 with *err (the caller frees it); the stage owns its context, freed by
 * fh_destroy. fh_pump starts jobs while fewer than `concurrency` are
 * active and finishes the stage when nothing is left. */
int fh_create(struct stage *st, char **err);
void fh_pump(struct stage *st);
bool fh_ready(struct stage *st);
void fh_push(struct stage *st, json_t *batch);
void fh_finish(struct stage *st);
void fh_stop(struct stage *st);
void fh_destroy(struct stage *st);

/* fetch.http (fetch_http.c): fan-out emits the records of one response
 * document doc (borrowed), merged with the input record; returns 0, or -1
 * with *err (the caller frees it). n_sources is how many requests a
 * source starts (the URL list, or the dead letters of a replay). */
int fanout_doc(struct stage *st, struct job *j, json_t *doc, char **err);
size_t n_sources(struct stage *st);

#endif
