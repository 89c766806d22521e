/*
 * test_http: the libcurl/libev client against tests/mockapi (path in $MOCKAPI)
 * and file:// URLs: bodies, statuses, methods, limits, error classes, the
 * in-flight cap, keep-alive reuse, and cancellation (each callback once).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <jansson.h>
#include <ev.h>

#include "net/http.h"
#include "base/util.h"
#include "tap.h"

static struct ev_loop *loop;
static pid_t mock_pid = -1;
static int mock_port;
static char tmpdir[] = "/tmp/test_http.XXXXXX";
static char port_file[256], log_file[256];
static int in_submit;            /* > 0 while the test is inside http_submit */
static int in_cancel;            /* > 0 while the test is inside http_cancel_all */

/* ------------------------------------------------------------ mockapi */

static void start_mock(const char *bin)
{
	double end;

	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(port_file, sizeof(port_file), "%s/port", tmpdir);
	snprintf(log_file, sizeof(log_file), "%s/requests.log", tmpdir);
	mock_pid = fork();
	if (mock_pid < 0) {
		printf("Bail out! fork: %s\n", strerror(errno));
		exit(1);
	}
	if (mock_pid == 0) {
		execl(bin, "mockapi", "--port", "0", "--port-file", port_file,
		      "--log", log_file, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	end = now_mono() + 60;	/* a sanitizer build on a loaded machine */
	while (now_mono() < end) {
		size_t len;
		char *s = read_file(port_file, &len);
		int st;

		if (s) {
			mock_port = atoi(s);
			free(s);
			if (mock_port > 0)
				return;
		}
		if (waitpid(mock_pid, &st, WNOHANG) == mock_pid) {
			printf("Bail out! mockapi exited before listening\n");
			exit(1);
		}
		usleep(20000);
	}
	printf("Bail out! mockapi did not write %s\n", port_file);
	kill(mock_pid, SIGKILL);
	exit(1);
}

static void stop_mock(void)
{
	int st;

	if (mock_pid > 0) {
		kill(mock_pid, SIGTERM);
		waitpid(mock_pid, &st, 0);
		mock_pid = -1;
	}
	unlink(port_file);
	unlink(log_file);
	rmdir(tmpdir);
}

static char *murl(const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", mock_port, path);
}

/* ------------------------------------------------------------ running */

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs the loop until *n >= want or max seconds pass; a ticking timer keeps
 * each iteration short. */
static void wait_for(const int *n, int want, double max)
{
	ev_timer tick;
	double end = now_mono() + max;

	ev_timer_init(&tick, tick_cb, 0.05, 0.05);
	ev_timer_start(loop, &tick);
	while (*n < want && now_mono() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
}

static void run_for(double secs)
{
	int never = 0;

	wait_for(&never, 1, secs);
}

/* A copy of one result. */
struct got {
	int calls;
	int reentrant;                 /* called from inside submit/cancel_all */
	enum http_error err;
	char *msg;
	long status;
	char *body;
	size_t body_len;
	char *ctype, *ctype_upper, *missing;
	char *url;
	size_t n_headers;
	double duration;
	bool permanent;
};

static void got_cb(void *arg, const struct http_result *r)
{
	struct got *g = arg;
	const char *m;

	g->calls++;
	if (in_submit)
		g->reentrant = 1;
	g->err = r->error;
	free(g->msg);
	g->msg = xstrdup(r->error_msg);
	g->status = r->status;
	free(g->body);
	g->body = xstrndup(r->body, r->body_len);
	g->body_len = r->body_len;
	free(g->ctype);
	g->ctype = xstrdup(http_result_header(r, "content-type"));
	free(g->ctype_upper);
	g->ctype_upper = xstrdup(http_result_header(r, "CONTENT-TYPE"));
	m = http_result_header(r, "x-no-such-header");
	free(g->missing);
	g->missing = xstrdup(m);
	free(g->url);
	g->url = xstrdup(r->url);
	g->n_headers = r->n_headers;
	g->duration = r->duration;
	g->permanent = r->permanent;
}

static void got_free(struct got *g)
{
	free(g->msg);
	free(g->body);
	free(g->ctype);
	free(g->ctype_upper);
	free(g->missing);
	free(g->url);
	memset(g, 0, sizeof(*g));
}

static struct http_request req_init(const char *url)
{
	struct http_request r;

	memset(&r, 0, sizeof(r));
	r.url = url;
	r.timeout = 10;
	r.tls_verify = true;
	return r;
}

static struct http_xfer *submit(struct http *h, const struct http_request *r,
                                http_done_fn fn, void *arg)
{
	struct http_xfer *x;

	in_submit++;
	x = http_submit(h, r, fn, arg);
	in_submit--;
	return x;
}

/* Submits r and runs the loop until it completes (result in *g). */
static void fetch(struct http *h, const struct http_request *r, struct got *g)
{
	got_free(g);
	ok(submit(h, r, got_cb, g) != NULL, "submit %s", r->url);
	wait_for(&g->calls, 1, 15);
}

static json_t *parse(const char *s)
{
	json_error_t e;

	return s ? json_loads(s, 0, &e) : NULL;
}

/* ------------------------------------------------------------ cases */

static void test_get_json(struct http *h)
{
	char *u = murl("/json/42");
	struct http_request r = req_init(u);
	struct got g = { 0 };
	json_t *j;

	fetch(h, &r, &g);
	is_int(g.calls, 1, "GET /json/42: callback once");
	is_int(g.reentrant, 0, "GET: callback not run inside http_submit");
	is_int(g.err, HTTP_OK, "GET: transport ok");
	ok(g.msg == NULL, "GET: no error message");
	is_int(g.status, 200, "GET: status 200");
	j = parse(g.body);
	ok(j && json_integer_value(json_object_get(j, "id")) == 42, "GET: body has id 42");
	json_decref(j);
	ok(g.body_len == strlen(g.body ? g.body : ""), "GET: body_len matches");
	is_str(g.ctype, "application/json", "header lookup lowercase");
	is_str(g.ctype_upper, "application/json", "header lookup uppercase");
	ok(g.missing == NULL, "absent header is NULL");
	is_str(g.url, u, "result url is the requested url");
	ok(g.duration > 0 && g.duration < 5, "duration measured (%.4f)", g.duration);
	got_free(&g);
	free(u);
}

static void test_status(struct http *h)
{
	char *u = murl("/status/500");
	struct http_request r = req_init(u);
	struct got g = { 0 };

	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "500: transport ok");
	is_int(g.status, 500, "500: status returned");
	ok(g.body && strstr(g.body, "500"), "500: body returned");
	got_free(&g);
	free(u);
}

static void test_methods(struct http *h)
{
	char *u = murl("/echo?x=1");
	char hdr1[32], hdr2[32], body[32];
	const char *hdrs[] = { hdr1, hdr2, NULL };
	struct http_request r = req_init(u);
	struct got g = { 0 };
	json_t *j, *hs;

	/* the request is copied: the caller's buffers change before the run */
	snprintf(hdr1, sizeof(hdr1), "X-Test: abc");
	snprintf(hdr2, sizeof(hdr2), "Content-Type: text/plain");
	snprintf(body, sizeof(body), "hello=world-EXTRA");
	r.method = "POST";
	r.headers = hdrs;
	r.body = body;
	r.body_len = 11;
	got_free(&g);
	ok(submit(h, &r, got_cb, &g) != NULL, "submit POST");
	memset(hdr1, 'z', sizeof(hdr1) - 1);
	memset(body, 'z', sizeof(body) - 1);
	wait_for(&g.calls, 1, 15);
	is_int(g.err, HTTP_OK, "POST: ok");
	j = parse(g.body);
	hs = json_object_get(j, "headers");
	is_str(json_string_value(json_object_get(j, "method")), "POST", "POST: method echoed");
	is_str(json_string_value(json_object_get(j, "body")), "hello=world",
	       "POST: body echoed with explicit length");
	is_str(json_string_value(json_object_get(j, "query")), "x=1", "POST: query echoed");
	is_str(json_string_value(json_object_get(hs, "x-test")), "abc", "POST: custom header echoed");
	is_str(json_string_value(json_object_get(hs, "content-type")), "text/plain",
	       "POST: content-type header overrides the default");
	ok(json_string_value(json_object_get(hs, "user-agent")) &&
	   strncmp(json_string_value(json_object_get(hs, "user-agent")), "pipectl", 7) == 0,
	   "User-Agent is pipectl/...");
	json_decref(j);

	r = req_init(u);
	r.method = "PUT";
	fetch(h, &r, &g);
	j = parse(g.body);
	is_str(json_string_value(json_object_get(j, "method")), "PUT", "PUT: method echoed");
	is_str(json_string_value(json_object_get(json_object_get(j, "headers"), "content-length")),
	       "0", "PUT without body sends Content-Length: 0");
	json_decref(j);

	r.method = "PATCH";
	r.body = "{\"a\":1}";
	r.body_len = 7;
	fetch(h, &r, &g);
	j = parse(g.body);
	is_str(json_string_value(json_object_get(j, "method")), "PATCH", "PATCH: method echoed");
	is_str(json_string_value(json_object_get(j, "body")), "{\"a\":1}", "PATCH: body echoed");
	json_decref(j);

	r = req_init(u);
	r.method = "DELETE";
	fetch(h, &r, &g);
	j = parse(g.body);
	is_str(json_string_value(json_object_get(j, "method")), "DELETE", "DELETE: method echoed");
	is_str(json_string_value(json_object_get(j, "body")), "", "DELETE: no body");
	json_decref(j);

	r = req_init(u);
	r.body = "q";
	r.body_len = 1;
	fetch(h, &r, &g);
	j = parse(g.body);
	is_str(json_string_value(json_object_get(j, "method")), "GET",
	       "method NULL with a body: still GET");
	is_str(json_string_value(json_object_get(j, "body")), "q", "GET: body sent");
	json_decref(j);

	r = req_init(u);
	r.method = "HEAD";
	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "HEAD: ok");
	is_int(g.status, 200, "HEAD: status 200");
	is_int(g.body_len, 0, "HEAD: no body");
	is_str(g.ctype, "application/json", "HEAD: headers captured");

	got_free(&g);
	free(u);
}

/* Headers of the final response only; redirects stay on http(s). */
static void redirect_cb(void *arg, const struct http_result *r)
{
	struct got *g = arg;
	size_t i, n = 0;

	for (i = 0; i < r->n_headers; i++)
		n += strcasecmp(r->headers[i].name, "content-type") == 0;
	got_cb(arg, r);
	g->n_headers = n;              /* reused: Content-Type count */
	free(g->missing);
	g->missing = xstrdup(http_result_header(r, "location"));
}

static void test_redirect(struct http *h)
{
	char *u = murl("/status/302?location=/json/9");
	struct http_request r = req_init(u);
	struct got g = { 0 };
	json_t *j;

	ok(submit(h, &r, redirect_cb, &g) != NULL, "submit redirect");
	wait_for(&g.calls, 1, 15);
	is_int(g.err, HTTP_OK, "302: followed");
	is_int(g.status, 200, "302: final status 200");
	j = parse(g.body);
	ok(j && json_integer_value(json_object_get(j, "id")) == 9, "302: final body");
	json_decref(j);
	ok(g.missing == NULL, "302: headers of the redirect response are dropped");
	is_int(g.n_headers, 1, "302: Content-Type only once (final response)");
	free(u);

	u = murl("/status/302?location=file:///etc/hostname");
	r.url = u;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_REFUSED, "redirect to file:// is refused");
	ok(g.msg && strstr(g.msg, "redirect to file:///etc/hostname refused: another scheme"),
	   "redirect to file://: the message names the URL and why");
	got_free(&g);
	free(u);

	/* Another host (localhost is not 127.0.0.1) only with allow_hosts. */
	u = xasprintf("http://127.0.0.1:%d/status/302?location=http://localhost:%d/json/7",
	              mock_port, mock_port);
	r.url = u;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_REFUSED, "redirect to another host is refused");
	got_free(&g);
	{
		const char *const allow[] = { "localhost", NULL };
		r.allow_hosts = allow;
		fetch(h, &r, &g);
		is_int(g.err, HTTP_OK, "redirect to a host in allow_hosts is followed");
		is_int(g.status, 200, "redirect to a host in allow_hosts: status 200");
		got_free(&g);
		r.allow_hosts = NULL;
	}
	free(u);
}

static void test_timeouts(struct http *h)
{
	/* The answers that must time out wait at a gate nobody opens: however
	 * late the loop runs, none can come before its timeout. */
	char *u = murl("/slow?ms=2000&gate=never");
	struct http_request r = req_init(u);
	struct got g = { 0 };

	r.timeout = 0.3;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_TIMEOUT, "slow 2000ms, timeout 0.3s: HTTP_ERR_TIMEOUT");
	ok(g.msg && strncmp(g.msg, "timed out after 0.3s waiting for the response", 45) == 0 &&
	   strstr(g.msg, "(timeout)"), "timeout message names the phase and the limit");
	ok(g.duration >= 0.25, "sub-second timeout: not before it (%.3fs)", g.duration);
	free(u);

	/* On a connection of its own, then on a reused keep-alive one: the
	 * connect phase is over in both, whatever connect_timeout says. */
	{
		struct http *h1 = http_create(loop, 1);
		char *fast = murl("/json/5?c=keepalive");
		u = murl("/slow?ms=2000&c=keepalive&gate=never");
		r = req_init(u);
		r.timeout = 0.3;
		r.connect_timeout = 0.1;
		fetch(h1, &r, &g);
		is_str(g.msg, "timed out after 0.3s waiting for the response (timeout)",
		       "timeout on a new connection: waiting for the response");
		r = req_init(fast);
		fetch(h1, &r, &g);
		is_int(g.err, HTTP_OK, "a fast request opens a keep-alive connection");
		r = req_init(u);
		r.timeout = 0.3;
		r.connect_timeout = 0.1;
		fetch(h1, &r, &g);
		is_int(g.err, HTTP_ERR_TIMEOUT, "timeout on a reused connection: HTTP_ERR_TIMEOUT");
		is_str(g.msg, "timed out after 0.3s waiting for the response on a reused "
		       "connection (timeout)", "timeout on a reused connection: not a connect timeout");
		got_free(&g);
		http_destroy(h1);
		free(fast);
		free(u);
	}

	u = murl("/slow?ms=150");
	r = req_init(u);
	r.timeout = 60;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "slow 150ms within timeout: ok");
	ok(g.duration >= 0.14, "duration covers the wait (%.3fs)", g.duration);
	got_free(&g);
	free(u);
}

/* A port nobody listens on: bind one, note it, close it. */
static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return 1;
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static void test_errors(struct http *h)
{
	char *u = xasprintf("http://127.0.0.1:%d/", free_port());
	struct http_request r = req_init(u);
	struct got g = { 0 };

	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_CONNECT, "refused: HTTP_ERR_CONNECT");
	ok(g.msg && *g.msg, "refused: message (%s)", g.msg ? g.msg : "");
	is_int(g.status, 0, "refused: status 0");
	free(u);

	u = murl("/close");
	r = req_init(u);
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_OTHER, "/close mid-body: HTTP_ERR_OTHER");
	ok(g.msg && *g.msg, "/close: message (%s)", g.msg ? g.msg : "");
	ok(!g.permanent, "/close mid-body: transient (a retry may get the whole body)");
	free(u);

	r = req_init("ftp://127.0.0.1:1/x");
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_OTHER, "ftp:// is not an allowed protocol");
	ok(g.permanent, "ftp://: permanent (never retried)");
	got_free(&g);
}

static void test_max_body(struct http *h)
{
	char *u = murl("/big?kb=256");
	struct http_request r = req_init(u);
	struct got g = { 0 };

	r.max_body = 64 * 1024;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_TOO_BIG, "256 KiB with max_body 64 KiB: HTTP_ERR_TOO_BIG");
	is_str(g.msg, "response body of 262144 bytes (Content-Length) exceeds 64 KiB (max_body)",
	       "too big message: refused from its Content-Length");
	free(u);

	u = murl("/big?kb=64");
	r.url = u;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "exactly max_body: ok");
	is_int(g.body_len, 64 * 1024, "exactly max_body: whole body");
	free(u);

	u = murl("/big?kb=65");
	r.url = u;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_TOO_BIG, "one KiB over max_body: too big");
	free(u);

	u = murl("/big?kb=300");
	r.url = u;
	r.max_body = 0;
	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "max_body 0: no limit");
	is_int(g.body_len, 300 * 1024, "max_body 0: whole 300 KiB body");
	got_free(&g);
	free(u);
}

static void test_file(struct http *h)
{
	char path[300], *u;
	struct http_request r;
	struct got g = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/data.txt", tmpdir);
	f = fopen(path, "w");
	fputs("hello file\n", f);
	fclose(f);
	u = xasprintf("file://%s", path);
	r = req_init(u);
	fetch(h, &r, &g);
	is_int(g.err, HTTP_OK, "file:// read ok");
	is_int(g.status, 0, "file:// status 0");
	is_str(g.body, "hello file\n", "file:// body");
	free(u);
	unlink(path);

	u = xasprintf("file://%s/missing.txt", tmpdir);
	r = req_init(u);
	fetch(h, &r, &g);
	is_int(g.err, HTTP_ERR_OTHER, "missing file: HTTP_ERR_OTHER");
	ok(g.permanent, "missing file: permanent (never retried)");
	ok(g.msg && *g.msg, "missing file: message (%s)", g.msg ? g.msg : "");
	is_str(g.body, "", "missing file: empty body, never NULL");
	got_free(&g);
	free(u);
}

/* ---- many requests under a small cap */

#define MANY 300
#define MANY_CAP 8
#define MANY_BASE 100000

struct many {
	struct http *h;
	int done;
	int calls[MANY];
	int ok_ids;
	int errors;
	size_t max_inflight;
	size_t bad_sum;             /* inflight+queued more than what is left */
};

struct many_slot {
	struct many *m;
	int i;
};

static void many_cb(void *arg, const struct http_result *r)
{
	struct many_slot *s = arg;
	struct many *m = s->m;
	size_t in = http_inflight(m->h);
	json_t *j;

	m->calls[s->i]++;
	m->done++;
	if (in > m->max_inflight)
		m->max_inflight = in;
	/* finished transfers awaiting their callback count as neither */
	if (in + http_queued(m->h) > (size_t)(MANY - m->done))
		m->bad_sum++;
	if (r->error != HTTP_OK || r->status != 200)
		m->errors++;
	j = parse(r->body);
	if (j && json_integer_value(json_object_get(j, "id")) == MANY_BASE + s->i)
		m->ok_ids++;
	json_decref(j);
}

/* Distinct connections used for /json/<MANY_BASE..> in the mockapi log. */
static int count_conns(void)
{
	FILE *f = fopen(log_file, "r");
	char line[4096];
	int seen[4096] = { 0 }, n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		json_t *j = parse(line);
		const char *p = json_string_value(json_object_get(j, "path"));
		long long c = json_integer_value(json_object_get(j, "conn"));

		if (p && strncmp(p, "/json/1", 7) == 0 && atoi(p + 6) >= MANY_BASE &&
		    c > 0 && c < 4096 && !seen[c]) {
			seen[c] = 1;
			n++;
		}
		json_decref(j);
	}
	fclose(f);
	return n;
}

static void test_many(void)
{
	struct many *m = xcalloc(1, sizeof(*m));
	struct many_slot *slots = xcalloc(MANY, sizeof(*slots));
	char *urls[MANY];
	int i, once = 0, conns;

	m->h = http_create(loop, MANY_CAP);
	for (i = 0; i < MANY; i++) {
		char path[64];
		struct http_request r;

		snprintf(path, sizeof(path), "/json/%d?delay=5", MANY_BASE + i);
		urls[i] = murl(path);
		r = req_init(urls[i]);
		slots[i].m = m;
		slots[i].i = i;
		submit(m->h, &r, many_cb, &slots[i]);
	}
	is_int(http_inflight(m->h), MANY_CAP, "300 submitted: %d in flight", MANY_CAP);
	is_int(http_queued(m->h), MANY - MANY_CAP, "300 submitted: rest queued");
	wait_for(&m->done, MANY, 60);
	for (i = 0; i < MANY; i++)
		once += m->calls[i] == 1;
	is_int(once, MANY, "300 requests: each callback exactly once");
	is_int(m->errors, 0, "300 requests: all 200");
	is_int(m->ok_ids, MANY, "300 requests: each body matches its request");
	ok(m->max_inflight <= MANY_CAP && m->max_inflight >= 2,
	   "in flight stays within 2..%d (max seen %zu)", MANY_CAP, m->max_inflight);
	is_int(m->bad_sum, 0, "inflight + queued never exceeds what is left");
	is_int(http_inflight(m->h), 0, "all done: none in flight");
	is_int(http_queued(m->h), 0, "all done: none queued");
	conns = count_conns();
	ok(conns >= 1 && conns <= 2 * MANY_CAP,
	   "keep-alive: 300 requests over %d connections", conns);
	http_destroy(m->h);
	for (i = 0; i < MANY; i++)
		free(urls[i]);
	free(slots);
	free(m);
}

/* ---- a callback that submits the next request */

struct chain {
	struct http *h;
	char *url;
	int done, reentrant, errors;
};

static void chain_cb(void *arg, const struct http_result *r)
{
	struct chain *c = arg;
	struct http_request q = req_init(c->url);

	if (in_submit)
		c->reentrant++;
	if (r->error != HTTP_OK)
		c->errors++;
	if (++c->done < 5)
		submit(c->h, &q, chain_cb, c);
}

static void test_chain(struct http *h)
{
	struct chain c = { h, murl("/json/5"), 0, 0, 0 };
	struct http_request r = req_init(c.url);

	submit(h, &r, chain_cb, &c);
	wait_for(&c.done, 5, 15);
	is_int(c.done, 5, "callbacks can submit: chain of 5 completes");
	is_int(c.reentrant, 0, "chained callbacks never run inside http_submit");
	is_int(c.errors, 0, "chained requests ok");
	free(c.url);
}

/* ---- cancellation */

#define NCANCEL 5

struct canc {
	struct http *h;
	int calls[NCANCEL + 1];
	enum http_error err[NCANCEL + 1];
	int inside_cancel[NCANCEL + 1];
	int resubmit_from;          /* index whose callback submits index NCANCEL */
	char *url;
};

struct canc_slot {
	struct canc *c;
	int i;
};

static struct canc_slot cslots[NCANCEL + 1];

static void canc_cb(void *arg, const struct http_result *r)
{
	struct canc_slot *s = arg;
	struct canc *c = s->c;

	c->calls[s->i]++;
	c->err[s->i] = r->error;
	c->inside_cancel[s->i] = in_cancel;
	if (s->i == c->resubmit_from) {
		struct http_request q = req_init(c->url);
		cslots[NCANCEL].c = c;
		cslots[NCANCEL].i = NCANCEL;
		submit(c->h, &q, canc_cb, &cslots[NCANCEL]);
	}
}

static void canc_submit_all(struct canc *c)
{
	int i;

	memset(c->calls, 0, sizeof(c->calls));
	for (i = 0; i < NCANCEL; i++) {
		struct http_request r = req_init(c->url);
		cslots[i].c = c;
		cslots[i].i = i;
		submit(c->h, &r, canc_cb, &cslots[i]);
	}
}

static int canc_all_once(const struct canc *c, int n)
{
	int i, good = 0;

	for (i = 0; i < n; i++)
		good += c->calls[i] == 1 && c->err[i] == HTTP_ERR_CANCELLED;
	return good;
}

/* Completes /json/1 first; its callback cancels the slow ones. */
struct cancel_from_cb {
	struct http *h;
	int done;
};

static void cancel_from_cb(void *arg, const struct http_result *r)
{
	struct cancel_from_cb *k = arg;

	k->done++;
	http_cancel_all(k->h);
}

static void test_cancel(void)
{
	struct canc c;
	struct cancel_from_cb k;
	struct got g = { 0 };
	struct http_request r;
	char *u;
	int i;

	memset(&c, 0, sizeof(c));
	c.h = http_create(loop, 2);
	/* Held at a gate nobody opens: they are still running when cancelled,
	 * however late the loop gets to them. */
	c.url = murl("/slow?ms=5000&gate=never");
	c.resubmit_from = 3;
	canc_submit_all(&c);
	run_for(0.3);
	is_int(http_inflight(c.h), 2, "cancel: 2 running");
	is_int(http_queued(c.h), NCANCEL - 2, "cancel: rest queued");
	in_cancel++;
	http_cancel_all(c.h);
	in_cancel--;
	is_int(canc_all_once(&c, NCANCEL), NCANCEL,
	       "cancel_all: running and queued callbacks once with HTTP_ERR_CANCELLED");
	is_int(http_inflight(c.h), 0, "cancel_all: none in flight");
	is_int(http_queued(c.h), 0, "cancel_all: none queued");
	is_int(c.calls[NCANCEL], 0, "submit during cancel_all: not completed recursively");
	wait_for(&c.calls[NCANCEL], 1, 5);
	is_int(c.calls[NCANCEL], 1, "submit during cancel_all: completed once on the loop");
	is_int(c.err[NCANCEL], HTTP_ERR_CANCELLED, "submit during cancel_all: cancelled");
	is_int(c.inside_cancel[NCANCEL], 0, "submit during cancel_all: outside cancel_all");
	run_for(0.1);
	for (i = 0; i <= NCANCEL; i++)
		if (c.calls[i] != 1)
			break;
	is_int(i, NCANCEL + 1, "cancel: no callback runs twice");

	/* still usable afterwards */
	u = murl("/json/7");
	r = req_init(u);
	fetch(c.h, &r, &g);
	is_int(g.err, HTTP_OK, "after cancel_all: new requests work");
	is_int(g.status, 200, "after cancel_all: status 200");
	free(u);

	/* cancel_all from inside a completion callback */
	c.resubmit_from = -1;
	k.h = c.h;
	k.done = 0;
	u = murl("/json/8");
	r = req_init(u);
	submit(c.h, &r, cancel_from_cb, &k);
	canc_submit_all(&c);
	wait_for(&k.done, 1, 10);
	is_int(k.done, 1, "cancel from a callback: trigger completed");
	is_int(canc_all_once(&c, NCANCEL), NCANCEL,
	       "cancel from a callback: every other transfer cancelled once");
	is_int(http_inflight(c.h) + http_queued(c.h), 0, "cancel from a callback: nothing left");
	free(u);

	/* destroy with running and queued transfers, one callback resubmitting */
	c.resubmit_from = 0;
	canc_submit_all(&c);
	c.calls[NCANCEL] = 0;
	run_for(0.2);
	http_destroy(c.h);
	is_int(canc_all_once(&c, NCANCEL), NCANCEL,
	       "destroy: running and queued callbacks once with HTTP_ERR_CANCELLED");
	is_int(c.calls[NCANCEL], 1, "destroy: a request submitted meanwhile is cancelled too");
	is_int(c.err[NCANCEL], HTTP_ERR_CANCELLED, "destroy: ... with HTTP_ERR_CANCELLED");
	free(c.url);
	got_free(&g);
}

/* ------------------------------------------------------------ main */

static void alarm_handler(int sig)
{
	static const char msg[] = "Bail out! event loop did not finish\n";
	ssize_t n = write(1, msg, sizeof(msg) - 1);

	(void)n;
	if (mock_pid > 0)
		kill(mock_pid, SIGTERM);
	_exit(1);
}

/* URL helpers and Link parsing: pure functions, no server needed. */
/* One case of http_link_next(header): want NULL means no next link. */
static void link_next(const char *header, const char *want, const char *desc)
{
	char *s = http_link_next(header);

	is_str(s, want, "%s", desc);
	free(s);
}

/* One case of http_url_supplied_check(origin, url, allow): want NULL means
 * the URL is allowed, "" that it is refused with any message, anything else
 * the exact message. */
static void supplied(const char *origin, const char *url, const char *const *allow,
                     const char *want, const char *desc)
{
	char *s = http_url_supplied_check(origin, url, allow);

	if (!want)
		ok(s == NULL, "%s", desc);
	else if (!*want)
		ok(s != NULL, "%s", desc);
	else
		is_str(s, want, "%s", desc);
	free(s);
}

static void test_url_helpers(void)
{
	char *s;

	s = http_url_resolve("http://a.example/v1/items?page=1", "/v1/items?page=2");
	is_str(s, "http://a.example/v1/items?page=2", "resolve an absolute path");
	free(s);
	s = http_url_resolve("http://a.example/v1/items?page=1", "?page=3");
	is_str(s, "http://a.example/v1/items?page=3", "resolve a query-only reference");
	free(s);
	s = http_url_resolve("http://a.example/v1/items", "https://b.example/x");
	is_str(s, "https://b.example/x", "resolve an absolute URL");
	free(s);
	s = http_url_host("http://API.Example.com:8080/x");
	is_str(s, "api.example.com:8080", "host with port, lowercased");
	free(s);
	s = http_url_host("https://api.example.com/x");
	is_str(s, "api.example.com", "host without port");
	free(s);
	s = http_url_host("file:///tmp/x.json");
	ok(s == NULL, "file URLs have no host");
	free(s);
	s = http_url_set_param("http://a/x?page=1&per=5", "page", "2");
	is_str(s, "http://a/x?per=5&page=2", "set_param replaces an existing parameter");
	free(s);
	s = http_url_set_param("http://a/x", "offset", "100");
	is_str(s, "http://a/x?offset=100", "set_param appends to a URL without a query");
	free(s);
	s = http_url_set_param("http://a/x?pages=9", "page", "a b");
	is_str(s, "http://a/x?pages=9&page=a%20b", "set_param keeps similar names and escapes");
	free(s);
	link_next("<https://a/x?page=2>; rel=\"next\", <https://a/x?page=9>; rel=\"last\"",
	          "https://a/x?page=2", "Link: rel=next found first");
	link_next("<https://a/x?page=1>; rel=\"prev\", <https://a/x?page=3>; rel=\"next\"",
	          "https://a/x?page=3", "Link: rel=next found after another");
	link_next("<https://a/x?p=3>; title=\"a, b\"; rel=\"last next\"",
	          "https://a/x?p=3", "Link: quoted commas and several relation types");
	link_next("<https://a/x?page=9>; rel=\"last\"", NULL, "Link without rel=next gives NULL");
	link_next("garbage", NULL, "a malformed Link gives NULL");
	{
		const char *const allow[] = { "cdn.example.com", "b.example:8443", "*.img.example",
		                              NULL };
		const char *const any[] = { "*", NULL };
		const char *o = "http://API.example.com/v1/items";

		supplied(o, "http://api.example.com:80/v1?p=2", NULL, NULL,
		         "supplied: same host, default port spelled out");
		supplied(o, "https://api.example.com/v1?p=2", NULL, NULL,
		         "supplied: http to https on the same host");
		s = http_url_supplied_check("https://api.example.com/", "http://api.example.com/", NULL);
		ok(s && strstr(s, "another scheme (http://)"), "supplied: https to http is refused");
		free(s);
		supplied(o, "file:///etc/passwd", any,
		         "another scheme (file://) than the stage's http://",
		         "supplied: file:// is refused even with allow_hosts *");
		supplied(o, "http://api.example.com:8080/", NULL,
		         "another host (api.example.com:8080) than the stage's (api.example.com:80), "
		         "not listed in allow_hosts", "supplied: another port is another host");
		supplied(o, "http://CDN.example.com:9000/x", allow, NULL,
		         "supplied: a listed host, any port");
		supplied(o, "http://b.example:80/x", allow, "",
		         "supplied: host:port lists that port only");
		supplied(o, "https://b.example:8443/x", allow, NULL, "supplied: host:port");
		supplied(o, "http://a.img.example/x", allow, NULL,
		         "supplied: *.domain matches a subdomain");
		supplied(o, "http://img.example/x", allow, "",
		         "supplied: *.domain does not match the domain itself");
		supplied(o, "http://evilimg.example/x", allow, "",
		         "supplied: *.domain does not match a suffix that is not a label");
		supplied(o, "http://elsewhere.example/x", any, NULL, "supplied: * allows any host");
		supplied("file:///data/p1.json", "file:///data/p2.json", NULL, NULL,
		         "supplied: file:// from a local file");
		supplied(o, "gopher://api.example.com/", NULL, "",
		         "supplied: another scheme is refused");
	}
}

/* Only a parameter named rel selects the next page, the property that
 * tests/fuzz/fuzz_headers.c checks on every Link value. */
static void test_link_params(void)
{
	link_next("<https://a/x?page=9>; title=\"see rel=next\"; rel=\"last\"",
	          NULL, "Link: rel=next inside a quoted title is not a relation");
	link_next("<https://a/x?page=9>; rel=last; x=\"<https://a/y>; rel=next\"",
	          NULL, "Link: a quoted link inside a parameter is not a link");
	link_next("<https://a/x?page=9>; prerel=next",
	          NULL, "Link: a parameter whose name ends in rel is not rel");
	link_next("<https://a/x?page=9>; title=\"rel=next\", <https://a/x?page=2>;REL = next",
	          "https://a/x?page=2", "Link: the real rel=next after a decoy (any case, spaces)");
	link_next("<https://a/x?page=2>;rel=\"nextpage next\"",
	          "https://a/x?page=2", "Link: next among other relation types");
	link_next("<https://a/x?page=2>; rel=\"nextpage\"",
	          NULL, "Link: a relation type that starts with next is not next");
}

int main(void)
{
	const char *bin = getenv("MOCKAPI");
	struct http *h;

	test_url_helpers();
	test_link_params();
	if (!bin || !*bin) {
		printf("# SKIP the rest: MOCKAPI not set\n");
		return done_testing();
	}
	signal(SIGPIPE, SIG_IGN);
	start_mock(bin);
	http_global_init();
	loop = ev_default_loop(0);

	h = http_create(loop, 4);
	test_get_json(h);
	test_status(h);
	test_methods(h);
	test_redirect(h);
	test_timeouts(h);
	test_errors(h);
	test_max_body(h);
	test_file(h);
	test_chain(h);
	http_destroy(h);
	lives_ok(http_destroy(NULL), "http_destroy(NULL) is a no-op");

	test_many();
	test_cancel();

	/* every watcher is gone: the loop returns on its own */
	signal(SIGALRM, alarm_handler);
	alarm(20);
	is_int(ev_run(loop, 0), 0, "the loop returns on its own: no active watcher left");
	alarm(0);
	/* a second pass that does not block: nothing pending, nothing active */
	is_int(ev_run(loop, EVRUN_NOWAIT), 0, "no watchers left behind on the loop");
	is_int(ev_pending_count(loop), 0, "no event left pending on the loop");

	ev_loop_destroy(loop);
	http_global_cleanup();
	stop_mock();
	return done_testing();
}
