/*
 * http: libcurl multi-socket transfers on the libev loop. Requests wait in a
 * FIFO until a slot under max_inflight frees up; finished transfers are
 * removed from the multi handle before their callback runs, and callbacks
 * only ever run from libev watchers (never inside a libcurl callback).
 */
#include "net/http.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "base/util.h"
#include "net/transport.h"

/* PACKAGE_VERSION comes from configure as a -D flag (no config header). */
#ifdef PACKAGE_VERSION
#define HTTP_USER_AGENT "pipectl/" PACKAGE_VERSION
#else
#define HTTP_USER_AGENT "pipectl"
#endif

#define HTTP_MAX_REDIRS 10
#define HTTP_FREE_EASY_MAX 64           /* easy handles kept for reuse */
#define HTTP_CURL_CONNECT_DEFAULT 300.0 /* libcurl's own connect timeout */

enum http_state {
	XFER_QUEUED,                    /* in h->queue, waiting for a slot */
	XFER_RUNNING,                   /* in h->running, added to the multi */
	XFER_DONE,                      /* removed from the multi, callback due */
	XFER_PENDING                    /* in h->pending, completed by h->kick */
};

/* A doubly linked list of transfers (each transfer is in at most one). */
struct http_list {
	struct http_xfer *head, *tail;
	size_t n;
};

struct http_xfer {
	struct http *h;
	struct http_xfer *prev, *next;
	enum http_state state;
	CURL *easy;

	/* the request, copied */
	char *method, *url, *body;
	size_t body_len;
	struct curl_slist *headers;
	double timeout, connect_timeout;
	long long max_body;
	bool tls_verify;
	char *origin;                   /* redirects are checked against it */
	char **allow_hosts;             /* NULL-terminated, or NULL */
	http_done_fn done;
	void *arg;

	/* the response */
	struct buf resp;
	struct http_header *rh;
	size_t n_rh, cap_rh;
	bool too_big;
	long long announced;            /* Content-Length of a body too big, or 0 */
	struct sha256 *digest;          /* of the body so far (NULL: none yet) */
	char digest_hex[65];
	long hstatus;                   /* status of the response whose headers arrive */
	bool new_conn;                  /* a socket was opened for this transfer */
	bool connected;                 /* a connection (new or reused) was ready to
	                                   send the request on */
	bool answered;                  /* some of a response arrived */
	char *refused;                  /* why a redirect was not followed */
	CURLcode rc;                    /* for XFER_DONE */
	enum http_error pend_err;       /* for XFER_PENDING */
	const char *pend_msg;
	double t_start, t_end;          /* left the queue; finished */
	char errbuf[CURL_ERROR_SIZE];
};

/* One socket libcurl asked us to watch (attached with curl_multi_assign). */
struct http_sock {
	ev_io io;
	struct http *h;
	curl_socket_t fd;
	struct http_sock *prev, *next;
};

struct http {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;                 /* libcurl's timeout */
	ev_timer kick;                  /* already due: delivers h->pending */
	size_t max_inflight;
	struct http_list queue, running, pending;
	struct http_sock *socks;        /* every live http_sock */
	CURL **free_easy;
	size_t n_free, cap_free;
	bool cancelling, destroying;
	int delivering;                 /* user callbacks on the stack */
};

/* ------------------------------------------------------------ lists */

static void list_push(struct http_list *l, struct http_xfer *x)
{
	x->next = NULL;
	x->prev = l->tail;
	if (l->tail)
		l->tail->next = x;
	else
		l->head = x;
	l->tail = x;
	l->n++;
}

static void list_unlink(struct http_list *l, struct http_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		l->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		l->tail = x->prev;
	x->prev = x->next = NULL;
	l->n--;
}

static struct http_xfer *list_pop(struct http_list *l)
{
	struct http_xfer *x = l->head;

	if (x)
		list_unlink(l, x);
	return x;
}

/* ------------------------------------------------------------ easy handles */

static CURL *http_easy_get(struct http *h)
{
	CURL *e;

	if (h->n_free > 0)
		return h->free_easy[--h->n_free];
	e = curl_easy_init();
	if (!e) {
		fprintf(stderr, "pipectl: curl_easy_init failed\n");
		abort();
	}
	return e;
}

/* Resets e (keeping its caches) and keeps it for the next transfer. */
static void http_easy_put(struct http *h, CURL *e)
{
	size_t keep = h->max_inflight < HTTP_FREE_EASY_MAX ?
	              h->max_inflight : HTTP_FREE_EASY_MAX;

	if (!e)
		return;
	if (h->n_free >= keep || h->destroying) {
		curl_easy_cleanup(e);
		return;
	}
	curl_easy_reset(e);
	xgrow(&h->free_easy, &h->cap_free, h->n_free + 1, sizeof(*h->free_easy));
	h->free_easy[h->n_free++] = e;
}

/* ------------------------------------------------------------ transfer data */

static void xfer_clear_headers(struct http_xfer *x)
{
	size_t i;

	for (i = 0; i < x->n_rh; i++) {
		free(x->rh[i].name);
		free(x->rh[i].value);
	}
	x->n_rh = 0;
}

static void xfer_free(struct http_xfer *x)
{
	size_t i;

	xfer_clear_headers(x);
	free(x->rh);
	buf_free(&x->resp);
	curl_slist_free_all(x->headers);
	if (x->digest)
		sha256_end(x->digest, x->digest_hex);
	free(x->refused);
	free(x->origin);
	for (i = 0; x->allow_hosts && x->allow_hosts[i]; i++)
		free(x->allow_hosts[i]);
	free(x->allow_hosts);
	free(x->method);
	free(x->url);
	free(x->body);
	free(x);
}

static size_t http_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	x->answered = true;
	if (x->max_body > 0 &&
	    (unsigned long long)x->resp.len + n > (unsigned long long)x->max_body) {
		x->too_big = true;
		return 0;       /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (!x->digest) {
		/* First bytes: one buffer of the announced size, so a large body
		 * is not copied through doubling reallocations. */
		curl_off_t cl = -1;
		x->digest = sha256_begin();
		if (curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
		    CURLE_OK && cl > 0 && (x->max_body <= 0 || cl <= x->max_body))
			buf_presize(&x->resp, (size_t)cl);
	}
	/* Hashed as it arrives: the journal keeps only the digest of a large
	 * body, and hashing it at the end would stall the loop. */
	sha256_update(x->digest, p, n);
	buf_add(&x->resp, p, n);
	return n;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A redirect's Location (v..end) that libcurl is about to follow: checked
 * against the transfer's origin like any URL a server supplies. Returns
 * true when it may be followed, else sets x->refused. */
static bool http_redirect_ok(struct http_xfer *x, const char *v, const char *end)
{
	char *loc = xstrndup(v, (size_t)(end - v)), *cur = NULL, *target, *why;

	curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &cur);
	target = http_url_resolve(cur ? cur : x->url, loc);
	why = target ? http_url_supplied_check(x->origin ? x->origin : x->url, target,
	                                       (const char *const *)x->allow_hosts) :
	               xstrdup("it does not parse");
	if (why) {
		free(x->refused);
		x->refused = xasprintf("redirect to %s refused: %s", target ? target : loc, why);
		free(why);
	}
	free(target);
	free(loc);
	return x->refused == NULL;
}

/* Keeps the headers of the final response: a status line starts afresh. */
static size_t http_header_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb, len = n, nl;
	const char *colon, *v, *end;

	x->answered = true;
	while (len > 0 && is_space(p[len - 1]))
		len--;
	if (len == 0)
		return n;
	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		const char *sp = memchr(p, ' ', len);
		xfer_clear_headers(x);
		x->hstatus = sp ? strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	if ((p[0] == ' ' || p[0] == '\t') && x->n_rh > 0) {
		/* obsolete line folding: continues the previous value */
		struct http_header *last = &x->rh[x->n_rh - 1];
		char *joined;

		v = p;
		while (v < p + len && is_space(*v))
			v++;
		joined = xasprintf("%s %.*s", last->value, (int)(p + len - v), v);
		free(last->value);
		last->value = joined;
		return n;
	}
	colon = memchr(p, ':', len);
	if (!colon || colon == p)
		return n;
	nl = (size_t)(colon - p);
	while (nl > 0 && is_space(p[nl - 1]))
		nl--;
	v = colon + 1;
	end = p + len;
	while (v < end && is_space(*v))
		v++;
	if (x->hstatus >= 300 && x->hstatus <= 399 && x->hstatus != 304 &&
	    nl == 8 && strncasecmp(p, "Location", 8) == 0 && !http_redirect_ok(x, v, end))
		return 0;       /* aborts the transfer: the redirect is not followed */
	if ((x->hstatus < 300 || x->hstatus > 399) && x->max_body > 0 && nl == 14 &&
	    strncasecmp(p, "Content-Length", 14) == 0) {
		long long cl = strtoll(v, NULL, 10);
		if (cl > x->max_body) {
			/* Refused before a byte of it is read. */
			x->too_big = true;
			x->announced = cl;
			return 0;
		}
	}
	xgrow(&x->rh, &x->cap_rh, x->n_rh + 1, sizeof(*x->rh));
	x->rh[x->n_rh].name = xstrndup(p, nl);
	x->rh[x->n_rh].value = xstrndup(v, (size_t)(end - v));
	x->n_rh++;
	return n;
}

/* CURLOPT_SOCKOPTFUNCTION: runs for every socket libcurl opens, so a
 * transfer that never sees it ran on a reused connection. */
static int http_sockopt_cb(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	struct http_xfer *x = arg;

	(void)fd;
	(void)purpose;
	x->new_conn = true;
	return CURL_SOCKOPT_OK;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* CURLOPT_PREREQFUNCTION: the connection (new or reused) is ready and the
 * request is about to be sent: the connect phase is over. */
static int http_prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port,
                          int local_port)
{
	struct http_xfer *x = arg;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	x->connected = true;
	return CURL_PREREQFUNC_OK;
}
#endif

static long secs_to_ms(double s)
{
	double ms = ceil(s * 1000.0);

	if (ms < 1)
		return 1;
	if (ms > (double)0x7fffffff)
		return 0x7fffffff;
	return (long)ms;
}

/* Configures x->easy for x. */
static void xfer_setup(struct http_xfer *x)
{
	CURL *e = x->easy;
	const char *m = x->method;
	bool has_body = x->body != NULL;

	x->errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, http_sockopt_cb);
	curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, x);
#if LIBCURL_VERSION_NUM >= 0x075000
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, http_prereq_cb);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
#endif
	curl_easy_setopt(e, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)HTTP_MAX_REDIRS);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS,
	                 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS,
	                 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, x->tls_verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, x->tls_verify ? 2L : 0L);
	if (x->timeout > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, secs_to_ms(x->timeout));
	if (x->connect_timeout > 0)
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		                 secs_to_ms(x->connect_timeout));
	if (x->headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

	/* GET is the default (a GET with a body stays a GET); HEAD has no body;
	 * POST/PUT/PATCH always send one (maybe empty, for an explicit
	 * Content-Length); other methods send a body only when given one. */
	if (!m || strcasecmp(m, "GET") == 0) {
		if (has_body)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m ? m : "GET");
	} else if (strcasecmp(m, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		has_body = false;
	} else {
		if (strcasecmp(m, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
		if (strcasecmp(m, "POST") == 0 || strcasecmp(m, "PUT") == 0 ||
		    strcasecmp(m, "PATCH") == 0)
			has_body = true;
	}
	if (has_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)x->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
	}
}

/* ------------------------------------------------------------ completion */

/* "64 MiB", "1.5 KiB" style, for messages. */
static void fmt_bytes(long long n, char *out, size_t sz)
{
	if (n >= 1024LL * 1024 * 1024 && n % (1024LL * 1024 * 1024) == 0)
		snprintf(out, sz, "%lld GiB", n / (1024LL * 1024 * 1024));
	else if (n >= 1024LL * 1024 && n % (1024LL * 1024) == 0)
		snprintf(out, sz, "%lld MiB", n / (1024LL * 1024));
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(out, sz, "%lld KiB", n / 1024);
	else
		snprintf(out, sz, "%lld bytes", n);
}

/* Seconds as "2.0s" or "0.25s". */
static void fmt_secs(double s, char *out, size_t sz)
{
	if (fabs(s * 10 - round(s * 10)) < 1e-9)
		snprintf(out, sz, "%.1fs", s);
	else
		snprintf(out, sz, "%gs", s);
}

/* Maps a finished transfer's CURLcode to an error and a message (written to
 * msg when it is not libcurl's own). */
static enum http_error classify(struct http_xfer *x, CURLcode rc,
                                char *msg, size_t sz, const char **out)
{
	char a[64];
	double ct = 0, cto, to;

	*out = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	if (x->refused) {
		*out = x->refused;
		return HTTP_ERR_REFUSED;
	}
	if (x->too_big) {
		fmt_bytes(x->max_body, a, sizeof(a));
		if (x->announced > 0)
			snprintf(msg, sz, "response body of %lld bytes (Content-Length) exceeds %s "
			         "(max_body)", x->announced, a);
		else
			snprintf(msg, sz, "response body exceeds %s (max_body)", a);
		*out = msg;
		return HTTP_ERR_TOO_BIG;
	}
	switch (rc) {
	case CURLE_OK:
		*out = NULL;
		return HTTP_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return HTTP_ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		/* Which phase timed out. The connect phase is over once the
		 * request could be sent (a reused keep-alive connection has none,
		 * and its connect time reads 0); it is bounded by the smaller of
		 * connect_timeout (or libcurl's default) and timeout. */
		curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME, &ct);
		if (ct > 0)
			x->connected = true;
		cto = x->connect_timeout > 0 ? x->connect_timeout :
		      HTTP_CURL_CONNECT_DEFAULT;
		to = x->timeout > 0 ? x->timeout : INFINITY;
		if (!x->connected && !x->answered && cto <= to) {
			fmt_secs(cto, a, sizeof(a));
			snprintf(msg, sz, "connect timed out after %s (%s)", a,
			         x->connect_timeout > 0 ? "connect_timeout" :
			         "libcurl default connect timeout");
			*out = msg;
		} else if (x->timeout > 0) {
			fmt_secs(x->timeout, a, sizeof(a));
			if (!x->connected && !x->answered)
				snprintf(msg, sz, "timed out after %s while connecting (timeout)", a);
			else if (!x->answered)
				snprintf(msg, sz, "timed out after %s waiting for the response%s "
				         "(timeout)", a, x->new_conn ? "" : " on a reused connection");
			else
				snprintf(msg, sz, "timed out after %s reading the response, %zu bytes "
				         "received (timeout)", a, x->resp.len);
			*out = msg;
		}
		return HTTP_ERR_TIMEOUT;
	default:
		return HTTP_ERR_OTHER;
	}
}

/* True when libcurl's rc says the same request will fail the same way:
 * retrying it only delays the error. */
static bool http_rc_permanent(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_REMOTE_ACCESS_DENIED:
	case CURLE_FILE_COULDNT_READ_FILE:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_LOGIN_DENIED:
	case CURLE_BAD_CONTENT_ENCODING:
		return true;
	default:
		return false;
	}
}

/* Runs x's callback and frees x (its easy handle goes back to the free
 * list). x is no longer in any list. With transport, the result comes from
 * libcurl (rc, the response); otherwise it is err/err_msg with no response. */
static void xfer_finish(struct http_xfer *x, bool transport, CURLcode rc,
                        enum http_error err, const char *err_msg)
{
	struct http *h = x->h;
	struct http_result res;
	char msg[CURL_ERROR_SIZE + 128];
	long status = 0;

	memset(&res, 0, sizeof(res));
	if (transport) {
		res.error = classify(x, rc, msg, sizeof(msg), &res.error_msg);
		res.permanent = res.error == HTTP_ERR_OTHER && http_rc_permanent(rc);
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		res.status = status;
		res.body = x->resp.data ? x->resp.data : "";
		res.body_len = x->resp.len;
		res.headers = x->rh;
		res.n_headers = x->n_rh;
		if (x->digest)
			sha256_end(x->digest, x->digest_hex);
		else
			sha256_hex("", 0, x->digest_hex);
		x->digest = NULL;
		res.body_sha256 = x->digest_hex;
		res.xfer = x;
	} else {
		res.error = err;
		res.error_msg = err_msg;
		res.body = "";
		res.body_sha256 = "";
	}
	if (x->t_start > 0)
		res.duration = (x->t_end > 0 ? x->t_end : now_mono()) - x->t_start;
	res.url = x->url;

	h->delivering++;
	x->done(x->arg, &res);
	h->delivering--;

	http_easy_put(h, x->easy);
	xfer_free(x);
}

/* Starts queued transfers while there is room. */
static void http_pump(struct http *h)
{
	struct http_xfer *x;
	CURLMcode mc;

	while (h->running.n < h->max_inflight && (x = list_pop(&h->queue))) {
		x->easy = http_easy_get(h);
		xfer_setup(x);
		x->t_start = now_mono();
		mc = curl_multi_add_handle(h->multi, x->easy);
		if (mc != CURLM_OK) {
			/* completed from the loop, never from inside submit */
			x->state = XFER_PENDING;
			x->pend_err = HTTP_ERR_OTHER;
			x->pend_msg = curl_multi_strerror(mc);
			list_push(&h->pending, x);
			ev_timer_start(h->loop, &h->kick);
			continue;
		}
		x->state = XFER_RUNNING;
		list_push(&h->running, x);
	}
}

/* Collects finished transfers, refills the slots, then runs callbacks. */
static void http_check_done(struct http *h)
{
	struct http_list done = { NULL, NULL, 0 };
	struct http_xfer *x;
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left))) {
		CURL *e = m->easy_handle;
		CURLcode rc = m->data.result;
		char *priv = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		x = (struct http_xfer *)(void *)priv;
		/* m is invalid once the handle is removed */
		curl_multi_remove_handle(h->multi, e);
		list_unlink(&h->running, x);
		x->state = XFER_DONE;
		x->rc = rc;
		x->t_end = now_mono();
		list_push(&done, x);
	}
	http_pump(h);
	while ((x = list_pop(&done)))
		xfer_finish(x, true, x->rc, HTTP_OK, NULL);
}

/* ------------------------------------------------------------ libev side */

static void http_timer_ev(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http *h = w->data;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_check_done(h);
}

static void http_io_ev(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_sock *s = (struct http_sock *)w;   /* io is the first member */
	struct http *h = s->h;
	curl_socket_t fd = s->fd;
	int action = 0, running;

	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	/* s may be freed inside this call */
	curl_multi_socket_action(h->multi, fd, action, &running);
	http_check_done(h);
}

/* Delivers h->pending: cancelled or failed-to-start transfers. */
static void http_flush_pending(struct http *h)
{
	struct http_list batch = h->pending;
	struct http_xfer *x;

	/* only this batch: what callbacks add waits for the next round */
	memset(&h->pending, 0, sizeof(h->pending));
	while ((x = list_pop(&batch)))
		xfer_finish(x, false, CURLE_OK, x->pend_err, x->pend_msg);
}

/* h->kick: a zero-delay timer, so the loop polls without blocking and runs
 * it on its next iteration; what the callbacks add re-arms it for the one
 * after (libev never runs a timer armed inside the same pass). */
static void http_kick_ev(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http *h = w->data;

	http_flush_pending(h);
	if (h->pending.head)
		ev_timer_start(loop, w);
}

/* ------------------------------------------------------------ libcurl side */

/* CURLMOPT_TIMERFUNCTION: only (re)arms the ev_timer; libcurl is never
 * called from here. 0 ms becomes an already-due timer that fires on the next
 * loop iteration. */
static int http_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;

	ev_timer_stop(h->loop, &h->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(h->loop, &h->timer);
	}
	return 0;
}

static void http_sock_free(struct http *h, struct http_sock *s)
{
	ev_io_stop(h->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		h->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what libcurl wants watched into ev_io
 * watchers. Also runs inside curl_multi_cleanup. */
static int http_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp,
                            void *socketp)
{
	struct http *h = userp;
	struct http_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s)
			http_sock_free(h, s);
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->h = h;
		s->fd = fd;
		s->next = h->socks;
		if (h->socks)
			h->socks->prev = s;
		h->socks = s;
		ev_init(&s->io, http_io_ev);
		curl_multi_assign(h->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	ev_io_stop(h->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	ev_io_start(h->loop, &s->io);
	return 0;
}

/* ------------------------------------------------------------ public */

/* Returns a new client on loop; never NULL (aborts if libcurl cannot create
 * a multi handle). Free with http_destroy. */
struct http *http_create(struct ev_loop *loop, int max_inflight)
{
	struct http *h = xcalloc(1, sizeof(*h));
	long maxconn;

	h->loop = loop;
	h->max_inflight = max_inflight > 0 ? (size_t)max_inflight : 1;
	h->multi = curl_multi_init();
	if (!h->multi) {
		fprintf(stderr, "pipectl: curl_multi_init failed\n");
		abort();
	}
	ev_init(&h->timer, http_timer_ev);
	h->timer.data = h;
	ev_timer_init(&h->kick, http_kick_ev, 0., 0.);
	h->kick.data = h;

	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_curl_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_curl_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	/* keep one idle connection per slot so keep-alive survives bursts */
	maxconn = h->max_inflight > 8 ? (long)h->max_inflight : 8;
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, maxconn);
	return h;
}

/* Cancels everything (callbacks get HTTP_ERR_CANCELLED, including requests
 * those callbacks submit) and frees h. Must not be called from a completion
 * callback. NULL-safe. */
void http_destroy(struct http *h)
{
	size_t i;

	if (!h)
		return;
	if (h->delivering) {
		fprintf(stderr, "pipectl: http_destroy called from a completion callback\n");
		abort();
	}
	h->destroying = true;
	http_cancel_all(h);
	while (h->pending.head)
		http_flush_pending(h);
	ev_timer_stop(h->loop, &h->kick);

	for (i = 0; i < h->n_free; i++)
		curl_easy_cleanup(h->free_easy[i]);
	free(h->free_easy);
	/* closes cached connections; may call http_curl_socket/timer */
	curl_multi_cleanup(h->multi);
	while (h->socks)
		http_sock_free(h, h->socks);
	ev_timer_stop(h->loop, &h->timer);
	free(h);
}

/* Copies req and queues it. Returns a handle valid until done runs; done runs
 * exactly once, always from the loop (never from inside this call). While
 * http_cancel_all or http_destroy is running, the request is completed with
 * HTTP_ERR_CANCELLED on the next loop iteration (or by http_destroy). */
struct http_xfer *http_submit(struct http *h, const struct http_request *req,
                              http_done_fn done, void *arg)
{
	struct http_xfer *x = xcalloc(1, sizeof(*x));
	const char *const *hp;

	x->h = h;
	x->method = xstrdup(req->method);
	x->url = xstrdup(req->url ? req->url : "");
	if (req->body) {
		x->body = xmalloc(req->body_len + 1);
		memcpy(x->body, req->body, req->body_len);
		x->body[req->body_len] = '\0';
		x->body_len = req->body_len;
	}
	for (hp = req->headers; hp && *hp; hp++) {
		struct curl_slist *n = curl_slist_append(x->headers, *hp);
		if (!n) {
			fprintf(stderr, "pipectl: out of memory (curl_slist_append)\n");
			abort();
		}
		x->headers = n;
	}
	x->timeout = req->timeout;
	x->connect_timeout = req->connect_timeout;
	x->max_body = req->max_body;
	x->tls_verify = req->tls_verify;
	x->origin = req->origin ? xstrdup(req->origin) : NULL;
	if (req->allow_hosts) {
		size_t n = 0, i;
		while (req->allow_hosts[n])
			n++;
		x->allow_hosts = xcalloc(n + 1, sizeof(*x->allow_hosts));
		for (i = 0; i < n; i++)
			x->allow_hosts[i] = xstrdup(req->allow_hosts[i]);
	}
	x->done = done;
	x->arg = arg;
	buf_init(&x->resp);

	if (h->cancelling || h->destroying) {
		x->state = XFER_PENDING;
		x->pend_err = HTTP_ERR_CANCELLED;
		x->pend_msg = "cancelled";
		list_push(&h->pending, x);
		ev_timer_start(h->loop, &h->kick);
		return x;
	}
	x->state = XFER_QUEUED;
	list_push(&h->queue, x);
	http_pump(h);
	return x;
}

/* Completes every running and queued transfer with HTTP_ERR_CANCELLED, in
 * that order, each exactly once, before returning. Requests submitted by
 * those callbacks are cancelled too, on the next loop iteration. */
void http_cancel_all(struct http *h)
{
	struct http_list victims = { NULL, NULL, 0 };
	struct http_xfer *x;

	if (h->cancelling)
		return;
	h->cancelling = true;
	while ((x = list_pop(&h->running))) {
		curl_multi_remove_handle(h->multi, x->easy);
		x->state = XFER_DONE;
		list_push(&victims, x);
	}
	while ((x = list_pop(&h->queue))) {
		x->state = XFER_DONE;
		list_push(&victims, x);
	}
	while ((x = list_pop(&victims)))
		xfer_finish(x, false, CURLE_OK, HTTP_ERR_CANCELLED, "cancelled");
	h->cancelling = false;
}

/* Transfers running now. */
size_t http_inflight(const struct http *h)
{
	return h->running.n;
}

/* Transfers waiting for a slot. */
size_t http_queued(const struct http *h)
{
	return h->queue.n;
}

char *http_result_take_body(const struct http_result *res)
{
	struct http_xfer *x = res->xfer;
	char *b;

	if (!x || !x->resp.data)
		return xstrndup(res->body, res->body_len);
	b = x->resp.data;
	buf_init(&x->resp);
	return b;
}

static void tr_submit(void *impl, const struct http_request *req, http_done_fn done,
                      void *arg)
{
	http_submit(impl, req, done, arg);
}

static void tr_cancel_all(void *impl)
{
	http_cancel_all(impl);
}

static size_t tr_inflight(const void *impl)
{
	return http_inflight(impl);
}

static char *tr_take_body(void *impl, const struct http_result *res)
{
	return http_result_take_body(res);
}

static const struct transport_ops http_transport_ops = {
	tr_submit, tr_cancel_all, tr_inflight, tr_take_body
};

void http_transport(struct http *h, struct transport *t)
{
	t->ops = &http_transport_ops;
	t->impl = h;
}

/* Returns the value of the first header called name (any case), borrowed
 * from res, or NULL. */
const char *http_result_header(const struct http_result *res, const char *name)
{
	size_t i;

	for (i = 0; i < res->n_headers; i++)
		if (strcasecmp(res->headers[i].name, name) == 0)
			return res->headers[i].value;
	return NULL;
}

void http_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "pipectl: curl_global_init failed\n");
		abort();
	}
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

/* ------------------------------------------------------------ URL helpers */

char *http_url_resolve(const char *base, const char *rel)
{
	CURLU *u = curl_url();
	char *out = NULL, *r = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, rel, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
		r = xstrdup(out);
		curl_free(out);
	}
	curl_url_cleanup(u);
	return r;
}

char *http_url_host(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *r = NULL, *p;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host) {
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port)
			r = xasprintf("%s:%s", host, port);
		else
			r = xstrdup(host);
		for (p = r; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

char *http_url_set_param(const char *url, const char *name, const char *value)
{
	CURLU *u = curl_url();
	char *query = NULL, *out = NULL, *r = NULL, *enc_name, *enc_value;
	struct buf q;
	size_t nlen = strlen(name);
	const char *p;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return NULL;
	}
	buf_init(&q);
	buf_add(&q, "", 0);
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query) {
		/* Keep every pair but name=... (compared in its raw form). */
		for (p = query; *p; ) {
			const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
			size_t len = (size_t)(end - p);
			bool same = (len >= nlen && strncmp(p, name, nlen) == 0 &&
			             (len == nlen || p[nlen] == '='));
			if (len && !same) {
				if (q.len)
					buf_addc(&q, '&');
				buf_add(&q, p, len);
			}
			p = amp ? amp + 1 : end;
		}
	}
	enc_name = curl_easy_escape(NULL, name, 0);
	enc_value = curl_easy_escape(NULL, value, 0);
	if (q.len)
		buf_addc(&q, '&');
	buf_printf(&q, "%s=%s", enc_name ? enc_name : name, enc_value ? enc_value : value);
	curl_free(enc_name);
	curl_free(enc_value);
	if (curl_url_set(u, CURLUPART_QUERY, q.data, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
		r = xstrdup(out);
		curl_free(out);
	}
	curl_free(query);
	buf_free(&q);
	curl_url_cleanup(u);
	return r;
}

/* The end of the quoted string that starts at q (its closing quote, or
 * end when it is not closed). */
static const char *http_link_quote_end(const char *q, const char *end)
{
	for (q++; q < end && *q != '"'; q++)
		;
	return q;
}

/* True when the relation types in v[0, vend) (space-separated) hold "next". */
static bool http_link_rel_next(const char *v, const char *vend)
{
	while (v < vend) {
		const char *t;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		t = v;
		while (v < vend && *v != ' ' && *v != '\t')
			v++;
		if (v - t == 4 && strncasecmp(t, "next", 4) == 0)
			return true;
	}
	return false;
}

/* Scheme, host (lowercased) and port (the scheme's default when absent)
 * of url into malloc'd strings (host and port NULL for file://). Returns 0,
 * or -1 when url does not parse. */
static int url_parts(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u = curl_url();
	char *s = NULL, *h = NULL, *p = NULL, *c;
	int rc = -1;

	*scheme = *host = *port = NULL;
	if (!u)
		return -1;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &s, 0) != CURLUE_OK)
		goto fail;
	*scheme = xstrdup(s);
	for (c = *scheme; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	if (curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h && *h) {
		*host = xstrdup(h);
		for (c = *host; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		if (curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK && p)
			*port = xstrdup(p);
	}
	rc = 0;
fail:
	curl_free(s);
	curl_free(h);
	curl_free(p);
	curl_url_cleanup(u);
	return rc;
}

/* Does the allow_hosts entry a match host (and port)? */
static bool host_listed(const char *a, const char *host, const char *port)
{
	const char *colon = strrchr(a, ':');
	size_t hl = strlen(host), al;

	if (strcmp(a, "*") == 0)
		return true;
	if (colon && !strchr(colon, ']')) {
		/* "host:port" */
		al = (size_t)(colon - a);
		if (!port || strcmp(colon + 1, port) != 0)
			return false;
	} else {
		al = strlen(a);
	}
	if (al > 2 && a[0] == '*' && a[1] == '.')
		return hl > al - 1 && strncasecmp(host + hl - (al - 1), a + 1, al - 1) == 0;
	return al == hl && strncasecmp(a, host, al) == 0;
}

char *http_url_supplied_check(const char *origin, const char *url,
                              const char *const *allow_hosts)
{
	char *os = NULL, *oh = NULL, *op = NULL, *s = NULL, *h = NULL, *p = NULL;
	char *why = NULL;
	size_t i;

	if (url_parts(url, &s, &h, &p) != 0) {
		why = xstrdup("it does not parse");
		goto out;
	}
	if (url_parts(origin, &os, &oh, &op) != 0) {
		why = xstrdup("the URL it came from does not parse");
		goto out;
	}
	if (strcmp(s, os) != 0 && !(strcmp(os, "http") == 0 && strcmp(s, "https") == 0)) {
		why = xasprintf("another scheme (%s://) than the stage's %s://", s, os);
		goto out;
	}
	if (!h || !oh)
		goto out;              /* file:// from file:// */
	if (strcmp(h, oh) == 0 && (strcmp(s, os) != 0 || (p && op && strcmp(p, op) == 0)))
		goto out;              /* same host (and port, or an upgrade to https) */
	for (i = 0; allow_hosts && allow_hosts[i]; i++)
		if (host_listed(allow_hosts[i], h, p))
			goto out;
	why = xasprintf("another host (%s%s%s) than the stage's (%s%s%s), not listed in "
	                "allow_hosts", h, p ? ":" : "", p ? p : "", oh, op ? ":" : "",
	                op ? op : "");
out:
	free(os);
	free(oh);
	free(op);
	free(s);
	free(h);
	free(p);
	return why;
}

/* Link: <https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last"
 * (RFC 8288). rel may hold several space-separated relation types. Only a
 * parameter named rel counts: not one whose name merely ends in "rel", nor
 * "rel=next" inside another parameter's quoted value (a title). */
char *http_link_next(const char *link)
{
	const char *p = link;

	while (p && *p) {
		const char *lt = strchr(p, '<'), *gt, *end, *q;
		if (!lt || !(gt = strchr(lt, '>')))
			return NULL;
		end = gt + 1;
		/* Parameters run to the next ',' outside quotes. */
		{
			bool in_q = false;
			while (*end && (in_q || *end != ',')) {
				if (*end == '"')
					in_q = !in_q;
				end++;
			}
		}
		/* Each parameter is ";" name ["=" value], value a token or quoted. */
		for (q = gt + 1; q < end; ) {
			const char *name, *v, *vend;
			if (*q == '"') {
				q = http_link_quote_end(q, end) + 1;
				continue;
			}
			if (*q++ != ';')
				continue;
			while (q < end && (*q == ' ' || *q == '\t'))
				q++;
			name = q;
			while (q < end && *q != '=' && *q != ';' && *q != '"' && *q != ' ' && *q != '\t')
				q++;
			if (q - name != 3 || strncasecmp(name, "rel", 3) != 0)
				continue;
			while (q < end && (*q == ' ' || *q == '\t'))
				q++;
			if (q >= end || *q != '=')
				continue;
			q++;
			while (q < end && (*q == ' ' || *q == '\t'))
				q++;
			if (q < end && *q == '"') {
				v = q + 1;
				vend = http_link_quote_end(q, end);
				q = vend < end ? vend + 1 : end;
			} else {
				v = q;
				while (q < end && *q != ';' && *q != ' ' && *q != '\t')
					q++;
				vend = q;
			}
			if (http_link_rel_next(v, vend))
				return xstrndup(lt + 1, (size_t)(gt - lt - 1));
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}
