/*
 * request: one logical HTTP request carried out under the run's policies:
 * admission to its host pool (concurrency, token-bucket rate, circuit
 * breaker; see hostreg.h), attempts through a transport (http.c's),
 * retries with backoff and Retry-After, and a record of every attempt. A request waiting out a backoff or a rate
 * limit holds no slot of any kind: only an ev_timer.
 *
 * Ownership: the requester copies everything in request_spec; the result
 * handed to the callback is valid only during the call.
 */
#ifndef PIPECTL_REQUEST_H
#define PIPECTL_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>
#include <jansson.h>
#include "expr/expr.h"
#include "net/hostreg.h"
#include "net/http.h"
#include "net/transport.h"
#include "base/policy.h"
#include "store/state.h"

struct requester;
struct request;

/* What a 2xx body must be; one that is not fails the attempt as
 * ATTEMPT_INVALID_BODY (retry.on: invalid_body). */
enum request_body {
	REQUEST_BODY_ANY = 0,          /* not looked at (an http load's answers) */
	REQUEST_BODY_JSON,             /* one JSON document (parsed once: result.doc) */
	REQUEST_BODY_JSONL             /* JSON lines (every line checked) */
};

struct request_spec {
	const char *stage;             /* for records and messages */
	const char *method;            /* NULL = GET */
	const char *url;
	const char *const *headers;    /* "Name: value", NULL-terminated; may be NULL */
	const char *body;
	size_t body_len;
	double timeout, connect_timeout;
	long long max_body;
	bool tls_verify;
	const struct retry_policy *retry;   /* NULL = a single attempt */
	struct expr *when;             /* retry a 2xx when true on the body; may be NULL */
	enum request_body body_format; /* checked on every 2xx (not for HEAD) */
	bool idempotent;               /* POST/PATCH retried (with Idempotency-Key) */
	bool send_key;                 /* send Idempotency-Key whatever the method */
	const char *pool;              /* hosts: entry; NULL = the URL's host */
	const char *origin;            /* URL the job started from (redirects are
	                                  checked against it); NULL = url */
	const char *const *allow_hosts;/* other hosts a redirect may go to
	                                  (NULL-terminated; may be NULL) */
	void *owner;                   /* for request_cancel_owner (e.g. the stage) */
	int *waiting;                  /* incremented while in backoff; may be NULL */
	void (*on_wait)(void *arg);    /* called when the request starts waiting */
};

struct request_result {
	bool ok;                       /* a 2xx (or file://) answer */
	const char *error;             /* final error when !ok */
	const struct http_result *http;/* the last attempt's answer; NULL if none */
	int attempts;
	const json_t *history;         /* array of {attempt, status, error, duration, wait} */
	const char *fingerprint;
	const char *url;
	const json_t *doc;             /* body_format JSON and ok: the parsed body
	                                  (borrowed; json_incref to keep it) */
};

typedef void (*request_done_fn)(void *arg, const struct request_result *r);

/* A requester for run run_id: its attempts go through tr (copied; its
 * impl must outlive the requester), admitted by the pools of hosts (shared
 * with other requesters; it must outlive this one). limits (n_limits, a
 * pipeline's hosts: entries, copied) declare pools under the rules of
 * hostreg.h; a host no entry names gets a pool on first use (unlimited, no
 * breaker). Caller owns the result: requester_destroy. */
struct requester *requester_create(struct ev_loop *loop, const struct transport *tr,
                                   struct hostreg *hosts, const struct host_limits *limits,
                                   size_t n_limits, int64_t run_id);
/* Idempotency-Key values are those of run run_id (by default the run the
 * requester was created for): a dlq replay sends a dead letter again with
 * the key it had in the run it failed in, so a server that applied it
 * then does not apply it twice. */
void requester_set_key_run(struct requester *rq, int64_t run_id);
/* Cancels every request (no callbacks). Those in flight are freed when
 * http.c completes them: call this, then http_destroy(), then
 * requester_destroy(). */
void requester_cancel_all(struct requester *rq);
void requester_destroy(struct requester *rq);

/* Starts a request; done is called exactly once unless the requester is
 * destroyed or request_cancel_owner() cancels it first. */
struct request *request_start(struct requester *rq, const struct request_spec *spec,
                              request_done_fn done, void *arg);
/* Drops every request of owner (a stage stopping): their callbacks are not
 * called. In-flight attempts finish in http.c and are ignored. */
void request_cancel_owner(struct requester *rq, void *owner);

/* What happened to a request, for whoever watches the requester (the
 * engine hands it on to its observers). Borrowed for the call. */
enum request_fact_type {
	REQUEST_FACT_ATTEMPT,          /* an attempt ended: attempt, http_status, error */
	REQUEST_FACT_RETRY,            /* attempt is due in delay seconds */
	REQUEST_FACT_BREAKER,          /* a host's breaker changed: message */
	REQUEST_FACT_WAIT,             /* a wait for the request's host pool ended
	                                  (it is admitted): message ("POOL: rate",
	                                  "POOL: concurrency", "POOL: breaker"),
	                                  delay (seconds waited); one per reason */
};
struct request_fact {
	enum request_fact_type type;
	const char *stage;             /* the stage the request belongs to */
	int attempt;                   /* from 1 */
	long http_status;              /* ATTEMPT: 0 without an answer */
	const char *error;             /* ATTEMPT: NULL when it succeeded (redacted) */
	double delay;                  /* RETRY: seconds; WAIT: seconds waited */
	const char *message;           /* BREAKER: "circuit breaker for H: a -> b";
	                                  WAIT: "POOL: REASON" */
};
typedef void (*request_fact_fn)(void *arg, const struct request_fact *f);
/* fn(arg, fact) is called, on the loop, for every fact from now on (one
 * listener; NULL: none). It must not start or cancel requests. */
void requester_listen(struct requester *rq, request_fact_fn fn, void *arg);

/* Writes buffered attempt, event and journal rows (call inside
 * state_begin/commit). */
void requester_flush(struct requester *rq, struct state *st);

/* Seconds a response may wait in the buffer before it is committed to the
 * journal: the window in which a kill -9 can lose a recorded answer (see
 * requester_commit). */
#define REQUESTER_JOURNAL_WINDOW 0.010

/* Seconds the engine lets the oldest buffered response wait for company
 * before it commits the group (see journal_prep_cb in core/engine.c): at
 * most one journal commit per REQUESTER_JOURNAL_GROUP while answers keep
 * coming, half the window, so the commit is due well inside it. */
#define REQUESTER_JOURNAL_GROUP 0.005

/* Responses buffered for the journal and not yet written. */
size_t requester_journal_pending(const struct requester *rq);
/* Seconds since the oldest response still buffered for the journal was
 * buffered (now_mono() clock); 0 when none is. */
double requester_journal_age(const struct requester *rq);
/* Answered requests whose bodies worker threads are still parsing. */
size_t requester_parsing(const struct requester *rq);

/* Group commit: writes every buffered row (journal, attempts, events) to the
 * journal's state database in one transaction (nested in an open one, if
 * any). The engine calls it once the oldest buffered answer has waited
 * REQUESTER_JOURNAL_GROUP, and before it records a stage's end; a response
 * buffered for REQUESTER_JOURNAL_WINDOW while the loop is still busy is
 * committed at once when the next one arrives. With WAL and
 * synchronous=NORMAL a commit is a write(), not an fsync, so a kill of the
 * process loses nothing committed. Returns 0, or -1: no transaction could
 * be begun (the rows stay buffered for the next commit) or the commit
 * failed (logged; the rows are lost). No-op without a journal. */
int requester_commit(struct requester *rq);

/*
 * The response journal: every successful response is buffered for
 * requester_flush (keyed by stage and request fingerprint). With serve set
 * (a resumed run), a request whose response is in the journal of st is
 * answered from it, on the next loop iteration, without any network.
 */
void requester_use_journal(struct requester *rq, struct state *st, bool serve);

/* Bodies larger than this are not kept in the journal, only their SHA-256
 * and size: a resumed run fetches them again (and warns when the body it
 * gets differs). An http load's answers are served all the same (its
 * journal entry is the delivery record; the body is never read). */
#define REQUEST_JOURNAL_MAX_BODY (1024 * 1024)
/* Requests answered from the journal so far. */
int64_t requester_journal_hits(const struct requester *rq);

/* sha256 of method, url and body (hex): the request's identity. */
void request_fingerprint(const char *method, const char *url, const char *body,
                         size_t body_len, char out[65]);

#endif
