/*
 * http: libcurl's multi-socket API driven by the libev loop (the evhiperfifo
 * pattern: socket callback -> ev_io, timer callback -> ev_timer, events ->
 * curl_multi_socket_action, then drain curl_multi_info_read). Only http.c
 * includes curl.h.
 *
 * A global limit bounds transfers in flight; requests beyond it wait in a FIFO
 * and start as slots free up. Completion callbacks run from the loop, never
 * from inside a libcurl callback, so they may submit new requests.
 */
#ifndef PIPECTL_HTTP_H
#define PIPECTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <ev.h>
#include "net/transport.h"

struct http;
struct http_xfer;

/* The request and result types, the error classes and http_done_fn are
 * the transport's vocabulary (net/transport.h): http.c is its libcurl
 * implementation. */

/* max_inflight >= 1: transfers running at once across the whole run. */
struct http *http_create(struct ev_loop *loop, int max_inflight);
/* Cancels whatever is left (callbacks get HTTP_ERR_CANCELLED) and frees. NULL-safe. */
void http_destroy(struct http *h);

/* Queues a request; done is called exactly once (even on cancel). Returns a
 * handle valid until done runs. */
struct http_xfer *http_submit(struct http *h, const struct http_request *req,
                              http_done_fn done, void *arg);

/* Completes every queued and running transfer with HTTP_ERR_CANCELLED. */
void http_cancel_all(struct http *h);

size_t http_inflight(const struct http *h);   /* running now */
size_t http_queued(const struct http *h);     /* waiting for a slot */

/* Moves the body out of a result (during the completion callback): returns
 * it malloc'd and NUL-terminated (body_len bytes), to be freed by the
 * caller; res->body must not be used afterwards. Avoids copying a large
 * body that outlives the callback. */
char *http_result_take_body(const struct http_result *res);

/* t becomes a transport (net/transport.h) carrying requests through h,
 * which must outlive every user of t. */
void http_transport(struct http *h, struct transport *t);

/* Case-insensitive header lookup in a result; NULL when absent. */
const char *http_result_header(const struct http_result *res, const char *name);

/* ---- URL helpers (libcurl's URL parser) ---- */

/* rel resolved against base (rel may be absolute). Malloc'd, or NULL when
 * either does not parse. */
char *http_url_resolve(const char *base, const char *rel);
/* The host of url, lowercased, with ":port" when the URL names a port
 * ("api.example.com", "127.0.0.1:8080"). Malloc'd; NULL when it has none
 * (file://) or does not parse. */
char *http_url_host(const char *url);
/* url with query parameter name set to value (replacing every existing
 * name=..., else appended). Malloc'd, or NULL when url does not parse. */
char *http_url_set_param(const char *url, const char *name, const char *value);
/*
 * May a URL that a server supplied (a redirect's Location, a next page) be
 * followed by a job that started from origin? Only with origin's scheme
 * (or https from http), never to file:// or another scheme, and only to
 * origin's host and port unless allow_hosts (NULL-terminated, may be NULL)
 * lists the host: "host" (any port), "host:port", "*.domain" (its
 * subdomains) or "*" (any host). Returns NULL when it may, else a
 * malloc'd reason ("another host (h:p), not listed in allow_hosts").
 */
char *http_url_supplied_check(const char *origin, const char *url,
                              const char *const *allow_hosts);
/* The target of rel="next" in a Link header value, malloc'd, or NULL. */
char *http_link_next(const char *link);

/* Once per process, before any thread: curl_global_init / cleanup. */
void http_global_init(void);
void http_global_cleanup(void);

#endif
