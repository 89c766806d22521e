/*
 * request_int.h: what request.c and journal.c share (private to src/net/).
 * request.c carries a request through its attempts, each admitted by its
 * pool (hostreg.h: concurrency, rate, breaker); journal.c buffers what is
 * recorded and serves a resumed run's answers.
 */
#ifndef PIPECTL_REQUEST_INT_H
#define PIPECTL_REQUEST_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <ev.h>
#include <jansson.h>

#include "net/hostreg.h"
#include "net/request.h"
#include "net/transport.h"

enum req_state { R_ADMIT, R_INFLIGHT, R_PARSING, R_BACKOFF, R_DONE };

struct request {
	struct requester *rq;
	struct pool *pool;
	enum req_state state;
	bool cancelled;
	char *stage, *method, *url, *body;
	size_t body_len;
	char **headers;                /* NULL-terminated */
	char *origin;
	char **allow_hosts;            /* NULL-terminated, or NULL */
	struct http_request hreq;
	struct retry_policy retry;
	struct expr *when;
	enum request_body body_format;
	json_t *doc;                   /* the last attempt's parsed body */
	bool retry_unsafe_ok;          /* may retry this method */
	int *waiting;
	void (*on_wait)(void *arg);
	request_done_fn done;
	void *arg;
	void *owner;
	int attempt;                   /* attempts made so far */
	double wait_backoff;           /* before the next attempt: its own backoff, */
	double wait_retry_after;       /* the delay the server asked for, */
	struct pool_waiter waiter;     /* in its pool's FIFO; waiter.blocked: the
	                                  time queued per pool_block reason */
	double started;                /* of the current attempt, wall clock */
	json_t *history;
	char fingerprint[65];
	ev_timer timer;
	struct request *q_next;        /* in the journal queue */
	struct journal_entry jentry;   /* when answered from the journal */
	char *refetch;                 /* digest of a journaled body fetched again */
	bool from_journal;
	struct request *prev, *next;   /* in the requester's list */
};

/* A successful response waiting for requester_flush. */
struct jrow {
	char *stage;
	char fingerprint[65];
	struct journal_entry e;
};

struct parse_job;

struct requester {
	struct state *journal;         /* NULL: no journal */
	bool serve;                    /* answer from the journal when possible */
	int64_t hits;
	struct jrow *jrows;
	size_t n_jrows, cap_jrows;
	double jfirst;                 /* now_mono() when jrows[0] was buffered */
	ev_timer jtimer;               /* fires journal answers, one loop turn later */
	struct request *jq_head;       /* requests to answer from the journal */
	pthread_mutex_t plock;         /* parse_job.done */
	ev_async pasync;               /* a worker finished a parse */
	struct parse_job *pjobs;       /* bodies being parsed */
	struct ev_loop *loop;
	struct transport tr;
	struct hostreg_user *hosts;    /* the pools this requester uses */
	int64_t run_id;
	int64_t key_run_id;            /* seeds Idempotency-Key values */
	struct request *all;
	struct attempt_row *rows;
	size_t n_rows, cap_rows;
	struct event_row *events;
	size_t n_events, cap_events;
};

/* ---- request.c */

/* Ends r: calls its callback (unless cancelled) and frees it. */
void request_finish(struct request *r, bool ok, const char *error,
                    const struct http_result *res);
void request_free(struct request *r);
/* Checks a 2xx body against r->body_format; see request.c. */
int request_check_body(struct request *r, const struct http_result *res, char **msg);
/* Buffers an event row of the run (written by requester_flush). */
void requester_event(struct requester *rq, const char *stage, const char *kind,
                     const char *msg);

/* ---- journal.c */

/* Buffers a successful response of r for the journal. */
void journal_add(struct request *r, const struct http_result *res);
/* With a serving journal holding r's answer: queues r to be answered from
 * it on the next loop iteration and returns true. */
bool journal_serve(struct request *r);
/* Takes r (cancelled) out of the queue of journal answers. */
void journal_unqueue(struct request *r);

#endif
