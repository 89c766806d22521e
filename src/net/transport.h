/*
 * transport: what request.c needs from whatever carries its attempts. http.c
 * implements it with libcurl (http_transport); a unit test supplies a fake
 * that answers from a script, so the retry, breaker and pool logic can be
 * tested without a network.
 *
 * Contract: submit copies what it needs from req and calls done exactly
 * once, from the loop and never inside submit itself (so done may submit
 * again); cancel_all completes every transfer with HTTP_ERR_CANCELLED.
 */
#ifndef PIPECTL_TRANSPORT_H
#define PIPECTL_TRANSPORT_H

#include <stddef.h>
#include "net/http.h"

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
