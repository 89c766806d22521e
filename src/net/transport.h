/*
 * transport: what request.c needs from whatever carries its attempts, and
 * the vocabulary they share: an HTTP request, its result and the classes of
 * transport errors. http.c implements it with libcurl (http_transport); a
 * unit test supplies a fake that answers from a script, so the retry,
 * breaker and pool logic can be tested without a network. This header
 * depends on no implementation: http.h includes it, not the other way.
 *
 * Contract: submit copies what it needs from req and calls done exactly
 * once, from the loop and never inside submit itself (so done may submit
 * again); cancel_all completes every transfer with HTTP_ERR_CANCELLED.
 */
#ifndef PIPECTL_TRANSPORT_H
#define PIPECTL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

/* What a caller asks for. Everything is copied by submit (http_submit). */
struct http_request {
	const char *method;            /* NULL = GET */
	const char *url;               /* http://, https:// or file:// */
	const char *const *headers;    /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;              /* may be NULL */
	size_t body_len;
	double timeout;                /* per attempt, seconds; 0 = none */
	double connect_timeout;        /* seconds; 0 = libcurl default */
	long long max_body;            /* bytes; a larger body fails the transfer; 0 = no limit */
	bool tls_verify;
	/* Redirects are followed only where http_url_supplied_check allows,
	 * from origin (NULL = url) with allow_hosts (NULL-terminated; may be
	 * NULL); a refused one fails the transfer with HTTP_ERR_REFUSED. */
	const char *origin;
	const char *const *allow_hosts;
};

enum http_error {
	HTTP_OK = 0,                   /* transport succeeded (any HTTP status) */
	HTTP_ERR_CONNECT,              /* resolve/connect/refused */
	HTTP_ERR_TIMEOUT,              /* per-attempt or connect timeout fired */
	HTTP_ERR_TOO_BIG,              /* body exceeded max_body */
	HTTP_ERR_CANCELLED,            /* cancel_all (http_cancel_all / http_destroy) */
	HTTP_ERR_REFUSED,              /* a redirect to a URL that may not be followed */
	HTTP_ERR_OTHER                 /* anything else libcurl reports (reset, TLS, ...) */
};

struct http_header {
	char *name;                    /* as sent by the server */
	char *value;                   /* trimmed */
};

/* Handed to the completion callback; valid only during the call. */
struct http_result {
	enum http_error error;
	const char *error_msg;         /* the transport's (libcurl's) message when
	                                  error != HTTP_OK */
	long status;                   /* HTTP status (0 when none; 0 for file://) */
	const char *body;              /* NUL-terminated; never NULL */
	size_t body_len;
	const struct http_header *headers; /* of the final response */
	size_t n_headers;
	const char *body_sha256;       /* hex SHA-256 of body, computed as it arrived */
	double duration;               /* seconds, submit-to-completion excluded queueing */
	const char *url;               /* effective URL as requested */
	bool permanent;                /* HTTP_ERR_OTHER that no retry can cure: a bad or
	                                  refused URL or scheme, a missing file, a failed
	                                  TLS verification, too many redirects */
	void *xfer;                    /* the transport's own (take_body) */
};

typedef void (*http_done_fn)(void *arg, const struct http_result *res);

/* The interface: a const table of functions, an implementation's state. */
struct transport_ops {
	void (*submit)(void *impl, const struct http_request *req, http_done_fn done,
	               void *arg);
	void (*cancel_all)(void *impl);
	size_t (*inflight)(const void *impl);
	/* As http_result_take_body: the body of res (during done), malloc'd. */
	char *(*take_body)(void *impl, const struct http_result *res);
};

struct transport {
	const struct transport_ops *ops;
	void *impl;
};

#endif
